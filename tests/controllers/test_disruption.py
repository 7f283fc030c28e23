"""The disruption controller keeps PodDisruptionBudgets' status; evictions spend it."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client, ClientError
from tests.kit import deployment, wait_for

from .conftest import Cluster

NS = "default"


def budget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


async def _status_once(client: Client, name: str, **wanted: Any) -> dict[str, Any] | None:
    found = await client.get("policy/v1", "poddisruptionbudgets", name, namespace=NS)
    status = found.get("status") or {}
    if all(status.get(k) == v for k, v in wanted.items()):
        return status
    return None


async def _status(client: Client, name: str, **wanted: Any) -> dict[str, Any]:
    status: dict[str, Any] = await wait_for(lambda: _status_once(client, name, **wanted))
    return status


async def _evict(client: Client, pod: str) -> None:
    await client.create(
        "v1",
        "pods",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NS}},
        namespace=NS,
        name=pod,
        subresource="eviction",
    )


async def _ready_pods(client: Client) -> list[str]:
    items = (await client.list("v1", "pods", namespace=NS, label_selector="app=web"))["items"]
    return [
        p["metadata"]["name"]
        for p in items
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    ]


async def _count_ready(client: Client, wanted: int) -> bool:
    return len(await _ready_pods(client)) == wanted


async def test_min_available_budget_status_and_evictions(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        await client.create("apps/v1", "deployments", deployment("web"), namespace=NS)
        await wait_for(lambda: _count_ready(client, 3), timeout=30)
        await client.create(
            "policy/v1", "poddisruptionbudgets", budget("web", minAvailable=2), namespace=NS
        )
        status = await _status(
            client, "web", currentHealthy=3, desiredHealthy=2, expectedPods=3, disruptionsAllowed=1
        )
        assert status["observedGeneration"] == 1
        [condition] = status["conditions"]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "DisruptionAllowed",
            "True",
            "SufficientPods",
        )
        first, second = (await _ready_pods(client))[:2]
        await _evict(client, first)
        try:
            await _evict(client, second)
        except ClientError as exc:
            refused = exc
        else:
            raise AssertionError("a second eviction spent a disruption the budget did not have")
        assert refused.code == 429
        assert "The disruption budget web needs 2 healthy pods" in str(refused.status)
        # The ReplicaSet replaces the evicted pod; once it is Ready the budget allows one
        # disruption again and forgets the evicted pod.
        status = await _status(client, "web", currentHealthy=3, disruptionsAllowed=1)
        assert first not in (status.get("disruptedPods") or {})
        await _evict(client, second)


async def test_max_unavailable_counts_against_the_deployment_scale(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        await client.create("apps/v1", "deployments", deployment("web", replicas=4), namespace=NS)
        await client.create(
            "policy/v1", "poddisruptionbudgets", budget("web", maxUnavailable="50%"), namespace=NS
        )
        await _status(client, "web", expectedPods=4, desiredHealthy=2, currentHealthy=4)
        status = await _status(client, "web", disruptionsAllowed=2)
        assert status["conditions"][0]["status"] == "True"


async def test_pods_without_a_controller_fail_safe(cluster: Cluster) -> None:
    client = cluster.client
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lonely", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    with trio.fail_after(60):
        await client.create("v1", "pods", pod, namespace=NS)
        await client.create(
            "policy/v1", "poddisruptionbudgets", budget("web", maxUnavailable=1), namespace=NS
        )

        async def sync_failed() -> dict[str, Any] | None:
            status = await _status_once(client, "web", disruptionsAllowed=0)
            conditions = (status or {}).get("conditions") or []
            return next((c for c in conditions if c["reason"] == "SyncFailed"), None)

        condition = await wait_for(sync_failed)
        assert condition["status"] == "False"
        assert 'found no controller ref for pod "lonely"' in condition["message"]

        async def event() -> list[Any]:
            items = (await client.list("v1", "events", namespace=NS))["items"]
            return [e for e in items if e["reason"] == "CalculateExpectedPodCountFailed"]

        assert await wait_for(event)


async def test_a_budget_without_pods_reports_it(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "policy/v1", "poddisruptionbudgets", budget("web", minAvailable=1), namespace=NS
        )
        status = await _status(client, "web", observedGeneration=1, disruptionsAllowed=0)
        assert status["conditions"][0]["reason"] == "InsufficientPods"

        async def event() -> list[Any]:
            items = (await client.list("v1", "events", namespace=NS))["items"]
            return [e for e in items if e["reason"] == "NoPods"]

        [found] = await wait_for(event)
        assert found["message"] == "No matching pods found"
        assert found["involvedObject"]["kind"] == "PodDisruptionBudget"
