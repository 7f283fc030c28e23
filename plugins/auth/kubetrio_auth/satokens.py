"""ServiceAccount tokens as credentials: the JWTs the API server issues for TokenRequests
(``kubectl create token``), checked as kube-apiserver's service account authenticator
checks them.

A token is accepted when its RS256 signature verifies with the cluster's service account
key (``<data dir>/service-account.key``, the key the API server signs with), its issuer
and audience are the API server's, it has not expired, and the ServiceAccount it names
still exists with the same uid — and, for a token bound to a Pod, that Pod still exists
with the same uid (so the token dies with the pod), read from the API object caches.
The user is ``system:serviceaccount:<namespace>:<name>`` in the groups
``system:serviceaccounts`` and ``system:serviceaccounts:<namespace>``. A token that is
not one of ours (another issuer) is left to the other authenticators; one of ours that
fails a check is refused. PyJWT does the JWT work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from kubetrio.providers import ApiCaches, AuthRequest, ObjectCache, UserInfo

from .tokens import bearer_token

log = logging.getLogger("kubetrio_auth.satokens")

ISSUER = "https://kubernetes.default.svc.cluster.local"
"""kube-apiserver's default ``--service-account-issuer``, the API server's (``_tokens``)."""
KEY_FILE = "service-account.key"


class ServiceAccountTokens:
    """Authenticates bearer tokens issued by this cluster's TokenRequest API."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.key_file = data_dir / KEY_FILE if data_dir is not None else None
        self._public_key: Any = None
        self.service_accounts: ObjectCache | None = None
        self.pods: ObjectCache | None = None

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """The ServiceAccounts and Pods the tokens name are looked up in these."""
        if self.key_file is not None:
            self.service_accounts = caches.informer("v1", "serviceaccounts")
            self.pods = caches.informer("v1", "pods")

    def _key(self) -> Any:
        # Read on first use: the API server makes the key when it first issues a token.
        if self._public_key is None and self.key_file is not None and self.key_file.exists():
            private = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
            self._public_key = private.public_key()
        return self._public_key

    def authenticate(self, request: AuthRequest) -> UserInfo | None:
        """The ServiceAccount a token of ours names, or None (not ours, or refused)."""
        token = bearer_token(request.headers)
        if not token or token.count(".") != 2:
            return None
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") != ISSUER or (key := self._key()) is None:
            return None
        try:
            claims = jwt.decode(
                token, key, algorithms=["RS256"], audience=ISSUER, issuer=ISSUER, leeway=60
            )
        except jwt.PyJWTError as exc:
            log.debug("service account token refused: %s", exc)
            return None
        return self._user(claims)

    def _user(self, claims: Mapping[str, Any]) -> UserInfo | None:
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        namespace = str(private.get("namespace") or "")
        account = private.get("serviceaccount") or {}
        name, uid = str(account.get("name") or ""), str(account.get("uid") or "")
        if claims.get("sub") != f"system:serviceaccount:{namespace}:{name}":
            return None
        if not _alive(self.service_accounts, namespace, name, uid):
            log.debug("token of a deleted or replaced ServiceAccount %s/%s", namespace, name)
            return None
        pod = private.get("pod")
        extra: dict[str, tuple[str, ...]] = {}
        if isinstance(pod, dict):
            pod_name, pod_uid = str(pod.get("name") or ""), str(pod.get("uid") or "")
            if not _alive(self.pods, namespace, pod_name, pod_uid):
                log.debug("token bound to a deleted pod %s/%s", namespace, pod_name)
                return None
            extra = {
                "authentication.kubernetes.io/pod-name": (pod_name,),
                "authentication.kubernetes.io/pod-uid": (pod_uid,),
            }
        return UserInfo(
            name=f"system:serviceaccount:{namespace}:{name}",
            uid=uid,
            groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
            extra=extra,
        )


def _alive(cache: ObjectCache | None, namespace: str, name: str, uid: str) -> bool:
    """Whether the object still exists with that uid (no cache: it cannot be checked)."""
    if cache is None:
        return False
    found = cache.get(name, namespace)
    return found is not None and (found.get("metadata") or {}).get("uid") == uid
