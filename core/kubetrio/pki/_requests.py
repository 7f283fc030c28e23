"""Certificate signing requests: making one (a node's TLS bootstrap, a new user) and
signing one with a CA (the CertificateSigningRequest signer), as upstream's
``k8s.io/client-go/util/certificate/csr`` and ``pkg/controller/certificates/authority``."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._pki import _BACKDATE, CertificateAuthority, _now

__all__ = ["KEY_USAGES", "certificate_request", "new_private_key", "sign_request"]

KEY_USAGES = {
    "signing": "digital_signature",
    "digital signature": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
    "cert sign": "key_cert_sign",
    "crl sign": "crl_sign",
    "encipher only": "encipher_only",
    "decipher only": "decipher_only",
}
"""``spec.usages`` values that are X.509 key usages, and their ``KeyUsage`` field."""

EXTENDED_KEY_USAGES = {
    "any": x509.ObjectIdentifier("2.5.29.37.0"),
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
}
"""``spec.usages`` values that are extended key usages, and their OIDs."""


def new_private_key() -> bytes:
    """A new ECDSA P-256 private key, PEM (``EC PRIVATE KEY``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def certificate_request(
    key_pem: bytes, common_name: str, organizations: Sequence[str] = ()
) -> bytes:
    """A PEM ``CERTIFICATE REQUEST`` for ``CN=common_name, O=organizations`` signed with
    ``key_pem`` (the subject a client certificate authenticates as)."""
    key = serialization.load_pem_private_key(key_pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the key must be an ECDSA or RSA private key")
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    subject = x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def sign_request(
    ca: CertificateAuthority,
    request: x509.CertificateSigningRequest,
    *,
    usages: Sequence[str],
    validity: datetime.timedelta,
) -> bytes:
    """The certificate ``ca`` issues for ``request``, PEM: its subject, names and public
    key, the key usages and extended key usages of ``usages``, valid from a little in the
    past for ``validity`` (not past the CA's own end)."""
    ca_cert = ca.certificate()
    now = _now()
    flags = dict.fromkeys(KEY_USAGES.values(), False)
    for usage in usages:
        if usage in KEY_USAGES:
            flags[KEY_USAGES[usage]] = True
    extended = [EXTENDED_KEY_USAGES[u] for u in dict.fromkeys(usages) if u in EXTENDED_KEY_USAGES]
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if any(flags.values()):
        builder = builder.add_extension(
            x509.KeyUsage(**flags),
            critical=True,
        )
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    try:
        names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        builder = builder.add_extension(names, critical=False)
    return builder.sign(ca._key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
