"""The scheduler's Prometheus metrics, with kube-scheduler's names, labels and buckets.

* ``scheduler_schedule_attempts_total{result,profile}`` and
  ``scheduler_scheduling_attempt_duration_seconds{result,profile}``: each attempt, from
  the start of its cycle to the pod bound (``scheduled``), found to fit nowhere
  (``unschedulable``) or failed (``error``: a plugin's fault, a binding refused);
* ``scheduler_pod_scheduling_sli_duration_seconds{attempts}``: from a pod entering the
  queue to its binding, over all its attempts;
* ``scheduler_pending_pods{queue}``: pods in the ``active``, ``backoff`` and
  ``unschedulable`` queues (and ``gated``, always 0: no scheduling gates here), read when
  ``/metrics`` is read;
* ``kubetrio_scheduler_events_dropped_total{type}`` (kubetrio's own, no upstream
  equivalent: client-go drops silently): events dropped because their queue was full.

They live in the control plane's registry, which the API server serves on ``/metrics``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily

from kubetrio import prom

if TYPE_CHECKING:
    from ._queue import SchedulingQueue

SCHEDULED, UNSCHEDULABLE, ERROR = "scheduled", "unschedulable", "error"
MAX_ATTEMPTS_LABEL = 16
"""Pods scheduled after more attempts share this ``attempts`` label value (the label set
stays bounded)."""

ATTEMPTS = prom.Children(
    Counter(
        "scheduler_schedule_attempts_total",
        "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod "
        "could not be scheduled, while 'error' means an internal scheduler problem.",
        ["result", "profile"],
        registry=prom.CONTROL_PLANE,
    )
)
ATTEMPT_DURATION = prom.Children(
    Histogram(
        "scheduler_scheduling_attempt_duration_seconds",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        ["result", "profile"],
        buckets=prom.exponential_buckets(0.001, 2, 15),
        registry=prom.CONTROL_PLANE,
    )
)
SLI_DURATION = prom.Children(
    Histogram(
        "scheduler_pod_scheduling_sli_duration_seconds",
        "E2e latency for a pod being scheduled, from the time the pod enters the scheduling "
        "queue and might involve multiple scheduling attempts.",
        ["attempts"],
        buckets=prom.exponential_buckets(0.01, 2, 20),
        registry=prom.CONTROL_PLANE,
    )
)

EVENTS_DROPPED = prom.Children(
    Counter(
        "kubetrio_scheduler_events_dropped_total",
        "Number of events the scheduler dropped because its event queue was full, by the "
        "event type.",
        ["type"],
        registry=prom.CONTROL_PLANE,
    )
)

_queues: weakref.WeakSet[SchedulingQueue] = weakref.WeakSet()


def watch_queue(queue: SchedulingQueue) -> None:
    """Report ``queue``'s pods in ``scheduler_pending_pods`` while it lives."""
    _queues.add(queue)


def attempt(result: str, profile: str, seconds: float) -> None:
    """One scheduling attempt ended with ``result`` after ``seconds``."""
    if prom.switch.on:
        ATTEMPTS(result, profile).inc()
        ATTEMPT_DURATION(result, profile).observe(seconds)


def scheduled(attempts: int, seconds: float) -> None:
    """A pod was bound ``seconds`` after entering the queue, at its ``attempts``-th try."""
    if prom.switch.on:
        SLI_DURATION(str(min(attempts, MAX_ATTEMPTS_LABEL))).observe(seconds)


def event_dropped(kind: str) -> None:
    """An event of type ``kind`` was dropped (its queue was full)."""
    if prom.switch.on:
        EVENTS_DROPPED(kind).inc()


def _pending() -> Sequence[Metric]:
    family = GaugeMetricFamily(
        "scheduler_pending_pods",
        "Number of pending pods, by the queue type. 'active' means number of pods in "
        "activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number "
        "of pods in unschedulablePods that the scheduler attempted to schedule and failed; "
        "'gated' is the number of unschedulable pods that the scheduler never attempted to "
        "schedule because they are gated.",
        labels=["queue"],
    )
    totals = {"active": 0, "backoff": 0, "unschedulable": 0, "gated": 0}
    for queue in list(_queues):
        for place, count in queue.counts().items():
            if place in totals:
                totals[place] += count
    for place, count in totals.items():
        family.add_metric([place], count)
    return [family]


prom.CONTROL_PLANE.register(prom.collector(_pending))
