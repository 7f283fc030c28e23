"""Validation of the apps kinds (see :mod:`kubetrio.api.validation.kinds`).

Upstream's ``pkg/apis/apps/validation``: Deployments, ReplicaSets, StatefulSets and
DaemonSets need a non-empty selector that matches their pod template, non-negative
counts, a pod template that restarts ``Always``, and a known update strategy; their
selector never changes (``pkg/registry/apps/*/strategy.go`` for apps/v1).
ControllerRevisions carry ``data`` that never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import FieldError, validate_dns1123_label
from . import core as core_validation
from ._common import (
    int_or_percent,
    is_int,
    not_more_than_100_percent,
    validate_immutable,
    validate_nonnegative,
    validate_positive_int_or_percent,
    workload_selector,
)
from .kinds import KindValidator

__all__ = ["VALIDATORS"]

Obj = Mapping[str, Any]


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _pod_template(spec: Obj, owner: str) -> list[FieldError]:
    """The pod template of a long-running controller: valid, restarting ``Always``, no
    ``activeDeadlineSeconds`` (``ValidatePodTemplateSpecForReplicaSet``)."""
    template = spec.get("template")
    if not isinstance(template, Mapping):
        return [FieldError.required("spec.template")]
    errs = list(core_validation.validate_pod_template_spec(template, "spec.template"))
    pod = template.get("spec")
    pod = pod if isinstance(pod, Mapping) else {}
    restart = pod.get("restartPolicy")
    if restart != "Always":
        errs.append(
            FieldError.not_supported("spec.template.spec.restartPolicy", restart, ["Always"])
        )
    if pod.get("activeDeadlineSeconds") is not None:
        errs.append(
            FieldError.forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                f"activeDeadlineSeconds in {owner} is not Supported",
            )
        )
    return errs


def _selector_unchanged(obj: Obj, old: Obj | None) -> list[FieldError]:
    if old is None:
        return []
    return validate_immutable(
        _spec(obj).get("selector"), _spec(old).get("selector"), "spec.selector"
    )


# ---- Deployment ---------------------------------------------------------------------


def _rolling_update_deployment(rolling: Obj, path: str) -> list[FieldError]:
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    if int_or_percent(unavailable) == 0 and int_or_percent(surge) == 0:
        errs.append(
            FieldError.invalid(
                f"{path}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"
            )
        )
    errs += not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    return errs


def _deployment_strategy(strategy: Any) -> list[FieldError]:
    path = "spec.strategy"
    strategy = strategy if isinstance(strategy, Mapping) else {}
    kind, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [
                FieldError.forbidden(
                    f"{path}.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind == "RollingUpdate":
        if not isinstance(rolling, Mapping):
            return [
                FieldError.required(
                    f"{path}.rollingUpdate", "this should be defaulted and never be nil"
                )
            ]
        return _rolling_update_deployment(rolling, f"{path}.rollingUpdate")
    return [FieldError.not_supported(path, strategy, ["Recreate", "RollingUpdate"])]


def validate_deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateDeployment`` / ``ValidateDeploymentUpdate``."""
    spec = _spec(obj)
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += workload_selector(spec, "deployment")
    errs += _pod_template(spec, "ReplicaSet")
    errs += _deployment_strategy(spec.get("strategy"))
    min_ready = spec.get("minReadySeconds")
    errs += validate_nonnegative(min_ready, "spec.minReadySeconds")
    errs += validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if is_int(deadline):
        errs += validate_nonnegative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= (min_ready if is_int(min_ready) else 0):
            errs.append(
                FieldError.invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return errs + _selector_unchanged(obj, old)


# ---- ReplicaSet ---------------------------------------------------------------------


def validate_replica_set(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateReplicaSet`` / ``ValidateReplicaSetUpdate`` (upstream's empty-selector
    message says "deployment" here too)."""
    spec = _spec(obj)
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += workload_selector(spec, "deployment")
    errs += _pod_template(spec, "ReplicaSet")
    return errs + _selector_unchanged(obj, old)


# ---- StatefulSet --------------------------------------------------------------------


def _stateful_set_strategy(strategy: Any) -> list[FieldError]:
    path = "spec.updateStrategy"
    strategy = strategy if isinstance(strategy, Mapping) else {}
    kind, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if not kind:
        return [FieldError.required(path)]
    if kind == "OnDelete":
        if rolling is not None:
            return [
                FieldError.invalid(
                    f"{path}.rollingUpdate",
                    rolling,
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [FieldError.invalid(path, strategy, "must be 'RollingUpdate' or 'OnDelete'")]
    if not isinstance(rolling, Mapping):
        return []
    errs = validate_nonnegative(rolling.get("partition"), f"{path}.rollingUpdate.partition")
    unavailable = rolling.get("maxUnavailable")
    if unavailable is not None:
        field = f"{path}.rollingUpdate.maxUnavailable"
        errs += validate_positive_int_or_percent(unavailable, field)
        if int_or_percent(unavailable) == 0:
            errs.append(FieldError.invalid(field, unavailable, "cannot be 0"))
        errs += not_more_than_100_percent(unavailable, field)
    return errs


def validate_stateful_set(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateStatefulSet`` / ``ValidateStatefulSetUpdate`` (which fields may change
    is checked by the API server's immutable-field pass)."""
    spec = _spec(obj)
    errs: list[FieldError] = []
    name = (obj.get("metadata") or {}).get("name")
    if old is None and isinstance(name, str) and ("." in name or len(name) > 63):
        # pods are named <statefulset>-<ordinal>: the name must be a DNS label, not just
        # the DNS subdomain every object name is (checked with the metadata)
        errs += validate_dns1123_label(name, "metadata.name")
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.append(FieldError.required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(
            FieldError.invalid(
                "spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"
            )
        )
    errs += _stateful_set_strategy(spec.get("updateStrategy"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, Mapping):
        path = "spec.persistentVolumeClaimRetentionPolicy"
        for key in ("whenDeleted", "whenScaled"):
            value = retention.get(key)
            if value not in ("Retain", "Delete"):
                errs.append(FieldError.not_supported(f"{path}.{key}", value, ["Retain", "Delete"]))
    errs += validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, Mapping):
        errs += validate_nonnegative(ordinals.get("start"), "spec.ordinals.start")
    errs += workload_selector(spec, "statefulset")
    errs += _pod_template(_with_claim_volumes(spec), "StatefulSet")
    return errs + _selector_unchanged(obj, old)


def _with_claim_volumes(spec: Obj) -> Obj:
    """The spec with each ``volumeClaimTemplates`` entry as a volume of the pod template,
    as the controller mounts them: containers may mount a claim template by name
    (upstream checks the union of the template's volumes and the claim templates)."""
    claims = spec.get("volumeClaimTemplates")
    template = spec.get("template")
    if not isinstance(template, Mapping):
        return spec
    pod = template.get("spec")
    if not isinstance(claims, list) or not claims or not isinstance(pod, Mapping):
        return spec
    volumes = list(pod.get("volumes") or []) if isinstance(pod.get("volumes"), list) else []
    present = {v.get("name") for v in volumes if isinstance(v, Mapping)}
    for claim in claims:
        name = (
            ((claim or {}).get("metadata") or {}).get("name")
            if isinstance(claim, Mapping)
            else None
        )
        if isinstance(name, str) and name not in present:
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": name}})
    return {**spec, "template": {**template, "spec": {**pod, "volumes": volumes}}}


# ---- DaemonSet ----------------------------------------------------------------------


def _daemon_set_strategy(strategy: Any) -> list[FieldError]:
    path = "spec.updateStrategy"
    strategy = strategy if isinstance(strategy, Mapping) else {}
    kind, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if kind == "OnDelete":
        return []
    if kind != "RollingUpdate":
        return [FieldError.not_supported(path, strategy, ["RollingUpdate", "OnDelete"])]
    if not isinstance(rolling, Mapping):
        return [FieldError.required(f"{path}.rollingUpdate")]
    path += ".rollingUpdate"
    unavailable, surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
    errs = validate_positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += validate_positive_int_or_percent(surge, f"{path}.maxSurge")
    errs += not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    errs += not_more_than_100_percent(surge, f"{path}.maxSurge")
    has_unavailable, has_surge = int_or_percent(unavailable) != 0, int_or_percent(surge) != 0
    if has_unavailable and has_surge:
        errs.append(
            FieldError.invalid(
                f"{path}.maxSurge", surge, "may not be set when maxUnavailable is non-zero"
            )
        )
    elif not has_unavailable and not has_surge:
        errs.append(FieldError.required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def validate_daemon_set(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateDaemonSet`` / ``ValidateDaemonSetUpdate``."""
    spec = _spec(obj)
    errs = workload_selector(spec, "daemonset")
    errs += _pod_template(spec, "DaemonSet")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += validate_nonnegative(spec.get("templateGeneration"), "spec.templateGeneration")
    errs += _daemon_set_strategy(spec.get("updateStrategy"))
    errs += validate_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    return errs + _selector_unchanged(obj, old)


# ---- ControllerRevision -------------------------------------------------------------


def validate_controller_revision(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateControllerRevision`` / ``ValidateControllerRevisionUpdate``."""
    errs: list[FieldError] = []
    if obj.get("data") is None:
        errs.append(FieldError.required("data", "data is mandatory"))
    errs += validate_nonnegative(obj.get("revision"), "revision")
    if old is not None:
        errs += validate_immutable(obj.get("data"), old.get("data"), "data")
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("apps", "deployments"): validate_deployment,
    ("apps", "replicasets"): validate_replica_set,
    ("apps", "statefulsets"): validate_stateful_set,
    ("apps", "daemonsets"): validate_daemon_set,
    ("apps", "controllerrevisions"): validate_controller_revision,
}
