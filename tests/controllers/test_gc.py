"""Cascading deletion in all three modes, and dangling ownerReferences."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client, ClientError
from tests.kit import deployment, wait_for

from .conftest import Cluster


async def _names(client: Client, api_version: str, resource: str) -> set[str]:
    items = (await client.list(api_version, resource, namespace="default"))["items"]
    return {i["metadata"]["name"] for i in items}


async def _gone(client: Client, api_version: str, resource: str, name: str) -> bool:
    try:
        await client.get(api_version, resource, name, namespace="default")
    except ClientError as exc:
        return exc.not_found
    return False


async def _ready_deployment(cluster: Cluster, name: str, replicas: int = 3) -> None:
    client = cluster.client
    await client.create("apps/v1", "deployments", deployment(name, replicas), namespace="default")

    async def ready() -> bool:
        d = await client.get("apps/v1", "deployments", name, namespace="default")
        return (d.get("status") or {}).get("availableReplicas") == replicas

    await wait_for(ready)


async def test_background_deletion(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await _ready_deployment(cluster, "bg")
        await client.delete(
            "apps/v1", "deployments", "bg", namespace="default", propagation_policy="Background"
        )

        async def empty() -> bool:
            return not await _names(client, "apps/v1", "replicasets") and not await _names(
                client, "v1", "pods"
            )

        await wait_for(empty)


async def test_foreground_deletion_removes_dependents_first(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await _ready_deployment(cluster, "fg")
        d = await client.get("apps/v1", "deployments", "fg", namespace="default")
        order: list[tuple[str, str]] = []

        async def watch(api_version: str, resource: str) -> None:
            async with client.watch(
                api_version,
                resource,
                namespace="default",
                resource_version=d["metadata"]["resourceVersion"],
            ) as events:
                async for event in events:
                    if event.type == "DELETED":
                        order.append((resource, event.object["metadata"]["name"]))

        async with trio.open_nursery() as nursery:
            for api_version, resource in (
                ("v1", "pods"),
                ("apps/v1", "replicasets"),
                ("apps/v1", "deployments"),
            ):
                nursery.start_soon(watch, api_version, resource)
            await trio.sleep(0.1)
            marked = await client.delete(
                "apps/v1", "deployments", "fg", namespace="default", propagation_policy="Foreground"
            )
            assert "foregroundDeletion" in marked["metadata"]["finalizers"]
            await wait_for(lambda: _gone(client, "apps/v1", "deployments", "fg"))
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        kinds = [kind for kind, _ in order]
        assert kinds.count("pods") == 3 and kinds.count("replicasets") == 1
        assert kinds[-1] == "deployments"
        assert kinds.index("replicasets") > max(i for i, k in enumerate(kinds) if k == "pods")


async def test_orphan_deletion_keeps_dependents(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await _ready_deployment(cluster, "orph")
        await client.delete(
            "apps/v1", "deployments", "orph", namespace="default", propagation_policy="Orphan"
        )
        await wait_for(lambda: _gone(client, "apps/v1", "deployments", "orph"))
        await trio.sleep(0.5)
        rs_list = (await client.list("apps/v1", "replicasets", namespace="default"))["items"]
        assert len(rs_list) == 1 and not rs_list[0]["metadata"].get("ownerReferences")
        pods = (await client.list("v1", "pods", namespace="default"))["items"]
        assert len(pods) == 3 and all(not p["metadata"].get("deletionTimestamp") for p in pods)


async def test_dangling_owner_reference_is_collected(cluster: Cluster) -> None:
    client = cluster.client
    owner = await client.create(
        "v1",
        "configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o"}},
        namespace="default",
    )
    ref: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "o",
        "uid": owner["metadata"]["uid"],
    }
    with trio.fail_after(30):
        live = await client.create(
            "v1",
            "configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"}},
            namespace="default",
        )
        live_ref = {**ref, "name": "live", "uid": live["metadata"]["uid"]}
        for name, refs in (("dep", [ref]), ("two-owners", [ref, live_ref])):
            await client.create(
                "v1",
                "configmaps",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "ownerReferences": refs},
                },
                namespace="default",
            )
        await trio.sleep(0.5)
        assert {"dep", "two-owners"} <= await _names(client, "v1", "configmaps")
        await client.delete("v1", "configmaps", "o", namespace="default")
        await wait_for(lambda: _gone(client, "v1", "configmaps", "dep"))

        async def only_live_owner() -> bool:
            got = await client.get("v1", "configmaps", "two-owners", namespace="default")
            return [r["name"] for r in got["metadata"]["ownerReferences"]] == ["live"]

        await wait_for(only_live_owner)
