"""Validation of the RBAC kinds (see :mod:`kubetrio.api.validation.kinds`).

Upstream's ``pkg/apis/rbac/validation``: every rule names verbs; a resource rule names
API groups and resources, a non-resource rule only URLs (and only in a ClusterRole); a
binding refers to a Role or ClusterRole of ``rbac.authorization.k8s.io`` by a valid
name and never changes that reference; subjects are Users, Groups or ServiceAccounts
(the last with a namespace when the binding has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import FieldError, validate_dns1123_subdomain
from ._common import validate_label_selector
from .kinds import KindValidator

__all__ = ["VALIDATORS"]

Obj = Mapping[str, Any]
RBAC_GROUP = "rbac.authorization.k8s.io"


def path_segment_problems(name: str) -> list[str]:
    """``path.IsValidPathSegmentName``: how RBAC names (and roleRef names) are checked."""
    problems = []
    if name in (".", ".."):
        problems.append(f"may not be '{name}'")
    problems += [f"may not contain '{c}'" for c in ("/", "%") if c in name]
    return problems


def _rule(rule: Any, path: str, *, namespaced: bool) -> list[FieldError]:
    """``ValidatePolicyRule``."""
    if not isinstance(rule, Mapping):
        return [FieldError.invalid(path, rule, "must be an object")]
    errs: list[FieldError] = []
    if not rule.get("verbs"):
        errs.append(FieldError.required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs")
    if urls:
        if namespaced:
            errs.append(
                FieldError.invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                )
            )
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            errs.append(
                FieldError.invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return errs
    if not rule.get("apiGroups"):
        errs.append(
            FieldError.required(
                f"{path}.apiGroups", "resource rules must supply at least one api group"
            )
        )
    if not rule.get("resources"):
        errs.append(
            FieldError.required(
                f"{path}.resources", "resource rules must supply at least one resource"
            )
        )
    return errs


def validate_role(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateRole``: its rules, which may not name non-resource URLs."""
    errs: list[FieldError] = []
    for i, rule in enumerate(obj.get("rules") or []):
        errs += _rule(rule, f"rules[{i}]", namespaced=True)
    return errs


def validate_cluster_role(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateClusterRole``: its rules and its aggregation selectors."""
    errs: list[FieldError] = []
    for i, rule in enumerate(obj.get("rules") or []):
        errs += _rule(rule, f"rules[{i}]", namespaced=False)
    aggregation = obj.get("aggregationRule")
    if isinstance(aggregation, Mapping):
        selectors = aggregation.get("clusterRoleSelectors") or []
        if not selectors:
            errs.append(
                FieldError.required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                )
            )
        for i, selector in enumerate(selectors):
            errs += validate_label_selector(selector, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _subject(subject: Any, path: str, *, namespaced: bool) -> list[FieldError]:
    """``ValidateRoleBindingSubject``."""
    if not isinstance(subject, Mapping):
        return [FieldError.invalid(path, subject, "must be an object")]
    errs: list[FieldError] = []
    name, kind, group = subject.get("name") or "", subject.get("kind"), subject.get("apiGroup")
    if not name:
        errs.append(FieldError.required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += validate_dns1123_subdomain(name, f"{path}.name")
        if group:
            errs.append(FieldError.not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            errs.append(FieldError.required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            errs.append(FieldError.not_supported(f"{path}.apiGroup", group or "", [RBAC_GROUP]))
    else:
        errs.append(
            FieldError.not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"])
        )
    return errs


def _binding(obj: Obj, old: Obj | None, *, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    ref = obj.get("roleRef")
    ref = ref if isinstance(ref, Mapping) else {}
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(FieldError.not_supported("roleRef.apiGroup", ref.get("apiGroup"), [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(FieldError.not_supported("roleRef.kind", ref.get("kind"), kinds))
    name = ref.get("name")
    if not name:
        errs.append(FieldError.required("roleRef.name"))
    else:
        errs += [
            FieldError.invalid("roleRef.name", name, p) for p in path_segment_problems(str(name))
        ]
    for i, subject in enumerate(obj.get("subjects") or []):
        errs += _subject(subject, f"subjects[{i}]", namespaced=namespaced)
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        errs.append(FieldError.invalid("roleRef", obj.get("roleRef"), "cannot change roleRef"))
    return errs


def validate_role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateRoleBinding`` / ``ValidateRoleBindingUpdate``."""
    return _binding(obj, old, namespaced=True)


def validate_cluster_role_binding(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateClusterRoleBinding`` / ``ValidateClusterRoleBindingUpdate``."""
    return _binding(obj, old, namespaced=False)


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    (RBAC_GROUP, "roles"): validate_role,
    (RBAC_GROUP, "clusterroles"): validate_cluster_role,
    (RBAC_GROUP, "rolebindings"): validate_role_binding,
    (RBAC_GROUP, "clusterrolebindings"): validate_cluster_role_binding,
}
