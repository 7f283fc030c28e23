"""HTTP basic authentication from a static password file (legacy).

kube-apiserver's ``--basic-auth-file`` (removed upstream in 1.19, kept here because the
seed lists user/password authentication): CSV lines ``password,user,uid[,"group1,group2"]``,
blank lines and ``#`` comments ignored. A request with ``Authorization: Basic`` whose user
is unknown or whose password is wrong is refused (401), as kube-apiserver's basic-auth
authenticator refused it, never treated as anonymous.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from pathlib import Path

from kubetrio.providers import AuthRequest, UserInfo

from .tokens import parse_user_lines


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header; None without one (or when
    it is not base64 of ``user:password``)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class StaticPasswords:
    """Users and their passwords, read once from a password file."""

    def __init__(self, users: dict[str, tuple[str, UserInfo]]) -> None:
        self._users = users

    @classmethod
    def from_file(cls, path: Path) -> StaticPasswords:
        """Parse a password file; raise :class:`~.tokens.TokenFileError` naming the bad
        line."""
        return cls.from_text(path.read_text(), source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<passwords>") -> StaticPasswords:
        """Parse password-file text; ``source`` names it in errors. A user listed twice
        keeps the last line, as kube-apiserver's password file did."""
        rows = parse_user_lines(text, source=source, secret="password")
        return cls({user.name: (password, user) for password, user in rows})

    def authenticate(self, request: AuthRequest) -> UserInfo | None:
        """The user of a ``Basic`` header whose password matches, or None."""
        credentials = basic_credentials(request.headers)
        if credentials is None:
            return None
        name, password = credentials
        known = self._users.get(name)
        # Compare even for an unknown user, so timing tells nothing about who exists.
        expected, user = known if known is not None else ("", None)
        matches = hmac.compare_digest(expected.encode(), password.encode())
        return user if matches and user is not None else None
