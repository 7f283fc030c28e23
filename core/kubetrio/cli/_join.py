"""A node agent's client certificate by TLS bootstrap, as the kubelet's
``--bootstrap-kubeconfig`` (upstream's ``pkg/kubelet/certificate/bootstrap``).

The certificate lives in the agent's data directory (``pki/kubelet-client.crt`` and
``.key``, the key 0600 in a 0700 folder). On start:

- a certificate for this node, signed by the cluster and not near its end, is used as it
  is: no token needed;
- one past 70 % of its lifetime is renewed (on start, and by :func:`keep_renewed` while
  the agent runs): a new key and a CSR sent with the current certificate as the
  credential (``system:node:<name>`` renewing itself, approved by the ``selfnodeclient``
  rule);
- without one, a bootstrap token sends the CSR (``system:bootstrap:<id>``, approved by
  the ``nodeclient`` rule).

The CSR asks the ``kubernetes.io/kube-apiserver-client-kubelet`` signer for
``CN=system:node:<name>, O=system:nodes``; the agent waits, saying so, until it is
approved and issued, or stops with the reason it was denied or failed.
"""

from __future__ import annotations

import base64
import datetime
import os
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetrio.pki import certificate_request, new_private_key

from ._console import console
from ._errors import CommandError

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
RENEW_AFTER = 0.7
"""Renew a certificate once this much of its lifetime has passed (upstream rotates
between 70 % and 90 %)."""
WAIT_SECONDS = 600.0
"""How long to wait for a CSR to be approved and issued."""


def certificate_files(data_dir: Path) -> tuple[Path, Path]:
    """Where the agent keeps its client certificate and key."""
    folder = data_dir / "pki"
    return folder / "kubelet-client.crt", folder / "kubelet-client.key"


def _usable(cert_file: Path, key_file: Path, node_name: str) -> x509.Certificate | None:
    """The stored certificate, when it is this node's, matches the key and is in force."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    except (OSError, ValueError):
        return None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names or names[0].value != f"system:node:{node_name}":
        return None
    if cert.public_key() != key.public_key():
        return None
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        return None
    return cert


def _needs_renewal(cert: x509.Certificate) -> bool:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    used = datetime.datetime.now(datetime.UTC) - cert.not_valid_before_utc
    return used > lifetime * RENEW_AFTER


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_client_certificate(
    server: str,
    node_name: str,
    data_dir: Path,
    *,
    token: str = "",
    certificate_authority: Path | None = None,
    wait: float = WAIT_SECONDS,
) -> tuple[Path, Path]:
    """This node's client certificate and key: the stored ones, renewed ones, or new
    ones bootstrapped with ``token``.

    :raises CommandError: no usable certificate and no token, the API refused the CSR,
        it was denied or failed, or it was not issued within ``wait`` seconds.
    """
    cert_file, key_file = certificate_files(data_dir)
    current = _usable(cert_file, key_file, node_name)
    if current is not None and not _needs_renewal(current):
        return cert_file, key_file
    verify: ssl.SSLContext = ssl.create_default_context(
        cafile=str(certificate_authority) if certificate_authority else None
    )
    headers: dict[str, str] = {}
    if current is not None:
        verify.load_cert_chain(cert_file, key_file)
        why = f"renewing the client certificate of node {node_name} (it expires "
        why += f"{current.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
        why = f"joining as node {node_name} with a bootstrap token"
    else:
        raise CommandError(
            f"no client certificate for node {node_name} in {cert_file.parent} and no "
            "--token to ask for one: give a bootstrap token (kubetrio token create)"
        )
    cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(cert_file.parent, 0o700)
    key_pem = new_private_key()
    pending = key_file.with_name(key_file.name + ".pending")
    _write(pending, key_pem, 0o600)
    request = certificate_request(key_pem, f"system:node:{node_name}", ["system:nodes"])
    console.print(why)
    with httpx.Client(base_url=server, verify=verify, headers=headers, timeout=30) as http:
        pem = _request_certificate(http, request, node_name, wait)
    cert = x509.load_pem_x509_certificate(pem)
    if cert.public_key() != x509.load_pem_x509_csr(request).public_key():
        raise CommandError("the issued certificate is not for the key this node sent")
    os.replace(pending, key_file)
    _write(cert_file, pem, 0o644)
    console.print(
        f"node {node_name}: client certificate issued, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({cert_file})"
    )
    return cert_file, key_file


def _request_certificate(http: httpx.Client, request: bytes, node_name: str, wait: float) -> bytes:
    """Send the CSR, wait until it is issued, and return the certificate's PEM."""
    body: dict[str, Any] = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": f"node-csr-{node_name}-"},
        "spec": {
            "request": base64.b64encode(request).decode(),
            "signerName": KUBELET_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    }
    deadline = time.monotonic() + wait
    # The server may be starting, or not have seen a token made a moment ago: retry a
    # refused connection or credential for a while.
    while True:
        try:
            answer = http.post(CSRS, json=body)
        except httpx.TransportError as exc:
            code, problem = 0, f"cannot reach {http.base_url}: {exc}"
        else:
            if answer.status_code == 201:
                break
            code, problem = answer.status_code, _message(answer)
        if code not in (0, 401, 429, 500, 503) or time.monotonic() > deadline:
            raise CommandError(f"the certificate signing request was refused: {problem}")
        time.sleep(1)
    name = answer.json()["metadata"]["name"]
    console.print(f"certificate signing request {name} sent; waiting for approval and signing")
    said = ""
    while time.monotonic() < deadline:
        csr = http.get(f"{CSRS}/{name}")
        if csr.status_code != 200:
            raise CommandError(f"reading certificate signing request {name}: {_message(csr)}")
        status = csr.json().get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        for refused in ("Denied", "Failed"):
            if refused in conditions:
                reason = conditions[refused].get("message") or conditions[refused].get("reason")
                raise CommandError(
                    f"certificate signing request {name} {refused.lower()}: {reason}"
                )
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        state = "approved, waiting to be signed" if "Approved" in conditions else "pending"
        if state != said:
            console.print(f"certificate signing request {name}: {state}")
            said = state
        time.sleep(1)
    raise CommandError(
        f"certificate signing request {name} was not issued within {wait:.0f} s "
        f"(approve it: kubectl certificate approve {name})"
    )


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message") or answer.text)
    except ValueError:
        return f"{answer.status_code} {answer.text[:200]}"


async def keep_renewed(
    server: str,
    node_name: str,
    data_dir: Path,
    context: ssl.SSLContext,
    *,
    certificate_authority: Path | None = None,
) -> None:
    """Renew the node's certificate whenever it passes :data:`RENEW_AFTER` of its
    lifetime, while the agent runs, and load the new one into ``context`` (the API
    client's: new connections present it). Runs until cancelled; a failed renewal is
    logged and tried again a minute later."""
    import functools
    import logging

    import trio

    log = logging.getLogger("kubetrio.join")
    cert_file, key_file = certificate_files(data_dir)
    while True:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        due = cert.not_valid_before_utc + lifetime * RENEW_AFTER
        await trio.sleep(max(60.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds()))
        try:
            await trio.to_thread.run_sync(
                functools.partial(
                    ensure_client_certificate,
                    server,
                    node_name,
                    data_dir,
                    certificate_authority=certificate_authority,
                )
            )
        except (CommandError, OSError, httpx.HTTPError) as exc:
            log.warning("renewing the client certificate of node %s: %s", node_name, exc)
            continue
        context.load_cert_chain(cert_file, key_file)
