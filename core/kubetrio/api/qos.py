"""Pod quality-of-service classes, as upstream's ``qos.GetPodQOS`` computes them.

The API server writes ``status.qosClass`` on create and the node agent reports it; both
use :func:`pod_qos_class`.
"""

from __future__ import annotations

from typing import Any

from .quantity import Quantity

__all__ = ["QOS_RESOURCES", "pod_qos_class"]

QOS_RESOURCES = ("cpu", "memory")
"""The resources that decide a pod's class."""


def pod_qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, as upstream's ``qos.GetPodQOS``.

    Only cpu and memory count; zero quantities count as unset. Guaranteed needs a cpu and
    a memory limit on every container and requests equal to limits in total.
    """
    requests: dict[str, Quantity] = {}
    limits: dict[str, Quantity] = {}
    guaranteed = True
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for container in containers:
        resources = (container.get("resources") if isinstance(container, dict) else None) or {}
        for source, total in (
            (resources.get("requests"), requests),
            (resources.get("limits"), limits),
        ):
            for name, raw in (source or {}).items():
                if name not in QOS_RESOURCES:
                    continue
                try:
                    quantity = Quantity(raw)
                except ValueError:
                    continue
                if quantity.is_zero():
                    continue
                total[name] = total[name] + quantity if name in total else quantity
        limited = {
            name
            for name, raw in ((resources.get("limits") or {}).items())
            if name in QOS_RESOURCES and not _zero(raw)
        }
        if not limited.issuperset(QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if (
        guaranteed
        and len(requests) == len(limits)
        and all(limits.get(name) == value for name, value in requests.items())
    ):
        return "Guaranteed"
    return "Burstable"


def _zero(raw: Any) -> bool:
    try:
        return Quantity(raw).is_zero()
    except ValueError:
        return True
