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

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate
from typing import Generic, TypeVar

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Metric,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


# --- the hot path -------------------------------------------------------------------------
#
# prometheus-client takes a lock on every increment (several per histogram observation):
# microseconds each on a busy machine, paid thousands of times a second by the API server.
# Everything here runs on one trio thread, the scrape too, so the request path keeps its
# counts in plain dicts and lists, read into metric families when scraped.

Labels = tuple[str, ...]


class LoopCounter(Collector):
    """A labelled counter for one event loop's thread, without locks: ``inc(labels)``."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.values: dict[Labels, float] = {}
        registry.register(self)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        """Add ``amount`` to the series of these label values."""
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def collect(self) -> Iterable[Metric]:
        """The counter's family (for the registry)."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, count in list(self.values.items()):
            family.add_metric(labels, count)
        return [family]


class LoopGauge(LoopCounter):
    """A labelled gauge for one event loop's thread: ``inc(labels, ±n)``."""

    def collect(self) -> Iterable[Metric]:
        """The gauge's family (for the registry)."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, count in list(self.values.items()):
            family.add_metric(labels, count)
        return [family]


class LoopHistogram(Collector):
    """A labelled histogram for one event loop's thread: ``observe(labels, value)`` is a
    bisect and two additions."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.series: dict[Labels, list[float]] = {}
        """Per label values: each bucket's own count (the last one +Inf), then the sum."""
        registry.register(self)

    def observe(self, labels: Labels, value: float) -> None:
        """Count ``value`` in the series of these label values."""
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def collect(self) -> Iterable[Metric]:
        """The histogram's family (for the registry)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, counts in list(self.series.items()):
            cumulative = list(accumulate(counts[:-1]))
            family.add_metric(labels, list(zip(self._les, cumulative, strict=True)), counts[-1])
        return [family]
