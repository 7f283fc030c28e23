"""Prometheus metrics: the registries, the on/off switch and the text exposition.

Every component defines its metrics beside its code with upstream's names, labels and
buckets (``apiserver/_prom``, ``scheduler/_prom``, ``client/_prom`` for the controllers'
work queues, ``kubelet/_prom``); this module is what they share:

* :data:`CONTROL_PLANE`, the registry the API server serves on ``/metrics``: the API
  server's, the scheduler's and the controller manager's metrics (they run in one process,
  as the components of ``kubetrio server`` do) and the ``process_*``/``python_*``
  collectors of ``prometheus-client``;
* :func:`node_registry`, a registry per node agent (its own ``/metrics``, beside the
  process collectors), since one process may run several agents;
* :data:`switch`, to turn instrumentation off (benchmarks measure its cost: the request
  path checks it once per request);
* :func:`exposition`, the text format 0.0.4 that Prometheus and ``kubectl get --raw``
  read.

Label values come only from fixed sets (verbs, codes, served resources, queue names),
never from a URL path or an object's name, so hostile requests cannot add series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Metric,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

# Upstream's metrics have no ``_created`` series (client_golang does not write them).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTROL_PLANE: CollectorRegistry = prometheus_client.REGISTRY
"""The API server's, scheduler's and controller manager's metrics (and the process's)."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What ``/metrics`` answers with: the text format every Prometheus reads, as Kubernetes'
components answer (the names here need none of format 1.0.0's escaping)."""


class Switch:
    """Whether metrics are recorded: on unless turned off (benchmarks compare both)."""

    def __init__(self) -> None:
        self.on = True


switch = Switch()


def node_registry() -> CollectorRegistry:
    """A registry for one node agent's ``/metrics``, with the process collectors."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """``registry`` in Prometheus' text format (:data:`CONTENT_TYPE`)."""
    return prometheus_client.generate_latest(registry)


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` bucket bounds from ``start``, each ``factor`` times the last
    (client_golang's ``ExponentialBuckets``, which upstream's metrics are defined with)."""
    return tuple(start * factor**i for i in range(count))


M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """The children of a labelled metric by their label values, looked up once each:
    ``prometheus-client``'s ``labels()`` takes a lock and checks every value, too slow
    for a path taken thousands of times a second."""

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        """The child for these label values."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


def collector(collect: Callable[[], Sequence[Metric]]) -> Collector:
    """A collector whose ``collect`` is ``collect`` (values read at scrape time, such as
    queue lengths; the registry is read on the event loop, so they may read its state)."""

    class _Collector(Collector):
        def collect(self) -> Sequence[Metric]:
            return collect()

    return _Collector()
