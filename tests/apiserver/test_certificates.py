"""The CertificateSigningRequest API (``certificates.k8s.io/v1``) on an API server without
plugins: validation, the requester recorded, ``/approval`` and ``/status`` and what each
may change, and kubectl 1.27/1.33's ``certificate approve/deny`` and ``get csr``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetrio.pki import certificate_request, new_private_key
from tests.apiserver.test_kubectl import Kubectl

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
SIGNER = "example.com/signer"


def request_b64(common_name: str = "jane", organizations: tuple[str, ...] = ("dev",)) -> str:
    return base64.b64encode(
        certificate_request(new_private_key(), common_name, organizations)
    ).decode()


def csr(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request": request_b64(),
        "signerName": SIGNER,
        "usages": ["client auth"],
    }
    body.update(spec)
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": body,
    }


def causes(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {c["field"]: c["message"] for c in response.json()["details"]["causes"]}


async def test_discovery_lists_the_resource_with_its_short_name(http: httpx.AsyncClient) -> None:
    listed = (await http.get("/apis/certificates.k8s.io/v1")).json()
    by_name = {r["name"]: r for r in listed["resources"]}
    assert by_name["certificatesigningrequests"]["shortNames"] == ["csr"]
    assert not by_name["certificatesigningrequests"]["namespaced"]
    assert {"certificatesigningrequests/approval", "certificatesigningrequests/status"} <= set(
        by_name
    )


async def test_create_records_the_requester_and_starts_with_an_empty_status(
    http: httpx.AsyncClient,
) -> None:
    body = csr("mine", username="someone-else", groups=["system:masters"])
    body["status"] = {"certificate": "Zm9v", "conditions": [{"type": "Approved", "status": "True"}]}
    created = await http.post(CSRS, json=body)
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    # Who sent it (anonymous, on this server without authenticators), never the body's.
    assert spec["username"] == "system:anonymous"
    assert spec["groups"] == ["system:unauthenticated"]
    assert created.json()["status"] == {}


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"request": base64.b64encode(b"nonsense").decode()},
            "spec.request",
            "CERTIFICATE REQUEST",
        ),
        ({"signerName": ""}, "spec.signerName", "Required value"),
        ({"signerName": "nodomain"}, "spec.signerName", "fully qualified domain and path"),
        ({"usages": []}, "spec.usages", "Required value"),
        ({"usages": ["client auth", "flying"]}, "spec.usages[1]", 'Unsupported value: "flying"'),
        ({"usages": ["client auth", "client auth"]}, "spec.usages[1]", "Duplicate value"),
        ({"expirationSeconds": 599}, "spec.expirationSeconds", "less than 600 seconds"),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(
    http: httpx.AsyncClient, spec: dict[str, Any], field: str, message: str
) -> None:
    refused = await http.post(CSRS, json=csr("bad", **spec))
    assert message in causes(refused)[field]
    assert (await http.get(f"{CSRS}/bad")).status_code == 404


async def test_a_request_signed_by_another_key_is_refused(http: httpx.AsyncClient) -> None:
    pem = certificate_request(new_private_key(), "jane")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # a byte of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    refused = await http.post(
        CSRS, json=csr("tampered", request=base64.b64encode(tampered).decode())
    )
    assert "signature" in causes(refused)["spec.request"]


async def approve(http: httpx.AsyncClient, name: str, kind: str = "Approved") -> httpx.Response:
    current = (await http.get(f"{CSRS}/{name}")).json()
    current["status"]["conditions"] = [
        *(current["status"].get("conditions") or []),
        {"type": kind, "status": "True", "reason": "Test", "message": "by the test"},
    ]
    return await http.put(f"{CSRS}/{name}/approval", json=current)


async def test_approval_changes_only_conditions_and_may_not_be_undone(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.post(CSRS, json=csr("flow"))).status_code == 201
    approved = await approve(http, "flow")
    assert approved.status_code == 200, approved.text
    (condition,) = approved.json()["status"]["conditions"]
    assert condition["type"] == "Approved"
    assert condition["lastUpdateTime"] and condition["lastTransitionTime"]

    # Approved and Denied exclude each other.
    both = await approve(http, "flow", "Denied")
    assert "mutually exclusive" in causes(both)["status.conditions[1].type"]
    # A condition may not be removed, through /approval or anywhere.
    current = (await http.get(f"{CSRS}/flow")).json()
    current["status"]["conditions"] = []
    removed = await http.put(f"{CSRS}/flow/approval", json=current)
    assert 'may not remove a condition of type "Approved"' in causes(removed)["status.conditions"]
    # /status may not add Approved/Denied, /approval may not set the certificate.
    other = await http.post(CSRS, json=csr("other"))
    assert other.status_code == 201
    body = other.json()
    body["status"]["conditions"] = [{"type": "Denied", "status": "True"}]
    via_status = await http.put(f"{CSRS}/other/status", json=body)
    assert 'may not add a condition of type "Denied"' in causes(via_status)["status.conditions"]


async def test_status_sets_the_certificate_once(http: httpx.AsyncClient) -> None:
    assert (await http.post(CSRS, json=csr("issue"))).status_code == 201
    assert (await approve(http, "issue")).status_code == 200
    current = (await http.get(f"{CSRS}/issue")).json()

    current["status"]["certificate"] = base64.b64encode(b"not a certificate").decode()
    junk = await http.put(f"{CSRS}/issue/status", json=current)
    assert "at least one CERTIFICATE PEM block" in causes(junk)["status.certificate"]

    certificate = base64.b64encode(_self_signed()).decode()
    current["status"]["certificate"] = certificate
    issued = await http.put(f"{CSRS}/issue/status", json=current)
    assert issued.status_code == 200, issued.text
    assert issued.json()["status"]["certificate"] == certificate
    # The approval survives a status write; a second certificate does not replace the first.
    assert [c["type"] for c in issued.json()["status"]["conditions"]] == ["Approved"]
    again = issued.json()
    again["status"]["certificate"] = base64.b64encode(_self_signed()).decode()
    replaced = await http.put(f"{CSRS}/issue/status", json=again)
    assert "may not modify existing certificate content" in causes(replaced)["status.certificate"]
    # A plain update changes neither spec nor status.
    plain = (await http.get(f"{CSRS}/issue")).json()
    plain["spec"]["usages"] = ["server auth"]
    plain["status"] = {}
    kept = await http.put(f"{CSRS}/issue", json=plain)
    assert kept.status_code == 200, kept.text
    assert kept.json()["spec"]["usages"] == ["client auth"]
    assert kept.json()["status"]["certificate"] == certificate


def _self_signed() -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(params=[27, 33], ids=["kubectl-1.27", "kubectl-1.33"])
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(request.param, kubeconfig, tmp_path)


async def test_kubectl_certificate_approve_deny_and_get_csr(
    http: httpx.AsyncClient, kubectl: Kubectl
) -> None:
    for name, seconds in (("to-approve", 3600), ("to-deny", None)):
        body = csr(name) if seconds is None else csr(name, expirationSeconds=seconds)
        assert (await http.post(CSRS, json=body)).status_code == 201
    table = await kubectl.run("get", "csr")
    header = table.splitlines()[0].split()
    assert header == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert rows["to-approve"][2] == SIGNER
    assert rows["to-approve"][4] == "60m"
    assert rows["to-deny"][4] == "<none>"
    assert rows["to-approve"][5] == "Pending"

    out = await kubectl.run("certificate", "approve", "to-approve")
    assert "certificatesigningrequest.certificates.k8s.io/to-approve approved" in out
    out = await kubectl.run("certificate", "deny", "to-deny")
    assert "certificatesigningrequest.certificates.k8s.io/to-deny denied" in out
    rows = {
        line.split()[0]: line.split() for line in (await kubectl.run("get", "csr")).splitlines()[1:]
    }
    assert rows["to-approve"][5] == "Approved"
    assert rows["to-deny"][5] == "Denied"
    approved = await kubectl.json("get", "csr", "to-approve")
    (condition,) = approved["status"]["conditions"]
    assert condition["reason"] == "KubectlApprove"
    # kubectl refuses to deny an approved request (the server would: mutually exclusive).
    refused = await kubectl.run("certificate", "deny", "to-approve", check=False)
    assert 'certificate signing request "to-approve" is already Approved' in refused
