"""Deployments and ReplicaSets end to end on simulated nodes."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client
from tests.kit import deployment, wait_for

from .conftest import Cluster


async def _pods(client: Client, selector: str, namespace: str = "default") -> list[Any]:
    items = (await client.list("v1", "pods", namespace=namespace, label_selector=selector))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def _available(client: Client, name: str) -> bool:
    d = await client.get("apps/v1", "deployments", name, namespace="default")
    status = d.get("status") or {}
    wanted = d["spec"]["replicas"]
    return bool(
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


async def _rollout_watch(
    cluster: Cluster, name: str, change: dict[str, Any], *, surge: int, unavailable: int
) -> tuple[list[str], int, int]:
    """Apply ``change`` and watch every RS/pod state until the rollout completes.

    Returns (violations, max RS replica sum, min ready pods) over all observed states.
    """
    client = cluster.client
    d = await client.get("apps/v1", "deployments", name, namespace="default")
    wanted = d["spec"]["replicas"]
    rv = d["metadata"]["resourceVersion"]
    rs_replicas: dict[str, int] = {}
    for rs in (await client.list("apps/v1", "replicasets", namespace="default"))["items"]:
        rs_replicas[rs["metadata"]["name"]] = rs["spec"]["replicas"]
    ready: set[str] = {
        p["metadata"]["name"]
        for p in await _pods(client, f"app={name}")
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
    }
    violations: list[str] = []
    extremes = [sum(rs_replicas.values()), len(ready)]

    def check(what: str) -> None:
        total = sum(rs_replicas.values())
        extremes[0] = max(extremes[0], total)
        extremes[1] = min(extremes[1], len(ready))
        if total > wanted + surge:
            violations.append(f"{what}: {total} replicas > {wanted}+{surge}")
        if len(ready) < wanted - unavailable:
            violations.append(f"{what}: {len(ready)} ready < {wanted}-{unavailable}")

    async def watch_rs() -> None:
        async with client.watch(
            "apps/v1", "replicasets", namespace="default", resource_version=rv
        ) as events:
            async for event in events:
                rs = event.object
                if event.type == "DELETED":
                    rs_replicas.pop(rs["metadata"]["name"], None)
                else:
                    rs_replicas[rs["metadata"]["name"]] = rs["spec"]["replicas"]
                check(f"rs {rs['metadata']['name']}")

    async def watch_pods() -> None:
        async with client.watch(
            "v1", "pods", namespace="default", resource_version=rv, label_selector=f"app={name}"
        ) as events:
            async for event in events:
                pod = event.object
                is_ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (pod.get("status") or {}).get("conditions") or []
                )
                if (
                    event.type == "DELETED"
                    or pod["metadata"].get("deletionTimestamp")
                    or not is_ready
                ):
                    ready.discard(pod["metadata"]["name"])
                else:
                    ready.add(pod["metadata"]["name"])
                check(f"pod {pod['metadata']['name']}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_rs)
        nursery.start_soon(watch_pods)
        await client.patch("apps/v1", "deployments", name, change, namespace="default")
        await trio.sleep(0.2)
        await wait_for(lambda: _available(client, name), timeout=40)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    return violations, extremes[0], extremes[1]


async def test_rolling_update_respects_surge_and_unavailable(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        spec: dict[str, Any] = {
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1},
            }
        }
        await client.create(
            "apps/v1", "deployments", deployment("roll", replicas=6, **spec), namespace="default"
        )
        await wait_for(lambda: _available(client, "roll"))
        change = {
            "spec": {
                "template": {"spec": {"containers": [{"name": "main", "image": "nginx:1.26"}]}}
            }
        }
        violations, most, _fewest = await _rollout_watch(
            cluster, "roll", change, surge=1, unavailable=1
        )
        assert violations == []
        assert most == 7  # the surge was used
        pods = await _pods(client, "app=roll")
        assert len(pods) == 6
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.26"}
        rs_list = (await client.list("apps/v1", "replicasets", namespace="default"))["items"]
        revisions = sorted(
            (
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
                r["spec"]["replicas"],
            )
            for r in rs_list
        )
        assert revisions == [("1", 0), ("2", 6)]


async def test_rolling_update_zero_unavailable(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        spec: dict[str, Any] = {
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0},
            }
        }
        await client.create(
            "apps/v1", "deployments", deployment("safe", replicas=4, **spec), namespace="default"
        )
        await wait_for(lambda: _available(client, "safe"))
        change = {"spec": {"template": {"metadata": {"labels": {"app": "safe", "v": "2"}}}}}
        violations, _most, fewest = await _rollout_watch(
            cluster, "safe", change, surge=2, unavailable=0
        )
        assert violations == []
        assert fewest >= 4


async def test_recreate_kills_old_pods_first(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        await client.create(
            "apps/v1",
            "deployments",
            deployment("rec", replicas=3, strategy={"type": "Recreate"}),
            namespace="default",
        )
        await wait_for(lambda: _available(client, "rec"))
        d = await client.get("apps/v1", "deployments", "rec", namespace="default")
        rv = d["metadata"]["resourceVersion"]
        old_hash = (await _pods(client, "app=rec"))[0]["metadata"]["labels"]["pod-template-hash"]
        old_alive: set[str] = {p["metadata"]["name"] for p in await _pods(client, "app=rec")}
        overlap: list[str] = []

        async def watch() -> None:
            async with client.watch(
                "v1", "pods", namespace="default", resource_version=rv, label_selector="app=rec"
            ) as events:
                async for event in events:
                    pod = event.object
                    name = pod["metadata"]["name"]
                    if pod["metadata"]["labels"]["pod-template-hash"] == old_hash:
                        if event.type == "DELETED":
                            old_alive.discard(name)
                    elif event.type == "ADDED" and old_alive:
                        overlap.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await client.patch(
                "apps/v1",
                "deployments",
                "rec",
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}
                    }
                },
                namespace="default",
            )
            await trio.sleep(0.2)
            await wait_for(lambda: _available(client, "rec"))
            nursery.cancel_scope.cancel()
        assert overlap == []
        assert not old_alive


async def test_scale_pause_resume_and_history_limit(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        await client.create(
            "apps/v1",
            "deployments",
            deployment("ph", replicas=2, revisionHistoryLimit=1),
            namespace="default",
        )
        await wait_for(lambda: _available(client, "ph"))
        await client.patch(
            "apps/v1",
            "deployments",
            "ph",
            {"spec": {"replicas": 5}},
            namespace="default",
            subresource="scale",
        )
        await wait_for(lambda: _available(client, "ph"))
        assert len(await _pods(client, "app=ph")) == 5
        await client.patch(
            "apps/v1", "deployments", "ph", {"spec": {"paused": True}}, namespace="default"
        )

        async def paused_condition() -> bool:
            d = await client.get("apps/v1", "deployments", "ph", namespace="default")
            return any(c.get("reason") == "DeploymentPaused" for c in d["status"]["conditions"])

        await wait_for(paused_condition)
        await client.patch(
            "apps/v1",
            "deployments",
            "ph",
            {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x:2"}]}}}},
            namespace="default",
        )
        await trio.sleep(1)
        rs_list = (await client.list("apps/v1", "replicasets", namespace="default"))["items"]
        assert len(rs_list) == 1  # paused: no new ReplicaSet
        for image in ("x:2", "x:3", "x:4"):
            await client.patch(
                "apps/v1",
                "deployments",
                "ph",
                {
                    "spec": {
                        "paused": False,
                        "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
                    }
                },
                namespace="default",
            )
            await trio.sleep(0.2)
            await wait_for(lambda: _available(client, "ph"))

        async def history_trimmed() -> bool:
            items = (await client.list("apps/v1", "replicasets", namespace="default"))["items"]
            return len(items) == 2

        await wait_for(history_trimmed)
        pods = await _pods(client, "app=ph")
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"x:4"} and len(pods) == 5


async def test_replicaset_adopts_and_releases(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        orphan = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stray", "labels": {"app": "rs1"}},
            "spec": {"containers": [{"name": "main", "image": "x"}]},
        }
        await client.create("v1", "pods", orphan, namespace="default")
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "rs1"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "rs1"}},
                "template": {
                    "metadata": {"labels": {"app": "rs1"}},
                    "spec": {"containers": [{"name": "main", "image": "x"}]},
                },
            },
        }
        await client.create("apps/v1", "replicasets", rs, namespace="default")

        async def ready() -> bool:
            got = await client.get("apps/v1", "replicasets", "rs1", namespace="default")
            return (got.get("status") or {}).get("readyReplicas") == 2

        await wait_for(ready)
        stray = await client.get("v1", "pods", "stray", namespace="default")
        assert stray["metadata"]["ownerReferences"][0]["name"] == "rs1"
        assert len(await _pods(client, "app=rs1")) == 2  # adopted, so only one created
        await client.patch(
            "v1", "pods", "stray", {"metadata": {"labels": {"app": "other"}}}, namespace="default"
        )

        async def released() -> bool:
            got = await client.get("v1", "pods", "stray", namespace="default")
            return not got["metadata"].get("ownerReferences")

        await wait_for(released)
        await wait_for(ready)
        assert len(await _pods(client, "app=rs1")) == 2
        events = (
            await client.list(
                "v1", "events", namespace="default", field_selector="involvedObject.name=rs1"
            )
        )["items"]
        assert any(e["reason"] == "SuccessfulCreate" for e in events)
