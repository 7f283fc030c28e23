"""``kubectl debug`` on the suite's runc node: ephemeral containers in a running pod's
sandbox (its network, and the target container's processes), node debugging with the
host's namespaces and root at ``/host``, and copies of a pod.

kubectl 1.27 and 1.33 are driven without a terminal: ``-i`` with the shell's input piped,
or a container that waits and is then reached with ``kubectl exec``.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.compat.kit import CompatCluster
from tests.kit import wait_until

VERSIONS = ("1.27", "1.33")
TARGET = ["sh", "-c", "exec sleep 3601"]
"""The target container's process: PID 1 of its namespace, recognisable by its argument."""


def _pod(cluster: CompatCluster, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """Create a busybox pod (container ``c`` running :data:`TARGET`) and wait until it runs."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": TARGET}],
            **spec,
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    return wait_until(
        lambda: _running(cluster, namespace, name),
        timeout=60,
        what=f"pod {name} to run",
    )


def _get(cluster: CompatCluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    pod: dict[str, Any] = json.loads(out.stdout)
    return pod


def _running(cluster: CompatCluster, namespace: str, name: str) -> dict[str, Any] | None:
    pod = _get(cluster, namespace, name)
    return pod if (pod.get("status") or {}).get("phase") == "Running" else None


def _ephemeral_state(cluster: CompatCluster, namespace: str, pod: str, name: str) -> dict[str, Any]:
    statuses = _get(cluster, namespace, pod)["status"].get("ephemeralContainerStatuses") or []
    for status in statuses:
        if status["name"] == name:
            state: dict[str, Any] = status["state"]
            return state
    return {}


@pytest.mark.parametrize("version", VERSIONS)
def test_debug_shares_the_targets_processes_and_the_pods_network(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    pod = _pod(cluster, namespace, "web")
    name = f"dbg{version.replace('.', '')}"
    script = "tr '\\0' ' ' < /proc/1/cmdline; echo; ip -o -4 addr show eth0; exit\n"
    out = cluster.kubectl(
        "debug", "-i", "web", "-n", namespace, "--image=busybox", "--target=c",
        f"--container={name}", "--", "sh",
        version=version, input=script, timeout=120,
    )  # fmt: skip
    assert "sleep 3601" in out.stdout, out.stdout + out.stderr
    assert f"inet {pod['status']['podIP']}/" in out.stdout, out.stdout
    # The shell exited: terminated with its code, and never restarted.
    terminated = wait_until(
        lambda: _ephemeral_state(cluster, namespace, "web", name).get("terminated"),
        timeout=30,
        what=f"{name} to be reported terminated",
    )
    assert terminated["exitCode"] == 0
    [status] = [
        s
        for s in _get(cluster, namespace, "web")["status"]["ephemeralContainerStatuses"]
        if s["name"] == name
    ]
    assert status["restartCount"] == 0
    # The pod's own container was never disturbed.
    [main] = _get(cluster, namespace, "web")["status"]["containerStatuses"]
    assert "running" in main["state"] and main["restartCount"] == 0


def test_status_goes_running_then_terminated_and_exec_reaches_it(
    cluster: CompatCluster, namespace: str
) -> None:
    _pod(cluster, namespace, "web")
    wait_for_stop = "while [ ! -e /tmp/stop ]; do sleep 0.2; done; exit 3"
    cluster.kubectl(
        "debug", "web", "-n", namespace, "--image=busybox", "--container=waiter",
        "--", "sh", "-c", wait_for_stop,
    )  # fmt: skip
    running = wait_until(
        lambda: _ephemeral_state(cluster, namespace, "web", "waiter").get("running"),
        timeout=60,
        what="the ephemeral container to run",
    )
    assert running["startedAt"]
    cluster.kubectl("exec", "web", "-n", namespace, "-c", "waiter", "--", "touch", "/tmp/stop")
    terminated = wait_until(
        lambda: _ephemeral_state(cluster, namespace, "web", "waiter").get("terminated"),
        timeout=30,
        what="the ephemeral container to end",
    )
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


@pytest.fixture
def core(cluster: CompatCluster) -> Iterator[client.CoreV1Api]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


def test_the_official_client_adds_a_debug_container(
    cluster: CompatCluster, namespace: str, core: client.CoreV1Api
) -> None:
    _pod(cluster, namespace, "web")
    command = "tr '\\0' ' ' < /proc/1/cmdline; echo; exec sleep 3600"
    core.patch_namespaced_pod_ephemeralcontainers(
        "web",
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {"name": "py", "image": "busybox", "targetContainerName": "c",
                     "command": ["sh", "-c", command]}
                ]
            }
        },
    )  # fmt: skip
    wait_until(
        lambda: _ephemeral_state(cluster, namespace, "web", "py").get("running"),
        timeout=60,
        what="the client's ephemeral container to run",
    )
    log = wait_until(
        lambda: core.read_namespaced_pod_log("web", namespace, container="py").strip(),
        timeout=30,
        what="the ephemeral container's log",
    )
    assert log == "sleep 3601"


@pytest.mark.parametrize("version", VERSIONS)
def test_debug_node_sees_the_hosts_root(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    node = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    out = cluster.kubectl(
        "debug", "-i", f"node/{node}", "-n", namespace, "--image=busybox", "--", "sh",
        version=version, input="cat /host/etc/hostname; exit\n", timeout=120,
    )  # fmt: skip
    hostname = Path("/etc/hostname").read_text().strip() or socket.gethostname()
    assert hostname in out.stdout, out.stdout + out.stderr
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    [debugger] = [p for p in pods["items"] if p["metadata"]["name"].startswith("node-debugger")]
    spec = debugger["spec"]
    assert spec["hostNetwork"] and spec["hostPID"] and spec["hostIPC"]
    assert spec["nodeName"] == node


def test_debug_copy_to_makes_a_running_copy(cluster: CompatCluster, namespace: str) -> None:
    _pod(cluster, namespace, "web")
    cluster.kubectl(
        "debug", "web", "-n", namespace, "--copy-to=web-copy", "--container=c",
        "--", "sh", "-c", "echo copied; exec sleep 3600",
    )  # fmt: skip
    wait_until(
        lambda: _running(cluster, namespace, "web-copy"),
        timeout=60,
        what="the copy to run",
    )
    wait_until(
        lambda: "copied" in cluster.kubectl("logs", "web-copy", "-n", namespace, "-c", "c").stdout,
        timeout=30,
        what="the copy's log",
    )
    assert _get(cluster, namespace, "web")["spec"]["containers"][0]["command"] == TARGET


def test_a_finished_pod_reports_why_its_debug_container_cannot_start(
    cluster: CompatCluster, namespace: str
) -> None:
    name = f"done-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    wait_until(
        lambda: _get(cluster, namespace, name)["status"].get("phase") == "Succeeded",
        timeout=60,
        what="the pod to finish",
    )
    cluster.kubectl(
        "debug", name, "-n", namespace, "--image=busybox", "--container=late", "--", "true"
    )
    terminated = wait_until(
        lambda: _ephemeral_state(cluster, namespace, name, "late").get("terminated"),
        timeout=30,
        what="the ephemeral container's refusal",
    )
    assert terminated["reason"] == "StartError"
    assert "is not running (phase Succeeded)" in terminated["message"]
