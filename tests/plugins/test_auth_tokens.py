"""Static bearer tokens and the system:masters authorizer of plugins/auth."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubetrio_auth.tokens import StaticTokens, TokenFileError

from kubetrio import plugins
from kubetrio.providers import AuthorizationAttributes, AuthRequest

TOKENS = """# token,user,uid,groups
s3cret,alice,u-1,"system:masters,devs"
other,bob,u-2
"""


def bearer(token: str) -> AuthRequest:
    return AuthRequest(headers={"authorization": f"Bearer {token}"})


def test_token_file_users_and_groups() -> None:
    tokens = StaticTokens.from_text(TOKENS)
    alice = tokens.authenticate(bearer("s3cret"))
    assert (
        alice is not None and alice.name == "alice" and alice.groups == ("system:masters", "devs")
    )
    bob = tokens.authenticate(bearer("other"))
    assert bob is not None and bob.groups == ()
    assert tokens.authenticate(bearer("nope")) is None
    assert tokens.authenticate(AuthRequest(headers={"authorization": "Basic eDp5"})) is None
    assert tokens.authenticate(AuthRequest(headers={})) is None


def test_malformed_line_is_named() -> None:
    with pytest.raises(TokenFileError, match=r"tokens.csv:2: expected token,user,uid"):
        StaticTokens.from_text("a,b,c\nonlytoken\n", source="tokens.csv")


def test_plugin_authenticates_and_authorizes_through_hooks(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text(TOKENS)
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(token_file)}})
    alice = manager.authenticate(request=bearer("s3cret"))
    bob = manager.authenticate(request=bearer("other"))
    assert alice is not None and bob is not None
    attributes = AuthorizationAttributes(verb="delete", resource="pods", namespace="default")
    decision = manager.authorize(user=alice, attributes=attributes)
    assert decision is not None and decision.allowed
    assert manager.authorize(user=bob, attributes=attributes) is None
