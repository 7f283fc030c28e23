"""Ingresses, Services, EndpointSlices and TLS Secrets the ingress tests build."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubetrio.api.ingress import INGRESS_CLASS, builtin_ingress_class


def path(
    path: str, service: str, port: int | str = 80, path_type: str = "Prefix"
) -> dict[str, Any]:
    """One HTTP path of a rule, to a Service port by number or name."""
    ref = {"name": port} if isinstance(port, str) else {"number": port}
    return {
        "path": path,
        "pathType": path_type,
        "backend": {"service": {"name": service, "port": ref}},
    }


def ingress(
    name: str,
    rules: list[dict[str, Any]] | None = None,
    *,
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    class_name: str | None = INGRESS_CLASS,
    **spec: Any,
) -> dict[str, Any]:
    """An Ingress; ``rules`` as ``{"host": ..., "paths": [...]}``."""
    body: dict[str, Any] = {
        "rules": [
            {**({"host": r["host"]} if r.get("host") else {}), "http": {"paths": r["paths"]}}
            for r in rules or []
        ],
        **spec,
    }
    if class_name is not None:
        body["ingressClassName"] = class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": body,
    }


def service(name: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ClusterIP Service in ``default`` (port 80 named ``http`` by default)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def endpoint_slice(
    service_name: str, addresses: list[str], *, port: int = 8080, port_name: str = "http",
    ready: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """An EndpointSlice of ``service_name`` with one endpoint per address."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
    }


CLASSES = [builtin_ingress_class()]


def self_signed(*hosts: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``hosts`` and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def tls_secret(name: str, cert: bytes, key: bytes) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret in ``default``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }
