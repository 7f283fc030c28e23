"""Small checks the core kinds share: ports and port names, IP addresses and CIDRs,
quantities, integer ranges, enumerations, ConfigMap keys, environment variable names,
in upstream's wording (``k8s.io/apimachinery/pkg/util/validation`` and
``pkg/apis/core/validation``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from ..quantity import Quantity, QuantityParseError
from . import FieldError, validate_qualified_name

INT32_MAX = 2**31 - 1
PORT_RANGE = "must be between 1 and 65535, inclusive"
NEGATIVE = "must be greater than or equal to 0"
PROTOCOLS = ("SCTP", "TCP", "UDP")
VALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

# ---- shared small checks ---------------------------------------------------------------

_PORT_NAME_CHARS = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")


def port_name_problems(name: str) -> list[str]:
    """Why ``name`` is not an IANA_SVC_NAME (upstream's ``IsValidPortName``)."""
    problems = []
    if len(name) > 15:
        problems.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.fullmatch(name):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    if not _PORT_NAME_LETTER.search(name):
        problems.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def validate_port_name(name: str, field: str) -> list[FieldError]:
    """A named port (``http``, ``metrics``)."""
    return [FieldError.invalid(field, name, p) for p in port_name_problems(name)]


def validate_port_number(port: Any, field: str) -> list[FieldError]:
    """1-65535 (upstream's ``IsValidPortNum``)."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return [FieldError.invalid(field, port, PORT_RANGE)]
    return []


def validate_port_num_or_name(port: Any, field: str) -> list[FieldError]:
    """An IntOrString port: a number 1-65535 or an IANA service name."""
    if isinstance(port, str):
        if not port:
            return [FieldError.required(field)]
        return validate_port_name(port, field)
    return validate_port_number(port, field)


def validate_protocol(protocol: Any, field: str) -> list[FieldError]:
    """``TCP``, ``UDP`` or ``SCTP`` (required)."""
    if not protocol:
        return [FieldError.required(field)]
    if protocol not in PROTOCOLS:
        return [FieldError.not_supported(field, protocol, PROTOCOLS)]
    return []


def validate_enum(value: Any, field: str, allowed: Iterable[str]) -> list[FieldError]:
    """A value (when set) from an enumeration; upstream lists the values sorted."""
    if value is None or value == "":
        return []
    allowed = sorted(allowed)
    return [] if value in allowed else [FieldError.not_supported(field, value, allowed)]


def valid_ip(value: Any) -> bool:
    """An IPv4 or IPv6 address as Go's ``netip.ParseAddr`` takes it (no zone)."""
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def validate_ip(value: Any, field: str) -> list[FieldError]:
    """A single IP address."""
    return [] if valid_ip(value) else [FieldError.invalid(field, value, VALID_IP)]


def validate_cidr(value: Any, field: str) -> list[FieldError]:
    """A CIDR (``10.244.0.0/24``)."""
    try:
        ipaddress.ip_network(value, strict=False)
        if "/" not in value:
            raise ValueError(value)
    except (ValueError, TypeError):
        return [
            FieldError.invalid(
                field, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            )
        ]
    return []


def quantity(value: Any) -> Quantity | None:
    """A quantity, or None when it cannot be read (typing already refused those)."""
    try:
        return Quantity(value)
    except (QuantityParseError, ValueError, TypeError):
        return None


def validate_nonnegative_quantity(value: Any, field: str) -> list[FieldError]:
    """A quantity >= 0 (upstream's ``ValidateNonnegativeQuantity``)."""
    q = quantity(value)
    if q is None:
        return [FieldError.invalid(field, value, "must be a valid quantity")]
    if q.nanos < 0:
        return [FieldError.invalid(field, str(q), NEGATIVE)]
    return []


def validate_nonnegative(value: Any, field: str) -> list[FieldError]:
    """An integer >= 0 (upstream's ``ValidateNonnegativeField``)."""
    if isinstance(value, int) and value < 0:
        return [FieldError.invalid(field, value, NEGATIVE)]
    return []


def validate_int_range(value: Any, field: str, low: int, high: int) -> list[FieldError]:
    """An integer in ``[low, high]`` (upstream's ``InclusiveRangeError`` wording)."""
    if isinstance(value, int) and not low <= value <= high:
        return [FieldError.invalid(field, value, f"must be between {low} and {high}, inclusive")]
    return []


_CONFIG_KEY = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY)
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)


def config_key_problems(key: str) -> list[str]:
    """Why ``key`` cannot name a ConfigMap/Secret entry (upstream's ``IsConfigMapKey``)."""
    problems = []
    if len(key) > 253:
        problems.append("must be no more than 253 characters")
    if not _CONFIG_KEY_RE.fullmatch(key):
        problems.append(_CONFIG_KEY_MSG)
    if key == ".":
        problems.append("must not be '.'")
    elif key == "..":
        problems.append("must not be '..'")
    elif key.startswith(".."):
        problems.append("must not start with '..'")
    return problems


def validate_config_key(key: str, field: str) -> list[FieldError]:
    """A ConfigMap/Secret key, reported at ``field`` with the key as the value."""
    return [FieldError.invalid(field, key, p) for p in config_key_problems(key)]


_ENV_NAME = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_NAME_RE = re.compile(_ENV_NAME)
_ENV_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', "
    "'-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or "
    f"'MyEnvName1', regex used for validation is '{_ENV_NAME}')"
)


def validate_env_var_name(name: str, field: str) -> list[FieldError]:
    """An environment variable name (upstream's ``IsEnvVarName``)."""
    errs = []
    if not _ENV_NAME_RE.fullmatch(name):
        errs.append(FieldError.invalid(field, name, _ENV_NAME_MSG))
    if name in (".", ".."):
        errs.append(FieldError.invalid(field, name, f"must not be '{name}'"))
    elif name.startswith(".."):
        errs.append(FieldError.invalid(field, name, "must not start with '..'"))
    return errs


STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def validate_container_resource_name(name: str, field: str) -> list[FieldError]:
    """``cpu``, ``memory``, ``ephemeral-storage``, ``hugepages-<size>`` or a qualified
    extended resource (``example.com/gpu``)."""
    errs = validate_qualified_name(name, field)
    if errs:
        return errs
    if "/" not in name and not (
        name in STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-")
    ):
        errs.append(FieldError.invalid(field, name, "must be a standard resource for containers"))
    return errs
