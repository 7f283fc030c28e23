"""Entry point of the ``auth`` plugin.

Authentication by client certificates (``x509``) and static bearer tokens, and
authorization that lets the ``system:masters`` group do anything, as Kubernetes does
before RBAC is consulted. The tokens are the cluster's admin token
(``config["kubetrio"]["admin_token"]``, as user ``admin`` in ``system:masters``) and
those of the file given by ``--token-auth-file`` (``token_auth_file`` in the ``auth``
section), in kube-apiserver's format; ServiceAccount tokens from the TokenRequest
API (``satokens``), checked with the data directory's service account key; and, only
when ``--basic-auth-file`` is given, HTTP basic authentication (``passwords``, legacy).

The plugin is a class: each plugin manager (each cluster) has its own tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import (
    ApiCaches,
    AuthorizationAttributes,
    AuthorizationDecision,
    AuthRequest,
    PluginOptions,
    UserInfo,
)

from . import x509
from .passwords import StaticPasswords
from .satokens import ServiceAccountTokens
from .tokens import StaticTokens

SUPERUSER_GROUP = "system:masters"
ADMIN = UserInfo(name="admin", uid="admin", groups=(SUPERUSER_GROUP,))
"""Who presents the cluster's admin token."""


class AuthPlugin:
    """The ``auth`` plugin: static tokens, ``system:masters`` may do anything."""

    def __init__(self) -> None:
        self.tokens = StaticTokens({})
        self.passwords = StaticPasswords({})
        self.service_accounts = ServiceAccountTokens()

    @hookimpl
    def kubetrio_add_options(self, options: PluginOptions) -> None:
        """``--token-auth-file`` for ``server`` and ``up``."""
        options.add(
            "token-auth-file",
            help="More bearer tokens, in kube-apiserver's token file format: "
            'token,user,uid[,"group1,group2"] per line (auth plugin).',
            commands=("server", "up"),
            section="auth",
        )
        options.add(
            "basic-auth-file",
            help="Legacy (kube-apiserver removed it in 1.19): HTTP basic authentication, "
            'password,user,uid[,"group1,group2"] per line; off unless given (auth plugin).',
            commands=("server", "up"),
            section="auth",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Read ``config["auth"]["token_auth_file"]`` (if any) and the admin token."""
        path = (config.get("auth") or {}).get("token_auth_file")
        tokens = StaticTokens.from_file(Path(path)) if path else StaticTokens({})
        admin_token = (config.get("kubetrio") or {}).get("admin_token")
        if admin_token:
            tokens = StaticTokens({str(admin_token): ADMIN, **tokens.users})
        self.tokens = tokens
        passwords = (config.get("auth") or {}).get("basic_auth_file")
        self.passwords = (
            StaticPasswords.from_file(Path(passwords)) if passwords else StaticPasswords({})
        )
        data_dir = (config.get("kubetrio") or {}).get("data_dir")
        self.service_accounts = ServiceAccountTokens(Path(data_dir) if data_dir else None)

    @hookimpl
    def kubetrio_api_caches(self, caches: ApiCaches) -> None:
        """The ServiceAccounts and Pods that tokens name (a token dies with them)."""
        self.service_accounts.ask_for_caches(caches)

    @hookimpl
    def kubetrio_unconfigure(self) -> None:
        """Forget the tokens."""
        self.tokens = StaticTokens({})
        self.passwords = StaticPasswords({})
        self.service_accounts = ServiceAccountTokens()

    @hookimpl
    def kubetrio_authenticate(self, request: AuthRequest) -> UserInfo | None:
        """Authenticate a verified client certificate, else a bearer token from the
        token file or a ServiceAccount token (kube-apiserver asks its x509 authenticator
        before token ones), else a user and password of the basic-auth file."""
        return (
            x509.authenticate(request)
            or self.tokens.authenticate(request)
            or self.service_accounts.authenticate(request)
            or self.passwords.authenticate(request)
        )

    @hookimpl
    def kubetrio_authorize(
        self, user: UserInfo, attributes: AuthorizationAttributes
    ) -> AuthorizationDecision | None:
        """Allow members of ``system:masters`` everything; no opinion on anyone else."""
        if SUPERUSER_GROUP in user.groups:
            return AuthorizationDecision(allowed=True, reason=f"member of {SUPERUSER_GROUP}")
        return None


__kubetrio_plugin__ = AuthPlugin
"""What the entry point instantiates once per plugin manager."""
