"""apps/v1 validation (``kinds.validate``): one case per upstream rule, each on a
defaulted object as the API server validates it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubetrio.api.validation import FieldErrorType, kinds
from kubetrio.apiserver._defaults import apply_defaults

Obj = dict[str, Any]
LABELS = {"app": "web"}


def _template() -> Obj:
    return {
        "metadata": {"labels": dict(LABELS)},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def _workload(resource: str, kind: str, **spec: Any) -> Obj:
    obj = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": dict(LABELS)}, "template": _template(), **spec},
    }
    apply_defaults("apps", resource, obj)
    return obj


BASES: dict[str, Callable[[], Obj]] = {
    "deployments": lambda: _workload("deployments", "Deployment"),
    "replicasets": lambda: _workload("replicasets", "ReplicaSet"),
    "statefulsets": lambda: _workload("statefulsets", "StatefulSet", serviceName="web"),
    "daemonsets": lambda: _workload("daemonsets", "DaemonSet"),
}


def _errors(resource: str, obj: Obj, old: Obj | None = None) -> list[tuple[str, str, str]]:
    return [(e.field, str(e.type), e.message) for e in kinds.validate("apps", resource, obj, old)]


@pytest.mark.parametrize("resource", sorted(BASES))
def test_valid_workloads_pass(resource: str) -> None:
    assert _errors(resource, BASES[resource]()) == []


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def change(obj: Obj) -> None:
        *parents, last = path.split(".")
        target = obj
        for key in parents:
            target = target.setdefault(key, {})
        if value is _DELETE:
            target.pop(last, None)
        else:
            target[last] = value

    return change


_DELETE = object()
ALL = sorted(BASES)

# (resources, change, field, reason, message fragment)
CASES: list[tuple[list[str], Callable[[Obj], None], str, str, str]] = [
    (
        ALL,
        _set("spec.template.metadata.labels", {"app": "other"}),
        "spec.template.metadata.labels",
        "FieldValueInvalid",
        "`selector` does not match template `labels`",
    ),
    (
        ALL,
        _set("spec.selector", {}),
        "spec.selector",
        "FieldValueInvalid",
        "empty selector is invalid",
    ),
    (ALL, _set("spec.selector", _DELETE), "spec.selector", "FieldValueRequired", "Required value"),
    (
        ALL,
        _set("spec.selector", {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
        "spec.selector.matchExpressions[0].operator",
        "FieldValueInvalid",
        "not a valid selector operator",
    ),
    (
        ALL,
        _set("spec.selector", {"matchExpressions": [{"key": "app", "operator": "In"}]}),
        "spec.selector.matchExpressions[0].values",
        "FieldValueRequired",
        "must be specified when `operator` is 'In' or 'NotIn'",
    ),
    (
        ALL,
        _set("spec.selector", {"matchLabels": {"bad key!": "x"}}),
        "spec.selector.matchLabels",
        "FieldValueInvalid",
        "name part must consist of",
    ),
    (
        ALL,
        _set("spec.template.spec.restartPolicy", "Never"),
        "spec.template.spec.restartPolicy",
        "FieldValueNotSupported",
        'Unsupported value: "Never": supported values: "Always"',
    ),
    (
        ALL,
        _set("spec.template.spec.activeDeadlineSeconds", 5),
        "spec.template.spec.activeDeadlineSeconds",
        "FieldValueForbidden",
        "is not Supported",
    ),
    (
        ALL,
        _set("spec.minReadySeconds", -1),
        "spec.minReadySeconds",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["deployments", "replicasets", "statefulsets"],
        _set("spec.replicas", -1),
        "spec.replicas",
        "FieldValueInvalid",
        "Invalid value: -1: must be greater than or equal to 0",
    ),
    (
        ["deployments", "daemonsets"],
        _set("spec.revisionHistoryLimit", -1),
        "spec.revisionHistoryLimit",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["deployments"],
        lambda o: o["spec"].update(minReadySeconds=10, progressDeadlineSeconds=10),
        "spec.progressDeadlineSeconds",
        "FieldValueInvalid",
        "must be greater than minReadySeconds",
    ),
    (
        ["deployments"],
        _set("spec.strategy", {"type": "Bogus"}),
        "spec.strategy",
        "FieldValueNotSupported",
        'supported values: "Recreate", "RollingUpdate"',
    ),
    (
        ["deployments"],
        _set("spec.strategy", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
        "spec.strategy.rollingUpdate",
        "FieldValueForbidden",
        "may not be specified when strategy `type` is 'Recreate'",
    ),
    (
        ["deployments"],
        _set("spec.strategy.rollingUpdate", {"maxSurge": 0, "maxUnavailable": 0}),
        "spec.strategy.rollingUpdate.maxUnavailable",
        "FieldValueInvalid",
        "may not be 0 when `maxSurge` is 0",
    ),
    (
        ["deployments"],
        _set("spec.strategy.rollingUpdate", {"maxSurge": 1, "maxUnavailable": "150%"}),
        "spec.strategy.rollingUpdate.maxUnavailable",
        "FieldValueInvalid",
        "must not be greater than 100%",
    ),
    (
        ["deployments"],
        _set("spec.strategy.rollingUpdate", {"maxSurge": "x%", "maxUnavailable": 1}),
        "spec.strategy.rollingUpdate.maxSurge",
        "FieldValueInvalid",
        "a valid percent string must be a numeric string followed by an ending '%'",
    ),
    (
        ["deployments"],
        _set("spec.strategy.rollingUpdate", {"maxSurge": -2, "maxUnavailable": 1}),
        "spec.strategy.rollingUpdate.maxSurge",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["statefulsets"],
        _set("spec.podManagementPolicy", "Sometimes"),
        "spec.podManagementPolicy",
        "FieldValueInvalid",
        "must be 'OrderedReady' or 'Parallel'",
    ),
    (
        ["statefulsets"],
        _set("spec.updateStrategy", {"type": "Sideways"}),
        "spec.updateStrategy",
        "FieldValueInvalid",
        "must be 'RollingUpdate' or 'OnDelete'",
    ),
    (
        ["statefulsets"],
        _set("spec.updateStrategy", {"type": "OnDelete", "rollingUpdate": {"partition": 1}}),
        "spec.updateStrategy.rollingUpdate",
        "FieldValueInvalid",
        "only allowed for updateStrategy 'RollingUpdate'",
    ),
    (
        ["statefulsets"],
        _set("spec.updateStrategy.rollingUpdate", {"partition": -1}),
        "spec.updateStrategy.rollingUpdate.partition",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["statefulsets"],
        _set("spec.updateStrategy.rollingUpdate", {"partition": 0, "maxUnavailable": 0}),
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        "FieldValueInvalid",
        "cannot be 0",
    ),
    (
        ["statefulsets"],
        _set("spec.persistentVolumeClaimRetentionPolicy.whenDeleted", "Keep"),
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
        "FieldValueNotSupported",
        'supported values: "Retain", "Delete"',
    ),
    (
        ["statefulsets"],
        _set("spec.ordinals", {"start": -1}),
        "spec.ordinals.start",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["statefulsets"],
        _set("metadata.name", "web.example"),
        "metadata.name",
        "FieldValueInvalid",
        "a lowercase RFC 1123 label",
    ),
    (
        ["daemonsets"],
        _set("spec.templateGeneration", -1),
        "spec.templateGeneration",
        "FieldValueInvalid",
        "must be greater than or equal to 0",
    ),
    (
        ["daemonsets"],
        _set("spec.updateStrategy", {"type": "Sideways"}),
        "spec.updateStrategy",
        "FieldValueNotSupported",
        'supported values: "RollingUpdate", "OnDelete"',
    ),
    (
        ["daemonsets"],
        _set("spec.updateStrategy", {"type": "RollingUpdate"}),
        "spec.updateStrategy.rollingUpdate",
        "FieldValueRequired",
        "Required value",
    ),
    (
        ["daemonsets"],
        _set("spec.updateStrategy.rollingUpdate", {"maxSurge": 1, "maxUnavailable": 1}),
        "spec.updateStrategy.rollingUpdate.maxSurge",
        "FieldValueInvalid",
        "may not be set when maxUnavailable is non-zero",
    ),
    (
        ["daemonsets"],
        _set("spec.updateStrategy.rollingUpdate", {"maxSurge": 0, "maxUnavailable": 0}),
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        "FieldValueRequired",
        "cannot be 0 when maxSurge is 0",
    ),
    (
        ["daemonsets"],
        _set("spec.updateStrategy.rollingUpdate", {"maxSurge": "101%", "maxUnavailable": 0}),
        "spec.updateStrategy.rollingUpdate.maxSurge",
        "FieldValueInvalid",
        "must not be greater than 100%",
    ),
]


@pytest.mark.parametrize(
    ("resource", "change", "field", "reason", "fragment"),
    [
        pytest.param(r, change, field, reason, fragment, id=f"{r}-{field}-{fragment[:30]}")
        for resources, change, field, reason, fragment in CASES
        for r in resources
    ],
)
def test_rule(
    resource: str, change: Callable[[Obj], None], field: str, reason: str, fragment: str
) -> None:
    obj = BASES[resource]()
    change(obj)
    found = [e for e in _errors(resource, obj) if e[0] == field]
    assert found, _errors(resource, obj)
    assert any(r == reason and fragment in m for _, r, m in found), found


def test_every_cause_is_listed() -> None:
    obj = BASES["deployments"]()
    obj["spec"]["replicas"] = -1
    obj["spec"]["minReadySeconds"] = -1
    obj["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    fields = [e[0] for e in _errors("deployments", obj)]
    assert {"spec.replicas", "spec.minReadySeconds", "spec.template.metadata.labels"} <= set(fields)


@pytest.mark.parametrize("resource", ALL)
def test_selector_is_immutable(resource: str) -> None:
    old = BASES[resource]()
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "x"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert _errors(resource, new) == []  # valid on its own
    errors = _errors(resource, new, old)
    assert [(f, m.endswith("field is immutable")) for f, _, m in errors] == [
        ("spec.selector", True)
    ]
    assert _errors(resource, copy.deepcopy(old), old) == []


def test_controller_revision() -> None:
    rev = {"metadata": {"name": "r", "namespace": "d"}, "revision": 1, "data": {"a": 1}}
    assert _errors("controllerrevisions", rev) == []
    assert _errors("controllerrevisions", {**rev, "data": None})[0][:2] == (
        "data",
        str(FieldErrorType.REQUIRED),
    )
    assert _errors("controllerrevisions", {**rev, "revision": -1})[0][0] == "revision"
    changed = _errors("controllerrevisions", {**rev, "data": {"a": 2}}, rev)
    assert changed[0][0] == "data" and "field is immutable" in changed[0][2]


def test_statefulset_containers_may_mount_claim_templates() -> None:
    sts = BASES["statefulsets"]()
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}
    ]
    # Without a claim template of that name the mount names nothing.
    assert [e[0] for e in _errors("statefulsets", sts)] == [
        "spec.template.spec.containers[0].volumeMounts[0].name"
    ]
    sts["spec"]["volumeClaimTemplates"] = [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    ]
    assert _errors("statefulsets", sts) == []
