"""Validation of CertificateSigningRequests (see :mod:`kubetrio.api.validation.kinds`).

As upstream's ``pkg/apis/certificates/validation``: ``spec.request`` is a PEM
``CERTIFICATE REQUEST`` whose signature checks out, ``spec.usages`` are given, known and
not repeated, ``spec.signerName`` is ``<domain>/<path>``, ``spec.expirationSeconds`` is
at least 600, the conditions have a type and a status (``Approved``, ``Denied`` and
``Failed`` only ``True``), not both ``Approved`` and ``Denied``, no type twice, and
``status.certificate`` holds only ``CERTIFICATE`` PEM blocks. What was already wrong in
the stored object is tolerated on update, as upstream tolerates it for compatibility.

The rules that depend on which endpoint writes (a condition may be added only through
``/approval``, the certificate set only through ``/status``) are the API server's
(:func:`update_problems`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from . import FieldError, validate_dns1123_subdomain

__all__ = [
    "VALIDATORS",
    "certificate_problem",
    "decode_request",
    "update_problems",
    "validate_certificate_signing_request",
]

Obj = Mapping[str, Any]

USAGES = (
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
)
"""``certificates.k8s.io/v1`` KeyUsage values, sorted as upstream lists them."""

LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
TRUE_ONLY = ("Approved", "Denied", "Failed")
STATUS_VALUES = ("False", "True", "Unknown")
MIN_EXPIRATION_SECONDS = 600


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def decode_request(value: Any) -> x509.CertificateSigningRequest:
    """The CSR of ``spec.request`` (base64 of PEM), its signature checked.

    :raises ValueError: with upstream's reason (``PEM block type must be CERTIFICATE
        REQUEST``, a parse error, a bad signature).
    """
    try:
        pem = base64.b64decode(str(value or ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"illegal base64 data: {exc}") from exc
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise ValueError(f"x509: malformed certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise ValueError("x509: certificate request signature verification failed")
    return csr


def certificate_problem(value: Any) -> str:
    """Why ``status.certificate`` (base64 of PEM) is not one or more certificates ('' if
    it is, or is empty)."""
    if not value:
        return ""
    try:
        data = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"illegal base64 data: {exc}"
    blocks = 0
    text = data.decode("ascii", "replace")
    for chunk in text.split("-----BEGIN ")[1:]:
        label = chunk.split("-----", 1)[0]
        if label != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{label}"'
        blocks += 1
    if blocks == 0:
        return "must contain at least one CERTIFICATE PEM block"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return str(exc)
    return ""


def _signer_name_problems(name: Any, path: str) -> list[FieldError]:
    """``ValidateSignerName``: ``<domain>/<path>``, the domain a DNS subdomain."""
    if not name:
        return [FieldError.required(path)]
    name = str(name)
    domain, slash, rest = name.partition("/")
    if not slash or not domain or not rest:
        return [
            FieldError.invalid(
                path,
                name,
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            )
        ]
    errs = validate_dns1123_subdomain(domain, path)
    if len(rest) > 253 or any(c in rest for c in " %"):
        errs.append(FieldError.invalid(path, name, "validating path segment"))
    return errs


def _conditions(csr: Obj) -> list[Obj]:
    return [_mapping(c) for c in _mapping(csr.get("status")).get("conditions") or []]


def _of_type(csr: Obj, kind: str) -> list[Obj]:
    return [c for c in _conditions(csr) if c.get("type") == kind]


def validate_certificate_signing_request(csr: Obj, old: Obj | None = None) -> list[FieldError]:
    """``validateCertificateSigningRequest``: the spec and status of ``csr`` (``old`` on
    update, whose existing problems are tolerated)."""
    spec, old_spec = _mapping(csr.get("spec")), _mapping((old or {}).get("spec"))
    errs: list[FieldError] = []
    try:
        decode_request(spec.get("request"))
    except ValueError as exc:
        errs.append(FieldError.invalid("spec.request", "<certificate request data>", str(exc)))
    usages = spec.get("usages") or []
    if not usages:
        errs.append(FieldError.required("spec.usages"))
    old_usages = old_spec.get("usages") or []
    if old is None or all(u in USAGES for u in old_usages):
        errs += [
            FieldError.not_supported(f"spec.usages[{i}]", u, USAGES)
            for i, u in enumerate(usages)
            if u not in USAGES
        ]
    if old is None or len(set(old_usages)) == len(old_usages):
        errs += [
            FieldError.duplicate(f"spec.usages[{i}]", u)
            for i, u in enumerate(usages)
            if u in usages[:i]
        ]
    signer = spec.get("signerName")
    if signer == LEGACY_UNKNOWN_SIGNER and old_spec.get("signerName") != signer:
        errs.append(
            FieldError.invalid(
                "spec.signerName",
                signer,
                "the legacy signerName is not allowed via this API version",
            )
        )
    else:
        errs += _signer_name_problems(signer, "spec.signerName")
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, int) and seconds < MIN_EXPIRATION_SECONDS:
        errs.append(
            FieldError.invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 600 seconds (10 minutes)",
            )
        )
    errs += _condition_problems(csr, old)
    certificate = _mapping(csr.get("status")).get("certificate")
    old_certificate = _mapping((old or {}).get("status")).get("certificate")
    tolerated = old is not None and (
        certificate == old_certificate or certificate_problem(old_certificate)
    )
    if not tolerated and (problem := certificate_problem(certificate)):
        errs.append(FieldError.invalid("status.certificate", "<certificate data>", problem))
    return errs


def _condition_problems(csr: Obj, old: Obj | None) -> list[FieldError]:
    """``validateConditions``."""
    old_conditions = _conditions(old) if old is not None else []
    old_types = [c.get("type") for c in old_conditions]
    allow_empty = "" in old_types or None in old_types
    allow_duplicates = len(set(old_types)) != len(old_types)
    allow_both = "Approved" in old_types and "Denied" in old_types
    errs: list[FieldError] = []
    seen: set[Any] = set()
    approved = denied = False
    for i, condition in enumerate(_conditions(csr)):
        path = f"status.conditions[{i}]"
        kind, status = condition.get("type"), condition.get("status")
        if not kind and not allow_empty:
            errs.append(FieldError.required(f"{path}.type"))
        allowed = ("True",) if kind in TRUE_ONLY else STATUS_VALUES
        if not status:
            errs.append(FieldError.required(f"{path}.status"))
        elif status not in allowed:
            errs.append(FieldError.not_supported(f"{path}.status", status, allowed))
        if not allow_both and kind in ("Approved", "Denied"):
            approved = approved or kind == "Approved"
            denied = denied or kind == "Denied"
            if approved and denied:
                errs.append(
                    FieldError.invalid(
                        f"{path}.type",
                        kind,
                        "Approved and Denied conditions are mutually exclusive",
                    )
                )
        if not allow_duplicates:
            if kind in seen:
                errs.append(FieldError.duplicate(f"{path}.type", kind))
            seen.add(kind)
    return errs


def update_problems(new: Obj, old: Obj, subresource: str) -> list[FieldError]:
    """``validateCertificateSigningRequestUpdate``'s rules on what an update through the
    resource (``""``), ``status`` or ``approval`` may change of the conditions and the
    certificate."""
    errs: list[FieldError] = []
    for kind in ("Approved", "Denied", "Failed"):
        if len(_of_type(new, kind)) < len(_of_type(old, kind)):
            errs.append(
                FieldError.forbidden(
                    "status.conditions", f'updates may not remove a condition of type "{kind}"'
                )
            )
    if subresource != "approval":
        for kind in ("Approved", "Denied"):
            before, after = _of_type(old, kind), _of_type(new, kind)
            if len(after) > len(before):
                errs.append(
                    FieldError.forbidden(
                        "status.conditions", f'updates may not add a condition of type "{kind}"'
                    )
                )
            elif len(after) == len(before) and after != before:
                errs.append(
                    FieldError.forbidden(
                        "status.conditions", f'updates may not modify a condition of type "{kind}"'
                    )
                )
    certificate = _mapping(new.get("status")).get("certificate") or ""
    old_certificate = _mapping(old.get("status")).get("certificate") or ""
    if certificate != old_certificate:
        if subresource != "status":
            errs.append(
                FieldError.forbidden(
                    "status.certificate", "updates may not set certificate content"
                )
            )
        elif old_certificate:
            errs.append(
                FieldError.forbidden(
                    "status.certificate", "updates may not modify existing certificate content"
                )
            )
    return errs


def _validate(obj: Obj, old: Obj | None) -> list[FieldError]:
    return validate_certificate_signing_request(obj, old)


VALIDATORS = {("certificates.k8s.io", "certificatesigningrequests"): _validate}
