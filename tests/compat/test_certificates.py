"""Certificates by CSR and joining by bootstrap token, on a `kubetrio up` cluster:

- a user made by a CertificateSigningRequest (docs/security.md "Adding a user"): key and
  CSR made with `cryptography`, `kubectl certificate approve`, the signed certificate
  from the status used in a kubeconfig — through kubectl 1.27/1.33 and the Python client;
- who may approve (the `approve` verb on the signer), what the signers refuse;
- bootstrap tokens (`kubetrio token create/list`): good, expired, wrong secret, cleaned
  up when expired;
- a node's TLS bootstrap: a bootstrap token's CSR for a new node is auto-approved and
  signed, the node renews its own certificate, and a CSR for another node's identity is
  refused.
"""

from __future__ import annotations

import base64
import datetime
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetrio.cli import _join
from kubetrio.pki import certificate_request, new_private_key
from tests.compat.kit import KUBETRIO, CompatCluster
from tests.kit import wait_until

VERSIONS = pytest.mark.parametrize("version", ["1.27", "1.33"])
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def pki(cluster: CompatCluster) -> Path:
    return cluster.data_dir / "data" / "pki"


def ca_context(cluster: CompatCluster) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki(cluster) / "ca.crt"))


def csr_manifest(
    name: str, request: bytes, signer: str, usages: list[str], seconds: int | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "request": base64.b64encode(request).decode(),
        "signerName": signer,
        "usages": usages,
    }
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": spec,
    }


def issued(cluster: CompatCluster, name: str) -> bytes:
    """Wait for the certificate of CSR ``name``; its PEM."""
    found: list[bytes] = []

    def ready() -> bool:
        out = cluster.kubectl(
            "get", "csr", name, "-o", "jsonpath={.status.certificate}", check=False
        ).stdout
        if out:
            found.append(base64.b64decode(out))
        return bool(out)

    wait_until(ready, timeout=30, what=f"CSR {name} to be signed")
    return found[-1]


def user_kubeconfig(cluster: CompatCluster, path: Path, cert: bytes, key: bytes) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(pki(cluster) / "ca.crt"),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "client-certificate-data": base64.b64encode(cert).decode(),
                            "client-key-data": base64.b64encode(key).decode(),
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@VERSIONS
def test_a_user_made_by_csr_and_kubectl_certificate_approve(
    cluster: CompatCluster, version: str, tmp_path: Path
) -> None:
    user = f"jane-{version.replace('.', '-')}"
    key = new_private_key()
    request = certificate_request(key, user, ["dev"])
    manifest = csr_manifest(
        user, request, "kubernetes.io/kube-apiserver-client", ["client auth"], 3600
    )
    k = cluster.kubectl
    k("create", "-f", "-", input=yaml.safe_dump(manifest), version=version)
    table = k("get", "csr", user, version=version).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION",
    ]  # fmt: skip
    assert table[1].split()[2:] == [
        "kubernetes.io/kube-apiserver-client", "kubernetes-admin", "60m", "Pending",
    ]  # fmt: skip
    out = k("certificate", "approve", user, version=version).stdout
    assert f"certificatesigningrequest.certificates.k8s.io/{user} approved" in out
    pem = issued(cluster, user)
    assert k("get", "csr", user, version=version).stdout.split()[-1] == "Approved,Issued"
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == f"CN={user},O=dev"
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=50) < lifetime <= datetime.timedelta(hours=1)

    config = user_kubeconfig(cluster, tmp_path / "kubeconfig", pem, key)
    as_user = ["--kubeconfig", str(config)]
    if version == "1.33":
        whoami = k(*as_user, "auth", "whoami", version=version).stdout
        assert user in whoami and "dev" in whoami
    assert (
        k(*as_user, "auth", "can-i", "list", "pods", version=version, check=False).stdout.strip()
        == "no"
    )
    k("create", "clusterrolebinding", f"{user}-view", "--clusterrole=view", f"--user={user}")
    wait_until(
        lambda: (
            k(*as_user, "get", "pods", "-n", "default", version=version, check=False).returncode
            == 0
        ),
        timeout=10,
        what=f"{user} to read pods",
    )


def test_kubectl_certificate_deny(cluster: CompatCluster) -> None:
    manifest = csr_manifest(
        "to-deny", certificate_request(new_private_key(), "nobody"),
        "kubernetes.io/kube-apiserver-client", ["client auth"],
    )  # fmt: skip
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest), version="1.27")
    out = cluster.kubectl("certificate", "deny", "to-deny", version="1.27").stdout
    assert "certificatesigningrequest.certificates.k8s.io/to-deny denied" in out
    got = yaml.safe_load(cluster.kubectl("get", "csr", "to-deny", "-o", "yaml").stdout)
    assert [c["type"] for c in got["status"]["conditions"]] == ["Denied"]
    assert not got["status"].get("certificate")


