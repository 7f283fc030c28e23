"""The ``pods/eviction`` subresource: a deletion that respects PodDisruptionBudgets.

``kubectl drain`` and cluster tools evict pods rather than delete them. As upstream, a pod
that is not running (pending, finished, already being deleted) is deleted at once; a
running pod covered by one PodDisruptionBudget is deleted only when the budget allows one
more disruption, else 429 TooManyRequests; more than one budget is a 500. There is no
disruption controller yet, so the budget is computed here from the pods its selector
matches (healthy = Ready and not being deleted; ``minAvailable``/``maxUnavailable`` as a
number or a percentage of those pods) instead of read from its status, and concurrent
evictions are not serialised through ``status.disruptedPods``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kubetrio.api import selectors
from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject

from ._registry import Registry
from ._status import ApiError

NOT_RUNNING = ("Pending", "Succeeded", "Failed")


def _healthy(pod: KubeObject) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString budget figure against ``total`` pods."""
    if isinstance(value, str) and value.endswith("%"):
        share = int(value[:-1]) * total / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


def budget_allows(budget: KubeObject, pods: list[KubeObject]) -> tuple[bool, int, int]:
    """(whether one more disruption is allowed, pods needed healthy, pods healthy now)."""
    spec = budget.get("spec") or {}
    expected = len(pods)
    healthy = sum(1 for pod in pods if _healthy(pod))
    if spec.get("maxUnavailable") is not None:
        desired = max(expected - _scaled(spec["maxUnavailable"], expected, round_up=True), 0)
    elif spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected, round_up=True)
    else:
        desired = 0
    return healthy - desired > 0, desired, healthy


async def evict(
    registry: Registry,
    pods_info: ResourceInfo,
    budgets_info: ResourceInfo,
    namespace: str,
    name: str,
    eviction: KubeObject,
    *,
    dry_run: bool = False,
) -> KubeObject:
    """Evict ``namespace/name``; the success Status, or raise 404/429/500 as upstream."""
    pod = await registry.get_object(pods_info, namespace, name)
    options = dict(eviction.get("deleteOptions") or {})
    phase = (pod.get("status") or {}).get("phase", "Pending")
    if phase not in NOT_RUNNING and not pod["metadata"].get("deletionTimestamp"):
        labels = pod["metadata"].get("labels") or {}
        page = await registry.list(budgets_info, namespace)
        budgets = [json.loads(item) for item in page.items]
        covering = [
            b
            for b in budgets
            if selectors.label_selector_from_struct((b.get("spec") or {}).get("selector")).matches(
                labels
            )
        ]
        if len(covering) > 1:
            raise ApiError(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.",
                reason="InternalError",
            )
        if covering:
            budget = covering[0]
            chosen = selectors.label_selector_from_struct(budget["spec"].get("selector"))
            listed = await registry.list(pods_info, namespace)
            covered = [
                p
                for p in (json.loads(item) for item in listed.items)
                if chosen.matches(p["metadata"].get("labels") or {})
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ]
            allowed, desired, healthy = budget_allows(budget, covered)
            if not allowed:
                budget_name = budget["metadata"]["name"]
                raise ApiError(
                    429,
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    reason="TooManyRequests",
                    details={
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {budget_name} needs "
                                f"{desired} healthy pods and has {healthy} currently",
                            }
                        ]
                    },
                )
    await registry.delete(pods_info, namespace, name, options=options, dry_run=dry_run)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
