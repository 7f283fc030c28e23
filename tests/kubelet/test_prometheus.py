"""The node agent's ``/metrics`` through the API server's node proxy
(``kubectl get --raw /api/v1/nodes/<node>/proxy/metrics``), after a real runc pod starts:
its start latency, the runtime operations it took, the running pods and containers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from kubetrio.apiserver import merge_kubeconfig
from kubetrio.cluster import open_local_node
from tests.compat.kit import KUBECTL_VERSIONS
from tests.kit.polling import wait_for
from tests.kit.prom import scrape, series, value

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("docker-registry"),
        reason="needs root, runc and docker-registry",
    ),
]

NODE = "prom-node"
POD = {
    "metadata": {"name": "sleeper"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
    },
}


async def test_pod_start_latency_through_the_node_proxy(tmp_path: Path) -> None:
    path = f"/api/v1/nodes/{NODE}/proxy/metrics"
    with trio.fail_after(150):
        async with open_local_node(
            tmp_path, node_name=NODE, block="10.244.250.192/26", proxy=False, dns=False
        ) as cluster:
            kubeconfig = tmp_path / "kube" / "config"
            kubeconfig.parent.mkdir()
            merge_kubeconfig(kubeconfig, name="node", server=cluster.url)
            before = await scrape(KUBECTL_VERSIONS[0], kubeconfig, path)
            assert value(before, "kubelet_pod_start_duration_seconds_count") == 0
            await cluster.client.create("v1", "pods", POD, namespace="default")

            async def running() -> bool:
                pod = await cluster.client.get("v1", "pods", "sleeper", namespace="default")
                return (pod.get("status") or {}).get("phase") == "Running"

            await wait_for(running, timeout=120)

            async def started() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
                found = await scrape(KUBECTL_VERSIONS[-1], kubeconfig, path)
                return found if value(found, "kubelet_pod_start_duration_seconds_count") else None

            after = await wait_for(started)
            assert value(after, "kubelet_pod_start_duration_seconds_count") == 1
            assert value(after, "kubelet_pod_start_duration_seconds_sum") > 0
            operations = "kubelet_runtime_operations_total"
            for operation in ("run_podsandbox", "create_container", "start_container"):
                assert value(after, operations, operation_type=operation) == 1, operation
            timed = "kubelet_runtime_operations_duration_seconds_count"
            assert value(after, timed, operation_type="run_podsandbox") == 1
            worker = "kubelet_pod_worker_duration_seconds_count"
            assert value(after, worker, operation="create") == 1
            assert value(after, "kubelet_running_pods") == 1
            assert value(after, "kubelet_running_containers", container_state="running") == 1
            assert series(after, "process_resident_memory_bytes") == 1
            # The agent's metrics are its own: the API server's /metrics has none of them.
            control_plane = await scrape(KUBECTL_VERSIONS[-1], kubeconfig)
            assert series(control_plane, "kubelet_running_pods") == 0
            proxied = {"verb": "GET", "resource": "nodes", "subresource": "proxy"}
            assert value(control_plane, "apiserver_request_total", code="200", **proxied) >= 2
