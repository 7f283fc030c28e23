"""``ssl`` contexts from certificate files: an HTTPS server's and a client's."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    """What an HTTPS server needs: its certificate and key, and the CA its clients'
    certificates are verified against (None: no client certificates asked for)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    ca_file: Path | None = None
    """The CA that signed ``cert_file``: what clients, and pods (``kube-root-ca.crt``),
    verify the server with."""

    def server_context(self) -> ssl.SSLContext:
        """A server context: TLS 1.2+, HTTP/1.1 by ALPN, client certificates requested but
        optional (a request without one may still carry a token), verified when sent."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["http/1.1"])
        return context


def client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` only, presenting ``cert_file`` when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclasses.dataclass(frozen=True)
class AgentTLS:
    """Mutual TLS between the API server and a node agent's endpoint (kubelet's 10250):
    the agent serves ``serving`` and verifies callers against its client CA; the API
    server presents its client certificate and verifies the agent against ``ca_file``."""

    serving: TLSConfig
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """The API server's context for connections to agents."""
        return client_context(self.ca_file, self.client_cert_file, self.client_key_file)
