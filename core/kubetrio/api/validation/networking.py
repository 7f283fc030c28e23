"""Validation of the networking kinds (see :mod:`kubetrio.api.validation.kinds`).

Upstream's ``pkg/apis/networking/validation``: Ingress rules (DNS or ``*.`` wildcard
hosts, never IPs; absolute paths with a known ``pathType``; a backend that is exactly
one of a service, by port name or number, or a resource), IngressClasses (a
domain-prefixed controller that never changes, well-formed parameters) and
NetworkPolicies (valid selectors, ports 1-65535 with ``endPort`` after ``port``, one
kind of peer, ``except`` blocks strictly inside their ``cidr``, known policy types).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from . import FieldError, FieldErrorType, validate_dns1035_label, validate_dns1123_subdomain
from ._common import (
    CIDR_FORMAT,
    is_int,
    one_of,
    parse_cidr,
    port_name_problems,
    port_number_problems,
    validate_immutable,
    validate_label_selector,
    validate_wildcard_or_subdomain,
)
from .kinds import KindValidator
from .rbac import path_segment_problems

__all__ = ["VALIDATORS"]

Obj = Mapping[str, Any]

_PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_HTTP_PATH_RE = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
_CONTROLLER_MAX = 250
_PROTOCOLS = ["TCP", "UDP", "SCTP"]


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


# ---- Ingress ------------------------------------------------------------------------


def _typed_local_ref(ref: Obj, path: str) -> list[FieldError]:
    """``validateIngressTypedLocalObjectReference``."""
    errs: list[FieldError] = []
    group = ref.get("apiGroup")
    if group is not None:
        errs += validate_dns1123_subdomain(str(group), f"{path}.apiGroup")
    for key in ("kind", "name"):
        value = ref.get(key)
        if not value:
            errs.append(FieldError.required(f"{path}.{key}"))
        else:
            errs += [
                FieldError.invalid(f"{path}.{key}", value, p)
                for p in path_segment_problems(str(value))
            ]
    return errs


def _backend(backend: Obj, path: str) -> list[FieldError]:
    """``validateIngressBackend``: exactly one of service and resource."""
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [FieldError.invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _typed_local_ref(_mapping(resource), f"{path}.resource")
    if service is None:
        return [FieldError.invalid(path, "", "resource or service backend is required")]
    service = _mapping(service)
    errs: list[FieldError] = []
    name = service.get("name")
    if not name:
        errs.append(FieldError.required(f"{path}.service.name"))
    else:
        errs += validate_dns1035_label(str(name), f"{path}.service.name")
    port = _mapping(service.get("port"))
    port_name, number = port.get("name") or "", port.get("number") or 0
    if port_name and number:
        errs.append(FieldError.invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs += [
            FieldError.invalid(f"{path}.service.port.name", port_name, p)
            for p in port_name_problems(str(port_name))
        ]
    elif number:
        errs += [
            FieldError.invalid(f"{path}.service.port.number", number, p)
            for p in port_number_problems(number)
        ]
    else:
        errs.append(FieldError.required(path, "port name or number is required"))
    return errs


def _http_path(item: Obj, path: str) -> list[FieldError]:
    """``validateHTTPIngressPath``."""
    kind, value = item.get("pathType"), item.get("path") or ""
    if kind is None:
        return [FieldError.required(f"{path}.pathType", "pathType must be specified")]
    errs: list[FieldError] = []
    if kind in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.append(FieldError.invalid(f"{path}.path", value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES:
            if value and seq in value:
                errs.append(FieldError.invalid(f"{path}.path", value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                errs.append(
                    FieldError.invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
                )
    elif kind == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.append(FieldError.invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        errs.append(FieldError.not_supported(f"{path}.pathType", kind, _PATH_TYPES))
    return errs + _backend(_mapping(item.get("backend")), f"{path}.backend")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _rules(rules: list[Any]) -> list[FieldError]:
    """``validateIngressRules``."""
    errs: list[FieldError] = []
    for i, rule in enumerate(rules):
        rule = _mapping(rule)
        path = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            if _is_ip(host):
                errs.append(
                    FieldError.invalid(
                        f"{path}.host", host, "must be a DNS name, not an IP address"
                    )
                )
            errs += validate_wildcard_or_subdomain(host, f"{path}.host")
        http = rule.get("http")
        if http is not None:
            paths = _mapping(http).get("paths") or []
            if not paths:
                errs.append(FieldError.required(f"{path}.http.paths"))
            for j, item in enumerate(paths):
                errs += _http_path(_mapping(item), f"{path}.http.paths[{j}]")
    return errs


def validate_ingress(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateIngressCreate`` / ``ValidateIngressUpdate`` (its spec)."""
    spec = _mapping(obj.get("spec"))
    errs: list[FieldError] = []
    rules, default = spec.get("rules") or [], spec.get("defaultBackend")
    if not rules and default is None:
        errs.append(
            FieldError.invalid(
                "spec", rules, "either `defaultBackend` or `rules` must be specified"
            )
        )
    if default is not None:
        errs += _backend(_mapping(default), "spec.defaultBackend")
    errs += _rules(rules)
    for i, tls in enumerate(spec.get("tls") or []):
        for j, host in enumerate(_mapping(tls).get("hosts") or []):
            errs += validate_wildcard_or_subdomain(str(host), f"spec.tls[{i}].hosts[{j}]")
    class_name = spec.get("ingressClassName")
    if class_name is not None:
        errs += validate_dns1123_subdomain(str(class_name), "spec.ingressClassName")
    return errs


