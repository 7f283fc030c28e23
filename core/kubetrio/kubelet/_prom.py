"""The node agent's Prometheus metrics, served on its endpoint's ``/metrics`` with
kubelet's names, labels and buckets; one registry per agent (:class:`NodeMetrics`).

* ``kubelet_pod_start_duration_seconds``: from the agent first seeing a pod to the pod's
  first ``Running`` status written (kubelet's "first seen" to "running");
* ``kubelet_pod_worker_duration_seconds{operation}``: the pod worker's steps — ``create``
  (sandbox and volumes of a new pod), ``update`` (a new version of the pod taken in),
  ``kill`` (containers stopped, sandbox and volumes released);
* ``kubelet_runtime_operations_total``, ``kubelet_runtime_operations_errors_total`` and
  ``kubelet_runtime_operations_duration_seconds``, by ``operation_type`` (CRI's names:
  ``run_podsandbox``, ``create_container``, ``pull_image`` …): every call the agent makes
  to its container runtime (:class:`TimedRuntime`);
* ``kubelet_running_pods`` and ``kubelet_running_containers{container_state}``: read from
  the runtime when ``/metrics`` is read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import trio
from prometheus_client import Counter, Gauge, Histogram

from kubetrio import prom
from kubetrio.providers import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    KubeObject,
    PodSandboxStatus,
)

POD_START_BUCKETS = (
    0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900,
    1200, 1800, 2700, 3600,
)  # fmt: skip
"""kubelet's buckets of ``kubelet_pod_start_duration_seconds``."""
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""client_golang's ``DefBuckets`` (``kubelet_pod_worker_duration_seconds``)."""
RUNTIME_BUCKETS = prom.exponential_buckets(0.005, 2.5, 14)
"""kubelet's buckets of ``kubelet_runtime_operations_duration_seconds``."""
CONTAINER_STATES = ("created", "running", "exited", "unknown")


class NodeMetrics:
    """One node agent's metrics and the registry its ``/metrics`` serves."""

    def __init__(self) -> None:
        self.registry = prom.node_registry()
        self.pod_start = Histogram(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod "
            "starting to run",
            buckets=POD_START_BUCKETS,
            registry=self.registry,
        )
        self.pod_worker = prom.Children(
            Histogram(
                "kubelet_pod_worker_duration_seconds",
                "Duration in seconds to sync a single pod. Broken down by operation type: "
                "create, update, or kill",
                ["operation"],
                buckets=DEFAULT_BUCKETS,
                registry=self.registry,
            )
        )
        self.operations = prom.Children(
            Counter(
                "kubelet_runtime_operations_total",
                "Cumulative number of runtime operations by operation type.",
                ["operation_type"],
                registry=self.registry,
            )
        )
        self.errors = prom.Children(
            Counter(
                "kubelet_runtime_operations_errors_total",
                "Cumulative number of runtime operation errors by operation type.",
                ["operation_type"],
                registry=self.registry,
            )
        )
        self.durations = prom.Children(
            Histogram(
                "kubelet_runtime_operations_duration_seconds",
                "Duration in seconds of runtime operations. Broken down by operation type.",
                ["operation_type"],
                buckets=RUNTIME_BUCKETS,
                registry=self.registry,
            )
        )
        self.running_pods = Gauge(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            registry=self.registry,
        )
        self.running_containers = Gauge(
            "kubelet_running_containers",
            "Number of containers currently running",
            ["container_state"],
            registry=self.registry,
        )

    def timed(self, runtime: ContainerRuntime) -> ContainerRuntime:
        """``runtime`` with its operations counted and timed, when metrics are on."""
        return TimedRuntime(runtime, self) if prom.switch.on else runtime

    def operation(self, operation_type: str) -> _Operation:
        """Counts and times one runtime operation: ``with metrics.operation(name): …``."""
        return _Operation(self, operation_type)

    def observe_worker(self, operation: str, started: float) -> None:
        """A pod worker's step that began at ``started`` (``trio.current_time``) ended."""
        if prom.switch.on:
            self.pod_worker(operation).observe(trio.current_time() - started)

    def observe_pod_start(self, seconds: float) -> None:
        """A pod first ran, ``seconds`` after the agent first saw it."""
        if prom.switch.on:
            self.pod_start.observe(seconds)

    def exposition(self, runtime: ContainerRuntime) -> bytes:
        """The registry as text, with the running pods and containers counted now."""
        inner = runtime.runtime if isinstance(runtime, TimedRuntime) else runtime
        sandboxes = inner.list_sandboxes()
        states = dict.fromkeys(CONTAINER_STATES, 0)
        for sandbox in sandboxes:
            for container in inner.list_containers(sandbox):
                state: str = container.state if container.state in states else "unknown"
                states[state] += 1
        self.running_pods.set(len(sandboxes))
        for state, count in states.items():
            self.running_containers.labels(state).set(count)
        return prom.exposition(self.registry)


