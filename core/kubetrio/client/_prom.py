"""The work queues' Prometheus metrics, with client-go's names, labels and buckets.

A :class:`~kubetrio.client.WorkQueue` given a ``name`` (each controller's queue is named
after its controller) counts its adds and retries, keeps its depth, and times how long
keys wait (``workqueue_queue_duration_seconds``) and are worked on
(``workqueue_work_duration_seconds``). They live in the control plane's registry, which
the API server serves on ``/metrics``: the controllers run in its process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from kubetrio import prom

BUCKETS = prom.exponential_buckets(10e-9, 10, 10)
"""client-go's buckets of the work queues' latencies (10 ns to 100 s)."""

ADDS = prom.Children(
    Counter(
        "workqueue_adds_total",
        "Total number of adds handled by workqueue",
        ["name"],
        registry=prom.CONTROL_PLANE,
    )
)
RETRIES = prom.Children(
    Counter(
        "workqueue_retries_total",
        "Total number of retries handled by workqueue",
        ["name"],
        registry=prom.CONTROL_PLANE,
    )
)
DEPTH = prom.Children(
    Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=prom.CONTROL_PLANE)
)
QUEUE_DURATION = prom.Children(
    Histogram(
        "workqueue_queue_duration_seconds",
        "How long in seconds an item stays in workqueue before being requested.",
        ["name"],
        buckets=BUCKETS,
        registry=prom.CONTROL_PLANE,
    )
)
WORK_DURATION = prom.Children(
    Histogram(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        ["name"],
        buckets=BUCKETS,
        registry=prom.CONTROL_PLANE,
    )
)


class QueueMetrics:
    """One named queue's metrics (its label's children, looked up once)."""

    def __init__(self, name: str) -> None:
        self.adds = ADDS(name)
        self.retries = RETRIES(name)
        self.depth = DEPTH(name)
        self.queue_duration = QUEUE_DURATION(name)
        self.work_duration = WORK_DURATION(name)