def test_the_python_client_creates_and_approves_a_csr(cluster: CompatCluster) -> None:
    from kubernetes import client, config

    api = client.CertificatesV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    body = csr_manifest(
        "py-user", certificate_request(new_private_key(), "py-user", ["team"]),
        "kubernetes.io/kube-apiserver-client", ["digital signature", "client auth"],
    )  # fmt: skip
    created = api.create_certificate_signing_request(body)
    assert created.spec.username == "kubernetes-admin"
    assert "system:masters" in created.spec.groups
    created.status.conditions = [
        client.V1CertificateSigningRequestCondition(
            type="Approved", status="True", reason="PythonApprove", message="by the test"
        )
    ]
    approved = api.replace_certificate_signing_request_approval("py-user", created)
    assert approved.status.conditions[0].reason == "PythonApprove"
    pem = issued(cluster, "py-user")
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate((pki(cluster) / "client-ca.crt").read_bytes())
    )
    read = api.read_certificate_signing_request_status("py-user")
    assert base64.b64decode(read.status.certificate) == pem


def test_approving_needs_the_approve_verb_on_the_signer(cluster: CompatCluster) -> None:
    k = cluster.kubectl
    manifest = csr_manifest(
        "needs-approver", certificate_request(new_private_key(), "someone"),
        "kubernetes.io/kube-apiserver-client", ["client auth"],
    )  # fmt: skip
    k("create", "-f", "-", input=yaml.safe_dump(manifest))
    k("create", "clusterrole", "csr-updater", "--verb=get,list,update",
      "--resource=certificatesigningrequests,certificatesigningrequests/approval")  # fmt: skip
    k("create", "clusterrolebinding", "csr-updater", "--clusterrole=csr-updater", "--user=pat")
    refused = k("--as", "pat", "certificate", "approve", "needs-approver", check=False)
    assert refused.returncode != 0
    signer = "kubernetes.io/kube-apiserver-client"
    assert f'user not permitted to approve requests with signerName "{signer}"' in refused.stderr
    # Upstream's approver role for that signer makes it work.
    approver = "system:certificates.k8s.io:kube-apiserver-client-approver"
    k("create", "clusterrolebinding", "pat-approver", f"--clusterrole={approver}", "--user=pat")
    wait_until(
        lambda: (
            k("--as", "pat", "certificate", "approve", "needs-approver", check=False).returncode
            == 0
        ),
        timeout=10,
        what="pat to approve",
    )


def test_the_signers_refuse_what_upstream_refuses(cluster: CompatCluster) -> None:
    k = cluster.kubectl
    masters = csr_manifest(
        "be-admin", certificate_request(new_private_key(), "mallory", ["system:masters"]),
        "kubernetes.io/kube-apiserver-client", ["client auth"],
    )  # fmt: skip
    refused = k("create", "-f", "-", input=yaml.safe_dump(masters), check=False)
    assert (
        "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        in refused.stderr
    )
    # A kubelet client CSR without O=system:nodes, approved by hand, fails at signing.
    bad = csr_manifest(
        "bad-kubelet", certificate_request(new_private_key(), "system:node:x", ["other"]),
        KUBELET_SIGNER, ["digital signature", "client auth"],
    )  # fmt: skip
    k("create", "-f", "-", input=yaml.safe_dump(bad))
    k("certificate", "approve", "bad-kubelet")

    def failed() -> bool:
        got = yaml.safe_load(k("get", "csr", "bad-kubelet", "-o", "yaml").stdout)
        return any(c["type"] == "Failed" for c in got["status"].get("conditions") or [])

    wait_until(failed, timeout=30, what="the signer to fail the CSR")
    got = yaml.safe_load(k("get", "csr", "bad-kubelet", "-o", "yaml").stdout)
    (fail,) = [c for c in got["status"]["conditions"] if c["type"] == "Failed"]
    assert fail["message"] == "subject organization is not system:nodes"
    assert not got["status"].get("certificate")


def kubetrio(cluster: CompatCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBETRIO), *args, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=60, env=cluster.env,
    )  # fmt: skip


def whoami(cluster: CompatCluster, token: str) -> httpx.Response:
    with httpx.Client(base_url=cluster.server, verify=ca_context(cluster), timeout=30) as http:
        return http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers={"Authorization": f"Bearer {token}"},
        )


