"""Validation of the other served kinds (see :mod:`kubetrio.api.validation.kinds`).

- autoscaling (``pkg/apis/autoscaling/validation``): a HorizontalPodAutoscaler scales
  between ``minReplicas >= 1`` and ``maxReplicas >= minReplicas`` a target it names by
  kind and name, on metrics of a known type that carry their source and a target;
- coordination (``pkg/apis/coordination/validation``): a Lease lasts a positive time;
- discovery (``pkg/apis/discovery/validation``): an EndpointSlice has a known, fixed
  address type, and endpoints with 1-100 addresses of that type, ports 1-65535;
- storage (``pkg/apis/storage/validation``): a StorageClass names its provisioner and
  known reclaim and binding policies, none of which (nor its parameters) change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from . import (
    FieldError,
    FieldErrorType,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_qualified_name,
)
from ._common import (
    is_int,
    one_of,
    port_name_problems,
    port_number_problems,
    validate_immutable,
    validate_nonnegative,
)
from .kinds import KindValidator
from .rbac import path_segment_problems

__all__ = ["VALIDATORS"]

Obj = Mapping[str, Any]

_METRIC_SOURCES = {
    "ContainerResource": "containerResource",
    "External": "external",
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
}
_TARGET_TYPES = ["AverageValue", "Utilization", "Value"]
_MAX_ADDRESSES = 100
_MAX_ENDPOINTS = 1000
_MAX_PORTS = 100
_ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def _mapping(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


# ---- HorizontalPodAutoscaler ----------------------------------------------------------


def _cross_version_ref(ref: Obj, path: str) -> list[FieldError]:
    """``ValidateCrossVersionObjectReference``."""
    errs: list[FieldError] = []
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


def _metric_target(target: Any, path: str) -> list[FieldError]:
    """``validateMetricTarget``: a known type and the value it needs, all positive."""
    target = _mapping(target)
    kind = target.get("type")
    errs = one_of(kind, f"{path}.type", _TARGET_TYPES, required=True)
    utilization = target.get("averageUtilization")
    if is_int(utilization) and utilization < 1:
        errs.append(
            FieldError.invalid(f"{path}.averageUtilization", utilization, "must be greater than 0")
        )
    wanted = {"Utilization": "averageUtilization", "Value": "value", "AverageValue": "averageValue"}
    if kind in wanted and target.get(wanted[kind]) is None:
        errs.append(
            FieldError.required(
                f"{path}.{wanted[kind]}", f"must set {wanted[kind]} when type is {kind}"
            )
        )
    return errs


def _metrics(metrics: list[Any]) -> list[FieldError]:
    """``validateMetrics`` (autoscaling/v2): each names one known source and fills it."""
    errs: list[FieldError] = []
    for i, metric in enumerate(metrics):
        metric = _mapping(metric)
        path = f"spec.metrics[{i}]"
        kind = metric.get("type")
        if not kind:
            errs.append(FieldError.required(f"{path}.type", "must specify a metric source type"))
            continue
        if kind not in _METRIC_SOURCES:
            errs.append(FieldError.not_supported(f"{path}.type", kind, sorted(_METRIC_SOURCES)))
            continue
        source_key = _METRIC_SOURCES[kind]
        others = [k for k in _METRIC_SOURCES.values() if k != source_key and metric.get(k)]
        if others:
            errs.append(
                FieldError.forbidden(
                    f"{path}.{others[0]}", "must populate the given metric source only"
                )
            )
        source = metric.get(source_key)
        if source is None:
            errs.append(
                FieldError.required(
                    f"{path}.{source_key}", "must populate information for the given metric source"
                )
            )
            continue
        source = _mapping(source)
        if kind in ("Resource", "ContainerResource") and not source.get("name"):
            errs.append(
                FieldError.required(f"{path}.{source_key}.name", "must specify a resource name")
            )
        if kind == "ContainerResource" and not source.get("container"):
            errs.append(
                FieldError.required(f"{path}.{source_key}.container", "must specify a container")
            )
        errs += _metric_target(source.get("target"), f"{path}.{source_key}.target")
    return errs


def validate_horizontal_pod_autoscaler(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateHorizontalPodAutoscaler`` for autoscaling/v1 and v2 objects."""
    spec = _mapping(obj.get("spec"))
    errs: list[FieldError] = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if is_int(low) and low < 1:
        errs.append(
            FieldError.invalid("spec.minReplicas", low, "must be greater than or equal to 1")
        )
    if is_int(high) and high < 1:
        errs.append(FieldError.invalid("spec.maxReplicas", high, "must be greater than 0"))
    if is_int(low) and is_int(high) and high < low:
        errs.append(
            FieldError.invalid(
                "spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"
            )
        )
    ref_errs = _cross_version_ref(_mapping(spec.get("scaleTargetRef")), "spec.scaleTargetRef")
    errs += ref_errs
    if str(obj.get("apiVersion", "")).endswith("/v1"):
        cpu = spec.get("targetCPUUtilizationPercentage")
        if is_int(cpu) and cpu < 1:
            errs.append(
                FieldError.invalid(
                    "spec.targetCPUUtilizationPercentage", cpu, "must be greater than 0"
                )
            )
    elif not ref_errs:
        errs += _metrics(spec.get("metrics") or [])
    return errs


