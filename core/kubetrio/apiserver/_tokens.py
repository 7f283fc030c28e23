"""Service account tokens: the ``serviceaccounts/token`` subresource (TokenRequest).

``kubectl create token``, the kubelet's projected token volumes and tools such as Vault
ask the API server for a short-lived JWT naming a ServiceAccount. The token is shaped as
kube-apiserver's (RS256, ``kid`` from the public key, ``iss``/``sub``/``aud``/``exp``/
``iat``/``nbf``/``jti`` and the private ``kubernetes.io`` claim with the namespace, the
ServiceAccount and the object it is bound to) and signed by one RSA key per cluster,
kept in the data directory so tokens outlive a restart. Checking these tokens when they
come back as credentials is the authenticator's business, not this module's.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubetrio.kubeobject import KubeObject

from ._status import invalid

ISSUER = "https://kubernetes.default.svc.cluster.local"
"""kube-apiserver's default ``--service-account-issuer`` (and so its default audience)."""
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
BINDABLE_KINDS = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"


def _rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServiceAccountTokens:
    """Signs TokenRequests with one RSA key (made on first use, in ``key_file`` if given)."""

    def __init__(self, key_file: Path | None = None, *, issuer: str = ISSUER) -> None:
        self.key_file = key_file
        self.issuer = issuer
        self._key: rsa.RSAPrivateKey | None = None
        self._kid = ""
        self._lock = threading.Lock()

    def ensure_key(self) -> None:
        """Make (or load) the key now: API servers that share one signing key (``up
        --servers``) get copies of the file before they start."""
        self._signing_key()

    def _signing_key(self) -> tuple[rsa.RSAPrivateKey, str]:
        # Made lazily: most embedded servers (tests) never issue a token, and a 2048-bit
        # key costs tens of milliseconds.
        with self._lock:
            if self._key is None:
                self._key = self._load_or_make()
                der = self._key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                # kube-apiserver's key id: unpadded base64url of the SHA-256 of the DER key.
                digest = hashlib.sha256(der).digest()
                self._kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            return self._key, self._kid

    def _load_or_make(self) -> rsa.RSAPrivateKey:
        if self.key_file is not None and self.key_file.exists():
            loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{self.key_file} does not hold an RSA private key")
            return loaded
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if self.key_file is not None:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            self.key_file.touch(mode=0o600)
            self.key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return key

    def public_key_pem(self) -> bytes:
        """The verification key (PEM), for authenticators and tests."""
        key, _ = self._signing_key()
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def openid_configuration(self, external_address: str) -> KubeObject:
        """The OIDC discovery document (``/.well-known/openid-configuration``), as
        kube-apiserver serves it: the JWKS at ``https://<external address>/openid/v1/jwks``."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"https://{external_address}{JWKS_PATH}",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> KubeObject:
        """The key set tokens are verified with (``/openid/v1/jwks``): the public key as
        an RS256 signing JWK, ``kid`` as in the tokens' headers."""
        key, kid = self._signing_key()
        numbers = key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "use": "sig",
                    "kty": "RSA",
                    "kid": kid,
                    "alg": "RS256",
                    "n": _b64_uint(numbers.n),
                    "e": _b64_uint(numbers.e),
                }
            ]
        }

    def issue(
        self,
        request: KubeObject,
        service_account: KubeObject,
        bound: KubeObject | None = None,
        node: KubeObject | None = None,
        *,
        now: float | None = None,
    ) -> KubeObject:
        """Answer a TokenRequest for ``service_account``; ``bound`` is the object it names.

        ``node`` is the node of a bound pod (its name and uid go into the claims, as
        kube-apiserver 1.30+ does). Raises 422 for an expiration out of range.
        """
        meta = service_account["metadata"]
        name = str(meta["name"])
        spec = dict(request.get("spec") or {})
        expiration = spec.get("expirationSeconds")
        if expiration is None:
            expiration = DEFAULT_EXPIRATION
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            raise _invalid(name, "spec.expirationSeconds", expiration, "must be an integer")
        if expiration < MIN_EXPIRATION:
            raise _invalid(
                name,
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration less than 10 minutes",
            )
        if expiration > MAX_EXPIRATION:
            raise _invalid(
                name,
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration larger than 2^32 seconds",
            )
        audiences = [str(a) for a in spec.get("audiences") or []] or [self.issuer]
        issued = int(now if now is not None else time.time())
        private: KubeObject = {
            "namespace": meta["namespace"],
            "serviceaccount": {"name": name, "uid": meta.get("uid", "")},
        }
        if bound is not None:
            bound_meta = bound["metadata"]
            reference = {"name": bound_meta["name"], "uid": bound_meta.get("uid", "")}
            private[str(bound["kind"]).lower()] = reference
            if node is not None:
                private["node"] = {
                    "name": node["metadata"]["name"],
                    "uid": node["metadata"].get("uid", ""),
                }
        claims = {
            "aud": audiences,
            "exp": issued + expiration,
            "iat": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": issued,
            "sub": f"system:serviceaccount:{meta['namespace']}:{name}",
        }
        key, kid = self._signing_key()
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        spec["audiences"] = audiences
        spec["expirationSeconds"] = expiration
        spec.setdefault("boundObjectRef", None)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "creationTimestamp": _rfc3339(issued),
            },
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(issued + expiration)},
        }


def _b64_uint(value: int) -> str:
    """An unsigned integer as JWK wants it: big-endian bytes, unpadded base64url."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _invalid(name: str, field: str, value: object, message: str) -> Exception:
    return invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        [
            {
                "reason": "FieldValueInvalid",
                "field": field,
                "message": f"Invalid value: {value!r}: {message}",
            }
        ],
    )
