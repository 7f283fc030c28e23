"""The ``certificates`` plugin's parts without a server: bootstrap token Secrets to users,
the signers' rules, the signed certificate's usages and duration, and the CSR admission
refusing another node's identity; and the token cleaner against an in-process API server."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from kubetrio_auth.certificates import bootstraptokens
from kubetrio_auth.certificates.controllers import TokenCleaner, duration
from kubetrio_auth.certificates.csr import client_problem, kubelet_client_problem
from kubetrio_auth.certificates.plugin import CertificatesPlugin

from kubetrio.apiserver import open_apiserver
from kubetrio.cli._token import parse_duration, token_secret
from kubetrio.client import Client, ClientError
from kubetrio.pki import certificate_request, ensure_cluster_pki, new_private_key, sign_request
from kubetrio.providers import AdmissionRequest, UserInfo
from kubetrio.store import open_store
from tests.kit import wait_for

TOKEN = "abcdef.0123456789abcdef"


def stored(secret: dict[str, Any]) -> dict[str, Any]:
    """A Secret as the API server stores it: ``stringData`` folded into ``data``."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
    return {**{k: v for k, v in secret.items() if k != "stringData"}, "data": data}


def test_a_good_token_is_its_bootstrap_user() -> None:
    secret = stored(token_secret(TOKEN, datetime.timedelta(hours=1)))
    user = bootstraptokens.user_of(TOKEN, secret)
    assert user is not None
    assert user.name == "system:bootstrap:abcdef"
    assert user.groups == (
        "system:bootstrappers",
        "system:bootstrappers:kubetrio:default-node-token",
    )
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}


@pytest.mark.parametrize(
    ("token", "change"),
    [
        ("abcdef.0123456789abcdeX", {}),  # not a token's shape
        ("abcdef.ffffffffffffffff", {}),  # wrong secret
        (TOKEN, {"expiration": "2020-01-01T00:00:00Z"}),
        (TOKEN, {"expiration": "tomorrow"}),
        (TOKEN, {"usage-bootstrap-authentication": "false"}),
        (TOKEN, {"auth-extra-groups": "system:masters"}),
        (TOKEN, {"token-id": "zzzzzz"}),
    ],
)
def test_bad_tokens_authenticate_nobody(token: str, change: dict[str, str]) -> None:
    secret = token_secret(TOKEN, datetime.timedelta(hours=1))
    secret["stringData"].update(change)
    assert bootstraptokens.user_of(token, stored(secret)) is None


def test_a_token_being_deleted_or_of_another_type_authenticates_nobody() -> None:
    secret = stored(token_secret(TOKEN, datetime.timedelta(0)))
    assert bootstraptokens.user_of(TOKEN, secret) is not None  # ttl 0: never expires
    assert "expiration" not in secret["data"]
    deleting = {**secret, "metadata": {**secret["metadata"], "deletionTimestamp": "x"}}
    assert bootstraptokens.user_of(TOKEN, deleting) is None
    assert bootstraptokens.user_of(TOKEN, {**secret, "type": "Opaque"}) is None


def test_durations_parse_as_go_durations() -> None:
    assert parse_duration("24h") == datetime.timedelta(hours=24)
    assert parse_duration("1h30m") == datetime.timedelta(minutes=90)
    assert parse_duration("0") == datetime.timedelta(0)
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("1d")


def request_for(common_name: str, organizations: list[str]) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(
        certificate_request(new_private_key(), common_name, organizations)
    )


def test_the_kubelet_signers_rules() -> None:
    usages = ["digital signature", "client auth"]
    node = request_for("system:node:a", ["system:nodes"])
    assert kubelet_client_problem(node, usages) == ""
    assert kubelet_client_problem(node, [*usages, "key encipherment"]) == ""
    assert kubelet_client_problem(node, ["client auth"]).startswith("usages did not match")
    assert (
        kubelet_client_problem(request_for("system:node:a", ["x"]), usages)
        == "subject organization is not system:nodes"
    )
    assert (
        kubelet_client_problem(request_for("jane", ["system:nodes"]), usages)
        == "subject common name does not begin with system:node:"
    )
    assert client_problem(["client auth"]) == ""
    assert client_problem(["server auth", "client auth"]) == (
        "invalid usage for client certificate: server auth"
    )
    assert client_problem(["digital signature"]) == (
        "missing required usage for client certificate: client auth"
    )


