"""Bootstrap tokens: short-lived bearer tokens a new node joins with, as upstream's
``plugin/pkg/auth/authenticator/token/bootstrap`` and ``k8s.io/cluster-bootstrap``.

A token ``<id>.<secret>`` (6 and 16 characters of ``[a-z0-9]``) is the Secret
``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token`` with the
keys ``token-id``, ``token-secret``, ``expiration`` (RFC 3339, optional),
``usage-bootstrap-authentication: "true"`` and ``auth-extra-groups`` (comma-separated,
each ``system:bootstrappers:...``). Its user is ``system:bootstrap:<id>`` in
``system:bootstrappers`` and the extra groups. A token whose Secret is missing, being
deleted, expired, not for authentication or holding another secret authenticates
nobody: the request is a 401. The Secrets are read from an API cache.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import logging
import re
from collections.abc import Mapping
from typing import Any

from kubetrio.providers import ApiCaches, AuthRequest, KubeObject, ObjectCache, UserInfo

from ..tokens import bearer_token

log = logging.getLogger("kubetrio_auth.bootstraptokens")

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
GROUP = "system:bootstrappers"
USER_PREFIX = "system:bootstrap:"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")


def secret_data(secret: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's ``data``, decoded (values that are not base64 UTF-8 left out)."""
    decoded: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            decoded[str(key)] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, ValueError):
            continue
    return decoded


def expiration(data: Mapping[str, str]) -> datetime.datetime | None:
    """When a token's Secret data says it expires (None: never).

    :raises ValueError: the ``expiration`` is not an RFC 3339 time.
    """
    value = data.get("expiration")
    if not value:
        return None
    when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"expiration {value!r} has no time zone")
    return when


def is_expired(secret: KubeObject, now: datetime.datetime | None = None) -> bool:
    """Whether a bootstrap token Secret has expired (a bad expiration counts as expired,
    as upstream's ``IsSecretExpired``)."""
    try:
        when = expiration(secret_data(secret))
    except ValueError:
        return True
    return when is not None and when <= (now or datetime.datetime.now(datetime.UTC))


def user_of(token: str, secret: KubeObject | None) -> UserInfo | None:
    """The user ``token`` authenticates as by ``secret`` (its Secret), or None."""
    match = TOKEN_RE.fullmatch(token)
    if match is None or secret is None:
        return None
    token_id, token_secret = match.groups()
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        log.debug("bootstrap token %s: its Secret is being deleted", token_id)
        return None
    if secret.get("type") != SECRET_TYPE:
        log.debug("bootstrap token %s: Secret of type %r", token_id, secret.get("type"))
        return None
    data = secret_data(secret)
    if data.get("token-id") != token_id or not hmac.compare_digest(
        data.get("token-secret", ""), token_secret
    ):
        log.debug("bootstrap token %s: wrong secret", token_id)
        return None
    if is_expired(secret):
        log.debug("bootstrap token %s: expired", token_id)
        return None
    if data.get("usage-bootstrap-authentication") != "true":
        log.debug("bootstrap token %s: not for authentication", token_id)
        return None
    extra = [g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip()]
    if any(not EXTRA_GROUP_RE.fullmatch(group) for group in extra):
        log.debug("bootstrap token %s: bad auth-extra-groups %r", token_id, extra)
        return None
    return UserInfo(
        name=USER_PREFIX + token_id,
        groups=tuple(dict.fromkeys([GROUP, *extra])),
    )


class BootstrapTokens:
    """Authenticates bootstrap tokens against the Secrets of ``kube-system``."""

    def __init__(self) -> None:
        self.secrets: ObjectCache | None = None

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """Tokens are looked up in a cache of Secrets."""
        self.secrets = caches.informer("v1", "secrets")

    def authenticate(self, request: AuthRequest) -> UserInfo | None:
        """The user of a bootstrap token, or None (not one, or refused)."""
        token = bearer_token(request.headers)
        match = TOKEN_RE.fullmatch(token)
        if match is None or self.secrets is None:
            return None
        secret = self.secrets.get(SECRET_PREFIX + match.group(1), NAMESPACE)
        return user_of(token, secret)
