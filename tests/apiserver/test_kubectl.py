"""End to end: the real kubectl 1.27 and 1.33 binaries against a running API server."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

KUBECTL_DIR = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent


def kubectl_binary(minor: int) -> str:
    """Path of ``kubectl.1.<minor>``, shipped beside the kubectl on PATH."""
    return str(KUBECTL_DIR / f"kubectl.1.{minor}")


MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        args: ["httpd", "-f"]
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
  namespace: shop
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: once
        image: busybox:1.36
        command: ["true"]
"""


class Kubectl:
    """Runs one kubectl version against the test server, isolated from ~/.kube."""

    def __init__(self, minor: int, kubeconfig: Path, cache: Path) -> None:
        self.binary = kubectl_binary(minor)
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(cache)}
        self.cache = cache

    async def run(self, *args: str, stdin: bytes = b"", check: bool = True) -> str:
        with trio.fail_after(60):
            result = await trio.run_process(
                [self.binary, f"--cache-dir={self.cache}/cache", *args],
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env,
            )
        out = result.stdout.decode() + result.stderr.decode()
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out}"
        return out

    async def json(self, *args: str) -> dict[str, Any]:
        with trio.fail_after(60):
            result = await trio.run_process(
                [self.binary, f"--cache-dir={self.cache}/cache", *args, "-o", "json"],
                capture_stdout=True,
                capture_stderr=True,
                env=self.env,
            )
        value: dict[str, Any] = json.loads(result.stdout)
        return value


@pytest.fixture(params=[27, 33], ids=["kubectl-1.27", "kubectl-1.33"])
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(request.param, kubeconfig, tmp_path)