class _Operation:
    def __init__(self, metrics: NodeMetrics, operation_type: str) -> None:
        self.metrics = metrics
        self.operation_type = operation_type
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        metrics, operation_type = self.metrics, self.operation_type
        metrics.operations(operation_type).inc()
        metrics.durations(operation_type).observe(time.perf_counter() - self.started)
        if kind is not None and issubclass(kind, Exception):  # a cancellation is no error
            metrics.errors(operation_type).inc()


class TimedRuntime:
    """A :class:`~kubetrio.providers.ContainerRuntime` whose operations are counted and
    timed in :class:`NodeMetrics` (as kubelet's instrumented runtime service); anything
    beyond the protocol (exec, attach, a runtime's own helpers) is the wrapped one's."""

    def __init__(self, runtime: ContainerRuntime, metrics: NodeMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.name = runtime.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runtime, name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """See :meth:`ContainerRuntime.run`."""
        await self.runtime.run(task_status=task_status)

    async def pull_image(
        self, image: str, *, credentials: Mapping[str, tuple[str, str]] | None = None
    ) -> str:
        """See :meth:`ContainerRuntime.pull_image`."""
        with self.metrics.operation("pull_image"):
            return await self.runtime.pull_image(image, credentials=credentials)

    def image_present(self, image: str) -> bool:
        """See :meth:`ContainerRuntime.image_present`."""
        with self.metrics.operation("image_status"):
            return self.runtime.image_present(image)

    async def run_pod_sandbox(self, pod: KubeObject) -> PodSandboxStatus:
        """See :meth:`ContainerRuntime.run_pod_sandbox`."""
        with self.metrics.operation("run_podsandbox"):
            return await self.runtime.run_pod_sandbox(pod)

    def list_sandboxes(self) -> Sequence[str]:
        """See :meth:`ContainerRuntime.list_sandboxes`."""
        with self.metrics.operation("list_podsandbox"):
            return self.runtime.list_sandboxes()

    def list_containers(self, sandbox_id: str) -> Sequence[ContainerState]:
        """See :meth:`ContainerRuntime.list_containers`."""
        with self.metrics.operation("list_containers"):
            return self.runtime.list_containers(sandbox_id)

    async def stop_pod_sandbox(self, sandbox_id: str, *, grace_period: float) -> None:
        """See :meth:`ContainerRuntime.stop_pod_sandbox`."""
        with self.metrics.operation("stop_podsandbox"):
            await self.runtime.stop_pod_sandbox(sandbox_id, grace_period=grace_period)

    async def create_container(
        self, sandbox_id: str, pod: KubeObject, container: KubeObject, config: ContainerConfig
    ) -> str:
        """See :meth:`ContainerRuntime.create_container`."""
        with self.metrics.operation("create_container"):
            return await self.runtime.create_container(sandbox_id, pod, container, config)

    async def start_container(self, container_id: str) -> None:
        """See :meth:`ContainerRuntime.start_container`."""
        with self.metrics.operation("start_container"):
            await self.runtime.start_container(container_id)

    async def wait_container(self, container_id: str) -> ContainerState:
        """See :meth:`ContainerRuntime.wait_container` (not timed: it lasts the run)."""
        return await self.runtime.wait_container(container_id)

    async def container_status(self, container_id: str) -> ContainerState:
        """See :meth:`ContainerRuntime.container_status`."""
        with self.metrics.operation("container_status"):
            return await self.runtime.container_status(container_id)

    async def exec_sync(
        self, container_id: str, command: Sequence[str], *, timeout: float
    ) -> tuple[int, bytes]:
        """See :meth:`ContainerRuntime.exec_sync`."""
        with self.metrics.operation("exec_sync"):
            return await self.runtime.exec_sync(container_id, command, timeout=timeout)

    async def stop_container(self, container_id: str, *, grace_period: float) -> None:
        """See :meth:`ContainerRuntime.stop_container`."""
        with self.metrics.operation("stop_container"):
            await self.runtime.stop_container(container_id, grace_period=grace_period)

    async def remove_container(self, container_id: str) -> None:
        """See :meth:`ContainerRuntime.remove_container`."""
        with self.metrics.operation("remove_container"):
            await self.runtime.remove_container(container_id)
