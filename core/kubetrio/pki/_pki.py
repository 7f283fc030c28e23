"""Certificate authorities and the certificates they issue, kept as PEM files."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._tls import AgentTLS, TLSConfig

CA_VALIDITY = datetime.timedelta(days=3650)
"""How long a CA is valid: ten years, as kubeadm's and k3s' CAs."""
LEAF_VALIDITY = datetime.timedelta(days=365)
"""How long a serving or client certificate is valid: one year, as kubeadm's."""
RENEW_BEFORE = datetime.timedelta(days=30)
"""A certificate expiring within this is issued again on start."""
_BACKDATE = datetime.timedelta(minutes=5)
"""``notBefore`` this far in the past: a client whose clock is a little behind accepts it."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = (ipaddress.IPv4Network, ipaddress.IPv6Network)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically with ``mode`` (set at creation: a key is never readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask may have taken bits away from os.open's mode
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # ECDSA P-256, as k3s: every client kubetrio is tested with accepts it, and a key
    # takes microseconds to make where RSA takes tens of milliseconds.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as the paths of their PEM files."""

    cert_file: Path
    key_file: Path

    def certificate(self) -> x509.Certificate:
        """The certificate, parsed."""
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())

    def exists(self) -> bool:
        """Whether both files are there."""
        return self.cert_file.exists() and self.key_file.exists()

    def pem(self) -> tuple[bytes, bytes]:
        """The certificate's and the key's PEM bytes (for a kubeconfig's ``*-data``)."""
        return self.cert_file.read_bytes(), self.key_file.read_bytes()

    def _save(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        _write(self.key_file, key_pem, 0o600)
        _write(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA whose key signs leaf certificates."""

    files: KeyPair

    @classmethod
    def ensure(cls, files: KeyPair, common_name: str) -> tuple[CertificateAuthority, bool]:
        """The CA in ``files``, made when missing or expired; and whether it was made.

        A CA is not renewed before it expires (everything it signed would change with
        it, as kubeadm leaves CA rotation to the operator); ten years is long.
        """
        if files.exists() and files.certificate().not_valid_after_utc > _now():
            return cls(files), False
        key = _new_key()
        subject = _name(f"{common_name}@{int(_now().timestamp())}")
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _BACKDATE)
            .not_valid_after(_now() + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        files._save(cert, key)
        return cls(files), True

    def certificate(self) -> x509.Certificate:
        """The CA's certificate."""
        return self.files.certificate()

    def _key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.files.key_file.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), self.files.key_file
        return key

    def signed(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was issued by this CA (by its key, not only its name)."""
        try:
            cert.verify_directly_issued_by(self.certificate())
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def issue(
        self,
        files: KeyPair,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        client: bool = False,
        server: bool = False,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[IPAddress] = (),
        validity: datetime.timedelta = LEAF_VALIDITY,
    ) -> KeyPair:
        """Issue a certificate (a new key) for ``common_name`` into ``files``."""
        key = _new_key()
        ca_cert = self.certificate()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        usages += [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _BACKDATE)
            .not_valid_after(min(_now() + validity, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(address) for address in ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        files._save(builder.sign(self._key(), hashes.SHA256()), key)
        return files

    def ensure_issued(
        self,
        files: KeyPair,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        client: bool = False,
        server: bool = False,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[IPAddress] = (),
    ) -> KeyPair:
        """``files`` as they are when still good, else issued again.

        Good: signed by this CA, not expiring within :data:`RENEW_BEFORE`, with this
        subject and exactly these names.
        """
        dns = sorted(set(dns_names))
        ips = sorted(set(ip_addresses), key=lambda a: (a.version, int(a)))
        if files.exists():
            cert = files.certificate()
            if (
                self.signed(cert)
                and cert.not_valid_after_utc - _now() > RENEW_BEFORE
                and cert.subject == _name(common_name, organizations)
                and _alt_names(cert) == (set(dns), set(ips))
            ):
                return files
        return self.issue(
            files,
            common_name,
            organizations=organizations,
            client=client,
            server=server,
            dns_names=dns,
            ip_addresses=ips,
        )


def _alt_names(cert: x509.Certificate) -> tuple[set[str], set[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {a for a in san.get_values_for_type(x509.IPAddress) if not isinstance(a, IPNetwork)}
    return set(san.get_values_for_type(x509.DNSName)), ips


API_SERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
"""The names a serving certificate always carries: what pods and the host call the API."""


def local_addresses() -> list[IPAddress]:
    """This host's (this network namespace's) addresses: loopback, ``ip -j addr``'s, and
    those its host name resolves to."""
    found: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        shown = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
        )
        for link in json.loads(shown.stdout):
            for info in link.get("addr_info") or []:
                found.add(ipaddress.ip_address(info["local"].split("%")[0]))
        found = {a for a in found if not a.is_link_local}  # scoped: no use in a certificate
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        pass  # no iproute2: the host name's addresses below still count
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ipaddress.ip_address(str(address[0]).split("%")[0]))
    except (OSError, ValueError):
        pass
    return sorted(found, key=lambda a: (a.version, int(a)))


@dataclasses.dataclass(frozen=True)
class ClusterPKI:
    """The files under ``<data-dir>/pki/``."""

    dir: Path

    @property
    def ca(self) -> CertificateAuthority:
        """The server CA (``ca.crt``): clients verify the API server against it."""
        return CertificateAuthority(KeyPair(self.dir / "ca.crt", self.dir / "ca.key"))

    @property
    def client_ca(self) -> CertificateAuthority:
        """The client CA (``client-ca.crt``): the API server verifies client certificates."""
        return CertificateAuthority(KeyPair(self.dir / "client-ca.crt", self.dir / "client-ca.key"))

    @property
    def serving(self) -> KeyPair:
        """The API server's serving certificate."""
        return KeyPair(self.dir / "apiserver.crt", self.dir / "apiserver.key")

    @property
    def kubelet_client(self) -> KeyPair:
        """The API server's client certificate for node agents' endpoints
        (``CN=kube-apiserver-kubelet-client``, as kubeadm's ``apiserver-kubelet-client``)."""
        return KeyPair(
            self.dir / "apiserver-kubelet-client.crt", self.dir / "apiserver-kubelet-client.key"
        )

    @property
    def admin(self) -> KeyPair:
        """The admin's client certificate (``CN=kubernetes-admin, O=system:masters``)."""
        return KeyPair(self.dir / "admin.crt", self.dir / "admin.key")

    def tls(self) -> TLSConfig:
        """What the API server serves HTTPS with."""
        return TLSConfig(
            cert_file=self.serving.cert_file,
            key_file=self.serving.key_file,
            client_ca_file=self.client_ca.files.cert_file,
            ca_file=self.ca.files.cert_file,
        )

    def client_certificate(
        self, name: str, common_name: str, organizations: Sequence[str] = ()
    ) -> KeyPair:
        """A client certificate signed by the client CA, in ``<name>.crt``/``<name>.key``
        (issued again when missing or expiring): CN is the user, O the groups."""
        return self.client_ca.ensure_issued(
            KeyPair(self.dir / f"{name}.crt", self.dir / f"{name}.key"),
            common_name,
            organizations=organizations,
            client=True,
        )

    def node_serving_certificate(
        self,
        node_name: str,
        *,
        ip_addresses: Iterable[IPAddress | str],
        dns_names: Iterable[str] = (),
    ) -> KeyPair:
        """A node agent's serving certificate (its HTTPS endpoint, kubelet's 10250), signed
        by the server CA the API server verifies agents against: ``CN=system:node:<name>,
        O=system:nodes`` (a kubelet serving certificate's subject), the node's name and
        ``dns_names``, and ``ip_addresses`` — every address the agent is reached at.

        Kept apart from the node's client certificate: a node that joined with a CSR
        still gets this from whoever starts it (``up --nodes``, or ``--tls-cert-file``).
        """
        return self.ca.ensure_issued(
            KeyPair(
                self.dir / f"node-{node_name}-serving.crt",
                self.dir / f"node-{node_name}-serving.key",
            ),
            f"system:node:{node_name}",
            organizations=["system:nodes"],
            server=True,
            dns_names=[node_name, *dns_names],
            ip_addresses=[ipaddress.ip_address(a) for a in ip_addresses],
        )

    def agent_tls(self, serving: KeyPair) -> AgentTLS:
        """The TLS between the API server and a node agent serving with ``serving``."""
        return AgentTLS(
            serving=TLSConfig(
                cert_file=serving.cert_file,
                key_file=serving.key_file,
                client_ca_file=self.client_ca.files.cert_file,
            ),
            ca_file=self.ca.files.cert_file,
            client_cert_file=self.kubelet_client.cert_file,
            client_key_file=self.kubelet_client.key_file,
        )

    @property
    def etcd_ca(self) -> CertificateAuthority:
        """The etcd CA (``etcd/ca.crt``, made on first use): it signs only the members'
        certificates and their clients', so no other certificate of the cluster opens
        etcd (kubeadm's separate ``etcd/ca``)."""
        files = KeyPair(self.dir / "etcd" / "ca.crt", self.dir / "etcd" / "ca.key")
        return CertificateAuthority.ensure(files, "kubetrio-etcd-ca")[0]

    def etcd_member_certificate(
        self, member: str, *, ip_addresses: Iterable[IPAddress | str]
    ) -> KeyPair:
        """An etcd member's certificate for its client and peer ports (server and client
        usage, as a peer is both): its name, ``localhost`` and ``ip_addresses``."""
        return self.etcd_ca.ensure_issued(
            KeyPair(self.dir / "etcd" / f"{member}.crt", self.dir / "etcd" / f"{member}.key"),
            member,
            client=True,
            server=True,
            dns_names=[member, "localhost"],
            ip_addresses=[ipaddress.ip_address(a) for a in ip_addresses],
        )

    @property
    def etcd_client(self) -> KeyPair:
        """The API servers' client certificate for etcd (kubeadm's ``apiserver-etcd-client``)."""
        return self.etcd_ca.ensure_issued(
            KeyPair(self.dir / "etcd" / "client.crt", self.dir / "etcd" / "client.key"),
            "kube-apiserver-etcd-client",
            client=True,
        )

    def node_certificate(self, node_name: str) -> KeyPair:
        """A node's client certificate: ``CN=system:node:<name>, O=system:nodes``."""
        return self.client_certificate(
            f"node-{node_name}", f"system:node:{node_name}", ["system:nodes"]
        )


def ensure_cluster_pki(
    data_dir: Path,
    *,
    ip_addresses: Iterable[IPAddress | str] = (),
    dns_names: Iterable[str] = (),
) -> ClusterPKI:
    """The cluster's CAs and certificates under ``data_dir/pki`` (mode 0700), made or
    renewed as needed.

    The serving certificate carries :data:`API_SERVER_DNS_NAMES`, ``dns_names`` and
    ``ip_addresses`` (the caller's: every address the server is reached at, the
    ``kubernetes`` Service's ClusterIP). A new CA re-issues what it signs.
    """
    pki = ClusterPKI(data_dir / "pki")
    pki.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(pki.dir, 0o700)
    CertificateAuthority.ensure(pki.ca.files, "kubetrio-server-ca")
    CertificateAuthority.ensure(pki.client_ca.files, "kubetrio-client-ca")
    pki.ca.ensure_issued(
        pki.serving,
        "kube-apiserver",
        server=True,
        dns_names=[*API_SERVER_DNS_NAMES, *dns_names],
        ip_addresses=[ipaddress.ip_address(a) for a in ip_addresses],
    )
    pki.client_certificate("admin", "kubernetes-admin", ["system:masters"])
    # No group: RBAC binds it to system:kubelet-api-admin (nodes/proxy, nodes/log ...).
    pki.client_certificate("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
    return pki
