"""The official Python client's own usage examples, run unchanged against the cluster.

``upstream_examples/examples`` holds them verbatim (see its README); each runs as a user
runs it — ``python examples/<file>`` from the folder above, ``KUBECONFIG`` set — from a
temporary copy in which images that cannot be pulled offline are replaced by busybox.
They work in the ``default`` namespace, as written; each test removes what its example
leaves behind.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.kit import CompatCluster
from tests.kit import wait_until

HERE = Path(__file__).parent / "upstream_examples"
OFFLINE_IMAGES = {
    "nginx:1.15.4": "busybox",
    "nginx:1.16.0": "busybox",
    "busybox:1.35": "busybox",
    "image: alpine": "image: busybox",
    "image: perl": "image: busybox",
}


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the examples with offline image names; the folder to run them from."""
    shutil.copytree(HERE, tmp_path / "upstream")
    for path in (tmp_path / "upstream").rglob("*"):
        if path.suffix in (".py", ".yml", ".yaml"):
            text = path.read_text()
            for image, offline in OFFLINE_IMAGES.items():
                text = text.replace(image, offline)
            path.write_text(text)
    return tmp_path / "upstream"


def run_example(
    cluster: CompatCluster, examples: Path, name: str, *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, f"examples/{name}"],
        cwd=examples,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert result.returncode == 0, f"{name}:\n{result.stdout}\n{result.stderr}"
    return result


def test_deployment_crud(cluster: CompatCluster, examples: Path) -> None:
    out = run_example(cluster, examples, "deployment_crud.py").stdout
    assert "deployment `nginx-deployment` created" in out
    assert "deployment's container image updated" in out
    assert "deployment `nginx-deployment` restarted" in out
    assert "kubectl.kubernetes.io/restartedAt" in out
    assert "deployment `nginx-deployment` deleted" in out
    wait_until(
        lambda: cluster.kubectl("get", "deploy", "nginx-deployment", check=False).returncode,
        timeout=60,
        what="the foreground deletion of nginx-deployment",
    )


def test_cronjob_crud(cluster: CompatCluster, examples: Path) -> None:
    try:
        out = run_example(cluster, examples, "cronjob_crud.py").stdout
        assert "create succeed" in out and "patch succeed" in out, out
        command = cluster.kubectl(
            "get",
            "cronjob",
            "hostname",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].command[2]}",
        ).stdout
        assert command == "date; echo this is patch; hostname"
        # Run again: the example deletes the CronJob it finds, then creates it anew.
        out = run_example(cluster, examples, "cronjob_crud.py").stdout
        assert "delete succeed" in out and "create succeed" in out, out
    finally:
        cluster.kubectl("delete", "cronjob", "hostname", "-n", "default", "--ignore-not-found")


def test_api_discovery(cluster: CompatCluster, examples: Path) -> None:
    out = run_example(cluster, examples, "api_discovery.py").stdout
    assert re.search(r"^apps\s+v1$", out, re.M) and re.search(r"^batch\s+v1$", out, re.M), out


def test_node_labels(cluster: CompatCluster, examples: Path) -> None:
    cluster.kubectl("label", "nodes", "--all", "baz=1", "--overwrite")
    run_example(cluster, examples, "node_labels.py")
    labels = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.labels}").stdout
    assert '"foo":"bar"' in labels and "baz" not in labels
    cluster.kubectl("label", "nodes", "--all", "foo-")


def test_apply_from_directory_reports_each_conflict(cluster: CompatCluster, examples: Path) -> None:
    """The example's folder defines game-demo and configmap-demo-pod twice: each second
    create fails with AlreadyExists and create_from_directory raises FailToCreateError
    listing them, after creating everything else."""
    try:
        result = run_example(cluster, examples, "apply_from_directory.py", check=False)
        assert result.returncode != 0
        assert "FailToCreateError" in result.stderr, result.stderr
        assert result.stderr.count("AlreadyExists") == 2, result.stderr
        assert 'configmaps \\"game-demo\\" already exists' in result.stderr
        assert 'pods \\"configmap-demo-pod\\" already exists' in result.stderr
        for kind_name in (
            "configmap/game-demo",
            "pod/configmap-demo-pod",
            "deployment/nginx-deployment",
            "job/pi",
        ):
            cluster.kubectl("get", kind_name, "-n", "default")
    finally:
        cluster.kubectl(
            "delete",
            "-n",
            "default",
            "configmap/game-demo",
            "pod/configmap-demo-pod",
            "deployment/nginx-deployment",
            "job/pi",
            "--wait=false",
            "--ignore-not-found",
        )


def test_pod_logs(cluster: CompatCluster, examples: Path, namespace: str) -> None:
    cluster.kubectl(
        "run",
        "talker",
        "-n",
        namespace,
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from talker; sleep 3600",
    )
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "pod/talker",
        "--for=condition=Ready",
        "--timeout=60s",
        timeout=90,
    )
    out = run_example(cluster, examples, "pod_logs.py").stdout
    assert "hello from talker" in out


@pytest.mark.parametrize("name", ["configmap.py", "service.py", "node.py"])
def test_dynamic_client(cluster: CompatCluster, examples: Path, name: str) -> None:
    out = run_example(cluster, examples, f"dynamic-client/{name}").stdout
    assert out


def test_dynamic_client_namespaced_custom_resource(cluster: CompatCluster, examples: Path) -> None:
    out = run_example(
        cluster, examples, "dynamic-client/namespaced_custom_resource.py", timeout=180
    ).stdout
    assert "custom resources `ingress-route-*` created" in out
    assert "custom resources `ingress-route-*` deleted" in out
    assert "custom resource definition `ingressroutes.apps.example.com` deleted" in out


def test_watch_example(cluster: CompatCluster, examples: Path, namespace: str) -> None:
    """Ten namespace events (a listing starts with ADDED for each namespace) then pods."""
    for index in range(10):
        cluster.kubectl("create", "namespace", f"{namespace}-w{index}")
    try:
        out = run_example(cluster, examples, "watch/pod_namespace_watch.py", timeout=60).stdout
    finally:
        for index in range(10):
            cluster.kubectl("delete", "namespace", f"{namespace}-w{index}", "--wait=false")
    assert out.count("Event: ADDED") >= 10, out
    assert "Finished namespace stream." in out and "Finished pod stream." in out
