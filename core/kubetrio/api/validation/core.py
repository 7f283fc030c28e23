"""Validation of the core (``v1``) kinds (see :mod:`kubetrio.api.validation.kinds`).

:func:`validate_pod_spec` and :func:`validate_pod_template_spec` are shared with the
workload kinds (apps, batch), which embed a pod template. The rules and their wording
follow upstream's ``pkg/apis/core/validation``; ``docs/validation.md`` lists them.

What other parts of the API server already refuse is not repeated here: a pod update
changing more than its mutable fields and the ``immutable`` ConfigMap/Secret data
(``apiserver/_immutable``), a Service's ClusterIP changing or a nodePort outside its range
(``apiserver/_services``), non-base64 Secret data (400 at decoding, as upstream).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from . import (
    FieldError,
    FieldErrorType,
    qualified_name_problems,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_label_value,
    validate_labels,
    validate_qualified_name,
)
from .core_common import (
    quantity,
    valid_ip,
    validate_cidr,
    validate_config_key,
    validate_enum,
    validate_ip,
    validate_nonnegative,
    validate_nonnegative_quantity,
    validate_port_num_or_name,
    validate_port_number,
    validate_protocol,
)
from .core_pod import validate_pod_spec, validate_pod_template_spec, volume_source_errors
from .kinds import KindValidator

__all__ = [
    "VALIDATORS",
    "validate_ephemeral_containers_update",
    "validate_pod_spec",
    "validate_pod_template_spec",
]

MAX_DATA_SIZE = 1024 * 1024
"""Upstream's ``MaxSecretSize``: the most a ConfigMap or Secret may hold."""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _too_long(field: str, limit: int) -> FieldError:
    return FieldError(FieldErrorType.TOO_LONG, field, detail=f"must have at most {limit} bytes")


# ---- Pod, PodTemplate, ReplicationController ---------------------------------------------


