"""Impersonation headers (apiserver/_access) and the default policy's reconciliation."""

from __future__ import annotations

import pytest
from kubetrio_auth.rbac.bootstrap import AUTOUPDATE, _reconciled, cluster_roles

from kubetrio.apiserver._access import impersonate
from kubetrio.apiserver._status import ApiError
from kubetrio.providers import AuthorizationAttributes, AuthorizationDecision, UserInfo

ADMIN = UserInfo(name="admin", groups=("system:masters", "system:authenticated"))
asked: list[AuthorizationAttributes] = []


def only_admin(user: UserInfo, attributes: AuthorizationAttributes) -> AuthorizationDecision:
    asked.append(attributes)
    return AuthorizationDecision(allowed=user.name == "admin")


def test_a_service_account_is_impersonated_with_its_groups_after_each_check() -> None:
    asked.clear()
    user = impersonate(
        {
            "impersonate-user": "system:serviceaccount:team:builder",
            "impersonate-uid": "u-1",
            "impersonate-extra-scopes": "a, b",
        },
        ADMIN,
        only_admin,
    )
    assert user == UserInfo(
        name="system:serviceaccount:team:builder",
        uid="u-1",
        groups=(
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated",
        ),
        extra={"scopes": ("a", "b")},
    )
    assert [(a.resource, a.subresource, a.namespace, a.name) for a in asked] == [
        ("serviceaccounts", "", "team", "builder"),
        ("groups", "", "", "system:serviceaccounts"),
        ("groups", "", "", "system:serviceaccounts:team"),
        ("userextras", "scopes", "", "a"),
        ("userextras", "scopes", "", "b"),
        ("uids", "", "", "u-1"),
    ]
    assert all(a.verb == "impersonate" for a in asked)


def test_impersonation_refusals() -> None:
    jane = UserInfo(name="jane", groups=("system:authenticated",))
    with pytest.raises(ApiError) as refused:
        impersonate({"impersonate-user": "system:serviceaccount:team:b"}, jane, only_admin)
    assert refused.value.code == 403
    assert refused.value.message == (
        'serviceaccounts "b" is forbidden: User "jane" cannot impersonate resource '
        '"serviceaccounts" in API group "" in the namespace "team"'
    )
    with pytest.raises(ApiError) as no_user:
        impersonate({"impersonate-group": "system:masters"}, ADMIN, only_admin)
    assert no_user.value.code == 500 and "without impersonating a user" in no_user.value.message
    assert impersonate({}, jane, only_admin) is jane


def test_reconcile_adds_back_what_is_missing_unless_autoupdate_is_off() -> None:
    view = next(r for r in cluster_roles() if r["metadata"]["name"] == "system:basic-user")
    trimmed = {**view, "rules": view["rules"][:1], "metadata": {"name": "system:basic-user"}}
    updated = _reconciled(trimmed, view)
    assert updated is not None and updated["rules"] == view["rules"]
    assert updated["metadata"]["annotations"] == {AUTOUPDATE: "true"}
    assert _reconciled(view, view) is None
    extra_rule = {**view, "rules": [*view["rules"], {"verbs": ["get"], "nonResourceURLs": ["/x"]}]}
    assert _reconciled(extra_rule, view) is None  # what an administrator added is kept
    frozen = {**trimmed, "metadata": {"name": "x", "annotations": {AUTOUPDATE: "false"}}}
    assert _reconciled(frozen, view) is None
