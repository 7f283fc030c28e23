"""Resource arithmetic: what a pod requests and what a node offers, as integers.

Quantities are parsed once per pod (or node) version, into integers in fixed units:
``cpu`` in millicores, everything else with :meth:`Quantity.value` (bytes for memory,
ephemeral-storage and hugepages, counts for extended resources). The per-node loop then
only adds and compares integers.
"""

from __future__ import annotations

from typing import Any

from kubetrio.api import Quantity
from kubetrio.providers import KubeObject, PodInfo

DEFAULT_MILLI_CPU_REQUEST = 100
"""The cpu kube-scheduler assumes, for scoring only, of a container that requests none."""
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
"""The memory kube-scheduler assumes, for scoring only, of a container that requests none."""

_PARSED: dict[tuple[str, str], int] = {}


def resource_value(name: str, value: Any) -> int:
    """One quantity as an integer in the scheduler's unit for resource ``name``."""
    text = str(value)
    cache_key = (name, text)
    found = _PARSED.get(cache_key)
    if found is None:
        quantity = Quantity(text)
        found = quantity.milli_value() if name == "cpu" else quantity.value()
        if len(_PARSED) < 10_000:  # a handful of distinct values in practice
            _PARSED[cache_key] = found
    return found


def resource_list(values: dict[str, Any] | None) -> dict[str, int]:
    """A ``ResourceList`` (``{"cpu": "100m"}``) in integers."""
    return {name: resource_value(name, value) for name, value in (values or {}).items()}


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def _max_into(total: dict[str, int], other: dict[str, int]) -> None:
    for name, value in other.items():
        if value > total.get(name, 0):
            total[name] = value


def _container_requests(container: KubeObject) -> dict[str, int]:
    resources = container.get("resources") or {}
    # Kubernetes defaults requests to limits when only limits are set.
    requests = dict(resources.get("limits") or {})
    requests.update(resources.get("requests") or {})
    return resource_list(requests)


def pod_info(pod: KubeObject) -> PodInfo:
    """A :class:`PodInfo` with the pod's effective requests.

    The rule of Kubernetes' ``PodRequests``: regular containers and restartable init
    containers (sidecars) run together and add up; each ordinary init container runs
    alone beside the sidecars started before it; the pod needs the larger of the two,
    plus ``spec.overhead``.
    """
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    nz_cpu = nz_mem = 0
    for container in spec.get("containers") or ():
        req = _container_requests(container)
        _add(total, req)
        nz_cpu += req.get("cpu") or DEFAULT_MILLI_CPU_REQUEST
        nz_mem += req.get("memory") or DEFAULT_MEMORY_REQUEST
    init_max: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    nz_init_cpu = nz_init_mem = nz_side_cpu = nz_side_mem = 0
    for container in spec.get("initContainers") or ():
        req = _container_requests(container)
        cpu = req.get("cpu") or DEFAULT_MILLI_CPU_REQUEST
        mem = req.get("memory") or DEFAULT_MEMORY_REQUEST
        if container.get("restartPolicy") == "Always":
            _add(sidecars, req)
            nz_side_cpu += cpu
            nz_side_mem += mem
            running = dict(sidecars)
        else:
            running = dict(sidecars)
            _add(running, req)
            nz_init_cpu = max(nz_init_cpu, nz_side_cpu + cpu)
            nz_init_mem = max(nz_init_mem, nz_side_mem + mem)
        _max_into(init_max, running)
    _add(total, sidecars)
    _max_into(total, init_max)
    nz_cpu = max(nz_cpu + nz_side_cpu, nz_init_cpu)
    nz_mem = max(nz_mem + nz_side_mem, nz_init_mem)
    overhead = resource_list(spec.get("overhead"))
    _add(total, overhead)
    nz_cpu += overhead.get("cpu", 0)
    nz_mem += overhead.get("memory", 0)
    total.pop("pods", None)
    return PodInfo(pod, requests=total, non_zero_cpu=nz_cpu, non_zero_memory=nz_mem)


def node_allocatable(node: KubeObject) -> dict[str, int]:
    """``status.allocatable`` (or ``capacity`` when absent) in integers; ``pods`` included."""
    status = node.get("status") or {}
    return resource_list(status.get("allocatable") or status.get("capacity"))
