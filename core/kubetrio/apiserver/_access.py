"""Who a request acts as, and the 403 for what it may not do.

kube-apiserver puts every authenticated user in ``system:authenticated``, lets a user
act as another through the ``Impersonate-*`` headers (``kubectl --as``/``--as-group``)
when it may ``impersonate`` each of them, and refuses requests no authorizer allows with
a Forbidden Status whose message kubectl prints as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from kubetrio.providers import AuthorizationAttributes, AuthorizationDecision, UserInfo

from ._status import ApiError

AUTHENTICATED = "system:authenticated"
"""The group of every authenticated user."""
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_NAME = "system:anonymous"

Decide = Callable[[UserInfo, AuthorizationAttributes], AuthorizationDecision]


def authenticated(user: UserInfo | None) -> UserInfo | None:
    """``user`` in ``system:authenticated``, as kube-apiserver's authenticator chain puts
    every authenticated user."""
    if user is None or AUTHENTICATED in user.groups:
        return user
    return dataclasses.replace(user, groups=(*user.groups, AUTHENTICATED))


def forbidden(user: UserInfo, attributes: AuthorizationAttributes, reason: str) -> ApiError:
    """kube-apiserver's 403 for a request no authorizer allows (``responsewriters.Forbidden``):
    ``pods "web" is forbidden: User "jane" cannot get resource "pods" in API group ""
    in the namespace "default"``."""
    if attributes.resource:
        resource = attributes.resource
        if attributes.subresource:
            resource += f"/{attributes.subresource}"
        scope = (
            f' in the namespace "{attributes.namespace}"'
            if attributes.namespace
            else " at the cluster scope"
        )
        message = (
            f'User "{user.name}" cannot {attributes.verb} resource "{resource}" '
            f'in API group "{attributes.api_group}"{scope}'
        )
    else:
        message = f'User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
    if reason:
        message += f": {reason}"
    if not attributes.resource:
        return ApiError(403, f"forbidden: {message}", details={})
    qualified = (
        f"{attributes.resource}.{attributes.api_group}"
        if attributes.api_group
        else attributes.resource
    )
    named = f'{qualified} "{attributes.name}"' if attributes.name else qualified
    details: dict[str, Any] = {"name": attributes.name} if attributes.name else {}
    if attributes.api_group:
        details["group"] = attributes.api_group
    details["kind"] = attributes.resource
    return ApiError(403, f"{named} is forbidden: {message}", details=details)


SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
IMPERSONATE_EXTRA = "impersonate-extra-"


def impersonate(headers: Mapping[str, str], user: UserInfo, decide: Decide) -> UserInfo:
    """The user a request acts as: ``user``, or the one its ``Impersonate-*`` headers name
    when ``user`` may ``impersonate`` each of them (kube-apiserver's impersonation filter,
    ``kubectl --as/--as-group``); a 403 naming the first one it may not.

    :param headers: the request's headers, names in lower case.
    """
    name = headers.get("impersonate-user", "")
    groups = [g.strip() for g in headers.get("impersonate-group", "").split(",") if g.strip()]
    uid = headers.get("impersonate-uid", "")
    extra = {
        unquote(key.removeprefix(IMPERSONATE_EXTRA)).lower(): tuple(
            v.strip() for v in value.split(",") if v.strip()
        )
        for key, value in headers.items()
        if key.startswith(IMPERSONATE_EXTRA)
    }
    if not name:
        if groups or uid or extra:
            raise ApiError(
                500,
                "Internal error occurred: requested impersonation of groups, extra or uid "
                "without impersonating a user",
            )
        return user
    wanted: list[AuthorizationAttributes] = []
    namespace, _, account = name.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and namespace and account:
        wanted.append(
            AuthorizationAttributes(
                verb="impersonate", resource="serviceaccounts", namespace=namespace, name=account
            )
        )
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    else:
        wanted.append(AuthorizationAttributes(verb="impersonate", resource="users", name=name))
    for group in groups:
        wanted.append(AuthorizationAttributes(verb="impersonate", resource="groups", name=group))
    for key, values in extra.items():
        for value in values:
            wanted.append(
                AuthorizationAttributes(
                    verb="impersonate",
                    api_group="authentication.k8s.io",
                    resource="userextras",
                    subresource=key,
                    name=value,
                )
            )
    if uid:
        wanted.append(
            AuthorizationAttributes(
                verb="impersonate", api_group="authentication.k8s.io", resource="uids", name=uid
            )
        )
    for attributes in wanted:
        decision = decide(user, attributes)
        if not decision.allowed:
            raise forbidden(user, attributes, decision.reason)
    if name == ANONYMOUS_NAME:
        if UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name=name, uid=uid, groups=tuple(groups), extra=extra)
