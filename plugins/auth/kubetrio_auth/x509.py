"""Client certificates: the verified certificate's subject is the user.

As kube-apiserver's x509 authenticator (``CommonNameUserConversion``): the common name
(CN) is the user name and each organization (O) a group; every such user is also in
``system:authenticated``. The TLS handshake has verified the certificate against the
cluster's client CA already (a certificate from another CA never gets this far), so
only the subject is read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetrio.providers import AuthRequest, UserInfo

AUTHENTICATED = "system:authenticated"


def _subject(certificate: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``getpeercert()``'s subject, a tuple of RDNs of (name, value) pairs, flattened."""
    return [
        (str(name), str(value)) for rdn in certificate.get("subject") or () for name, value in rdn
    ]


def user_of_certificate(certificate: Mapping[str, Any]) -> UserInfo | None:
    """The user a verified client certificate names; None without a common name (upstream
    then leaves the request to the other authenticators)."""
    subject = _subject(certificate)
    names = [value for name, value in subject if name == "commonName"]
    if not names or not names[0]:
        return None
    groups = [value for name, value in subject if name == "organizationName"]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name=names[0], groups=tuple(groups))


def authenticate(request: AuthRequest) -> UserInfo | None:
    """The user of the request's verified client certificate, or None without one."""
    if not request.client_certificate:
        return None
    return user_of_certificate(request.client_certificate)
