"""Entry point of the ``rbac`` plugin: the ``--authorization-mode`` chain.

``--authorization-mode`` is kube-apiserver's: a comma-separated list of ``Node``,
``RBAC``, ``AlwaysAllow`` and ``AlwaysDeny``, asked in order (``Node`` is the ``node``
plugin's authorizer, asked before this plugin's); the first that allows decides, and a
request none allows is forbidden. With ``RBAC`` in the list the plugin asks the API server
for caches of the RBAC objects, runs the default-policy and ClusterRole-aggregation
controllers, checks writes to RBAC objects for escalation, and lists a user's rules for
SelfSubjectRulesReviews.

Its authorizer runs last (``trylast``), after the auth plugin's ``system:masters`` check
and any other plugin's authorizer, as the end of the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import (
    AdmissionRequest,
    ApiCaches,
    AuthorizationAttributes,
    AuthorizationDecision,
    Controller,
    KubeObject,
    PluginOptions,
    UserInfo,
)

from . import escalation
from .aggregation import ClusterRoleAggregation
from .authorizer import RBACAuthorizer
from .bootstrap import BootstrapPolicy

log = logging.getLogger("kubetrio_auth.rbac")

MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")
DEFAULT_AUTHORIZATION_MODE = "AlwaysAllow"
"""For a cluster embedded in a program (``open_cluster``): a single-user control plane,
often served over plain HTTP, to which kubectl sends no bearer token."""
SERVER_AUTHORIZATION_MODE = "Node,RBAC"
"""For ``kubetrio server``/``up`` (HTTPS, client certificates): secure by default."""
SUPERUSER_GROUP = "system:masters"
EVERYTHING: KubeObject = {
    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    "incomplete": False,
}
"""What an authorizer allowing everything lists in a SelfSubjectRulesReview."""


def parse_modes(value: str) -> tuple[str, ...]:
    """The modes of an ``--authorization-mode`` value; ValueError naming a bad one."""
    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    for mode in modes:
        if mode not in MODES:
            raise ValueError(
                f"--authorization-mode: unknown mode {mode!r} (one of {', '.join(MODES)})"
            )
    if not modes:
        raise ValueError("--authorization-mode: no mode given")
    return modes


def configured_modes(config: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """The modes ``kubetrio_configure``'s ``config`` asks for (``auth.authorization_mode``,
    else the default of the command), and an error: a bad value means ``AlwaysDeny``."""
    value = str((config.get("auth") or {}).get("authorization_mode") or "")
    command = (config.get("kubetrio") or {}).get("command")
    default = SERVER_AUTHORIZATION_MODE if command == "server" else DEFAULT_AUTHORIZATION_MODE
    try:
        return parse_modes(value or default), ""
    except ValueError as exc:
        return ("AlwaysDeny",), str(exc)


class RBACPlugin:
    """The ``rbac`` plugin; one instance per plugin manager (cluster)."""

    def __init__(self) -> None:
        self.modes: tuple[str, ...] = (DEFAULT_AUTHORIZATION_MODE,)
        self.error = ""
        self.rbac = RBACAuthorizer()

    @property
    def enabled(self) -> bool:
        """Whether RBAC is one of the configured modes."""
        return "RBAC" in self.modes

    @hookimpl
    def kubetrio_add_options(self, options: PluginOptions) -> None:
        """``--authorization-mode`` for ``server`` and ``up``."""
        options.add(
            "authorization-mode",
            help="Ordered comma-separated authorizers: Node, RBAC, AlwaysAllow, AlwaysDeny "
            f"(rbac plugin; default {SERVER_AUTHORIZATION_MODE} for server and up, "
            f"{DEFAULT_AUTHORIZATION_MODE} for an embedded cluster).",
            commands=("server", "up"),
            section="auth",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Read ``config["auth"]["authorization_mode"]``; a bad value denies everything
        (fail closed) rather than leaving the requests to the permissive default."""
        self.modes, self.error = configured_modes(config)
        if self.error:
            log.error("%s: every request will be forbidden", self.error)

    @hookimpl
    def kubetrio_unconfigure(self) -> None:
        """Back to the default mode."""
        self.modes, self.error = (DEFAULT_AUTHORIZATION_MODE,), ""
        self.rbac = RBACAuthorizer()

    @hookimpl
    def kubetrio_register_controllers(self, register: Callable[[Controller], None]) -> None:
        """With RBAC: the default-policy reconciler and the ClusterRole aggregator."""
        if self.enabled:
            register(BootstrapPolicy())
            register(ClusterRoleAggregation())

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """With RBAC: Roles, ClusterRoles and their bindings."""
        if self.enabled:
            self.rbac.ask_for_caches(caches)

    def decide(self, user: UserInfo, attributes: AuthorizationAttributes) -> AuthorizationDecision:
        """The chain's decision: the first mode that allows, else forbidden."""
        if SUPERUSER_GROUP in user.groups:
            return AuthorizationDecision(allowed=True, reason=f"member of {SUPERUSER_GROUP}")
        reason = self.error
        for mode in self.modes:  # "Node" is the node plugin's, asked before this one
            if mode == "AlwaysAllow":
                return AuthorizationDecision(allowed=True)
            if mode == "RBAC":
                allowed, why = self.rbac.authorize(user, attributes)
                if allowed:
                    return AuthorizationDecision(allowed=True, reason=why)
                reason = reason or why
        return AuthorizationDecision(allowed=False, reason=reason)

    @hookimpl(trylast=True)
    def kubetrio_authorize(
        self, user: UserInfo, attributes: AuthorizationAttributes
    ) -> AuthorizationDecision | None:
        """The end of the chain: allowed by a mode, or forbidden."""
        return self.decide(user, attributes)

    @hookimpl
    def kubetrio_admission_validate(self, request: AdmissionRequest) -> list[str] | None:
        """With RBAC: refuse roles and bindings granting what their author does not hold."""
        if not self.enabled:
            return None
        return escalation.check(
            request, self.rbac, lambda user, attrs: self.decide(user, attrs).allowed
        )

    @hookimpl
    def kubetrio_rules_for(self, user: UserInfo, namespace: str) -> KubeObject | None:
        """The rules ``user`` holds in ``namespace``, as a SubjectRulesReviewStatus."""
        if SUPERUSER_GROUP in user.groups or self.modes[0] == "AlwaysAllow":
            return dict(EVERYTHING)
        if not self.enabled:
            return None
        held = self.rbac.rules_for(user, namespace)
        status: KubeObject = {
            "resourceRules": [
                {
                    key: list(rule[source])
                    for key, source in (
                        ("verbs", "verbs"),
                        ("apiGroups", "apiGroups"),
                        ("resources", "resources"),
                        ("resourceNames", "resourceNames"),
                    )
                    if rule.get(source)
                }
                for rule in held.rules
                if rule.get("resources")
            ],
            "nonResourceRules": [
                {"verbs": list(rule["verbs"]), "nonResourceURLs": list(rule["nonResourceURLs"])}
                for rule in held.rules
                if rule.get("nonResourceURLs")
            ],
            "incomplete": bool(held.errors),
        }
        if "AlwaysAllow" in self.modes:
            status["resourceRules"] += EVERYTHING["resourceRules"]
            status["nonResourceRules"] += EVERYTHING["nonResourceRules"]
        if held.errors:
            status["evaluationError"] = "; ".join(held.errors)
        return status


__kubetrio_plugin__ = RBACPlugin
"""What the entry point instantiates once per plugin manager."""