async def test_apply_get_describe_and_edit(kubectl: Kubectl) -> None:
    out = await kubectl.run("apply", "-f", "-", stdin=MANIFEST.encode())
    for line in (
        "namespace/shop created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
        "job.batch/once created",
    ):
        assert line in out
    again = await kubectl.run("apply", "-f", "-", stdin=MANIFEST.encode())
    assert "deployment.apps/web unchanged" in again

    table = await kubectl.run("get", "deploy", "-n", "shop")
    header, row = table.strip().splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:2] == ["web", "0/2"]
    wide = await kubectl.run("get", "deploy", "-n", "shop", "-o", "wide")
    assert "busybox:1.36" in wide and "app=web" in wide
    everywhere = await kubectl.run("get", "cm", "-A", "--show-labels")
    assert "shop" in everywhere.split() and "settings" in everywhere
    names = await kubectl.run("get", "svc,deploy,job", "-n", "shop", "-o", "name")
    assert set(names.split()) == {"service/web", "deployment.apps/web", "job.batch/once"}
    svc = await kubectl.json("get", "svc", "web", "-n", "shop")
    assert svc["spec"]["clusterIP"].startswith("10.")
    secret = await kubectl.json("get", "secret", "creds", "-n", "shop")
    assert secret["type"] == "Opaque"
    yaml_out = await kubectl.run("get", "cm", "settings", "-n", "shop", "-o", "yaml")
    assert "mode: fast" in yaml_out
    jsonpath = await kubectl.run(
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert jsonpath == "busybox:1.36"

    described = await kubectl.run("describe", "deploy", "web", "-n", "shop")
    assert "Replicas:" in described and "2 desired" in described

    await kubectl.run("label", "deploy", "web", "-n", "shop", "tier=frontend")
    await kubectl.run("annotate", "deploy", "web", "-n", "shop", "owner=team-a")
    await kubectl.run("scale", "deploy", "web", "-n", "shop", "--replicas=4")
    await kubectl.run(
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}',
    )
    await kubectl.run("set", "image", "deploy/web", "-n", "shop", "web=busybox:1.38")
    web = await kubectl.json("get", "deploy", "web", "-n", "shop")
    assert web["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    assert web["metadata"]["annotations"]["owner"] == "team-a"
    assert web["spec"]["replicas"] == 4
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.38"
    assert web["metadata"]["generation"] == 4
    selected = await kubectl.run("get", "deploy", "-n", "shop", "-l", "tier=frontend", "-o", "name")
    assert selected.strip() == "deployment.apps/web"


async def test_create_dry_run_and_delete(kubectl: Kubectl) -> None:
    # kubectl 1.32+ sends this create as protobuf; older ones as JSON.
    await kubectl.run("create", "namespace", "tmp")
    dry = await kubectl.run(
        "apply",
        "-n",
        "tmp",
        "--dry-run=server",
        "-f",
        "-",
        stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n",
    )
    assert "configmap/dry created (server dry run)" in dry
    missing = await kubectl.run("get", "cm", "dry", "-n", "tmp", check=False)
    assert 'configmaps "dry" not found' in missing
    await kubectl.run(
        "apply",
        "-n",
        "tmp",
        "-f",
        "-",
        stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: real\n",
    )
    deleted = await kubectl.run("delete", "cm", "real", "-n", "tmp", "--wait=true")
    assert 'configmap "real" deleted' in deleted
    gone = await kubectl.run("delete", "namespace", "tmp", "--wait=true", "--timeout=30s")
    assert 'namespace "tmp" deleted' in gone
    after = await kubectl.run("get", "ns", "tmp", check=False)
    assert "NotFound" in after


async def test_generator_commands(kubectl: Kubectl) -> None:
    await kubectl.run("create", "deployment", "gen", "--image=nginx:1.25", "--replicas=2")
    await kubectl.run("create", "configmap", "gen", "--from-literal=a=b")
    await kubectl.run("create", "secret", "generic", "gen", "--from-literal=pw=s3cret")
    deploy = await kubectl.json("get", "deploy", "gen")
    assert deploy["spec"]["replicas"] == 2
    secret = await kubectl.json("get", "secret", "gen")
    assert secret["data"] == {"pw": "czNjcmV0"}


async def test_get_watch_sees_changes(kubectl: Kubectl) -> None:
    await kubectl.run(
        "apply",
        "-f",
        "-",
        stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata: {v: '1'}\n",
    )
    output: list[str] = []

    async def watch() -> None:
        out = await kubectl.run(
            "get",
            "cm",
            "watched",
            "-w",
            "--request-timeout=4s",
            "-o",
            'jsonpath={.data.v}{"\\n"}',
            check=False,
        )
        output.append(out)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.sleep(1.5)
        for value in ("2", "3"):
            await kubectl.run(
                "patch", "cm", "watched", "--type=merge", "-p", json.dumps({"data": {"v": value}})
            )
    lines = [line for line in output[0].splitlines() if line.strip() in ("1", "2", "3")]
    assert lines == ["1", "2", "3"]


async def test_watch_list_client_syncs_from_initial_events(
    kubeconfig: Path, tmp_path: Path
) -> None:
    """client-go's reflector with its WatchListClient gate (kubectl 1.33's `wait`) lists by
    streaming: initial events, then the bookmark that ends them, then changes."""
    kubectl = Kubectl(33, kubeconfig, tmp_path)
    kubectl.env["KUBE_FEATURE_WatchListClient"] = "true"
    await kubectl.run("create", "configmap", "streamed", "--from-literal=v=1")
    await kubectl.run("create", "configmap", "bystander")
    output: list[str] = []

    async def wait() -> None:
        output.append(
            await kubectl.run(
                "wait", "--for=jsonpath={.data.v}=2", "configmap/streamed", "--timeout=30s", "-v=6"
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(1.5)
        await kubectl.run("patch", "configmap", "streamed", "-p", '{"data":{"v":"2"}}')
    assert "sendInitialEvents=true" in output[0]
    assert "received the bookmark that marks the end of initial events stream" in output[0]
    assert "configmap/streamed condition met" in output[0]


async def test_errors_read_like_kubernetes(kubectl: Kubectl) -> None:
    missing = await kubectl.run("get", "deploy", "nothing", check=False)
    assert 'Error from server (NotFound): deployments.apps "nothing" not found' in missing
    await kubectl.run(
        "apply", "-f", "-", stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n"
    )
    exists = await kubectl.run(
        "create",
        "-f",
        "-",
        check=False,
        stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n",
    )
    assert "Error from server (AlreadyExists)" in exists
    bad_name = await kubectl.run(
        "apply",
        "-f",
        "-",
        check=False,
        stdin=b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    )
    assert "Invalid value" in bad_name and "metadata.name" in bad_name


async def test_auth_can_i_and_whoami(kubeconfig: Path, tmp_path: Path) -> None:
    kubectl = Kubectl(31, kubeconfig, tmp_path)
    assert (await kubectl.run("auth", "can-i", "create", "pods")).strip() == "yes"
    whoami = await kubectl.run("auth", "whoami")
    assert "system:anonymous" in whoami