def validate_pod(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """A Pod's spec (``ValidatePodCreate``/``ValidatePodUpdate``; what may change on an
    update is checked by the API server's immutable-field check)."""
    spec = _map(obj.get("spec"))
    errs = validate_pod_spec(spec, "spec")
    if old is None and spec.get("ephemeralContainers"):
        errs.append(FieldError.forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if old is None and spec.get("nodeName") and spec.get("schedulingGates"):
        errs.append(
            FieldError.forbidden(
                "spec.nodeName", "cannot be set until all schedulingGates have been cleared"
            )
        )
    return errs


MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


def validate_ephemeral_containers_update(
    obj: Mapping[str, Any], old: Mapping[str, Any]
) -> list[FieldError]:
    """``ValidatePodEphemeralContainersUpdate``: the pod as a whole is valid and its
    ephemeral containers were only added to, never changed or removed (order aside: a
    patch need not keep it); static pods have none."""
    if MIRROR_POD_ANNOTATION in _map(_map(old.get("metadata")).get("annotations")):
        return [FieldError.forbidden("", "static pods do not support ephemeral containers")]
    errs = validate_pod_spec(_map(obj.get("spec")), "spec")
    path = "spec.ephemeralContainers"
    new_by_name = {
        _map(c).get("name"): _map(c)
        for c in _list(_map(obj.get("spec")).get("ephemeralContainers"))
    }
    for previous in _list(_map(old.get("spec")).get("ephemeralContainers")):
        name = _map(previous).get("name")
        current = new_by_name.get(name)
        if current is None:
            errs.append(
                FieldError.forbidden(
                    path, f"existing ephemeral containers {json.dumps(name)} may not be removed\n"
                )
            )
        elif current != previous:
            errs.append(
                FieldError.forbidden(
                    f"{path}[{name}]",
                    f"existing ephemeral containers {json.dumps(name)} may not be changed\n"
                    + _field_diff(previous, current),
                )
            )
    return errs


def _field_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The changed fields, one ``-``/``+`` line each (upstream prints Go's ``cmp.Diff``)."""
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            if key in old:
                lines.append(f"-\t{key}: {json.dumps(old[key])}")
            if key in new:
                lines.append(f"+\t{key}: {json.dumps(new[key])}")
    return "\n".join(lines)


def validate_pod_template(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """A PodTemplate's template (``ValidatePodTemplate``)."""
    return validate_pod_template_spec(_map(obj.get("template")), "template")


def validate_replication_controller(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidateReplicationControllerSpec``: a selector matching the template's labels,
    replicas >= 0, a template whose pods always restart."""
    spec = _map(obj.get("spec"))
    errs = validate_nonnegative(spec.get("replicas"), "spec.replicas")
    errs += validate_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    selector = _map(spec.get("selector"))
    if not selector:
        errs.append(FieldError.required("spec.selector"))
    else:
        errs += validate_labels(selector, "spec.selector")
    template = spec.get("template")
    if template is None:
        errs.append(FieldError.required("spec.template"))
        return errs
    labels = _map(_map(template.get("metadata")).get("labels"))
    if selector and any(labels.get(k) != v for k, v in selector.items()):
        errs.append(
            FieldError.invalid(
                "spec.template.metadata.labels",
                dict(labels),
                "`selector` does not match template `labels`",
            )
        )
    errs += validate_pod_template_spec(template, "spec.template")
    restart = _map(template.get("spec")).get("restartPolicy")
    if restart not in (None, "Always"):
        errs.append(
            FieldError.not_supported("spec.template.spec.restartPolicy", restart, ["Always"])
        )
    if _map(template.get("spec")).get("activeDeadlineSeconds") is not None:
        errs.append(
            FieldError.forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicationController is not Supported",
            )
        )
    return errs


# ---- ConfigMap, Secret -------------------------------------------------------------------


def validate_config_map(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateConfigMap``: keys, no key in both ``data`` and ``binaryData``, <= 1 MiB."""
    errs: list[FieldError] = []
    data, binary = _map(obj.get("data")), _map(obj.get("binaryData"))
    total = 0
    for key, value in data.items():
        errs += validate_config_key(key, f"data[{key}]")
        if key in binary:
            errs.append(
                FieldError.invalid(f"data[{key}]", key, "duplicate of key present in binaryData")
            )
        total += len(value.encode()) if isinstance(value, str) else 0
    for key, value in binary.items():
        errs += validate_config_key(key, f"binaryData[{key}]")
        total += _decoded_len(value)
    if total > MAX_DATA_SIZE:
        errs.append(_too_long("", MAX_DATA_SIZE))
    return errs


def _decoded_len(value: Any) -> int:
    """Bytes a base64 value stands for (it was checked at decoding)."""
    if not isinstance(value, str):
        return 0
    text = value.replace("\n", "").replace("\r", "")
    return len(text) * 3 // 4 - text[-2:].count("=")


_SECRET_TYPES_KEYS = {
    "kubernetes.io/dockercfg": ".dockercfg",
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/ssh-auth": "ssh-privatekey",
}


def validate_secret(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateSecret``: keys, <= 1 MiB, and what each ``type`` needs."""
    errs: list[FieldError] = []
    data = _map(obj.get("data"))
    total = 0
    for key, value in data.items():
        errs += validate_config_key(key, f"data[{key}]")
        total += _decoded_len(value)
    if total > MAX_DATA_SIZE:
        errs.append(_too_long("data", MAX_DATA_SIZE))
    kind = obj.get("type") or "Opaque"
    if kind == "kubernetes.io/service-account-token":
        annotations = _map(_map(obj.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(
                FieldError.required("metadata.annotations[kubernetes.io/service-account.name]")
            )
    elif kind in _SECRET_TYPES_KEYS:
        key = _SECRET_TYPES_KEYS[kind]
        if key not in data:
            errs.append(FieldError.required(f"data[{key}]"))
        elif kind != "kubernetes.io/ssh-auth":
            errs += _json_key_errors(data[key], f"data[{key}]")
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(FieldError.required("data[username]"))
            errs.append(FieldError.required("data[password]"))
    elif kind == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.append(FieldError.required(f"data[{key}]"))
    if old is not None and (old.get("type") or "Opaque") != kind:
        errs.append(FieldError.invalid("type", kind, "field is immutable"))
    return errs


def _json_key_errors(value: Any, field: str) -> list[FieldError]:
    """A docker config key holds JSON (its value is never echoed back)."""
    try:
        json.loads(base64.b64decode(value or ""))
    except (ValueError, binascii.Error) as exc:
        return [FieldError.invalid(field, "<secret contents redacted>", str(exc))]
    return []


# ---- Service, Endpoints ------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def validate_service(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateService``: type, ports, ClusterIP, ExternalName, affinity, IP families."""
    spec = _map(obj.get("spec"))
    errs: list[FieldError] = []
    kind = spec.get("type") or "ClusterIP"
    errs += validate_enum(spec.get("type"), "spec.type", SERVICE_TYPES)
    ports = _list(spec.get("ports"))
    if kind != "ExternalName" and not ports and spec.get("clusterIP") != "None":
        errs.append(FieldError.required("spec.ports"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(FieldError.required(f"{p}.name"))
        elif name:
            errs += validate_dns1123_label(name, f"{p}.name")
            if name in names:
                errs.append(FieldError.duplicate(f"{p}.name", name))
            names.add(name)
        errs += validate_port_number(port.get("port"), f"{p}.port")
        errs += validate_protocol(port.get("protocol", "TCP"), f"{p}.protocol")
        if port.get("targetPort") not in (None, 0, ""):
            errs += validate_port_num_or_name(port["targetPort"], f"{p}.targetPort")
        node_port = port.get("nodePort")
        if node_port:
            if kind == "ClusterIP":
                errs.append(
                    FieldError.forbidden(
                        f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"
                    )
                )
            errs += validate_port_number(node_port, f"{p}.nodePort")
        key = (port.get("port"), port.get("protocol", "TCP"))
        if key in seen:
            errs.append(FieldError.duplicate(p, {"port": key[0], "protocol": key[1]}))
        seen.add(key)
    cluster_ip = spec.get("clusterIP")
    if kind == "ExternalName":
        name = spec.get("externalName") or ""
        if not name:
            errs.append(FieldError.required("spec.externalName"))
        else:
            errs += validate_dns1123_subdomain(name.removesuffix("."), "spec.externalName")
        if cluster_ip and cluster_ip != "None":
            errs.append(
                FieldError.forbidden("spec.clusterIP", "may not be set for ExternalName services")
            )
    elif cluster_ip and cluster_ip != "None" and not valid_ip(cluster_ip):
        errs.append(
            FieldError.invalid(
                "spec.clusterIP", cluster_ip, "must be empty, 'None', or a valid IP address"
            )
        )
    errs += validate_labels(_map(spec.get("selector")), "spec.selector")
    affinity = spec.get("sessionAffinity")
    errs += validate_enum(affinity, "spec.sessionAffinity", ("ClientIP", "None"))
    timeout = _map(_map(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
    if affinity == "ClientIP" and timeout is not None and not 0 < timeout <= 86400:
        errs.append(
            FieldError.invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                "must be greater than 0 and less than 86400",
            )
        )
    elif affinity != "ClientIP" and spec.get("sessionAffinityConfig") is not None:
        errs.append(
            FieldError.forbidden(
                "spec.sessionAffinityConfig",
                f"must not be set when session affinity is {affinity or 'None'}",
            )
        )
    errs += _ip_family_errors(spec, kind)
    for field in ("externalTrafficPolicy", "internalTrafficPolicy"):
        errs += validate_enum(spec.get(field), f"spec.{field}", ("Cluster", "Local"))
    if spec.get("externalTrafficPolicy") and kind not in ("NodePort", "LoadBalancer"):
        errs.append(
            FieldError.invalid(
                "spec.externalTrafficPolicy",
                spec["externalTrafficPolicy"],
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            )
        )
    for i, ip in enumerate(_list(spec.get("externalIPs"))):
        errs += validate_ip(ip, f"spec.externalIPs[{i}]")
    return errs


def _ip_family_errors(spec: Mapping[str, Any], kind: str) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = spec.get("ipFamilyPolicy")
    families = _list(spec.get("ipFamilies"))
    if kind == "ExternalName":
        if policy:
            errs.append(
                FieldError.forbidden(
                    "spec.ipFamilyPolicy", "must not be set for ExternalName service"
                )
            )
        if families:
            errs.append(
                FieldError.forbidden("spec.ipFamilies", "may not be set for ExternalName services")
            )
        return errs
    errs += validate_enum(
        policy, "spec.ipFamilyPolicy", ("SingleStack", "PreferDualStack", "RequireDualStack")
    )
    seen: set[str] = set()
    for i, family in enumerate(families):
        errs += validate_enum(family, f"spec.ipFamilies[{i}]", ("IPv4", "IPv6"))
        if family in seen:
            errs.append(FieldError.duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    if len(families) > 2:
        errs.append(
            FieldError(
                FieldErrorType.TOO_MANY, "spec.ipFamilies", families, "must have at most 2 items"
            )
        )
    if policy == "SingleStack" and len(families) > 1:
        errs.append(
            FieldError.invalid(
                "spec.ipFamilies",
                families,
                "when spec.ipFamilyPolicy is SingleStack, at most one IP family may be specified",
            )
        )
    return errs


def validate_endpoints(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateEndpoints``: addresses are IPs (not unspecified or link-local), ports valid.

    Unlike upstream, a loopback address is allowed: a kubetrio node without a network sits
    on 127.0.0.1, and the endpoints of its host-network pods are that address.
    """
    errs: list[FieldError] = []
    for i, subset in enumerate(_list(obj.get("subsets"))):
        p = f"subsets[{i}]"
        for list_name in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(_list(subset.get(list_name))):
                errs += _endpoint_address_errors(address, f"{p}.{list_name}[{j}]")
        ports = _list(subset.get("ports"))
        for j, port in enumerate(ports):
            pp = f"{p}.ports[{j}]"
            name = port.get("name") or ""
            if len(ports) > 1 and not name:
                errs.append(FieldError.required(f"{pp}.name"))
            elif name:
                errs += validate_dns1123_label(name, f"{pp}.name")
            errs += validate_port_number(port.get("port"), f"{pp}.port")
            errs += validate_protocol(port.get("protocol", "TCP"), f"{pp}.protocol")
    return errs


def _endpoint_address_errors(address: Mapping[str, Any], path: str) -> list[FieldError]:
    ip = address.get("ip") or ""
    errs = validate_ip(ip, f"{path}.ip")
    if not errs:
        parsed = ipaddress.ip_address(ip)
        if parsed.is_unspecified:
            errs.append(FieldError.invalid(f"{path}.ip", ip, "may not be unspecified (0.0.0.0)"))
        elif parsed.is_link_local:
            errs.append(
                FieldError.invalid(
                    f"{path}.ip",
                    ip,
                    "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                )
            )
    if address.get("hostname"):
        errs += validate_dns1123_label(address["hostname"], f"{path}.hostname")
    if address.get("nodeName"):
        errs += validate_dns1123_subdomain(address["nodeName"], f"{path}.nodeName")
    return errs


# ---- Namespace, Node, ServiceAccount -----------------------------------------------------


def validate_namespace(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateNamespace``: spec finalizers are standard or qualified names."""
    errs: list[FieldError] = []
    for i, name in enumerate(_list(_map(obj.get("spec")).get("finalizers"))):
        field = f"spec.finalizers[{i}]"
        problems = qualified_name_problems(name)
        errs += [FieldError.invalid(field, name, p) for p in problems]
        if not problems and "/" not in name and name != "kubernetes":
            errs.append(
                FieldError.invalid(
                    field,
                    name,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return errs


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_node(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateNode``: pod CIDRs, taints (key, value, effect, unique key+effect)."""
    spec = _map(obj.get("spec"))
    errs: list[FieldError] = []
    if spec.get("podCIDR"):
        errs += validate_cidr(spec["podCIDR"], "spec.podCIDR")
    cidrs = _list(spec.get("podCIDRs"))
    for i, cidr in enumerate(cidrs):
        errs += validate_cidr(cidr, f"spec.podCIDRs[{i}]")
    if len(cidrs) > 2:
        errs.append(
            FieldError.invalid(
                "spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family"
            )
        )
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(_list(spec.get("taints"))):
        p = f"spec.taints[{i}]"
        key = taint.get("key") or ""
        if not key:
            errs.append(FieldError.required(f"{p}.key"))
        else:
            errs += validate_qualified_name(key, f"{p}.key")
        if taint.get("value"):
            errs += validate_label_value(taint["value"], f"{p}.value")
        effect = taint.get("effect") or ""
        if not effect:
            errs.append(FieldError.required(f"{p}.effect"))
        else:
            errs += validate_enum(effect, f"{p}.effect", TAINT_EFFECTS)
        if (key, effect) in seen:
            errs.append(FieldError.duplicate(p, {"key": key, "effect": effect}))
        seen.add((key, effect))
    return errs


def validate_service_account(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """A ServiceAccount's secret and image pull secret references name objects."""
    errs: list[FieldError] = []
    for field in ("secrets", "imagePullSecrets"):
        for i, ref in enumerate(_list(obj.get(field))):
            if ref.get("name"):
                errs += validate_dns1123_subdomain(ref["name"], f"{field}[{i}].name")
    return errs


# ---- LimitRange, ResourceQuota -----------------------------------------------------------


def validate_limit_range(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """``ValidateLimitRange``: type, non-negative quantities, min <= default(Request) <= max."""
    errs: list[FieldError] = []
    seen_types: set[str] = set()
    for i, limit in enumerate(_list(_map(obj.get("spec")).get("limits"))):
        p = f"spec.limits[{i}]"
        kind = limit.get("type") or ""
        if not kind:
            errs.append(FieldError.required(f"{p}.type"))
        else:
            errs += validate_enum(kind, f"{p}.type", ("Pod", "Container", "PersistentVolumeClaim"))
            if kind in seen_types:
                errs.append(FieldError.duplicate(f"{p}.type", kind))
            seen_types.add(kind)
        values: dict[str, dict[str, Any]] = {}
        for part in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            values[part] = {}
            for name, value in _map(limit.get(part)).items():
                field = f"{p}.{part}[{name}]"
                errs += validate_qualified_name(name, field)
                errs += validate_nonnegative_quantity(value, field)
                values[part][name] = quantity(value)
        if kind == "Pod":
            for part in ("default", "defaultRequest"):
                if limit.get(part):
                    errs.append(
                        FieldError.forbidden(
                            f"{p}.{part}", "may not be specified when `type` is 'Pod'"
                        )
                    )
        errs += _limit_order_errors(values, p)
    return errs


# (field reported, value shown, smaller, larger, message): upstream's order checks
_LIMIT_ORDER = (
    ("min", "min", "min", "max", "min value {} is greater than max value {}"),
    (
        "defaultRequest",
        "defaultRequest",
        "min",
        "defaultRequest",
        "min value {} is greater than default request value {}",
    ),
    (
        "defaultRequest",
        "defaultRequest",
        "defaultRequest",
        "max",
        "default request value {} is greater than max value {}",
    ),
    (
        "defaultRequest",
        "defaultRequest",
        "defaultRequest",
        "default",
        "default request value {} is greater than default limit value {}",
    ),
    ("default", "min", "min", "default", "min value {} is greater than default value {}"),
    ("default", "max", "default", "max", "default value {} is greater than max value {}"),
)


def _limit_order_errors(values: dict[str, dict[str, Any]], p: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names = set().union(*(v.keys() for v in values.values()))
    for name in sorted(names):
        for field, shown, small, large, what in _LIMIT_ORDER:
            a, b = values[small].get(name), values[large].get(name)
            if a is not None and b is not None and a > b:
                value = str(values[shown].get(name))
                errs.append(FieldError.invalid(f"{p}.{field}[{name}]", value, what.format(a, b)))
        ratio = values["maxLimitRequestRatio"].get(name)
        if ratio is not None and ratio.nanos < 10**9:
            errs.append(
                FieldError.invalid(
                    f"{p}.maxLimitRequestRatio[{name}]", str(ratio), f"ratio {ratio} is less than 1"
                )
            )
    return errs


_QUOTA_STANDARD = {
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "cpu",
    "memory",
    "ephemeral-storage",
    "storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
}
_QUOTA_SCOPES = (
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
)


def _quota_resource_name_errors(name: str, field: str) -> list[FieldError]:
    errs = validate_qualified_name(name, field)
    if errs or "/" in name:
        return errs
    standard = name in _QUOTA_STANDARD or name.startswith(("hugepages-", "requests.hugepages-"))
    if not standard:
        errs.append(FieldError.invalid(field, name, "must be a standard resource for quota"))
    return errs


def validate_resource_quota(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidateResourceQuota``: resource names, non-negative hard limits, scopes."""
    spec = _map(obj.get("spec"))
    errs: list[FieldError] = []
    for name, value in _map(spec.get("hard")).items():
        field = f"spec.hard[{name}]"
        errs += _quota_resource_name_errors(name, field)
        errs += validate_nonnegative_quantity(value, field)
    for i, scope in enumerate(_list(spec.get("scopes"))):
        errs += validate_enum(scope, f"spec.scopes[{i}]", _QUOTA_SCOPES)
    return errs


# ---- PersistentVolume, PersistentVolumeClaim --------------------------------------------

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
_PV_SOURCES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
)


def _access_mode_errors(modes: list[Any], field: str, detail: str = "") -> list[FieldError]:
    if not modes:
        return [FieldError.required(field, detail)]
    errs: list[FieldError] = []
    for mode in modes:
        errs += validate_enum(mode, field, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(
            FieldError.forbidden(field, "may not use ReadWriteOncePod with other access modes")
        )
    return errs


def validate_persistent_volume(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidatePersistentVolume``: capacity, access modes, exactly one source, policy."""
    spec = _map(obj.get("spec"))
    errs = _access_mode_errors(_list(spec.get("accessModes")), "spec.accessModes")
    capacity = _map(spec.get("capacity"))
    if not capacity:
        errs.append(FieldError.required("spec.capacity"))
    for name, value in capacity.items():
        if name != "storage":
            errs.append(FieldError.not_supported(f"spec.capacity[{name}]", name, ["storage"]))
        errs += validate_nonnegative_quantity(value, f"spec.capacity[{name}]")
    errs += volume_source_errors(spec, "spec", _PV_SOURCES)
    errs += validate_enum(
        spec.get("persistentVolumeReclaimPolicy"),
        "spec.persistentVolumeReclaimPolicy",
        ("Delete", "Recycle", "Retain"),
    )
    errs += validate_enum(spec.get("volumeMode"), "spec.volumeMode", ("Block", "Filesystem"))
    if spec.get("storageClassName"):
        errs += validate_dns1123_subdomain(spec["storageClassName"], "spec.storageClassName")
    return errs


_PVC_IMMUTABLE_DETAIL = (
    "spec is immutable after creation except resources.requests and "
    "volumeAttributesClassName for bound claims"
)


def validate_persistent_volume_claim(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[FieldError]:
    """``ValidatePersistentVolumeClaim``: access modes and a positive storage request;
    on update only ``resources.requests`` may change (and grow), ``volumeName`` be set."""
    spec = _map(obj.get("spec"))
    errs = _access_mode_errors(
        _list(spec.get("accessModes")), "spec.accessModes", "at least 1 access mode is required"
    )
    requests = _map(_map(spec.get("resources")).get("requests"))
    storage = requests.get("storage")
    if storage is None:
        errs.append(FieldError.required("spec.resources[storage]"))
    else:
        q = quantity(storage)
        if q is None or q.nanos <= 0:
            errs.append(
                FieldError.invalid(
                    "spec.resources[storage]", str(q or storage), "must be greater than zero"
                )
            )
    for name, value in requests.items():
        if name != "storage":
            errs += validate_nonnegative_quantity(value, f"spec.resources.requests[{name}]")
    errs += validate_enum(spec.get("volumeMode"), "spec.volumeMode", ("Block", "Filesystem"))
    if old is not None:
        bound = _map(old.get("status")).get("phase") == "Bound"
        errs += _pvc_update_errors(spec, _map(old.get("spec")), bound=bound)
    return errs


def _pvc_update_errors(
    spec: Mapping[str, Any], old_spec: Mapping[str, Any], *, bound: bool = True
) -> list[FieldError]:
    def fixed(s: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in s.items() if k not in ("resources", "volumeAttributesClassName")}
        # binding fills in volumeName, a default class fills in storageClassName
        for field in ("volumeName", "storageClassName"):
            if not other.get(field):
                out.pop(field, None)
        res = dict(_map(s.get("resources")))
        res.pop("requests", None)
        out["resources"] = res
        return out

    errs: list[FieldError] = []
    new_q = quantity(_map(_map(spec.get("resources")).get("requests")).get("storage"))
    old_q = quantity(_map(_map(old_spec.get("resources")).get("requests")).get("storage"))
    # Only a bound claim may change its storage request (upstream: the request is
    # ignored in the comparison when the claim is Bound).
    resized = not bound and new_q != old_q
    if resized or fixed(spec, old_spec) != fixed(old_spec, old_spec):
        errs.append(FieldError.forbidden("spec", _PVC_IMMUTABLE_DETAIL))
    if new_q is not None and old_q is not None and new_q < old_q:
        errs.append(
            FieldError.forbidden(
                "spec.resources.requests.storage", "field can not be less than previous value"
            )
        )
    return errs


VALIDATORS: dict[tuple[str, str], KindValidator] = {
    ("", "pods"): validate_pod,
    ("", "podtemplates"): validate_pod_template,
    ("", "replicationcontrollers"): validate_replication_controller,
    ("", "configmaps"): validate_config_map,
    ("", "secrets"): validate_secret,
    ("", "services"): validate_service,
    ("", "endpoints"): validate_endpoints,
    ("", "namespaces"): validate_namespace,
    ("", "nodes"): validate_node,
    ("", "serviceaccounts"): validate_service_account,
    ("", "limitranges"): validate_limit_range,
    ("", "resourcequotas"): validate_resource_quota,
    ("", "persistentvolumes"): validate_persistent_volume,
    ("", "persistentvolumeclaims"): validate_persistent_volume_claim,
}
