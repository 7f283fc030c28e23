"""Entry point of the ``auth`` plugin.

Authentication by static bearer tokens (``token_auth_file`` in the ``auth`` section of the
configuration), and authorization that lets the ``system:masters`` group do anything, as
Kubernetes does before RBAC is consulted. RBAC, client certificates and ServiceAccount
tokens come with the authentication issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import AuthorizationAttributes, AuthorizationDecision, AuthRequest, UserInfo

from .tokens import StaticTokens

SUPERUSER_GROUP = "system:masters"

_tokens = StaticTokens({})


@hookimpl
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Read the token file named by ``config["auth"]["token_auth_file"]``, if any."""
    global _tokens
    path = (config.get("auth") or {}).get("token_auth_file")
    _tokens = StaticTokens.from_file(Path(path)) if path else StaticTokens({})


@hookimpl
def kubetrio_authenticate(request: AuthRequest) -> UserInfo | None:
    """Authenticate a bearer token from the token file."""
    return _tokens.authenticate(request)


@hookimpl
def kubetrio_authorize(
    user: UserInfo, attributes: AuthorizationAttributes
) -> AuthorizationDecision | None:
    """Allow members of ``system:masters`` everything; no opinion on anyone else."""
    if SUPERUSER_GROUP in user.groups:
        return AuthorizationDecision(allowed=True, reason=f"member of {SUPERUSER_GROUP}")
    return None
