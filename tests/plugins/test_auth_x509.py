"""The x509 authenticator: a verified certificate's CN is the user, its O's the groups."""

from __future__ import annotations

from kubetrio_auth.x509 import authenticate, user_of_certificate

from kubetrio.providers import AuthRequest, UserInfo


def _cert(*subject: tuple[str, str]) -> dict[str, object]:
    """``getpeercert()``'s form: the subject as a tuple of one-pair RDNs."""
    return {"subject": tuple(((name, value),) for name, value in subject)}


def test_common_name_is_the_user_and_organizations_the_groups() -> None:
    cert = _cert(("organizationName", "dev"), ("organizationName", "ops"), ("commonName", "jane"))
    assert user_of_certificate(cert) == UserInfo(
        name="jane", groups=("dev", "ops", "system:authenticated")
    )


def test_no_common_name_is_no_user_and_no_certificate_is_no_opinion() -> None:
    assert user_of_certificate(_cert(("organizationName", "dev"))) is None
    assert authenticate(AuthRequest(headers={"authorization": "Bearer x"})) is None
