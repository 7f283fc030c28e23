"""Static bearer tokens, in the CSV format of kube-apiserver's ``--token-auth-file``.

Each line is ``token,user,uid[,"group1,group2"]``; blank lines and ``#`` comments are
ignored. A malformed line is an error that names the file and the line.
"""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Mapping
from pathlib import Path

from kubetrio.providers import AuthRequest, UserInfo


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; "" without one."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class TokenFileError(ValueError):
    """The token file cannot be read as ``token,user,uid[,groups]`` lines."""


def parse_user_lines(text: str, *, source: str, secret: str) -> list[tuple[str, UserInfo]]:
    """The ``secret,user,uid[,"group1,group2"]`` lines of a token or password file as
    (secret, user) pairs; :class:`TokenFileError` names the file and line of a bad one."""
    users: list[tuple[str, UserInfo]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3 or not row[0] or not row[1]:
            raise TokenFileError(
                f"{source}:{number}: expected {secret},user,uid[,groups], got {len(row)} field(s)"
            )
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        users.append((row[0], UserInfo(name=row[1], uid=row[2], groups=groups)))
    return users


class StaticTokens:
    """Bearer tokens read once from a token file."""

    def __init__(self, users: dict[str, UserInfo]) -> None:
        self._users = users

    @property
    def users(self) -> dict[str, UserInfo]:
        """The users by token (a copy)."""
        return dict(self._users)

    @classmethod
    def from_file(cls, path: Path) -> StaticTokens:
        """Parse a token file; raise :class:`TokenFileError` naming the bad line."""
        return cls.from_text(path.read_text(), source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<tokens>") -> StaticTokens:
        """Parse token-file text; ``source`` names it in errors."""
        return cls(dict(parse_user_lines(text, source=source, secret="token")))

    def authenticate(self, request: AuthRequest) -> UserInfo | None:
        """The user whose token is in the ``Authorization: Bearer`` header, or None."""
        token = bearer_token(request.headers)
        if not token:
            return None
        for known, user in self._users.items():
            # Constant-time comparison: don't leak how much of a token matched.
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None
