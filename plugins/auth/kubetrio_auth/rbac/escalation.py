"""Escalation prevention for Roles, ClusterRoles and their bindings.

As upstream's RBAC REST storage (``pkg/registry/rbac``): a user may create or change a
role only with rules they hold themselves, unless they may ``escalate`` that role; and
may bind a role only when they hold its rules, unless they may ``bind`` it. Members of
``system:masters`` may always do both.
"""

from __future__ import annotations

from collections.abc import Callable

from kubetrio.providers import (
    AdmissionRequest,
    AuthorizationAttributes,
    KubeObject,
    UserInfo,
)

from .authorizer import GROUP, RBACAuthorizer
from .rules import Rule, compact, describe, uncovered

SUPERUSER_GROUP = "system:masters"
ROLE_RESOURCES = ("roles", "clusterroles")
BINDING_RESOURCES = ("rolebindings", "clusterrolebindings")

Allows = Callable[[UserInfo, AuthorizationAttributes], bool]
"""Whether the authorizer chain allows a request (for ``escalate`` and ``bind``)."""


def _go_strings(values: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def not_held_message(user: UserInfo, missing: list[Rule]) -> str:
    """Upstream's message for rules a user tries to grant without holding them."""
    described = sorted({describe(rule) for rule in compact(missing)})
    return (
        f'user "{user.name}" (groups={_go_strings(user.groups)}) is attempting to grant RBAC '
        "permissions not currently held:\n" + "\n".join(described)
    )


def check(request: AdmissionRequest, rbac: RBACAuthorizer, allows: Allows) -> list[str]:
    """The reasons this write to an RBAC object is an escalation (empty: it is not)."""
    if request.api_group != GROUP or request.subresource or request.object is None:
        return []
    if request.operation not in ("CREATE", "UPDATE") or SUPERUSER_GROUP in request.user.groups:
        return []
    new, old = request.object, request.old_object or {}
    if request.resource in ROLE_RESOURCES:
        if request.operation == "UPDATE" and new.get("rules") == old.get("rules"):
            return []
        verb = "escalate"
        rules = list(new.get("rules") or ())
        target = AuthorizationAttributes(
            verb=verb,
            api_group=GROUP,
            resource=request.resource,
            namespace=request.namespace,
            name=request.name,
        )
        if allows(request.user, target):
            return []
        return _confirm_held(request.user, request.namespace, rules, rbac)
    if request.resource in BINDING_RESOURCES:
        ref: KubeObject = new.get("roleRef") or {}
        if request.operation == "UPDATE" and (
            ref == old.get("roleRef") and new.get("subjects") == old.get("subjects")
        ):
            return []
        bound = AuthorizationAttributes(
            verb="bind",
            api_group=str(ref.get("apiGroup") or GROUP),
            resource="clusterroles" if ref.get("kind") == "ClusterRole" else "roles",
            namespace=request.namespace,
            name=str(ref.get("name", "")),
        )
        if allows(request.user, bound):
            return []
        rules, error = rbac.role_rules(ref, request.namespace)
        if error:
            return [error]
        return _confirm_held(request.user, request.namespace, rules, rbac)
    return []


def _confirm_held(
    user: UserInfo, namespace: str, rules: list[Rule], rbac: RBACAuthorizer
) -> list[str]:
    held = rbac.rules_for(user, namespace)
    missing = uncovered(held.rules, rules)
    if not missing:
        return []
    message = not_held_message(user, missing)
    if held.errors:
        message += f"; resolution errors: [{' '.join(held.errors)}]"
    return [message]
