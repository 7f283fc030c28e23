"""Validation of a PodSpec, as upstream's ``ValidatePodSpec`` (pkg/apis/core/validation).

Objects are plain dicts (JSON shape, camelCase), already typed by the resource's model
and defaulted, so types are right; what is checked here is what the types cannot say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import (
    FieldError,
    FieldErrorType,
    label_value_problems,
    validate_annotations,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_labels,
    validate_qualified_name,
)
from .core_common import (
    INT32_MAX,
    STANDARD_CONTAINER_RESOURCES,
    quantity,
    validate_config_key,
    validate_container_resource_name,
    validate_enum,
    validate_env_var_name,
    validate_int_range,
    validate_ip,
    validate_nonnegative,
    validate_nonnegative_quantity,
    validate_port_name,
    validate_port_num_or_name,
    validate_port_number,
    validate_protocol,
)

__all__ = [
    "validate_pod_spec",
    "validate_pod_template_spec",
    "validate_tolerations",
    "volume_source_errors",
]

# ---- PodSpec ----------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _validate_ports(ports: list[Any], path: str, host_network: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        name = port.get("name")
        if name:
            errs += validate_port_name(name, f"{p}.name")
            if name in names:
                errs.append(FieldError.duplicate(f"{p}.name", name))
            names.add(name)
        container_port = port.get("containerPort")
        if not container_port:
            errs.append(FieldError.required(f"{p}.containerPort"))
        else:
            errs += validate_port_number(container_port, f"{p}.containerPort")
        host_port = port.get("hostPort")
        if host_port:
            errs += validate_port_number(host_port, f"{p}.hostPort")
            if host_network and host_port != container_port:
                errs.append(
                    FieldError.invalid(
                        f"{p}.hostPort",
                        host_port,
                        "must match `containerPort` when `hostNetwork` is true",
                    )
                )
        errs += validate_protocol(port.get("protocol", "TCP"), f"{p}.protocol")
        if port.get("hostIP"):
            errs += validate_ip(port["hostIP"], f"{p}.hostIP")
    return errs


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef")


def _validate_env(env: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env):
        p = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.append(FieldError.required(f"{p}.name"))
        else:
            errs += validate_env_var_name(name, f"{p}.name")
        source = var.get("valueFrom")
        if source is None:
            continue
        vf = f"{p}.valueFrom"
        given = [s for s in _ENV_SOURCES if source.get(s) is not None]
        if not given:
            errs.append(
                FieldError.invalid(
                    vf,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` "
                    "or `secretKeyRef`",
                )
            )
        elif len(given) > 1:
            errs.append(
                FieldError.invalid(vf, "", "may not have more than one field specified at a time")
            )
        if var.get("value"):
            errs.append(
                FieldError.invalid(vf, "", "may not be specified when `value` is not empty")
            )
        for ref in ("configMapKeyRef", "secretKeyRef"):
            selector = source.get(ref)
            if selector is None:
                continue
            if not selector.get("name"):
                errs.append(FieldError.required(f"{vf}.{ref}.name"))
            key = selector.get("key") or ""
            if not key:
                errs.append(FieldError.required(f"{vf}.{ref}.key"))
            else:
                errs += validate_config_key(key, f"{vf}.{ref}.key")
        field_ref = source.get("fieldRef")
        if field_ref is not None and not field_ref.get("fieldPath"):
            errs.append(FieldError.required(f"{vf}.fieldRef.fieldPath"))
        resource_ref = source.get("resourceFieldRef")
        if resource_ref is not None and not resource_ref.get("resource"):
            errs.append(FieldError.required(f"{vf}.resourceFieldRef.resource"))
    return errs


def _validate_env_from(env_from: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, source in enumerate(env_from):
        p = f"{path}[{i}]"
        if source.get("prefix"):
            errs += validate_env_var_name(source["prefix"], f"{p}.prefix")
        given = [s for s in ("configMapRef", "secretRef") if source.get(s) is not None]
        if not given:
            errs.append(
                FieldError.invalid(p, "", "must specify one of: `configMapRef` or `secretRef`")
            )
        elif len(given) > 1:
            errs.append(
                FieldError.invalid(p, "", "may not have more than one field specified at a time")
            )
        for ref in given:
            name = source[ref].get("name")
            if not name:
                errs.append(FieldError.required(f"{p}.{ref}.name"))
            else:
                errs += validate_dns1123_subdomain(name, f"{p}.{ref}.name")
    return errs


def _validate_mounts(mounts: list[Any], path: str, volumes: Mapping[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_paths: set[str] = set()
    for i, mount in enumerate(mounts):
        p = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(FieldError.required(f"{p}.name"))
        elif name not in volumes:
            errs.append(FieldError(FieldErrorType.NOT_FOUND, f"{p}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(FieldError.required(f"{p}.mountPath"))
        elif mount_path in mount_paths:
            errs.append(FieldError.invalid(f"{p}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
        sub_path = mount.get("subPath")
        if sub_path:
            errs += _validate_local_descending_path(sub_path, f"{p}.subPath")
    return errs


def _validate_local_descending_path(value: str, field: str) -> list[FieldError]:
    errs = []
    if value.startswith("/"):
        errs.append(FieldError.invalid(field, value, "must be a relative path"))
    if ".." in value.split("/"):
        errs.append(FieldError.invalid(field, value, "must not contain '..'"))
    return errs


def _validate_resources(resources: Mapping[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    limits, requests = _map(resources.get("limits")), _map(resources.get("requests"))
    for name, value in limits.items():
        field = f"{path}.limits[{name}]"
        errs += validate_container_resource_name(name, field)
        errs += validate_nonnegative_quantity(value, field)
    for name, value in requests.items():
        field = f"{path}.requests[{name}]"
        errs += validate_container_resource_name(name, field)
        errs += validate_nonnegative_quantity(value, field)
        request, limit = quantity(value), quantity(limits.get(name))
        if request is None or limit is None:
            continue
        overcommit = name in STANDARD_CONTAINER_RESOURCES
        if not overcommit and request != limit:
            errs.append(FieldError.invalid(field, str(request), f"must be equal to {name} limit"))
        elif request > limit:
            errs.append(
                FieldError.invalid(
                    field, str(request), f"must be less than or equal to {name} limit of {limit}"
                )
            )
    return errs


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def _validate_handler(
    handler: Mapping[str, Any], path: str, kinds: tuple[str, ...]
) -> list[FieldError]:
    errs: list[FieldError] = []
    given = [k for k in kinds if handler.get(k) is not None]
    if not given:
        return [FieldError.required(path, "must specify a handler type")]
    for extra in given[1:]:
        errs.append(
            FieldError.forbidden(f"{path}.{extra}", "may not specify more than 1 handler type")
        )
    action = given[0]
    body = handler[action]
    p = f"{path}.{action}"
    if action == "exec":
        if not body.get("command"):
            errs.append(FieldError.required(f"{p}.command"))
    elif action == "httpGet":
        if not body.get("path"):
            errs.append(FieldError.required(f"{p}.path"))
        errs += validate_port_num_or_name(body.get("port"), f"{p}.port")
        errs += validate_enum(body.get("scheme"), f"{p}.scheme", ("HTTP", "HTTPS"))
        for j, header in enumerate(_list(body.get("httpHeaders"))):
            if not header.get("name"):
                errs.append(FieldError.required(f"{p}.httpHeaders[{j}].name"))
    elif action == "tcpSocket":
        errs += validate_port_num_or_name(body.get("port"), f"{p}.port")
    elif action == "grpc":
        errs += validate_port_number(body.get("port"), f"{p}.port")
    elif action == "sleep":
        errs += validate_nonnegative(body.get("seconds"), f"{p}.seconds")
    return errs


def _validate_probe(probe: Mapping[str, Any], path: str, kind: str) -> list[FieldError]:
    errs = _validate_handler(probe, path, _HANDLERS)
    for field in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        errs += validate_nonnegative(probe.get(field), f"{path}.{field}")
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None:
        if kind == "readinessProbe":
            errs.append(
                FieldError.invalid(
                    f"{path}.terminationGracePeriodSeconds",
                    grace,
                    "must not be set for readinessProbes",
                )
            )
        elif grace <= 0:
            errs.append(
                FieldError.invalid(
                    f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"
                )
            )
    success = probe.get("successThreshold")
    if kind in ("livenessProbe", "startupProbe") and success is not None and success != 1:
        errs.append(FieldError.invalid(f"{path}.successThreshold", success, "must be 1"))
    return errs


def _validate_security_context(ctx: Mapping[str, Any], path: str) -> list[FieldError]:
    """Fields a pod's and a container's securityContext share."""
    errs: list[FieldError] = []
    for field in ("runAsUser", "runAsGroup"):
        errs += validate_int_range(ctx.get(field), f"{path}.{field}", 0, INT32_MAX)
    return errs


def _validate_container_security_context(ctx: Mapping[str, Any], path: str) -> list[FieldError]:
    errs = _validate_security_context(ctx, path)
    if ctx.get("privileged") and ctx.get("allowPrivilegeEscalation") is False:
        errs.append(
            FieldError.invalid(
                path,
                ctx,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            )
        )
    return errs


_SYSCTL = r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
_SYSCTL_RE = re.compile(_SYSCTL)


def _validate_pod_security_context(ctx: Mapping[str, Any], path: str) -> list[FieldError]:
    errs = _validate_security_context(ctx, path)
    errs += validate_int_range(ctx.get("fsGroup"), f"{path}.fsGroup", 0, INT32_MAX)
    for i, group in enumerate(_list(ctx.get("supplementalGroups"))):
        errs += validate_int_range(group, f"{path}.supplementalGroups[{i}]", 0, INT32_MAX)
    errs += validate_enum(
        ctx.get("fsGroupChangePolicy"), f"{path}.fsGroupChangePolicy", ("OnRootMismatch", "Always")
    )
    names: set[str] = set()
    for i, sysctl in enumerate(_list(ctx.get("sysctls"))):
        p = f"{path}.sysctls[{i}].name"
        name = sysctl.get("name") or ""
        if not name:
            errs.append(FieldError.required(p))
        elif len(name) > 253 or not _SYSCTL_RE.fullmatch(name):
            errs.append(
                FieldError.invalid(
                    p, name, f"must have at most 253 characters and match regex {_SYSCTL}"
                )
            )
        if name in names:
            errs.append(FieldError.duplicate(p, name))
        names.add(name)
    return errs


def _validate_containers(
    containers: list[Any],
    path: str,
    volumes: Mapping[str, Any],
    names: set[str],
    *,
    init: bool,
    host_network: bool,
) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, c in enumerate(containers):
        p = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            errs.append(FieldError.required(f"{p}.name"))
        else:
            errs += validate_dns1123_label(name, f"{p}.name")
            if name in names:
                errs.append(FieldError.duplicate(f"{p}.name", name))
            names.add(name)
        if not c.get("image"):
            errs.append(FieldError.required(f"{p}.image"))
        errs += validate_enum(
            c.get("imagePullPolicy"), f"{p}.imagePullPolicy", ("Always", "IfNotPresent", "Never")
        )
        errs += validate_enum(
            c.get("terminationMessagePolicy"),
            f"{p}.terminationMessagePolicy",
            ("File", "FallbackToLogsOnError"),
        )
        errs += _validate_ports(_list(c.get("ports")), f"{p}.ports", host_network)
        errs += _validate_env(_list(c.get("env")), f"{p}.env")
        errs += _validate_env_from(_list(c.get("envFrom")), f"{p}.envFrom")
        errs += _validate_mounts(_list(c.get("volumeMounts")), f"{p}.volumeMounts", volumes)
        errs += _validate_resources(_map(c.get("resources")), f"{p}.resources")
        sidecar = init and c.get("restartPolicy") == "Always"
        if init:
            errs += validate_enum(c.get("restartPolicy"), f"{p}.restartPolicy", ("Always",))
        elif c.get("restartPolicy") is not None:
            errs.append(
                FieldError.forbidden(f"{p}.restartPolicy", "may not be set for non-init containers")
            )
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            if init and not sidecar:
                errs.append(
                    FieldError.forbidden(
                        f"{p}.{kind}",
                        "may not be set for init containers without restartPolicy=Always",
                    )
                )
                continue
            errs += _validate_probe(probe, f"{p}.{kind}", kind)
        lifecycle = c.get("lifecycle")
        if lifecycle is not None:
            if init and not sidecar:
                errs.append(
                    FieldError.forbidden(
                        f"{p}.lifecycle",
                        "may not be set for init containers without restartPolicy=Always",
                    )
                )
            else:
                for hook in ("postStart", "preStop"):
                    if lifecycle.get(hook) is not None:
                        errs += _validate_handler(
                            lifecycle[hook], f"{p}.lifecycle.{hook}", _LIFECYCLE_HANDLERS
                        )
        if c.get("securityContext") is not None:
            errs += _validate_container_security_context(
                c["securityContext"], f"{p}.securityContext"
            )
    return errs


_EPHEMERAL_FORBIDDEN = (
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)
"""Container fields an ephemeral container may not set, in upstream's field order (its
``allowedEphemeralContainerFields`` lists what may: not what fundamental pod services
rely on)."""

_EPHEMERAL_DETAIL = "cannot be set for an Ephemeral Container"


def _validate_ephemeral_containers(
    ephemeral: list[Any], path: str, volumes: Mapping[str, Any], names: set[str]
) -> list[FieldError]:
    """``validateEphemeralContainers``: a container's rules, a name unique among all the
    pod's containers, a ``targetContainerName`` naming an init or app container, and no
    ports, probes, resources, lifecycle or volume subPaths."""
    others = set(names)  # the init and app containers, the ones a target may name
    errs: list[FieldError] = []
    for i, container in enumerate(ephemeral):
        p = f"{path}[{i}]"
        # The common container rules, without those only app containers have.
        common = {k: v for k, v in container.items() if k not in _EPHEMERAL_FORBIDDEN}
        found = _validate_containers([common], path, volumes, names, init=False, host_network=False)
        errs += [_at_index(e, path, i) for e in found]
        target = container.get("targetContainerName")
        if target and target not in others:
            errs.append(FieldError(FieldErrorType.NOT_FOUND, f"{p}.targetContainerName", target))
        for field in _EPHEMERAL_FORBIDDEN:
            if container.get(field):  # a zero value (absent, {} or []) is no setting
                errs.append(FieldError.forbidden(f"{p}.{field}", _EPHEMERAL_DETAIL))
        for j, mount in enumerate(_list(container.get("volumeMounts"))):
            for field in ("subPath", "subPathExpr"):
                if _map(mount).get(field):
                    errs.append(
                        FieldError.forbidden(f"{p}.volumeMounts[{j}].{field}", _EPHEMERAL_DETAIL)
                    )
    return errs


def _at_index(error: FieldError, path: str, index: int) -> FieldError:
    """``error`` of a one-container list validated alone, moved to ``path[index]``."""
    single = f"{path}[0]"
    if index == 0 or not error.field.startswith(single):
        return error
    return FieldError(
        error.type, f"{path}[{index}]" + error.field[len(single) :], error.bad_value, error.detail
    )


_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)

_MODE_DETAIL = "must be a number between 0 and 0777 (octal), both inclusive"


def _validate_mode(mode: Any, field: str) -> list[FieldError]:
    if isinstance(mode, int) and not 0 <= mode <= 0o777:
        return [FieldError.invalid(field, mode, _MODE_DETAIL)]
    return []


def _validate_key_paths(items: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for j, item in enumerate(items):
        p = f"{path}[{j}]"
        if not item.get("key"):
            errs.append(FieldError.required(f"{p}.key"))
        target = item.get("path") or ""
        if not target:
            errs.append(FieldError.required(f"{p}.path"))
        else:
            errs += _validate_local_descending_path(target, f"{p}.path")
        errs += _validate_mode(item.get("mode"), f"{p}.mode")
    return errs


def volume_source_errors(
    source: Mapping[str, Any], path: str, kinds: tuple[str, ...] = _VOLUME_SOURCES
) -> list[FieldError]:
    """Exactly one volume type, and that type's required fields (shared with PVs)."""
    given = [k for k in kinds if source.get(k) is not None]
    if not given:
        return [FieldError.required(path, "must specify a volume type")]
    errs = [
        FieldError.forbidden(f"{path}.{extra}", "may not specify more than 1 volume type")
        for extra in given[1:]
    ]
    kind = given[0]
    body = _map(source[kind])
    p = f"{path}.{kind}"
    required = {
        "hostPath": "path",
        "secret": "secretName",
        "configMap": "name",
        "persistentVolumeClaim": "claimName",
        "nfs": "server",
        "csi": "driver",
        "local": "path",
        "gcePersistentDisk": "pdName",
        "awsElasticBlockStore": "volumeID",
        "iscsi": "targetPortal",
        "rbd": "image",
        "cephfs": "monitors",
        "image": "reference",
    }
    if kind in required and not body.get(required[kind]):
        errs.append(FieldError.required(f"{p}.{required[kind]}"))
    if kind == "nfs" and not body.get("path"):
        errs.append(FieldError.required(f"{p}.path"))
    if kind == "hostPath":
        errs += validate_enum(
            body.get("type"),
            f"{p}.type",
            (
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ),
        )
    if kind == "emptyDir":
        errs += validate_enum(body.get("medium"), f"{p}.medium", ("", "Memory", "HugePages"))
        if body.get("sizeLimit") is not None:
            errs += validate_nonnegative_quantity(body["sizeLimit"], f"{p}.sizeLimit")
    if kind in ("secret", "configMap", "downwardAPI", "projected"):
        errs += _validate_mode(body.get("defaultMode"), f"{p}.defaultMode")
    if kind in ("secret", "configMap"):
        errs += _validate_key_paths(_list(body.get("items")), f"{p}.items")
    return errs


