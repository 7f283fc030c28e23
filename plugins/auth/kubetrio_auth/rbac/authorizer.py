"""The RBAC authorizer: Roles, ClusterRoles and their bindings, read from API caches.

As upstream's ``plugin/pkg/auth/authorizer/rbac``: the ClusterRoleBindings that name the
user (by name, group or ServiceAccount) grant their ClusterRole's rules everywhere; the
RoleBindings of the request's namespace grant their Role's (or ClusterRole's) rules in
that namespace. A request is allowed when one such rule allows it; otherwise RBAC has no
opinion and the next authorizer decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubetrio.providers import ApiCaches, AuthorizationAttributes, KubeObject, ObjectCache, UserInfo

from .rules import CompiledRule, Rule

GROUP = "rbac.authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def service_account_user(namespace: str, name: str) -> str:
    """The user name a ServiceAccount's tokens authenticate as."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def applies_to(subject: KubeObject, user: UserInfo, binding_namespace: str) -> bool:
    """Whether a binding's subject is this user (upstream's ``appliesToUser``)."""
    kind, name = subject.get("kind"), str(subject.get("name", ""))
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)
        return user.name == service_account_user(namespace, name)
    return False


def describe_subject(subject: KubeObject, binding_namespace: str) -> str:
    """A subject as upstream names it in reasons: ``User "jane"``,
    ``ServiceAccount "builder/ci"``."""
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f'{kind} "{name}"'


@dataclass
class Grant:
    """The rules one binding gives a user, and how to name that binding in a reason."""

    source: str
    rules: list[Rule]


@dataclass
class Visit:
    """The grants that apply to a user in a namespace, and what could not be resolved."""

    grants: list[Grant] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rules(self) -> list[Rule]:
        """Every rule of every grant."""
        return [rule for grant in self.grants for rule in grant.rules]


Compiled = tuple[str, list[CompiledRule]]
"""A grant as the authorizer checks it: how to name its binding, its compiled rules."""
MEMO_SIZE = 4096
"""How many (user, namespace) pairs' grants are remembered between RBAC changes."""


class _Invalidate:
    """A cache handler forgetting the remembered grants on any change."""

    def __init__(self, memo: dict[Any, Any]) -> None:
        self.memo = memo

    def on_add(self, obj: KubeObject) -> None:
        self.memo.clear()

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.memo.clear()

    def on_delete(self, obj: KubeObject) -> None:
        self.memo.clear()


class RBACAuthorizer:
    """Evaluates requests against the cached RBAC objects.

    The grants of a user in a namespace — which bindings apply, their roles' rules as
    :class:`CompiledRule` — are remembered until any Role, ClusterRole or binding
    changes, so a request costs a dictionary lookup and its rules' checks rather than a
    walk over every binding (upstream indexes its rule resolution similarly).
    """

    def __init__(self) -> None:
        self.roles: ObjectCache | None = None
        self.cluster_roles: ObjectCache | None = None
        self.role_bindings: ObjectCache | None = None
        self.cluster_role_bindings: ObjectCache | None = None
        self._memo: dict[tuple[str, tuple[str, ...], str], list[Compiled | str]] = {}

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """Ask the API server for the four RBAC caches."""
        self.roles = caches.informer(API_VERSION, "roles")
        self.cluster_roles = caches.informer(API_VERSION, "clusterroles")
        self.role_bindings = caches.informer(API_VERSION, "rolebindings")
        self.cluster_role_bindings = caches.informer(API_VERSION, "clusterrolebindings")
        for cache in (
            self.roles,
            self.cluster_roles,
            self.role_bindings,
            self.cluster_role_bindings,
        ):
            cache.add_handler(_Invalidate(self._memo))

    def _grants(self, user: UserInfo, namespace: str) -> list[Compiled | str]:
        key = (user.name, tuple(user.groups), namespace)
        found = self._memo.get(key)
        if found is None:
            found = [
                item
                if isinstance(item, str)
                else (item.source, [CompiledRule(r) for r in item.rules])
                for item in self.visit(user, namespace)
            ]
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        return found

    def role_rules(self, ref: KubeObject, namespace: str) -> tuple[list[Rule], str]:
        """The rules of the role a ``roleRef`` names, or an error saying it is missing."""
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        if kind == "ClusterRole":
            cache, where, resource = self.cluster_roles, "", "clusterrole"
        elif kind == "Role":
            cache, where, resource = self.roles, namespace, "role"
        else:
            return [], f"unknown roleRef kind {kind!r}"
        role = cache.get(name, where) if cache is not None else None
        if role is None:
            # Worded as upstream's listers word it (singular resource).
            return [], f'{resource}.{GROUP} "{name}" not found'
        return list(role.get("rules") or ()), ""

    def visit(self, user: UserInfo, namespace: str) -> Iterator[Grant | str]:
        """The grants applying to ``user`` (cluster-wide first, then in ``namespace``),
        and an error string for each binding whose role is missing."""
        for binding in self.cluster_role_bindings.list() if self.cluster_role_bindings else []:
            subject = _subject_for(binding, user, "")
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules, error = self.role_rules(ref, "")
            name = binding["metadata"]["name"]
            yield error or Grant(
                f'ClusterRoleBinding "{name}" of {ref.get("kind")} "{ref.get("name")}" '
                f"to {describe_subject(subject, '')}",
                rules,
            )
        if not namespace or self.role_bindings is None:
            return
        for binding in self.role_bindings.list(namespace):
            subject = _subject_for(binding, user, namespace)
            if subject is None:
                continue
            ref = binding.get("roleRef") or {}
            rules, error = self.role_rules(ref, namespace)
            name = binding["metadata"]["name"]
            yield error or Grant(
                f'RoleBinding "{name}/{namespace}" of {ref.get("kind")} "{ref.get("name")}" '
                f"to {describe_subject(subject, namespace)}",
                rules,
            )

    def authorize(self, user: UserInfo, attributes: AuthorizationAttributes) -> tuple[bool, str]:
        """(allowed, reason): the reason names the binding that allows, or says which
        bindings could not be resolved when none does."""
        errors = []
        for found in self._grants(user, attributes.namespace):
            if isinstance(found, str):
                errors.append(found)
                continue
            source, rules = found
            for rule in rules:
                if rule.allows(attributes):
                    return True, f"RBAC: allowed by {source}"
        if not errors:
            return False, ""
        # As upstream's aggregate error: one as is, several in brackets.
        return False, f"RBAC: {errors[0]}" if len(errors) == 1 else f"RBAC: [{', '.join(errors)}]"

    def rules_for(self, user: UserInfo, namespace: str) -> Visit:
        """Every rule ``user`` holds in ``namespace`` (cluster-wide ones included)."""
        result = Visit()
        for found in self.visit(user, namespace):
            if isinstance(found, str):
                result.errors.append(found)
            else:
                result.grants.append(found)
        return result


def _subject_for(binding: KubeObject, user: UserInfo, namespace: str) -> KubeObject | None:
    for subject in binding.get("subjects") or ():
        if applies_to(subject, user, namespace):
            return dict(subject)
    return None
