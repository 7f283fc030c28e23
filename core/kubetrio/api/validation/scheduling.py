"""``scheduling.k8s.io``: PriorityClass, as upstream's ``pkg/apis/scheduling/validation``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import FieldError
from ._common import one_of, validate_immutable
from .kinds import KindValidator

__all__ = ["HIGHEST_USER_DEFINABLE_PRIORITY", "SYSTEM_PRIORITY_CLASSES", "VALIDATORS"]

HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
"""The largest value a PriorityClass not reserved for the system may have."""
SYSTEM_PREFIX = "system-"
SYSTEM_PRIORITY_CLASSES: Mapping[str, Mapping[str, Any]] = {
    "system-node-critical": {
        "value": 2_000_001_000,
        "description": "Used for system critical pods that must not be moved from their "
        "current node.",
    },
    "system-cluster-critical": {
        "value": 2_000_000_000,
        "description": "Used for system critical pods that must run in the cluster, but can "
        "be moved to another node if necessary.",
    },
}
"""The classes every cluster has (the API server creates them on start)."""
PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")


def _system_class_problem(obj: Mapping[str, Any]) -> str | None:
    """Why a ``system-`` class is not one of the known ones (upstream's wording)."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    known = SYSTEM_PRIORITY_CLASSES.get(name)
    if known is None:
        return f"{name} is not a known system priority class"
    if obj.get("value") != known["value"]:
        return f"value of {name} PriorityClass must be {known['value']}"
    if bool(obj.get("globalDefault")):
        return f"globalDefault of {name} PriorityClass must be false"
    return None


def validate_priority_class(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidatePriorityClass`` and ``ValidatePriorityClassUpdate``."""
    errs: list[FieldError] = []
    name = str((obj.get("metadata") or {}).get("name") or "")
    if name.startswith(SYSTEM_PREFIX):
        problem = _system_class_problem(obj)
        if problem is not None:
            errs.append(
                FieldError.forbidden(
                    "metadata.name",
                    f"priority class names with '{SYSTEM_PREFIX}' prefix are reserved for "
                    f"system use only. error: {problem}",
                )
            )
    elif int(obj.get("value") or 0) > HIGHEST_USER_DEFINABLE_PRIORITY:
        errs.append(
            FieldError.forbidden(
                "value",
                "maximum allowed value of a user defined priority is "
                f"{HIGHEST_USER_DEFINABLE_PRIORITY}",
            )
        )
    errs += one_of(
        obj.get("preemptionPolicy"), "preemptionPolicy", PREEMPTION_POLICIES, required=False
    )
    if old is not None:
        if obj.get("value") != old.get("value"):
            errs.append(FieldError.forbidden("value", "may not be changed in an update."))
        errs += validate_immutable(
            obj.get("preemptionPolicy"), old.get("preemptionPolicy"), "preemptionPolicy"
        )
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("scheduling.k8s.io", "priorityclasses"): validate_priority_class,
}
