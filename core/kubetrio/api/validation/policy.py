"""Validation of the policy kinds (see :mod:`kubetrio.api.validation.kinds`).

Upstream's ``pkg/apis/policy/validation``: a PodDisruptionBudget sets at most one of
``minAvailable`` and ``maxUnavailable``, each a non-negative count or a percentage up to
100%, selects pods with a valid selector, and names a known unhealthy-pod eviction
policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import FieldError
from ._common import (
    not_more_than_100_percent,
    one_of,
    validate_label_selector,
    validate_positive_int_or_percent,
)
from .kinds import KindValidator

__all__ = ["VALIDATORS"]


def validate_pod_disruption_budget(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidatePodDisruptionBudget`` (its spec; status is the controller's)."""
    spec = obj.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    errs: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(
            FieldError.invalid(
                "spec", dict(spec), "minAvailable and maxUnavailable cannot be both set"
            )
        )
    for key in ("minAvailable", "maxUnavailable"):
        value = spec.get(key)
        if value is not None:
            errs += validate_positive_int_or_percent(value, f"spec.{key}")
            errs += not_more_than_100_percent(value, f"spec.{key}")
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    errs += one_of(
        spec.get("unhealthyPodEvictionPolicy"),
        "spec.unhealthyPodEvictionPolicy",
        ["AlwaysAllow", "IfHealthyBudget"],
        required=False,
    )
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("policy", "poddisruptionbudgets"): validate_pod_disruption_budget,
}
