"""Entry point of the ``certificates`` plugin: joining nodes by bootstrap tokens and the
CertificateSigningRequest API's controllers.

For a cluster with a data directory (``kubetrio server``/``up``; the client CA is
``<data dir>/pki/client-ca.key``):

- bootstrap tokens authenticate (``bootstraptokens``);
- the ``csrsigning`` and ``csrapproving`` controllers sign and auto-approve CSRs, the
  ``tokencleaner`` deletes expired tokens, and kubeadm's bootstrap bindings are made
  (``controllers``);
- admission refuses CSRs upstream's ``CertificateSubjectRestriction`` refuses
  (``system:masters`` through ``kube-apiserver-client``) and those for another node's
  identity: a node asking for another node's name, a bootstrap token asking for the name
  of a node already registered.

An embedded cluster without a data directory gets none of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import (
    AdmissionRequest,
    ApiCaches,
    AuthRequest,
    Controller,
    ObjectCache,
    UserInfo,
)

from . import bootstraptokens
from .controllers import (
    BootstrapBindings,
    CSRApprover,
    CSRSigner,
    TokenCleaner,
    node_name_of,
)
from .csr import (
    KUBE_APISERVER_CLIENT,
    KUBELET_CLIENT,
    NODE_PREFIX,
    NODES_GROUP,
    parse_request,
    subject,
)

CLIENT_CA_KEY = Path("pki") / "client-ca.key"


class CertificatesPlugin:
    """The ``certificates`` plugin; one instance per plugin manager (cluster)."""

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.tokens = bootstraptokens.BootstrapTokens()
        self.nodes: ObjectCache | None = None

    @property
    def enabled(self) -> bool:
        """Whether this cluster has a data directory with a client CA to sign with."""
        return self.data_dir is not None and (self.data_dir / CLIENT_CA_KEY).exists()

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Note the data directory of a server (agents and embedded clusters have none
        with a client CA)."""
        section = config.get("kubetrio") or {}
        data_dir = section.get("data_dir")
        self.data_dir = Path(data_dir) if data_dir and section.get("command") == "server" else None

    @hookimpl
    def kubetrio_unconfigure(self) -> None:
        """Forget the data directory and caches."""
        self.data_dir = None
        self.tokens = bootstraptokens.BootstrapTokens()
        self.nodes = None

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """Secrets (bootstrap tokens) and Nodes (whose names are taken)."""
        if self.enabled:
            self.tokens.ask_for_caches(caches)
            self.nodes = caches.informer("v1", "nodes")

    @hookimpl
    def kubetrio_register_controllers(self, register: Callable[[Controller], None]) -> None:
        """The signer, the approver, the token cleaner and the bootstrap bindings."""
        if self.enabled and self.data_dir is not None:
            register(CSRSigner(self.data_dir))
            register(CSRApprover())
            register(TokenCleaner())
            register(BootstrapBindings())

    @hookimpl
    def kubetrio_authenticate(self, request: AuthRequest) -> UserInfo | None:
        """A bootstrap token's user (``system:bootstrap:<id>``)."""
        return self.tokens.authenticate(request) if self.enabled else None

    @hookimpl
    def kubetrio_admission_validate(self, request: AdmissionRequest) -> list[str] | None:
        """Refuse new CSRs for ``system:masters`` or for another node's identity."""
        if (
            request.operation != "CREATE"
            or request.resource != "certificatesigningrequests"
            or request.subresource
            or request.object is None
        ):
            return None
        spec = request.object.get("spec") or {}
        parsed = parse_request(request.object)
        if parsed is None:
            return None  # validation says what is wrong with it
        common_name, organizations = subject(parsed)
        signer = spec.get("signerName")
        if signer == KUBE_APISERVER_CLIENT and "system:masters" in organizations:
            return [
                f"use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
            ]
        if signer != KUBELET_CLIENT or not common_name.startswith(NODE_PREFIX):
            return None
        return self._node_identity_problems(request.user, node_name_of(common_name))

    def _node_identity_problems(self, user: UserInfo, wanted: str) -> list[str] | None:
        if user.name.startswith(NODE_PREFIX) and NODES_GROUP in user.groups:
            if user.name != NODE_PREFIX + wanted:
                return [
                    f'node "{node_name_of(user.name)}" may only request a client '
                    f'certificate for itself, not for "{NODE_PREFIX}{wanted}"'
                ]
            return None
        if (
            bootstraptokens.GROUP in user.groups
            and self.nodes is not None
            and self.nodes.get(wanted) is not None
        ):
            return [
                f'node "{wanted}" is already registered: a bootstrap token may not '
                "take over a registered node's identity (delete the Node to join "
                "again under that name)"
            ]
        return None


__kubetrio_plugin__ = CertificatesPlugin
"""What the entry point instantiates once per plugin manager."""
