"""Status conditions as apimachinery's ``meta.SetStatusCondition`` keeps them.

Plus the PodDisruptionBudget's ``DisruptionAllowed`` condition (upstream's
``pdbhelper.UpdateDisruptionAllowedCondition``), which both the disruption controller and
the ``pods/eviction`` subresource set, and the readings of a pod's conditions that
controllers and the API server share.
"""

from __future__ import annotations

import datetime

from kubetrio.kubeobject import KubeObject


def set_status_condition(status: KubeObject, wanted: KubeObject, generation: int) -> None:
    """Put ``wanted`` (type, status, reason, message) into ``status["conditions"]``.

    ``lastTransitionTime`` moves only when the condition's status changes;
    ``observedGeneration`` is the object's generation the condition was computed from.
    """
    conditions: list[KubeObject] = status.setdefault("conditions", [])
    for index, current in enumerate(conditions):
        if current.get("type") == wanted["type"]:
            changed = current.get("status") != wanted["status"]
            conditions[index] = {
                **wanted,
                "observedGeneration": generation,
                "lastTransitionTime": _now() if changed else current.get("lastTransitionTime"),
            }
            return
    conditions.append({**wanted, "observedGeneration": generation, "lastTransitionTime": _now()})


def pod_condition(pod: KubeObject, type_: str) -> KubeObject | None:
    """The pod's status condition of ``type_``."""
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == type_:
            return condition  # type: ignore[no-any-return]
    return None


def is_pod_ready(pod: KubeObject) -> bool:
    """Whether the pod's Ready condition is True."""
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def update_disruption_allowed(status: KubeObject, generation: int) -> None:
    """A budget's ``DisruptionAllowed`` condition from its ``disruptionsAllowed``."""
    if int(status.get("disruptionsAllowed") or 0) > 0:
        wanted = {"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods"}
    else:
        wanted = {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods"}
    set_status_condition(status, {**wanted, "message": ""}, generation)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
