"""The scheduler's events under pressure: Normal events beyond the queue are dropped
(counted, logged, in a metric) and never hold up bindings; FailedScheduling is never
dropped — repeats for one pod are folded into one event with their count."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from kubetrio import prom
from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.handler import Request, Response
from kubetrio.plugins import PluginManager
from kubetrio.scheduler import Scheduler, SchedulerConfig
from kubetrio.scheduler._events import EventQueue
from tests.scheduler.conftest import Cluster, make_pod

DROPPED = "kubetrio_scheduler_events_dropped_total"


def dropped_metric() -> float:
    return prom.CONTROL_PLANE.get_sample_value(DROPPED, {"type": "Normal"}) or 0.0


def names(queue: EventQueue, count: int) -> list[str]:
    """The pods of the next ``count`` events out of the queue."""
    taken = [queue.get_nowait() for _ in range(count)]
    return [e["involvedObject"]["name"] for e in taken if e is not None]


def event(name: str, reason: str, kind: str, message: str = "m") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": name, "namespace": "default", "uid": name},
        "reason": reason,
        "message": message,
        "type": kind,
        "firstTimestamp": f"first-{message}",
        "count": 1,
    }


def test_normal_events_beyond_the_queue_are_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = EventQueue(max_normal=2)
    before = dropped_metric()
    with caplog.at_level(logging.WARNING, logger="kubetrio.scheduler"):
        kept = [queue.put(event(f"p{i}", "Scheduled", "Normal")) for i in range(5)]
    assert kept == [True, True, False, False, False]
    assert queue.dropped == 3
    assert dropped_metric() - before == 3
    # One warning for the burst (they are rate limited), naming the queue's size.
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "1 Normal event(s) dropped (queue of 2 full; 1 dropped in all)" in record.getMessage()
    assert names(queue, 2) == ["p0", "p1"]
    assert queue.get_nowait() is None


def test_failed_scheduling_is_never_dropped_and_repeats_fold_into_one() -> None:
    queue = EventQueue(max_normal=1)
    queue.put(event("done", "Scheduled", "Normal"))
    # The Normal queue is full; warnings still get in, one per pod and reason.
    for attempt in range(3):
        assert queue.put(event("stuck", "FailedScheduling", "Warning", f"try {attempt}"))
    assert queue.put(event("other", "FailedScheduling", "Warning"))
    assert queue.dropped == 0 and queue.merged == 2
    # Warnings go first; the folded one has the latest message, the first timestamp
    # and the count of all three.
    first = queue.get_nowait()
    assert first is not None
    assert (first["involvedObject"]["name"], first["message"], first["count"]) == (
        "stuck",
        "try 2",
        3,
    )
    assert first["firstTimestamp"] == "first-try 0"
    assert names(queue, 2) == ["other", "done"]


class _GatedEvents:
    """The API server, except that event creations wait until ``gate`` is set."""

    def __init__(self, running: RunningApiServer) -> None:
        self.api = running.api
        self.gate = trio.Event()

    async def handle(self, request: Request) -> Response:
        if request.method == "POST" and request.path.endswith("/events"):
            await self.gate.wait()
        return await self.api.handle(request)


async def test_bindings_go_on_while_events_are_stuck_and_failures_are_kept(
    apiserver: RunningApiServer, manager: PluginManager
) -> None:
    gated = _GatedEvents(apiserver)
    config = SchedulerConfig(pod_initial_backoff_seconds=0.05, pod_max_backoff_seconds=0.2)
    async with Client.in_process(gated) as client, trio.open_nursery() as nursery:
        scheduler = Scheduler(client, plugins=manager, config=config)
        scheduler.events.max_normal = 3
        await nursery.start(scheduler.run)
        cluster = Cluster(client, scheduler)
        await cluster.add_node("n1")
        await cluster.add_pod("nowhere", nodeSelector={"no": "such-node"})
        pods = [f"p{i}" for i in range(12)]
        for name in pods:
            await client.create("v1", "pods", make_pod(name, cpu="10m"), namespace="default")
        # Every pod is bound although no event could be written.
        for name in pods:
            assert await cluster.wait_bound(name) == "n1"
        # At most one event is in flight (the sender's), three wait, the rest were dropped.
        assert scheduler.events.dropped >= len(pods) - 4
        gated.gate.set()
        await cluster.wait_event("nowhere", "FailedScheduling")
        # Every event that was not dropped is written once the server takes them.
        expected = len(pods) - scheduler.events.dropped
        with trio.fail_after(10):
            while len([p for p in pods if await cluster.events(p, "Scheduled")]) < expected:
                await trio.sleep(0.02)
        assert scheduler.events.dropped == len(pods) - expected
        nursery.cancel_scope.cancel()