# ---- Lease --------------------------------------------------------------------------


def validate_lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateLease``: a positive duration, non-negative transitions."""
    spec = _mapping(obj.get("spec"))
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if is_int(duration) and duration <= 0:
        errs.append(
            FieldError.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
        )
    errs += validate_nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return errs


# ---- EndpointSlice ------------------------------------------------------------------


def _address(address: Any, kind: Any, path: str) -> list[FieldError]:
    text = str(address)
    if kind in ("IPv4", "IPv6"):
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            ip = None
        if ip is None or ip.version != (4 if kind == "IPv4" else 6):
            return [FieldError.invalid(path, address, f"must be a valid {kind} address")]
        return []
    if kind == "FQDN":
        return validate_dns1123_subdomain(text, path)
    return []


def validate_endpoint_slice(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateEndpointSliceCreate`` / ``ValidateEndpointSliceUpdate``."""
    kind = obj.get("addressType")
    errs = one_of(kind, "addressType", _ADDRESS_TYPES, required=True)
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > _MAX_ENDPOINTS:
        errs.append(
            FieldError(
                FieldErrorType.TOO_MANY,
                "endpoints",
                len(endpoints),
                f"must have at most {_MAX_ENDPOINTS} items",
            )
        )
    for i, endpoint in enumerate(endpoints):
        endpoint = _mapping(endpoint)
        path = f"endpoints[{i}].addresses"
        addresses = endpoint.get("addresses") or []
        if not addresses:
            errs.append(FieldError.required(path, "must contain at least 1 address"))
        elif len(addresses) > _MAX_ADDRESSES:
            errs.append(
                FieldError(
                    FieldErrorType.TOO_MANY,
                    path,
                    len(addresses),
                    f"must have at most {_MAX_ADDRESSES} items",
                )
            )
        for j, address in enumerate(addresses):
            errs += _address(address, kind, f"{path}[{j}]")
        hostname = endpoint.get("hostname")
        if hostname:
            errs += validate_dns1123_label(str(hostname), f"endpoints[{i}].hostname")
    ports = obj.get("ports") or []
    if len(ports) > _MAX_PORTS:
        errs.append(
            FieldError(
                FieldErrorType.TOO_MANY,
                "ports",
                len(ports),
                f"must have at most {_MAX_PORTS} items",
            )
        )
    for i, port in enumerate(ports):
        port = _mapping(port)
        path = f"ports[{i}]"
        name = port.get("name")
        if name:
            errs += [
                FieldError.invalid(f"{path}.name", name, p) for p in port_name_problems(str(name))
            ]
        protocol = port.get("protocol")
        if protocol is not None:
            errs += one_of(protocol, f"{path}.protocol", ["SCTP", "TCP", "UDP"], required=False)
        number = port.get("port")
        if number is not None:
            errs += [
                FieldError.invalid(f"{path}.port", number, p) for p in port_number_problems(number)
            ]
        app = port.get("appProtocol")
        if app:
            errs += validate_qualified_name(str(app), f"{path}.appProtocol")
    if old is not None:
        errs += validate_immutable(kind, old.get("addressType"), "addressType")
    return errs


# ---- StorageClass -------------------------------------------------------------------


def validate_storage_class(obj: Obj, old: Obj | None) -> list[FieldError]:
    """``ValidateStorageClass`` / ``ValidateStorageClassUpdate``."""
    errs: list[FieldError] = []
    provisioner = obj.get("provisioner")
    if not provisioner:
        errs.append(FieldError.required("provisioner"))
    else:
        errs += validate_qualified_name(str(provisioner).lower(), "provisioner")
    errs += one_of(obj.get("reclaimPolicy"), "reclaimPolicy", ["Delete", "Retain"], required=False)
    errs += one_of(
        obj.get("volumeBindingMode"),
        "volumeBindingMode",
        ["Immediate", "WaitForFirstConsumer"],
        required=False,
    )
    if old is not None:
        for key in ("parameters", "provisioner", "reclaimPolicy"):
            if obj.get(key) != old.get(key):
                errs.append(FieldError.forbidden(key, f"updates to {key} are forbidden."))
        errs += validate_immutable(
            obj.get("volumeBindingMode"), old.get("volumeBindingMode"), "volumeBindingMode"
        )
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("autoscaling", "horizontalpodautoscalers"): validate_horizontal_pod_autoscaler,
    ("coordination.k8s.io", "leases"): validate_lease,
    ("discovery.k8s.io", "endpointslices"): validate_endpoint_slice,
    ("storage.k8s.io", "storageclasses"): validate_storage_class,
}
