"""The cluster's certificates: made once, kept while good, renewed when expiring or when
the serving names change, keys private."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubetrio.pki import CA_VALIDITY, LEAF_VALIDITY, ensure_cluster_pki
from kubetrio.pki._pki import CertificateAuthority


def _names(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def test_first_start_makes_two_cas_a_serving_and_an_admin_certificate(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1", "192.0.2.7"])
    assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
    for key in pki.dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ca, client_ca = pki.ca.certificate(), pki.client_ca.certificate()
    assert ca.subject != client_ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_days = (ca.not_valid_after_utc - ca.not_valid_before_utc).days
    assert abs(ca_days - CA_VALIDITY.days) <= 1

    serving = pki.serving.certificate()
    assert pki.ca.signed(serving) and not pki.client_ca.signed(serving)
    dns, ips = _names(serving)
    assert {"localhost", "kubernetes.default.svc.cluster.local", "kubernetes"} <= dns
    assert {"10.96.0.1", "192.0.2.7"} <= ips
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    leaf_days = (serving.not_valid_after_utc - serving.not_valid_before_utc).days
    assert abs(leaf_days - LEAF_VALIDITY.days) <= 1

    admin = pki.admin.certificate()
    assert pki.client_ca.signed(admin)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "kubernetes-admin"
    )
    assert [o.value for o in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    # The files load as Python's ssl loads them (what clients and the server do).
    ssl.create_default_context(cafile=str(pki.ca.files.cert_file)).load_cert_chain(
        pki.admin.cert_file, pki.admin.key_file
    )
    pki.tls().server_context()


def test_a_second_start_keeps_good_certificates(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    before = {p.name: p.read_bytes() for p in first.dir.iterdir()}
    again = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    assert {p.name: p.read_bytes() for p in again.dir.iterdir()} == before


def test_changed_addresses_reissue_the_serving_certificate_only(tmp_path: Path) -> None:
    first = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    ca, admin = first.ca.files.cert_file.read_bytes(), first.admin.cert_file.read_bytes()
    again = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1", "198.51.100.3"])
    assert "198.51.100.3" in _names(again.serving.certificate())[1]
    assert again.ca.files.cert_file.read_bytes() == ca
    assert again.admin.cert_file.read_bytes() == admin


def test_an_expiring_serving_certificate_is_renewed_on_start(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    dns, ips = _names(pki.serving.certificate())
    # Issued again by the same CA, valid for 10 more days: inside the renewal window.
    pki.ca.issue(
        pki.serving,
        "kube-apiserver",
        server=True,
        dns_names=dns,
        ip_addresses=[ipaddress.ip_address(a) for a in ips],
        validity=datetime.timedelta(days=10),
    )
    expiring = pki.serving.certificate()
    renewed = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"]).serving.certificate()
    assert renewed.serial_number != expiring.serial_number
    assert renewed.not_valid_after_utc - expiring.not_valid_after_utc > datetime.timedelta(300)
    assert pki.ca.signed(renewed)


def test_a_new_ca_reissues_what_the_old_one_signed(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    pki.client_ca.files.cert_file.unlink()
    CertificateAuthority.ensure(pki.client_ca.files, "elsewhere")  # the key is new too
    again = ensure_cluster_pki(tmp_path, ip_addresses=["10.96.0.1"])
    assert again.client_ca.signed(again.admin.certificate())


def test_node_certificates_name_the_node_in_system_nodes(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path)
    files = pki.node_certificate("node-2")
    cert = files.certificate()
    assert cert.subject.rfc4514_string() == "CN=system:node:node-2,O=system:nodes"
    assert pki.client_ca.signed(cert)
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600


def test_the_servers_certificate_names_every_address_it_is_reached_at(tmp_path: Path) -> None:
    """``kubetrio server``'s PKI: loopback, the bind address, the host name and the
    ``kubernetes`` Service's ClusterIP (the service range's first address)."""
    import socket

    from kubetrio.cli._serve import cluster_pki

    dns, ips = _names(cluster_pki(tmp_path, "192.0.2.9").serving.certificate())
    assert {"127.0.0.1", "192.0.2.9", "10.96.0.1"} <= ips
    assert {socket.gethostname(), "kubernetes.default.svc"} <= dns


def test_node_serving_and_kubelet_client_certificates(tmp_path: Path) -> None:
    """A node agent's serving certificate comes from the server CA (what the API server
    verifies agents against) with the node's name and addresses; the API server's client
    certificate for agents from the client CA, in no group."""
    pki = ensure_cluster_pki(tmp_path)
    files = pki.node_serving_certificate("n1", ip_addresses=["172.30.0.2"])
    serving = files.certificate()
    assert pki.ca.signed(serving) and not pki.client_ca.signed(serving)
    assert serving.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert _names(serving) == ({"n1"}, {"172.30.0.2"})
    usages = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # Kept while good; issued again when the node's addresses change.
    assert pki.node_serving_certificate("n1", ip_addresses=["172.30.0.2"]).certificate() == serving
    moved = pki.node_serving_certificate("n1", ip_addresses=["172.30.0.9"]).certificate()
    assert _names(moved) == ({"n1"}, {"172.30.0.9"})

    client = pki.kubelet_client.certificate()
    assert pki.client_ca.signed(client)
    assert client.subject.rfc4514_string() == "CN=kube-apiserver-kubelet-client"
    # Each end's context loads: the agent's server side, the API server's client side.
    assert pki.agent_tls(files).serving.server_context().verify_mode == ssl.CERT_OPTIONAL
    assert pki.agent_tls(files).client_context().check_hostname
