"""CPU and memory of the node, its pods and their containers, as kubelet reports them.

One :class:`ResourceSampler` per agent reads the cgroups (:mod:`kubetrio.runtime._stats`)
of the node and of each pod the agent runs (``<cgroup parent>/<pod uid>`` and
``…/<container name>``, where :class:`~kubetrio.runtime.RuncRuntime` puts them) and gives:

- the ``cpu`` and ``memory`` fields of the Summary API (``/stats/summary``;
  ``k8s.io/kubelet/pkg/apis/stats/v1alpha1``: ``CPUStats``, ``MemoryStats``), with
  ``usageNanoCores`` from the previous read of the same cgroup;
- ``/metrics/resource`` in the Prometheus text format, with kubelet's metric names,
  labels and per-sample timestamps (metrics-server computes rates from those).

A runtime without cgroups (a plugin's) yields the node's figures only.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubetrio.runtime import (
    CGROUP_ROOT,
    ResourceUsage,
    is_cgroup_unified,
    memory_capacity,
    read_cgroup_usage,
)
from kubetrio.runtime import read_node_usage as read_node

if TYPE_CHECKING:
    from ._worker import PodWorker

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format, as kubelet answers ``/metrics/resource``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ContainerSample:
    """One running container's usage."""

    name: str
    start_time: float
    """When it started, seconds since the epoch."""
    usage: ResourceUsage
    nano_cores: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class PodSample:
    """One pod's usage (its cgroup, all containers) and its running containers'."""

    name: str
    namespace: str
    uid: str
    usage: ResourceUsage | None
    nano_cores: int | None
    containers: tuple[ContainerSample, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of the node's cgroups found."""

    node: ResourceUsage | None
    node_nano_cores: int | None
    pods: tuple[PodSample, ...]
    error: bool
    """Some cgroup could not be read (``scrape_error`` 1)."""


def _epoch(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ResourceSampler:
    """Reads usage from cgroups and keeps each cgroup's last read for CPU rates.

    :param cgroup_parent: where the runtime puts pods' cgroups (None: no pod figures).
    :param root, proc: the cgroup and proc mounts (other trees in tests).
    """

    def __init__(
        self,
        cgroup_parent: str | None,
        *,
        root: Path = CGROUP_ROOT,
        proc: Path = Path("/proc"),
    ) -> None:
        self.cgroup_parent = "/" + cgroup_parent.strip("/") if cgroup_parent else None
        self.root = root
        self.proc = proc
        self._last: dict[str, ResourceUsage] = {}

    def _rate(self, key: str, usage: ResourceUsage | None) -> int | None:
        """Nanocores since this cgroup's previous read (None on the first one)."""
        if usage is None:
            return None
        previous = self._last.get(key)
        self._last[key] = usage
        if previous is None or usage.time <= previous.time or usage.cpu_ns < previous.cpu_ns:
            return None
        return int((usage.cpu_ns - previous.cpu_ns) / (usage.time - previous.time))

    def sample(self, workers: Iterable[PodWorker]) -> Snapshot:
        """Read the node and every worker's pod and running containers (blocking I/O:
        call it in a thread)."""
        seen: set[str] = {"/"}
        unified = is_cgroup_unified(self.root)
        node = read_node(root=self.root, proc=self.proc)
        error = node is None
        node_rate = self._rate("/", node)
        pods = []
        for worker in workers:
            if self.cgroup_parent is None:
                break
            pod_path = f"{self.cgroup_parent}/{worker.uid}"
            containers = []
            for record in worker.records + worker.init_records:
                running = record.state.get("running")
                if running is None:
                    continue
                path = f"{pod_path}/{record.name}"
                usage = read_cgroup_usage(path, root=self.root, unified=unified)
                if usage is None:
                    error = True
                    continue
                seen.add(path)
                containers.append(
                    ContainerSample(
                        name=record.name,
                        start_time=_epoch(str(running.get("startedAt") or "")),
                        usage=usage,
                        nano_cores=self._rate(path, usage),
                    )
                )
            pod_usage = (
                read_cgroup_usage(pod_path, root=self.root, unified=unified) if containers else None
            )
            if pod_usage is not None:
                seen.add(pod_path)
            pods.append(
                PodSample(
                    name=worker.name,
                    namespace=worker.namespace,
                    uid=worker.uid,
                    usage=pod_usage,
                    nano_cores=self._rate(pod_path, pod_usage),
                    containers=tuple(containers),
                )
            )
        for gone in set(self._last) - seen:
            self._last.pop(gone, None)  # two scrapes may run at once (their threads)
        return Snapshot(node=node, node_nano_cores=node_rate, pods=tuple(pods), error=error)

    def memory_capacity(self) -> int | None:
        """The node's memory in bytes."""
        return memory_capacity(self.proc)


def cpu_stats(usage: ResourceUsage, nano_cores: int | None) -> dict[str, Any]:
    """A Summary API ``CPUStats``."""
    stats: dict[str, Any] = {"time": _rfc3339(usage.time)}
    if nano_cores is not None:
        stats["usageNanoCores"] = nano_cores
    stats["usageCoreNanoSeconds"] = usage.cpu_ns
    return stats


def memory_stats(usage: ResourceUsage, capacity: int | None = None) -> dict[str, Any]:
    """A Summary API ``MemoryStats`` (``availableBytes`` only when the limit is known)."""
    stats: dict[str, Any] = {"time": _rfc3339(usage.time)}
    if capacity is not None:
        stats["availableBytes"] = max(capacity - usage.memory_working_set, 0)
    stats.update(
        usageBytes=usage.memory_usage,
        workingSetBytes=usage.memory_working_set,
        rssBytes=usage.memory_rss,
        pageFaults=usage.page_faults,
        majorPageFaults=usage.major_page_faults,
    )
    return stats


def summary_containers(pod: PodSample) -> list[dict[str, Any]]:
    """A pod's ``containers`` of the Summary API."""
    return [
        {
            "name": c.name,
            "startTime": _rfc3339(c.start_time),
            "cpu": cpu_stats(c.usage, c.nano_cores),
            "memory": memory_stats(c.usage),
        }
        for c in pod.containers
    ]


# Help texts and stability levels as kubelet's resource metrics collector declares them.
_STABLE = "[STABLE] "
_ALPHA = "[ALPHA] "
_CONTAINER = ["container", "pod", "namespace"]
_POD = ["pod", "namespace"]


class _SnapshotCollector(Collector):
    """Yields one snapshot's metric families (a collector of a one-scrape registry)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        node_cpu = CounterMetricFamily(
            "node_cpu_usage_seconds_total",
            _STABLE + "Cumulative cpu time consumed by the node in core-seconds",
        )
        node_memory = GaugeMetricFamily(
            "node_memory_working_set_bytes", _STABLE + "Current working set of the node in bytes"
        )
        if snap.node is not None:
            node_cpu.add_metric([], snap.node.cpu_ns / 1e9, timestamp=snap.node.time)
            node_memory.add_metric([], snap.node.memory_working_set, timestamp=snap.node.time)
        container_cpu = CounterMetricFamily(
            "container_cpu_usage_seconds_total",
            _STABLE + "Cumulative cpu time consumed by the container in core-seconds",
            labels=_CONTAINER,
        )
        container_memory = GaugeMetricFamily(
            "container_memory_working_set_bytes",
            _STABLE + "Current working set of the container in bytes",
            labels=_CONTAINER,
        )
        container_start = GaugeMetricFamily(
            "container_start_time_seconds",
            _STABLE + "Start time of the container since unix epoch in seconds",
            labels=_CONTAINER,
        )
        pod_cpu = CounterMetricFamily(
            "pod_cpu_usage_seconds_total",
            _STABLE + "Cumulative cpu time consumed by the pod in core-seconds",
            labels=_POD,
        )
        pod_memory = GaugeMetricFamily(
            "pod_memory_working_set_bytes",
            _STABLE + "Current working set of the pod in bytes",
            labels=_POD,
        )
        for pod in snap.pods:
            for c in pod.containers:
                labels = [c.name, pod.name, pod.namespace]
                container_cpu.add_metric(labels, c.usage.cpu_ns / 1e9, timestamp=c.usage.time)
                container_memory.add_metric(
                    labels, c.usage.memory_working_set, timestamp=c.usage.time
                )
                container_start.add_metric(labels, c.start_time, timestamp=c.start_time)
            if pod.usage is not None:
                labels = [pod.name, pod.namespace]
                pod_cpu.add_metric(labels, pod.usage.cpu_ns / 1e9, timestamp=pod.usage.time)
                pod_memory.add_metric(
                    labels, pod.usage.memory_working_set, timestamp=pod.usage.time
                )
        scrape_error = GaugeMetricFamily(
            "scrape_error",
            _ALPHA + "1 if there was an error while getting container metrics, 0 otherwise",
        )
        scrape_error.add_metric([], 1 if snap.error else 0)
        resource_scrape_error = GaugeMetricFamily(
            "resource_scrape_error",
            _STABLE + "1 if there was an error while getting container metrics, 0 otherwise",
        )
        resource_scrape_error.add_metric([], 1 if snap.error else 0)
        yield from (
            container_cpu,
            container_memory,
            container_start,
            node_cpu,
            node_memory,
            pod_cpu,
            pod_memory,
            resource_scrape_error,
            scrape_error,
        )


def resource_metrics(snapshot: Snapshot) -> bytes:
    """``/metrics/resource``: the snapshot in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