def test_bootstrap_tokens_authenticate_until_they_expire(cluster: CompatCluster) -> None:
    made = kubetrio(cluster, "token", "create", "--ttl", "1h", "--description", "for a test")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id, secret = token.split(".")
    answer = whoami(cluster, token)
    assert answer.status_code == 201, answer.text
    info = answer.json()["status"]["userInfo"]
    assert info["username"] == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers" in info["groups"]
    assert "system:bootstrappers:kubetrio:default-node-token" in info["groups"]
    listed = kubetrio(cluster, "token", "list")
    assert token in listed.stdout and "for a test" in listed.stdout

    wrong = whoami(cluster, f"{token_id}.{'0' * 16}")
    assert wrong.status_code == 401
    assert wrong.json()["reason"] == "Unauthorized"

    # An expired token is refused at once, and the token cleaner deletes its Secret.
    expired_id = "zz" + token_id[2:]
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    cluster.kubectl(
        "create", "secret", "generic", f"bootstrap-token-{expired_id}", "-n", "kube-system",
        "--type=bootstrap.kubernetes.io/token", f"--from-literal=token-id={expired_id}",
        f"--from-literal=token-secret={secret}", f"--from-literal=expiration={past}",
        "--from-literal=usage-bootstrap-authentication=true",
    )  # fmt: skip
    assert whoami(cluster, f"{expired_id}.{secret}").status_code == 401
    wait_until(
        lambda: (
            cluster.kubectl(
                "get", "secret", f"bootstrap-token-{expired_id}", "-n", "kube-system", check=False
            ).returncode
            != 0
        ),
        timeout=40,
        what="the token cleaner to delete the expired token",
    )
    deleted = kubetrio(cluster, "token", "delete", token_id)
    assert deleted.returncode == 0, deleted.stderr
    wait_until(lambda: whoami(cluster, token).status_code == 401, timeout=10, what="revocation")


def test_a_node_joins_by_tls_bootstrap_and_renews_its_own_certificate(
    cluster: CompatCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = kubetrio(cluster, "token", "create", "--ttl", "10m")
    token = made.stdout.strip()
    ca = pki(cluster) / "ca.crt"
    cert_file, key_file = _join.ensure_client_certificate(
        cluster.server, "joiner", tmp_path, token=token, certificate_authority=ca, wait=60
    )
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=system:node:joiner,O=system:nodes"
    assert key_file.stat().st_mode & 0o777 == 0o600
    csrs = yaml.safe_load(cluster.kubectl("get", "csr", "-o", "yaml").stdout)["items"]
    (joined,) = [c for c in csrs if c["metadata"]["name"].startswith("node-csr-joiner-")]
    assert joined["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"
    (approval,) = joined["status"]["conditions"]
    assert approval["reason"] == "AutoApproved"
    assert approval["message"] == (
        "Auto approving kubelet client certificate after SubjectAccessReview."
    )

    # A restart uses the stored certificate: no token, no new CSR.
    assert _join.ensure_client_certificate(
        cluster.server, "joiner", tmp_path, certificate_authority=ca
    ) == (cert_file, key_file)
    assert cert_file.read_bytes() == cert.public_bytes(serialization.Encoding.PEM)

    # Near its end the certificate renews itself: the node's own CSR, selfnodeclient.
    monkeypatch.setattr(_join, "RENEW_AFTER", 0.0)
    _join.ensure_client_certificate(
        cluster.server, "joiner", tmp_path, certificate_authority=ca, wait=60
    )
    renewed = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert renewed.serial_number != cert.serial_number
    csrs = yaml.safe_load(cluster.kubectl("get", "csr", "-o", "yaml").stdout)["items"]
    mine = [c for c in csrs if c["spec"]["username"] == "system:node:joiner"]
    assert [c["status"]["conditions"][0]["message"] for c in mine] == [
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    ]

    # As the node: a CSR for another node's name is refused, nothing stored.
    with httpx.Client(
        base_url=cluster.server, verify=_client_context(ca, cert_file, key_file), timeout=30
    ) as http:
        other = csr_manifest(
            "steal", certificate_request(new_private_key(), "system:node:other", ["system:nodes"]),
            KUBELET_SIGNER, ["digital signature", "client auth"],
        )  # fmt: skip
        refused = http.post(CSRS, json=other)
    assert refused.status_code == 403, refused.text
    assert (
        'node "joiner" may only request a client certificate for itself, not for '
        '"system:node:other"' in refused.json()["message"]
    )
    assert cluster.kubectl("get", "csr", "steal", check=False).returncode != 0


def test_a_bootstrap_token_may_not_take_a_registered_nodes_name(cluster: CompatCluster) -> None:
    token = kubetrio(cluster, "token", "create", "--ttl", "10m").stdout.strip()
    registered = yaml.safe_load(cluster.kubectl("get", "nodes", "-o", "yaml").stdout)
    name = registered["items"][0]["metadata"]["name"]
    request = certificate_request(new_private_key(), f"system:node:{name}", ["system:nodes"])
    body = csr_manifest("take-over", request, KUBELET_SIGNER, ["digital signature", "client auth"])
    with httpx.Client(base_url=cluster.server, verify=ca_context(cluster), timeout=30) as http:
        refused = http.post(CSRS, json=body, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403, refused.text
    assert f'node "{name}" is already registered' in refused.json()["message"]


def _client_context(ca: Path, cert: Path, key: Path) -> Any:
    from kubetrio.pki import client_context

    return client_context(ca, cert, key)