def test_signing_honours_usages_and_the_requested_duration(tmp_path: Any) -> None:
    pki = ensure_cluster_pki(tmp_path)
    request = request_for("jane", ["dev"])
    csr = {"spec": {"expirationSeconds": 3600}}
    pem = sign_request(
        pki.client_ca, request, usages=["digital signature", "client auth"], validity=duration(csr)
    )
    cert = x509.load_pem_x509_certificate(pem)
    assert pki.client_ca.signed(cert)
    assert cert.subject == request.subject
    assert cert.public_key() == request.public_key()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == datetime.timedelta(minutes=65)  # an hour, backdated five minutes
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Below 600 s means 600 s, above a year means a year.
    assert duration({"spec": {"expirationSeconds": 60}}) == datetime.timedelta(seconds=600)
    assert duration({"spec": {"expirationSeconds": 10**9}}) == datetime.timedelta(days=365)
    assert duration({"spec": {}}) == datetime.timedelta(days=365)


class Nodes:
    """A stand-in Node cache holding one registered node."""

    def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        return {"metadata": {"name": name}} if name == "registered" else None


def admit(user: UserInfo, common_name: str, organizations: list[str], signer: str) -> Any:
    plugin = CertificatesPlugin()
    plugin.nodes = Nodes()  # type: ignore[assignment]
    request = certificate_request(new_private_key(), common_name, organizations)
    obj = {
        "spec": {
            "request": base64.b64encode(request).decode(),
            "signerName": signer,
            "usages": ["client auth"],
        }
    }
    return plugin.kubetrio_admission_validate(
        AdmissionRequest(
            operation="CREATE",
            user=user,
            api_group="certificates.k8s.io",
            api_version="v1",
            kind="CertificateSigningRequest",
            resource="certificatesigningrequests",
            name="x",
            object=obj,
        )
    )


KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"


def test_admission_refuses_another_nodes_identity_and_masters() -> None:
    node_a = UserInfo(name="system:node:a", groups=("system:nodes", "system:authenticated"))
    assert admit(node_a, "system:node:a", ["system:nodes"], KUBELET) is None
    assert admit(node_a, "system:node:b", ["system:nodes"], KUBELET) == [
        'node "a" may only request a client certificate for itself, not for "system:node:b"'
    ]
    bootstrapper = UserInfo(name="system:bootstrap:abcdef", groups=("system:bootstrappers",))
    assert admit(bootstrapper, "system:node:new", ["system:nodes"], KUBELET) is None
    (refused,) = admit(bootstrapper, "system:node:registered", ["system:nodes"], KUBELET)
    assert refused.startswith('node "registered" is already registered')
    admin = UserInfo(name="admin", groups=("system:masters",))
    assert admit(admin, "eve", ["system:masters"], "kubernetes.io/kube-apiserver-client") == [
        "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
    ]


async def test_the_token_cleaner_deletes_tokens_as_they_expire(tmp_path: Path) -> None:
    """An expired token goes as soon as it is stored, a live one when it expires — not at
    the cleaner's next periodic look, an hour away here; other Secrets stay."""
    cleaner = TokenCleaner()
    cleaner.interval = 3600
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store) as running,
        trio.open_nursery() as nursery,
    ):
        client = Client.in_process(running.api)
        await nursery.start(cleaner.run, client)
        later = token_secret("later0.0123456789abcdef", datetime.timedelta(hours=1))
        soon = token_secret("soon00.0123456789abcdef", datetime.timedelta(seconds=2))
        expired = token_secret("gone00.0123456789abcdef", datetime.timedelta(hours=1))
        expired["stringData"]["expiration"] = "2020-01-01T00:00:00Z"
        other = {"metadata": {"name": "other", "namespace": "kube-system"}, "type": "Opaque"}
        for secret in (later, soon, expired, other):
            await client.create("v1", "secrets", secret, namespace="kube-system")

        async def gone(name: str) -> bool:
            try:
                await client.get("v1", "secrets", name, namespace="kube-system")
            except ClientError as exc:
                return exc.code == 404
            return False

        await wait_for(lambda: gone("bootstrap-token-gone00"), timeout=10)
        await wait_for(lambda: gone("bootstrap-token-soon00"), timeout=10)
        assert not await gone("bootstrap-token-later0") and not await gone("other")
        nursery.cancel_scope.cancel()