def _validate_volumes(volumes: list[Any], path: str) -> tuple[dict[str, Any], list[FieldError]]:
    errs: list[FieldError] = []
    by_name: dict[str, Any] = {}
    for i, volume in enumerate(volumes):
        p = f"{path}[{i}]"
        name = volume.get("name") or ""
        if not name:
            errs.append(FieldError.required(f"{p}.name"))
        else:
            errs += validate_dns1123_label(name, f"{p}.name")
            if name in by_name:
                errs.append(FieldError.duplicate(f"{p}.name", name))
        errs += volume_source_errors(volume, p)
        by_name[name] = volume
    return by_name, errs


def validate_tolerations(tolerations: list[Any], path: str) -> list[FieldError]:
    """Keys, operators, values and effects of tolerations (upstream's ``ValidateTolerations``)."""
    errs: list[FieldError] = []
    for i, t in enumerate(tolerations):
        p = f"{path}[{i}]"
        key, operator, value = t.get("key") or "", t.get("operator") or "", t.get("value") or ""
        if key:
            errs += validate_qualified_name(key, f"{p}.key")
        elif operator != "Exists":
            errs.append(
                FieldError.invalid(
                    f"{p}.operator",
                    operator,
                    'operator must be Exists when `key` is empty, which means "match all '
                    'values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(
                FieldError.invalid(
                    f"{p}.effect",
                    t.get("effect") or "",
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if operator in ("", "Equal"):
            errs += [
                FieldError.invalid(f"{p}.value", value, problem)
                for problem in label_value_problems(value)
            ]
        elif operator == "Exists":
            if value:
                errs.append(
                    FieldError.invalid(
                        f"{p}.operator", value, "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            errs.append(FieldError.not_supported(f"{p}.operator", operator, ("Equal", "Exists")))
        errs += validate_enum(
            t.get("effect"), f"{p}.effect", ("NoSchedule", "PreferNoSchedule", "NoExecute")
        )
    return errs


def _validate_dns(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    policy = spec.get("dnsPolicy")
    errs += validate_enum(
        policy, f"{path}.dnsPolicy", ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
    )
    config = spec.get("dnsConfig")
    if policy == "None" and config is None:
        errs.append(
            FieldError.required(
                f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"
            )
        )
    if config is None:
        return errs
    p = f"{path}.dnsConfig"
    nameservers = _list(config.get("nameservers"))
    if policy == "None" and not nameservers:
        errs.append(
            FieldError.required(
                f"{p}.nameservers",
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )
        )
    if len(nameservers) > 3:
        errs.append(
            FieldError.invalid(
                f"{p}.nameservers", nameservers, "must not have more than 3 nameservers"
            )
        )
    for i, server in enumerate(nameservers):
        errs += validate_ip(server, f"{p}.nameservers[{i}]")
    searches = _list(config.get("searches"))
    if len(searches) > 32:
        errs.append(
            FieldError.invalid(f"{p}.searches", searches, "must not have more than 32 search paths")
        )
    if len(" ".join(searches)) > 2048:
        errs.append(
            FieldError.invalid(
                f"{p}.searches",
                searches,
                "must not have more than 2048 characters (including spaces) in the search list",
            )
        )
    for i, search in enumerate(searches):
        # a trailing dot marks a fully qualified name; "." alone is allowed
        if search != ".":
            errs += validate_dns1123_subdomain(search.removesuffix("."), f"{p}.searches[{i}]")
    for i, option in enumerate(_list(config.get("options"))):
        if not option.get("name"):
            errs.append(FieldError.required(f"{p}.options[{i}]", "Option.Name must not be empty"))
    return errs


def _validate_host_aliases(aliases: list[Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, alias in enumerate(aliases):
        p = f"{path}[{i}]"
        if not alias.get("ip"):
            errs.append(FieldError.required(f"{p}.ip"))
        else:
            errs += validate_ip(alias["ip"], f"{p}.ip")
        for j, hostname in enumerate(_list(alias.get("hostnames"))):
            errs += validate_dns1123_subdomain(hostname, f"{p}.hostnames[{j}]")
    return errs


def validate_pod_spec(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    """Problems of a PodSpec found at ``path`` (e.g. ``spec`` or ``spec.template.spec``)."""
    errs: list[FieldError] = []
    volumes, volume_errs = _validate_volumes(_list(spec.get("volumes")), f"{path}.volumes")
    errs += volume_errs
    host_network = bool(spec.get("hostNetwork"))
    names: set[str] = set()
    containers = _list(spec.get("containers"))
    # Init containers first, as upstream: a regular container reusing an init
    # container's name is the duplicate.
    errs += _validate_containers(
        _list(spec.get("initContainers")),
        f"{path}.initContainers",
        volumes,
        names,
        init=True,
        host_network=host_network,
    )
    if not containers:
        errs.append(FieldError.required(f"{path}.containers"))
    errs += _validate_containers(
        containers, f"{path}.containers", volumes, names, init=False, host_network=host_network
    )
    errs += _validate_ephemeral_containers(
        _list(spec.get("ephemeralContainers")), f"{path}.ephemeralContainers", volumes, names
    )
    errs += validate_enum(
        spec.get("restartPolicy"), f"{path}.restartPolicy", ("Always", "OnFailure", "Never")
    )
    errs += _validate_dns(spec, path)
    if spec.get("securityContext") is not None:
        errs += _validate_pod_security_context(spec["securityContext"], f"{path}.securityContext")
    errs += validate_nonnegative(
        spec.get("terminationGracePeriodSeconds"), f"{path}.terminationGracePeriodSeconds"
    )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None:
        errs += validate_int_range(deadline, f"{path}.activeDeadlineSeconds", 1, INT32_MAX)
    errs += validate_labels(_map(spec.get("nodeSelector")), f"{path}.nodeSelector")
    errs += validate_tolerations(_list(spec.get("tolerations")), f"{path}.tolerations")
    errs += _validate_host_aliases(_list(spec.get("hostAliases")), f"{path}.hostAliases")
    for field, check in (
        ("hostname", validate_dns1123_label),
        ("subdomain", validate_dns1123_label),
        ("nodeName", validate_dns1123_subdomain),
        ("serviceAccountName", validate_dns1123_subdomain),
        ("priorityClassName", validate_dns1123_subdomain),
    ):
        if spec.get(field):
            errs += check(spec[field], f"{path}.{field}")
    return errs


def validate_pod_template_spec(template: Mapping[str, Any], path: str) -> list[FieldError]:
    """Problems of a PodTemplateSpec at ``path`` (its labels and its pod spec)."""
    meta = _map(template.get("metadata"))
    errs = validate_labels(_map(meta.get("labels")), f"{path}.metadata.labels")
    errs += validate_annotations(_map(meta.get("annotations")), f"{path}.metadata.annotations")
    errs += validate_pod_spec(_map(template.get("spec")), f"{path}.spec")
    return errs
