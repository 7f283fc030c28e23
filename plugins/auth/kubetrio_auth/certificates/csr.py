"""What the CSR controllers and admission share: reading a CertificateSigningRequest,
its conditions, and upstream's rules for the two client signers kubetrio serves
(``k8s.io/api/certificates/v1`` helpers: ``IsKubeletClientCSR`` and friends)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

from kubetrio.providers import KubeObject

API_VERSION = "certificates.k8s.io/v1"
RESOURCE = "certificatesigningrequests"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = (KUBE_APISERVER_CLIENT, KUBELET_CLIENT)
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
KUBELET_CLIENT_USAGES = (
    frozenset({"digital signature", "key encipherment", "client auth"}),
    frozenset({"digital signature", "client auth"}),
)
"""The two usage sets a kubelet client certificate may ask for (with and without RSA's
key encipherment)."""
CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})


def parse_request(csr: KubeObject) -> x509.CertificateSigningRequest | None:
    """The X.509 request of ``spec.request`` (None when it does not parse)."""
    try:
        pem = base64.b64decode(str((csr.get("spec") or {}).get("request") or ""), validate=True)
        return x509.load_pem_x509_csr(pem)
    except (binascii.Error, ValueError):
        return None


def subject(request: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    """The request's common name and organizations."""
    names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    organizations = request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (
        str(names[0].value) if names else "",
        [str(o.value) for o in organizations],
    )


def _has_alt_names(request: x509.CertificateSigningRequest) -> list[str]:
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    found = []
    for kind, label in (
        (x509.DNSName, "DNS"),
        (x509.RFC822Name, "Email"),
        (x509.IPAddress, "IP"),
        (x509.UniformResourceIdentifier, "URI"),
    ):
        if names.get_values_for_type(kind):
            found.append(label)
    return found


def kubelet_client_problem(request: x509.CertificateSigningRequest, usages: Iterable[str]) -> str:
    """Why a request is not a node's client certificate ('' when it is): ``O`` exactly
    ``system:nodes``, ``CN`` ``system:node:<name>``, no subject alternative names, usages
    ``digital signature`` and ``client auth`` (and ``key encipherment``)."""
    common_name, organizations = subject(request)
    if organizations != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    for label in _has_alt_names(request):
        return f"{label} subjectAltNames are not allowed"
    if not common_name.startswith(NODE_PREFIX) or common_name == NODE_PREFIX:
        return "subject common name does not begin with system:node:"
    if frozenset(usages) not in KUBELET_CLIENT_USAGES:
        return "usages did not match [client auth digital signature key encipherment]"
    return ""


def client_problem(usages: Iterable[str]) -> str:
    """Why usages do not fit a client certificate of ``kube-apiserver-client`` ('' if
    they do)."""
    wanted = set(usages)
    if extra := sorted(wanted - CLIENT_USAGES):
        return f"invalid usage for client certificate: {extra[0]}"
    if "client auth" not in wanted:
        return "missing required usage for client certificate: client auth"
    return ""


def conditions(csr: KubeObject) -> set[str]:
    """The types of the CSR's conditions."""
    return {
        str(c.get("type"))
        for c in (csr.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    }
