"""The embedded cluster: API server, controllers, scheduler and simulated nodes in-process."""

from __future__ import annotations

from pathlib import Path

import trio

from kubetrio.cluster import open_cluster
from kubetrio.store import open_store


async def test_deployment_becomes_available_on_simulated_nodes(tmp_path: Path) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    with trio.fail_after(60):
        async with (
            open_store(f"sqlite://{tmp_path}/s.db") as store,
            open_cluster(store, simulated_nodes=2) as cluster,
        ):
            client = cluster.client
            await client.create("apps/v1", "deployments", deployment, namespace="default")
            while True:
                status = (
                    await client.get("apps/v1", "deployments", "web", namespace="default")
                ).get("status") or {}
                if status.get("availableReplicas") == 3:
                    break
                await trio.sleep(0.1)
            pods = (await client.list("v1", "pods", namespace="default"))["items"]
            assert len(pods) == 3
            # bound by the scheduler, run by the simulated nodes
            assert {p["spec"]["nodeName"] for p in pods} <= {"sim-node-0", "sim-node-1"}
            assert all(p["status"]["phase"] == "Running" for p in pods)
            owners = {p["metadata"]["ownerReferences"][0]["kind"] for p in pods}
            assert owners == {"ReplicaSet"}
