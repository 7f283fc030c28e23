"""Checks shared by the non-core kind validators (apps, batch, networking, policy, ...).

Each mirrors one helper of upstream's ``pkg/apis/core/validation`` or
``apimachinery/pkg/apis/meta/v1/validation`` and keeps its wording: a negative count is
``must be greater than or equal to 0``, a changed selector ``field is immutable``, a
LabelSelector's bad operator ``not a valid selector operator``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from ..selectors import LabelSelectorError, Selector, label_selector_from_struct
from . import (
    FieldError,
    validate_dns1123_subdomain,
    validate_label_value,
    validate_labels,
    validate_qualified_name,
)

__all__ = [
    "int_or_percent",
    "is_int",
    "not_more_than_100_percent",
    "validate_immutable",
    "validate_label_selector",
    "validate_nonnegative",
    "validate_positive_int_or_percent",
    "workload_selector",
]

_PERCENT_RE = re.compile(r"^[0-9]+%$")
NONNEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (``bool`` is not one, though Python says so)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_nonnegative(value: Any, field: str) -> list[FieldError]:
    """``ValidateNonnegativeField``: an integer ``>= 0`` (absent is fine)."""
    if is_int(value) and value < 0:
        return [FieldError.invalid(field, value, NONNEGATIVE)]
    return []


def validate_immutable(new: Any, old: Any, field: str) -> list[FieldError]:
    """``ValidateImmutableField``: ``new`` must equal ``old``."""
    if new != old:
        return [FieldError.invalid(field, new, IMMUTABLE)]
    return []


def validate_label_selector(selector: Any, field: str) -> list[FieldError]:
    """``ValidateLabelSelector`` (strict): label keys and values, operators, the values
    each operator needs."""
    if selector is None:
        return []
    if not isinstance(selector, Mapping):
        return [FieldError.invalid(field, selector, "must be an object")]
    errs = validate_labels(selector.get("matchLabels") or {}, f"{field}.matchLabels")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        path = f"{field}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping):
            errs.append(FieldError.invalid(path, expr, "must be an object"))
            continue
        operator, values = expr.get("operator"), expr.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(
                    FieldError.required(
                        f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    FieldError.forbidden(
                        f"{path}.values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(
                FieldError.invalid(f"{path}.operator", operator, "not a valid selector operator")
            )
        errs += validate_qualified_name(str(expr.get("key", "")), f"{path}.key")
        for j, value in enumerate(values):
            errs += validate_label_value(str(value), f"{path}.values[{j}]")
    return errs


def as_selector(selector: Any) -> Selector | None:
    """The parsed selector, or None when it cannot be parsed (already reported)."""
    try:
        return label_selector_from_struct(selector)
    except LabelSelectorError:
        return None


def workload_selector(
    spec: Mapping[str, Any], kind: str, template_path: str = "spec.template"
) -> list[FieldError]:
    """A controller's ``spec.selector``: required, valid, not empty, and matching its
    template's labels (what ``ValidateDeploymentSpec`` and its siblings check)."""
    errs: list[FieldError] = []
    selector = spec.get("selector")
    if selector is None:
        errs.append(FieldError.required("spec.selector"))
    else:
        errs += validate_label_selector(selector, "spec.selector")
        if isinstance(selector, Mapping) and not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            errs.append(
                FieldError.invalid(
                    "spec.selector", selector, f"empty selector is invalid for {kind}"
                )
            )
    parsed = as_selector(selector) if selector is not None else None
    template = spec.get("template")
    if parsed is not None and not parsed.is_empty() and isinstance(template, Mapping):
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not parsed.matches(labels):
            errs.append(
                FieldError.invalid(
                    f"{template_path}.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    return errs


def percent_value(value: Any) -> int | None:
    """``"25%"`` -> 25; None for anything that is not a valid percentage."""
    if isinstance(value, str) and _PERCENT_RE.match(value):
        return int(value[:-1])
    return None


def int_or_percent(value: Any) -> int:
    """The number an int-or-percent stands for (``getIntOrPercentValue``), 0 if neither."""
    percent = percent_value(value)
    if percent is not None:
        return percent
    return value if is_int(value) else 0


def validate_positive_int_or_percent(value: Any, field: str) -> list[FieldError]:
    """``ValidatePositiveIntOrPercent``: a non-negative integer or ``"N%"``."""
    if value is None:
        return []
    if isinstance(value, str):
        if percent_value(value) is None:
            return [
                FieldError.invalid(
                    field,
                    value,
                    "a valid percent string must be a numeric string followed by "
                    "an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                    "'[0-9]+%')",
                )
            ]
        return []
    if is_int(value):
        return validate_nonnegative(value, field)
    return [FieldError.invalid(field, value, "must be an integer or percentage (e.g '5%')")]


def not_more_than_100_percent(value: Any, field: str) -> list[FieldError]:
    """``IsNotMoreThan100Percent``."""
    percent = percent_value(value)
    if percent is not None and percent > 100:
        return [FieldError.invalid(field, value, "must not be greater than 100%")]
    return []


def one_of(value: Any, field: str, valid: Iterable[str], *, required: bool) -> list[FieldError]:
    """An enumeration: Required when empty (if ``required``), else Unsupported value."""
    options = list(valid)
    if value in (None, ""):
        return [FieldError.required(field)] if required else []
    if value not in options:
        return [FieldError.not_supported(field, value, options)]
    return []


# ---- ports, addresses, hosts ---------------------------------------------------------

_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_HAS_LETTER = re.compile(r"[a-z]")
PORT_RANGE = "must be between 1 and 65535, inclusive"
CIDR_FORMAT = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
_WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character (e.g. '*.example.com', regex used for validation is "
    r"'\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_WILDCARD_RE = re.compile(r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def port_number_problems(value: Any) -> list[str]:
    """``IsValidPortNum``."""
    return [] if is_int(value) and 1 <= value <= 65535 else [PORT_RANGE]


def port_name_problems(name: str) -> list[str]:
    """``IsValidPortName``: an IANA_SVC_NAME (at most 15 characters, a-z 0-9 and
    single inner hyphens, at least one letter)."""
    problems = []
    if len(name) > 15:
        problems.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.match(name):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(name):
        problems.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def parse_cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR as Go's ``ParseCIDR`` reads it (host bits allowed), or None."""
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def validate_wildcard_or_subdomain(host: str, field: str) -> list[FieldError]:
    """A host that may be a ``*.`` wildcard (Ingress rules and TLS hosts)."""
    if "*" not in host:
        return validate_dns1123_subdomain(host, field)
    errs = []
    if len(host) > 253:
        errs.append(FieldError.invalid(field, host, "must be no more than 253 characters"))
    if not _WILDCARD_RE.fullmatch(host):
        errs.append(FieldError.invalid(field, host, _WILDCARD_MSG))
    return errs
