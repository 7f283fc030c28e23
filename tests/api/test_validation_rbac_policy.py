"""rbac.authorization.k8s.io/v1 and policy/v1 validation (``kinds.validate``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetrio.api.validation import kinds
from kubetrio.apiserver._defaults import apply_defaults

RBAC = "rbac.authorization.k8s.io"
Obj = dict[str, Any]


def _errors(
    group: str, resource: str, obj: Obj, old: Obj | None = None
) -> list[tuple[str, str, str]]:
    return [(e.field, str(e.type), e.message) for e in kinds.validate(group, resource, obj, old)]


def _has(errors: list[tuple[str, str, str]], field: str, reason: str, fragment: str) -> bool:
    return any(f == field and r == reason and fragment in m for f, r, m in errors)


RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}


def test_valid_roles_pass() -> None:
    assert _errors(RBAC, "roles", {"rules": [RULE]}) == []
    url_rule = {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}
    assert _errors(RBAC, "clusterroles", {"rules": [RULE, url_rule]}) == []
    aggregated = {"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    assert _errors(RBAC, "clusterroles", aggregated) == []


@pytest.mark.parametrize(
    ("resource", "rule", "field", "reason", "fragment"),
    [
        (
            "roles",
            {**RULE, "verbs": []},
            "rules[0].verbs",
            "FieldValueRequired",
            "verbs must contain at least one value",
        ),
        (
            "roles",
            {**RULE, "apiGroups": []},
            "rules[0].apiGroups",
            "FieldValueRequired",
            "resource rules must supply at least one api group",
        ),
        (
            "clusterroles",
            {**RULE, "resources": []},
            "rules[0].resources",
            "FieldValueRequired",
            "resource rules must supply at least one resource",
        ),
        (
            "roles",
            {"nonResourceURLs": ["/x"], "verbs": ["get"]},
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
            "namespaced rules cannot apply to non-resource URLs",
        ),
        (
            "clusterroles",
            {**RULE, "nonResourceURLs": ["/x"]},
            "rules[0].nonResourceURLs",
            "FieldValueInvalid",
            "rules cannot apply to both regular resources and non-resource URLs",
        ),
    ],
)
def test_policy_rules(resource: str, rule: Obj, field: str, reason: str, fragment: str) -> None:
    assert _has(_errors(RBAC, resource, {"rules": [rule]}), field, reason, fragment)


def test_aggregation_needs_selectors() -> None:
    errors = _errors(RBAC, "clusterroles", {"aggregationRule": {"clusterRoleSelectors": []}})
    assert _has(
        errors,
        "aggregationRule.clusterRoleSelectors",
        "FieldValueRequired",
        "at least one clusterRoleSelector",
    )


def _binding(resource: str, **changes: Any) -> Obj:
    obj: Obj = {
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "default", "namespace": "default"},
        ],
    }
    obj.update(changes)
    apply_defaults(RBAC, resource, obj)
    return obj


@pytest.mark.parametrize("resource", ["rolebindings", "clusterrolebindings"])
def test_valid_bindings_pass_after_defaulting(resource: str) -> None:
    obj = _binding(resource)
    assert obj["roleRef"]["apiGroup"] == RBAC
    assert obj["subjects"][0]["apiGroup"] == RBAC
    assert _errors(RBAC, resource, obj) == []


@pytest.mark.parametrize(
    ("resource", "changes", "field", "reason", "fragment"),
    [
        (
            "rolebindings",
            {"roleRef": {"kind": "Pod", "name": "x"}},
            "roleRef.kind",
            "FieldValueNotSupported",
            '"Role", "ClusterRole"',
        ),
        (
            "clusterrolebindings",
            {"roleRef": {"kind": "Role", "name": "x"}},
            "roleRef.kind",
            "FieldValueNotSupported",
            'supported values: "ClusterRole"',
        ),
        (
            "rolebindings",
            {"roleRef": {"kind": "Role", "name": "x", "apiGroup": "apps"}},
            "roleRef.apiGroup",
            "FieldValueNotSupported",
            RBAC,
        ),
        (
            "rolebindings",
            {"roleRef": {"kind": "Role", "name": ""}},
            "roleRef.name",
            "FieldValueRequired",
            "Required value",
        ),
        (
            "rolebindings",
            {"roleRef": {"kind": "Role", "name": "a/b"}},
            "roleRef.name",
            "FieldValueInvalid",
            "may not contain '/'",
        ),
        (
            "rolebindings",
            {"subjects": [{"kind": "Robot", "name": "r"}]},
            "subjects[0].kind",
            "FieldValueNotSupported",
            '"ServiceAccount", "User", "Group"',
        ),
        (
            "rolebindings",
            {"subjects": [{"kind": "User", "name": ""}]},
            "subjects[0].name",
            "FieldValueRequired",
            "Required value",
        ),
        (
            "rolebindings",
            {"subjects": [{"kind": "Group", "name": "g", "apiGroup": "x"}]},
            "subjects[0].apiGroup",
            "FieldValueNotSupported",
            RBAC,
        ),
        (
            "rolebindings",
            {"subjects": [{"kind": "ServiceAccount", "name": "s", "apiGroup": "x"}]},
            "subjects[0].apiGroup",
            "FieldValueNotSupported",
            'supported values: ""',
        ),
        (
            "rolebindings",
            {"subjects": [{"kind": "ServiceAccount", "name": "Bad_Name"}]},
            "subjects[0].name",
            "FieldValueInvalid",
            "RFC 1123 subdomain",
        ),
        (
            "clusterrolebindings",
            {"subjects": [{"kind": "ServiceAccount", "name": "s"}]},
            "subjects[0].namespace",
            "FieldValueRequired",
            "Required value",
        ),
    ],
)
def test_binding_rules(resource: str, changes: Obj, field: str, reason: str, fragment: str) -> None:
    assert _has(_errors(RBAC, resource, _binding(resource, **changes)), field, reason, fragment)


@pytest.mark.parametrize("resource", ["rolebindings", "clusterrolebindings"])
def test_role_ref_cannot_change(resource: str) -> None:
    old = _binding(resource)
    new = copy.deepcopy(old)
    new["subjects"].append({"kind": "Group", "name": "g", "apiGroup": RBAC})
    assert _errors(RBAC, resource, new, old) == []  # subjects may change
    new["roleRef"]["name"] = "edit"
    assert _has(
        _errors(RBAC, resource, new, old), "roleRef", "FieldValueInvalid", "cannot change roleRef"
    )


# ---- PodDisruptionBudget ------------------------------------------------------------


def _pdb(**spec: Any) -> Obj:
    return {"spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


@pytest.mark.parametrize(
    "spec", [{"minAvailable": 1}, {"maxUnavailable": "50%"}, {"minAvailable": "100%"}, {}]
)
def test_valid_pdbs_pass(spec: Obj) -> None:
    assert _errors("policy", "poddisruptionbudgets", _pdb(**spec)) == []


@pytest.mark.parametrize(
    ("spec", "field", "reason", "fragment"),
    [
        (
            {"minAvailable": 1, "maxUnavailable": 1},
            "spec",
            "FieldValueInvalid",
            "minAvailable and maxUnavailable cannot be both set",
        ),
        (
            {"minAvailable": -1},
            "spec.minAvailable",
            "FieldValueInvalid",
            "must be greater than or equal to 0",
        ),
        (
            {"maxUnavailable": "101%"},
            "spec.maxUnavailable",
            "FieldValueInvalid",
            "must not be greater than 100%",
        ),
        (
            {"maxUnavailable": "half"},
            "spec.maxUnavailable",
            "FieldValueInvalid",
            "a valid percent string",
        ),
        (
            {"unhealthyPodEvictionPolicy": "Never"},
            "spec.unhealthyPodEvictionPolicy",
            "FieldValueNotSupported",
            '"AlwaysAllow", "IfHealthyBudget"',
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "spec.selector.matchExpressions[0].values",
            "FieldValueForbidden",
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
    ],
)
def test_pdb_rules(spec: Obj, field: str, reason: str, fragment: str) -> None:
    assert _has(_errors("policy", "poddisruptionbudgets", _pdb(**spec)), field, reason, fragment)
