"""The PriorityClasses every cluster has, created on start as kube-apiserver's
scheduling post-start hook does: ``system-node-critical`` and ``system-cluster-critical``;
and the built-in default IngressClass (``kubetrio-nginx``), as k3s installs its own."""

from __future__ import annotations

from kubetrio.api.ingress import builtin_ingress_class
from kubetrio.api.scheme import Scheme
from kubetrio.api.validation.scheduling import SYSTEM_PRIORITY_CLASSES

from ._registry import Registry
from ._status import ApiError


async def ensure_system_priority_classes(registry: Registry, scheme: Scheme) -> None:
    """Create the system PriorityClasses that are missing (an existing one is kept)."""
    info = scheme.resource("scheduling.k8s.io", "v1", "priorityclasses")
    if info is None:
        return
    for name, fields in SYSTEM_PRIORITY_CLASSES.items():
        try:
            await registry.create(
                info,
                "",
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {"name": name},
                    "preemptionPolicy": "PreemptLowerPriority",
                    **fields,
                },
            )
        except ApiError as exc:
            if exc.code != 409:
                raise


async def ensure_builtin_ingress_class(registry: Registry, scheme: Scheme) -> None:
    """Create the built-in default IngressClass when missing (an existing one is kept, so
    a user's edit — say, no longer the default — survives restarts)."""
    info = scheme.resource("networking.k8s.io", "v1", "ingressclasses")
    if info is None:
        return
    try:
        await registry.create(info, "", builtin_ingress_class())
    except ApiError as exc:
        if exc.code != 409:
            raise