# ---- IngressClass -------------------------------------------------------------------


def _domain_prefixed_path(value: Any, path: str) -> list[FieldError]:
    """``IsDomainPrefixedPath``: ``acme.io/foo``."""
    if not value:
        return [FieldError.required(path)]
    host, sep, rest = str(value).partition("/")
    if not sep or not host or not rest:
        return [
            FieldError.invalid(
                path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'
            )
        ]
    errs = validate_dns1123_subdomain(host, path)
    if not _HTTP_PATH_RE.match(rest):
        errs.append(
            FieldError.invalid(
                path,
                rest,
                "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
            )
        )
    return errs


def validate_ingress_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateIngressClass`` / ``ValidateIngressClassUpdate``."""
    spec = _mapping(obj.get("spec"))
    errs: list[FieldError] = []
    controller = spec.get("controller")
    if isinstance(controller, str) and len(controller) > _CONTROLLER_MAX:
        errs.append(
            FieldError(
                FieldErrorType.TOO_LONG,
                "spec.controller",
                controller,
                f"may not be more than {_CONTROLLER_MAX} bytes",
            )
        )
    errs += _domain_prefixed_path(controller, "spec.controller")
    params = spec.get("parameters")
    if isinstance(params, Mapping):
        path = "spec.parameters"
        errs += _typed_local_ref(params, path)
        scope = params.get("scope")
        errs += one_of(scope, f"{path}.scope", ["Cluster", "Namespace"], required=False)
        if scope == "Namespace" and not params.get("namespace"):
            errs.append(
                FieldError.required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'")
            )
        if scope == "Cluster" and params.get("namespace"):
            errs.append(
                FieldError.forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'")
            )
    if old is not None:
        old_controller = _mapping(old.get("spec")).get("controller")
        errs += validate_immutable(controller, old_controller, "spec.controller")
    return errs


# ---- NetworkPolicy ------------------------------------------------------------------


def _policy_port(port: Obj, path: str) -> list[FieldError]:
    """``ValidateNetworkPolicyPort``."""
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _PROTOCOLS:
        errs.append(FieldError.not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            errs.append(
                FieldError.invalid(
                    f"{path}.endPort", end, "may not be specified when `port` is not specified"
                )
            )
    elif is_int(number):
        errs += [
            FieldError.invalid(f"{path}.port", number, p) for p in port_number_problems(number)
        ]
        if end is not None:
            if is_int(end) and end < number:
                errs.append(
                    FieldError.invalid(
                        f"{path}.endPort", number, "must be greater than or equal to `port`"
                    )
                )
            errs += [
                FieldError.invalid(f"{path}.endPort", end, p) for p in port_number_problems(end)
            ]
    else:
        if end is not None:
            errs.append(
                FieldError.invalid(
                    f"{path}.endPort", end, "may not be specified when `port` is non-numeric"
                )
            )
        errs += [
            FieldError.invalid(f"{path}.port", number, p) for p in port_name_problems(str(number))
        ]
    return errs


def _ip_block(block: Obj, path: str) -> list[FieldError]:
    """``ValidateIPBlock``: a CIDR, and ``except`` blocks strictly inside it."""
    cidr_text = block.get("cidr")
    if not cidr_text:
        return [FieldError.required(f"{path}.cidr")]
    cidr = parse_cidr(cidr_text)
    if cidr is None:
        return [FieldError.invalid(f"{path}.cidr", cidr_text, CIDR_FORMAT)]
    errs: list[FieldError] = []
    for i, text in enumerate(block.get("except") or []):
        field = f"{path}.except[{i}]"
        inner = parse_cidr(text)
        if inner is None:
            errs.append(FieldError.invalid(field, text, CIDR_FORMAT))
            continue
        if (
            inner.version != cidr.version
            or inner.network_address not in cidr
            or cidr.prefixlen >= inner.prefixlen
        ):
            errs.append(FieldError.invalid(field, text, "must be a strict subset of `cidr`"))
    return errs


def _peer(peer: Obj, path: str) -> list[FieldError]:
    """``ValidateNetworkPolicyPeer``: at least one peer; an ipBlock alone."""
    errs: list[FieldError] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            errs += validate_label_selector(peer[key], f"{path}.{key}")
    if peer.get("ipBlock") is not None:
        count += 1
        errs += _ip_block(_mapping(peer["ipBlock"]), f"{path}.ipBlock")
    if count == 0:
        errs.append(FieldError.required(path, "must specify a peer"))
    elif count > 1 and peer.get("ipBlock") is not None:
        errs.append(FieldError.forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def validate_network_policy(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateNetworkPolicy`` / ``ValidateNetworkPolicyUpdate``."""
    spec = _mapping(obj.get("spec"))
    errs = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            rule = _mapping(rule)
            path = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                errs += _policy_port(_mapping(port), f"{path}.ports[{j}]")
            for j, peer in enumerate(rule.get(peers) or []):
                errs += _peer(_mapping(peer), f"{path}.{peers}[{j}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        errs.append(
            FieldError.invalid(
                "spec.policyTypes", types, "may not specify more than two policyTypes"
            )
        )
        return errs
    for i, kind in enumerate(types):
        if kind not in ("Ingress", "Egress"):
            errs.append(
                FieldError.not_supported(f"spec.policyTypes[{i}]", kind, ["Ingress", "Egress"])
            )
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("networking.k8s.io", "ingresses"): validate_ingress,
    ("networking.k8s.io", "ingressclasses"): validate_ingress_class,
    ("networking.k8s.io", "networkpolicies"): validate_network_policy,
}
