"""Entry point of the ``node`` plugin: the ``Node`` mode of ``--authorization-mode``.

On when the configured modes (the ``rbac`` plugin's option; ``Node,RBAC`` by default for
``kubetrio server`` and ``up``) name ``Node``. Its authorizer is asked after the
``system:masters`` check and before RBAC; when it has no opinion on a node's request,
its reason (``no relationship found between node 'a' and this object``) is kept in front
of the later authorizers' in the 403, as kube-apiserver's union of authorizers words it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import (
    ApiCaches,
    AuthorizationAttributes,
    AuthorizationDecision,
    KubeObject,
    UserInfo,
)

from ..rbac.plugin import configured_modes
from .authorizer import NodeAuthorizer, node_name


class NodePlugin:
    """The ``node`` plugin; one instance (one graph) per plugin manager."""

    def __init__(self) -> None:
        self.enabled = False
        self.authorizer = NodeAuthorizer()

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """On when ``Node`` is one of the authorization modes."""
        modes, _ = configured_modes(config)
        self.enabled = "Node" in modes

    @hookimpl
    def kubetrio_unconfigure(self) -> None:
        """Off, with an empty graph."""
        self.enabled = False
        self.authorizer = NodeAuthorizer()

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """When on: the pods and PersistentVolumes the graph is made of."""
        if self.enabled:
            self.authorizer.ask_for_caches(caches)

    # A wrapper, so the reason of "no opinion" reaches the final 403: a plain hook
    # returning None would lose it. (The later authorizers are asked even after a yes.)
    @hookimpl(wrapper=True)
    def kubetrio_authorize(
        self, user: UserInfo, attributes: AuthorizationAttributes
    ) -> Generator[None, AuthorizationDecision | None, AuthorizationDecision | None]:
        """Allow what a node's pods need; else say why not and let the chain go on."""
        mine = self.authorizer.authorize(user, attributes) if self.enabled else None
        later = yield
        if mine is None:
            return later
        allowed, reason = mine
        if allowed and (later is None or not later.allowed):
            return AuthorizationDecision(allowed=True, reason="Node: allowed")
        if later is None or later.allowed or not reason:
            return later
        return AuthorizationDecision(
            allowed=False, reason="\n".join(r for r in (reason, later.reason) if r)
        )

    @hookimpl(wrapper=True)
    def kubetrio_rules_for(
        self, user: UserInfo, namespace: str
    ) -> Generator[None, KubeObject | None, KubeObject | None]:
        """A node's rules cannot be listed: the review says it is incomplete, as upstream's
        Node authorizer answers, with what the other authorizers list."""
        status = yield
        if not self.enabled or node_name(user) is None or status is None:
            return status
        status = dict(status)
        status["incomplete"] = True
        error = "node authorizer does not support user rule resolution"
        status["evaluationError"] = "; ".join(
            e for e in (status.get("evaluationError"), error) if e
        )
        return status


__kubetrio_plugin__ = NodePlugin
"""What the entry point instantiates once per plugin manager."""
