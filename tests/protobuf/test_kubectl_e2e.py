"""Real kubectl 1.33 (protobuf bodies) against the API server, in process."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.store import open_store


def _kubectl_133() -> Path | None:
    found = shutil.which("kubectl")
    if found is None:
        return None
    path = Path(os.path.realpath(found)).parent / "kubectl.1.33"
    return path if path.exists() else None


KUBECTL = _kubectl_133()
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl.1.33 not installed")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_apiserver(store) as running,
    ):
        yield running


@pytest.fixture
def kubeconfig(server: RunningApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"token": "any-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


async def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    assert KUBECTL is not None
    with trio.fail_after(30):
        result = await trio.run_process(
            [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out, err = result.stdout.decode(), result.stderr.decode()
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {err}"
    return result.returncode, out, err


async def get_json(kubeconfig: Path, *args: str) -> Any:
    _, out, _ = await kubectl(kubeconfig, "get", *args, "-o", "json")
    return json.loads(out)


async def test_create_deployment(kubeconfig: Path) -> None:
    _, out, _ = await kubectl(kubeconfig, "create", "deployment", "d", "--image=nginx")
    assert out.strip() == "deployment.apps/d created"
    deployment = await get_json(kubeconfig, "deployment", "d")
    assert deployment["kind"] == "Deployment"
    assert deployment["metadata"]["name"] == "d"
    assert deployment["metadata"]["namespace"] == "default"
    assert deployment["metadata"]["labels"] == {"app": "d"}
    assert deployment["metadata"]["uid"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx"
    # The server's defaults apply: Go's zero values from protobuf did not block them.
    assert container["imagePullPolicy"] == "Always"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert "stdin" not in container


async def test_create_zero_replicas_keeps_zero(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "create", "deployment", "idle", "--image=busybox", "--replicas=0")
    deployment = await get_json(kubeconfig, "deployment", "idle")
    assert deployment["spec"]["replicas"] == 0


async def test_create_namespace_configmap_secret_service(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "create", "namespace", "team-a")
    namespace = await get_json(kubeconfig, "namespace", "team-a")
    assert namespace["metadata"]["name"] == "team-a"

    await kubectl(
        kubeconfig, "-n", "team-a", "create", "configmap", "cm", "--from-literal=color=blue"
    )
    configmap = await get_json(kubeconfig, "-n", "team-a", "configmap", "cm")
    assert configmap["data"] == {"color": "blue"}

    await kubectl(
        kubeconfig, "-n", "team-a", "create", "secret", "generic", "s", "--from-literal=pw=hunter2"
    )
    secret = await get_json(kubeconfig, "-n", "team-a", "secret", "s")
    assert base64.b64decode(secret["data"]["pw"]) == b"hunter2"

    await kubectl(
        kubeconfig, "-n", "team-a", "create", "service", "clusterip", "web", "--tcp=80:8080"
    )
    service = await get_json(kubeconfig, "-n", "team-a", "service", "web")
    [port] = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["protocol"]) == (80, 8080, "TCP")


async def test_auth_can_i_and_whoami(kubeconfig: Path) -> None:
    _, out, _ = await kubectl(kubeconfig, "auth", "can-i", "create", "pods")
    assert out.strip() == "yes"
    _, out, _ = await kubectl(kubeconfig, "auth", "whoami")
    assert "Username" in out


async def test_create_quota_and_pdb(kubeconfig: Path) -> None:
    await kubectl(kubeconfig, "create", "quota", "q", "--hard=cpu=1500m,memory=1Gi")
    quota = await get_json(kubeconfig, "resourcequota", "q")
    assert quota["spec"]["hard"] == {"cpu": "1500m", "memory": "1Gi"}
    await kubectl(kubeconfig, "create", "pdb", "p", "--selector=app=x", "--min-available=50%")
    pdb = await get_json(kubeconfig, "pdb", "p")
    assert pdb["spec"]["minAvailable"] == "50%"


async def test_http_protobuf_bodies(server: RunningApiServer) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf", "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        with trio.fail_after(20):
            created = await http.post(
                "/api/v1/namespaces/default/secrets",
                content=(fixtures / "create_secret.bin").read_bytes(),
                headers=headers,
            )
            assert created.status_code == 201, created.text
            assert created.json()["data"]["user"] == "YWRtaW4="
            for junk in (b"k8s\x00\x0a\xff", b"k8s\x00", b"\x00\x01\x02", b""):
                refused = await http.post(
                    "/api/v1/namespaces/default/secrets", content=junk, headers=headers
                )
                assert refused.status_code == 400, refused.text
                status = refused.json()
                assert (status["kind"], status["reason"]) == ("Status", "BadRequest")
