"""The ``pods/eviction`` subresource: a deletion that respects PodDisruptionBudgets.

``kubectl drain`` and cluster tools evict pods rather than delete them. As upstream's
eviction REST: a pod that is not running (pending, finished, already being deleted) is
deleted at once; a pod covered by more than one budget is a 500. With one budget, the
budget's *status* decides — the disruption controller keeps it
(:mod:`kubetrio.controllers._disruption`): a budget it has not yet seen at its current
generation answers 429 ("still being processed"), no disruption allowed answers 429 naming
the budget and its counts, else ``disruptionsAllowed`` is decremented and the pod recorded
in ``status.disruptedPods`` in one compare-and-swap write of the budget *before* the pod
is deleted, so two concurrent evictions can never both spend the last disruption. A pod
that is not Ready may go without spending one when the budget is healthy anyway
(``unhealthyPodEvictionPolicy: IfHealthyBudget``, the default) or always
(``AlwaysAllow``).
"""

from __future__ import annotations

import datetime
import json

from kubetrio.api import selectors
from kubetrio.api.conditions import is_pod_ready, update_disruption_allowed
from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject

from ._registry import Registry
from ._status import ApiError

NOT_RUNNING = ("Pending", "Succeeded", "Failed")
MAX_DISRUPTED_PODS = 2000
"""More unconfirmed evictions than this in one budget are refused (upstream's cap)."""
REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def _too_many_requests(message: str, retry_after: int = 0) -> ApiError:
    details: KubeObject = {"causes": [{"reason": "DisruptionBudget", "message": message}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, REFUSED, reason="TooManyRequests", details=details)


def _forbidden(name: str, why: str) -> ApiError:
    return ApiError(
        403,
        f'poddisruptionbudgets.policy "{name}" is forbidden: {why}',
        reason="Forbidden",
        details={"name": name, "group": "policy", "kind": "poddisruptionbudgets"},
    )


def spend_disruption(budget: KubeObject, pod_name: str, *, dry_run: bool) -> KubeObject:
    """The budget with one disruption spent on ``pod_name``; raise 429/403 when none is
    left (upstream's ``checkAndDecrement``)."""
    metadata = budget["metadata"]
    status = dict(budget.get("status") or {})
    name = metadata["name"]
    if int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 1):
        raise _too_many_requests(
            f"The disruption budget {name} is still being processed by the server.", 10
        )
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise _forbidden(name, "pdb disruptions allowed is negative")
    disrupted = dict(status.get("disruptedPods") or {})
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise _forbidden(
            name, "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )
    if allowed == 0:
        raise _too_many_requests(
            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy "
            f"pods and has {status.get('currentHealthy', 0)} currently"
        )
    status["disruptionsAllowed"] = allowed - 1
    if allowed - 1 == 0:
        status["conditions"] = [dict(c) for c in status.get("conditions") or []]
        update_disruption_allowed(status, int(metadata.get("generation") or 1))
    if not dry_run:
        disrupted[pod_name] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["disruptedPods"] = disrupted
    return {**budget, "status": status}


def _may_skip_budget(budget: KubeObject, pod: KubeObject) -> bool:
    """A not-Ready pod that may go without spending a disruption (upstream's rules)."""
    if is_pod_ready(pod):
        return False
    if (budget.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    status = budget.get("status") or {}
    desired = int(status.get("desiredHealthy") or 0)
    return desired > 0 and int(status.get("currentHealthy") or 0) >= desired


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
        covering = [b for b in (json.loads(item) for item in page.items) if _selects(b, labels)]
        if len(covering) > 1:
            raise ApiError(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction "
                "subresource does not support.",
                reason="InternalError",
            )
        if covering and not _may_skip_budget(covering[0], pod):

            async def spend(budget: KubeObject) -> KubeObject:
                return spend_disruption(budget, name, dry_run=dry_run)

            await registry.update(
                budgets_info,
                namespace,
                covering[0]["metadata"]["name"],
                spend,
                precondition_from_body=False,
                dry_run=dry_run,
            )
    await registry.delete(pods_info, namespace, name, options=options, dry_run=dry_run)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _selects(budget: KubeObject, labels: dict[str, str]) -> bool:
    try:
        chosen = selectors.label_selector_from_struct((budget.get("spec") or {}).get("selector"))
    except selectors.LabelSelectorError:
        return False
    return chosen.matches(labels)
