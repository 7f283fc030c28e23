"""Cascading deletion in all three modes, and dangling ownerReferences."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from kubetrio.client import Client, ClientError
from kubetrio.controllers import GarbageCollector
from tests.kit import crd, deployment, wait_for

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


async def _served(client: Client, api_version: str, resource: str) -> bool:
    try:
        await client.list(api_version, resource)
    except ClientError:
        return False
    return True


def _configmap(name: str, owner: dict[str, Any], **ref: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    **ref,
                }
            ],
        },
    }


async def test_custom_resource_owner_created_after_start(cluster: Cluster) -> None:
    """A kind that did not exist when the collector started: its dependents follow it."""
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            crd("gc.example.com", "widgets", "Widget"),
        )
        await wait_for(lambda: _served(client, "gc.example.com/v1", "widgets"))
        owner = await client.create(
            "gc.example.com/v1",
            "widgets",
            {"apiVersion": "gc.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
            namespace="default",
        )
        await client.create("v1", "configmaps", _configmap("w-cm", owner), namespace="default")
        await trio.sleep(0.5)
        assert "w-cm" in await _names(client, "v1", "configmaps")  # the owner is alive
        await client.delete("gc.example.com/v1", "widgets", "w", namespace="default")
        await wait_for(lambda: _gone(client, "v1", "configmaps", "w-cm"))


async def test_custom_resource_foreground_waits_for_blocking_dependents(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            crd("gc.example.com", "gadgets", "Gadget"),
        )
        await wait_for(lambda: _served(client, "gc.example.com/v1", "gadgets"))
        owner = await client.create(
            "gc.example.com/v1",
            "gadgets",
            {"apiVersion": "gc.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}},
            namespace="default",
        )
        held = _configmap("g-held", owner, blockOwnerDeletion=True)
        held["metadata"]["finalizers"] = ["example.com/hold"]
        await client.create("v1", "configmaps", held, namespace="default")
        await client.create("v1", "configmaps", _configmap("g-free", owner), namespace="default")
        marked = await client.delete(
            "gc.example.com/v1",
            "gadgets",
            "g",
            namespace="default",
            propagation_policy="Foreground",
        )
        assert "foregroundDeletion" in marked["metadata"]["finalizers"]

        async def held_marked() -> bool:
            cm = await client.get("v1", "configmaps", "g-held", namespace="default")
            return bool(cm["metadata"].get("deletionTimestamp"))

        await wait_for(held_marked)
        await wait_for(lambda: _gone(client, "v1", "configmaps", "g-free"))
        await trio.sleep(0.5)
        # The blocking dependent is still there (its finalizer): so is the owner.
        still = await client.get("gc.example.com/v1", "gadgets", "g", namespace="default")
        assert still["metadata"]["deletionTimestamp"]
        await client.patch(
            "v1", "configmaps", "g-held", {"metadata": {"finalizers": None}}, namespace="default"
        )
        await wait_for(lambda: _gone(client, "gc.example.com/v1", "gadgets", "g"))


async def test_cluster_scoped_owner_of_namespaced_dependent(cluster: Cluster) -> None:
    """A ClusterRole (not among the built-in monitors, found by discovery) owns a ConfigMap."""
    client = cluster.client
    with trio.fail_after(30):
        owner = await client.create(
            "rbac.authorization.k8s.io/v1",
            "clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "gc-owner"},
                "rules": [],
            },
        )
        await client.create("v1", "configmaps", _configmap("cr-dep", owner), namespace="default")
        await trio.sleep(0.5)
        assert "cr-dep" in await _names(client, "v1", "configmaps")
        await client.delete("rbac.authorization.k8s.io/v1", "clusterroles", "gc-owner")
        await wait_for(lambda: _gone(client, "v1", "configmaps", "cr-dep"))


async def test_dangling_reference_to_custom_kind_with_wrong_uid(cluster: Cluster) -> None:
    """An owner of that kind and name exists, but with another uid: the dependent goes."""
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            crd("gc.example.com", "gizmos", "Gizmo"),
        )
        await wait_for(lambda: _served(client, "gc.example.com/v1", "gizmos"))
        owner = await client.create(
            "gc.example.com/v1",
            "gizmos",
            {"apiVersion": "gc.example.com/v1", "kind": "Gizmo", "metadata": {"name": "z"}},
            namespace="default",
        )
        wrong = {**owner, "metadata": {**owner["metadata"], "uid": "0000-not-it"}}
        await client.create("v1", "configmaps", _configmap("z-dep", wrong), namespace="default")
        await client.create("v1", "configmaps", _configmap("z-ok", owner), namespace="default")
        await wait_for(lambda: _gone(client, "v1", "configmaps", "z-dep"))
        assert "z-ok" in await _names(client, "v1", "configmaps")


async def test_deleting_a_crd_collects_its_objects_dependents(cluster: Cluster) -> None:
    """The CRD's objects go with it; their dependents follow, and the monitor stops."""
    client = cluster.client
    collector = cluster.manager.controller("garbagecollector")
    assert isinstance(collector, GarbageCollector)
    with trio.fail_after(30):
        await client.create(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            crd("gc.example.com", "doodads", "Doodad"),
        )
        await wait_for(lambda: _served(client, "gc.example.com/v1", "doodads"))
        owner = await client.create(
            "gc.example.com/v1",
            "doodads",
            {"apiVersion": "gc.example.com/v1", "kind": "Doodad", "metadata": {"name": "d"}},
            namespace="default",
        )
        await client.create("v1", "configmaps", _configmap("d-dep", owner), namespace="default")

        async def monitored() -> bool:
            return ("gc.example.com/v1", "doodads") in collector.monitors

        await wait_for(monitored)
        informer = collector.monitors[("gc.example.com/v1", "doodads")].informer
        await client.delete(
            "apiextensions.k8s.io/v1", "customresourcedefinitions", "doodads.gc.example.com"
        )
        await wait_for(lambda: _gone(client, "v1", "configmaps", "d-dep"))

        async def unmonitored() -> bool:
            return not await monitored() and informer.stopped

        await wait_for(unmonitored)


