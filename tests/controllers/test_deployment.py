"""Deployments and ReplicaSets end to end on simulated nodes."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client

from .conftest import Cluster, deployment, wait_for


async def _pods(client: Client, selector: str, namespace: str = "default") -> list[Any]:
    items = (await client.list("v1", "pods", namespace=namespace, label_selector=selector))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def _available(client: Client, name: str) -> bool:
    d = await client.get("apps/v1", "deployments", name, namespace="default")
    status = d.get("status") or {}
    wanted = d["spec"]["replicas"]
    return (
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas") == wanted
        and status.get("replicas") == wanted
        and status.get("availableReplicas") == wanted
    )


async def test_deployment_gets_running_pods(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create("apps/v1", "deployments", deployment("web"), namespace="default")
        await wait_for(lambda: _available(client, "web"))
        pods = await _pods(client, "app=web")
        assert len(pods) == 3
        assert all(p["status"]["phase"] == "Running" for p in pods)
        assert {p["spec"]["nodeName"] for p in pods} <= set(cluster.nodes.nodes)
        rs_list = (await client.list("apps/v1", "replicasets", namespace="default"))["items"]
        assert len(rs_list) == 1
        rs = rs_list[0]
        hash_ = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs["metadata"]["name"] == f"web-{hash_}"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert rs["metadata"]["ownerReferences"][0]["controller"] is True
        assert all(p["metadata"]["labels"]["pod-template-hash"] == hash_ for p in pods)
        d = await client.get("apps/v1", "deployments", "web", namespace="default")
        conditions = {c["type"]: c for c in d["status"]["conditions"]}
        assert conditions["Available"]["status"] == "True"
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
