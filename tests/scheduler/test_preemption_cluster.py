"""Preemption with the scheduler against a real in-process API server: the preemptor's
nomination, the victims' ``DisruptionTarget`` condition, graceful deletion and
``Preempted`` event, the room held for the preemptor, PDBs and ``preemptionPolicy``.

No kubelet runs here: a victim stays terminating until the test deletes it for good
(grace period 0), as a kubelet would once its containers stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

Check = Callable[[dict[str, Any]], bool]


async def wait_pod(cluster: Any, name: str, check: Check) -> dict[str, Any]:
    """Poll a pod until ``check`` holds; return it."""
    with trio.fail_after(10):
        while True:
            pod: dict[str, Any] = await cluster.pod(name)
            if check(pod):
                return pod
            await trio.sleep(0.02)


def nominated(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("nominatedNodeName") or "")


def terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


async def finish(cluster: Any, name: str) -> None:
    """What a kubelet does once the victim's containers stopped."""
    await cluster.client.delete("v1", "pods", name, namespace="default", grace_period_seconds=0)


async def test_a_high_priority_pod_preempts_and_its_room_is_held(cluster: Any) -> None:
    await cluster.add_node("n1", cpu="2")
    for name in ("l1", "l2"):
        await cluster.add_pod(name, cpu="1", priority=0)
        assert await cluster.wait_bound(name) == "n1"
    high = await cluster.add_pod("high", cpu="2", priority=100)
    await wait_pod(cluster, "high", lambda p: nominated(p) == "n1")
    for name in ("l1", "l2"):
        victim = await wait_pod(cluster, name, terminating)
        assert victim["metadata"]["deletionGracePeriodSeconds"] == 30  # its own grace
        [condition] = [c for c in victim["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert (condition["status"], condition["reason"], condition["message"]) == (
            "True",
            "PreemptionByScheduler",
            "default-scheduler: preempting to accommodate a higher priority pod",
        )
        assert await cluster.wait_event(name, "Preempted") == (
            f"Preempted by pod {high['metadata']['uid']} on node n1"
        )
    assert await cluster.wait_event("high", "FailedScheduling") == (
        "0/1 nodes are available: 1 Insufficient cpu."
    )
    # One victim gone: a lower-priority pod that would fit its cpu must not take the
    # room the nominated pod waits for.
    await finish(cluster, "l1")
    await cluster.add_pod("sneaky", cpu="1", priority=0)
    assert await cluster.wait_event("sneaky", "FailedScheduling") == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    )
    await finish(cluster, "l2")
    assert await cluster.wait_bound("high") == "n1"
    await cluster.settle()
    assert not (await cluster.pod("sneaky"))["spec"].get("nodeName")
    assert cluster.scheduler.preemptions == 1  # it waited; it did not preempt again


async def test_preemption_policy_never_waits(cluster: Any) -> None:
    await cluster.add_node("n1", cpu="1")
    await cluster.add_pod("low", cpu="1", priority=0)
    await cluster.wait_bound("low")
    await cluster.add_pod("polite", cpu="1", priority=100, preemptionPolicy="Never")
    assert await cluster.wait_event("polite", "FailedScheduling") == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: not eligible due to preemptionPolicy=Never.."
    )
    await cluster.settle()
    assert not terminating(await cluster.pod("low"))
    assert not nominated(await cluster.pod("polite"))


async def test_a_pdb_protected_victim_is_avoided(cluster: Any) -> None:
    for name in ("a", "b"):
        await cluster.add_node(name, cpu="1")
    # The guarded pod has the lower priority: without its budget its node would win.
    await cluster.add_pod("guarded", cpu="1", priority=0, labels={"app": "db"}, node_name="a")
    await cluster.add_pod("plain", cpu="1", priority=5, node_name="b")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
    }
    await cluster.client.create("policy/v1", "poddisruptionbudgets", pdb, namespace="default")
    await cluster.client.patch(
        "policy/v1",
        "poddisruptionbudgets",
        "db",
        {"status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1}},
        namespace="default",
        subresource="status",
    )
    budgets = cluster.scheduler.caches.shared.informer("policy/v1", "poddisruptionbudgets")
    with trio.fail_after(10):
        while not any((p.get("status") or {}).get("desiredHealthy") for p in budgets.list()):
            await trio.sleep(0.02)
    await cluster.add_pod("high", cpu="1", priority=100)
    await wait_pod(cluster, "high", lambda p: nominated(p) == "b")
    await wait_pod(cluster, "plain", terminating)
    assert not terminating(await cluster.pod("guarded"))
    await finish(cluster, "plain")
    assert await cluster.wait_bound("high") == "b"
