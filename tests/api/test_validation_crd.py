"""CustomResourceDefinition names, versions and conversion (``structural.crd_errors``),
as apiextensions-apiserver's validation words them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetrio.api.structural import crd_errors

SCHEMA = {"openAPIV3Schema": {"type": "object"}}


def _crd() -> dict[str, Any]:
    return {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": SCHEMA},
                {"name": "v1beta1", "served": True, "storage": False, "schema": SCHEMA},
            ],
        },
    }


def _found(crd: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e.field, str(e.type), e.message) for e in crd_errors(crd)]


def test_valid_crd_passes() -> None:
    assert _found(_crd()) == []
    webhook = _crd()
    webhook["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {"url": "https://x.example.com"},
            "conversionReviewVersions": ["v1"],
        },
    }
    assert _found(webhook) == []


def _with(path: str, value: Any) -> dict[str, Any]:
    crd = _crd()
    target: Any = crd
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[last] = value
    return crd


@pytest.mark.parametrize(
    ("crd", "field", "reason", "fragment"),
    [
        (
            _with("spec.group", "example"),
            "spec.group",
            "FieldValueInvalid",
            "should be a domain with at least one dot",
        ),
        (
            _with("spec.scope", "Galaxy"),
            "spec.scope",
            "FieldValueNotSupported",
            '"Namespaced", "Cluster"',
        ),
        (
            _with("spec.names.kind", "Wid_get"),
            "spec.names.kind",
            "FieldValueInvalid",
            "may have mixed case, but should otherwise match: a DNS-1035 label",
        ),
        (
            _with("spec.names.listKind", "Widget"),
            "spec.names.listKind",
            "FieldValueInvalid",
            "kind and listKind may not be the same",
        ),
        (
            _with("spec.names.listKind", "Widget List"),
            "spec.names.listKind",
            "FieldValueInvalid",
            "may have mixed case",
        ),
        (
            _with("spec.names.plural", "Widgets"),
            "spec.names.plural",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            _with("spec.names.categories", ["all", "Bad"]),
            "spec.names.categories[1]",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            _with("spec.versions.1.name", "1beta"),
            "spec.versions[1].name",
            "FieldValueInvalid",
            "a DNS-1035 label",
        ),
        (
            _with("spec.versions.1.name", "v1"),
            "spec.versions",
            "FieldValueInvalid",
            "must contain unique version names",
        ),
        (
            _with("spec.versions.1.storage", True),
            "spec.versions",
            "FieldValueInvalid",
            "must have exactly one version marked as storage version",
        ),
        (
            _with("spec.conversion", {"strategy": "Magic"}),
            "spec.conversion.strategy",
            "FieldValueNotSupported",
            '"None", "Webhook"',
        ),
        (
            _with("spec.conversion", {"strategy": "Webhook"}),
            "spec.conversion.webhook.clientConfig",
            "FieldValueRequired",
            "required when strategy is set to Webhook",
        ),
        (
            _with("spec.conversion", {"strategy": "None", "webhook": {}}),
            "spec.conversion.webhook",
            "FieldValueForbidden",
            "should not be set when strategy is not set to Webhook",
        ),
    ],
)
def test_crd_rules(crd: dict[str, Any], field: str, reason: str, fragment: str) -> None:
    found = _found(crd)
    assert any(f == field and r == reason and fragment in m for f, r, m in found), found


def test_webhook_needs_exactly_one_target_and_review_versions() -> None:
    crd = _crd()
    crd["spec"]["conversion"] = {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {"url": "https://a", "service": {"name": "s", "namespace": "n"}}
        },
    }
    fields = {f: m for f, _, m in _found(copy.deepcopy(crd))}
    assert (
        "exactly one of url or service is required"
        in fields["spec.conversion.webhook.clientConfig"]
    )
    assert "spec.conversion.webhook.conversionReviewVersions" in fields