async def test_owner_named_by_another_served_version(cluster: Cluster) -> None:
    """A reference through a non-preferred version of a CRD resolves like any other."""
    client = cluster.client
    multi = crd("gc.example.com", "multis", "Multi")
    v1 = multi["spec"]["versions"][0]
    multi["spec"]["versions"] = [{**v1, "name": "v1beta1", "storage": False}, v1]
    with trio.fail_after(30):
        await client.create("apiextensions.k8s.io/v1", "customresourcedefinitions", multi)
        for version in ("v1", "v1beta1"):
            await wait_for(partial(_served, client, f"gc.example.com/{version}", "multis"))
        owner = await client.create(
            "gc.example.com/v1",
            "multis",
            {"apiVersion": "gc.example.com/v1", "kind": "Multi", "metadata": {"name": "m"}},
            namespace="default",
        )
        as_beta = {**owner, "apiVersion": "gc.example.com/v1beta1"}
        await client.create("v1", "configmaps", _configmap("m-dep", as_beta), namespace="default")
        gone_owner = {
            "apiVersion": "gc.example.com/v1beta1",
            "kind": "Multi",
            "metadata": {"name": "nobody", "uid": "11111111-2222"},
        }
        await client.create(
            "v1", "configmaps", _configmap("m-dangling", gone_owner), namespace="default"
        )
        await wait_for(lambda: _gone(client, "v1", "configmaps", "m-dangling"))
        assert "m-dep" in await _names(client, "v1", "configmaps")
        await client.delete("gc.example.com/v1", "multis", "m", namespace="default")
        await wait_for(lambda: _gone(client, "v1", "configmaps", "m-dep"))
