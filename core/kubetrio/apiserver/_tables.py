"""Server-side tables for ``kubectl get``: the columns kubectl users know, per resource.

kubectl asks for ``as=Table`` and prints what the server sends; columns with priority 1
appear only with ``-o wide``. Each row carries the object's metadata (kubectl reads the
namespace and labels from it for ``-A``, ``-L`` and ``--show-labels``).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from typing import Any

from kubetrio.api import autoscaling
from kubetrio.api.quantity import Quantity
from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject

Column = tuple[str, str, int, Callable[[KubeObject], Any]]
"""(name, type, priority, cell function)."""


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints ages (``5s``, ``3m20s``, ``2d4h``, ``3y``)."""
    if seconds < -1:
        return "<invalid>"
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def _age_of(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.UTC) - when).total_seconds())


def _age(obj: KubeObject) -> str:
    return _age_of((obj.get("metadata") or {}).get("creationTimestamp"))


def _name(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _path(obj: Any, *parts: str, default: Any = None) -> Any:
    for part in parts:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(part)
    return default if obj is None else obj


def _flow_schema_dangling(schema: KubeObject) -> str:
    """MissingPL as kubectl prints it: the ``Dangling`` condition's status, else ``?``."""
    for condition in _path(schema, "status", "conditions", default=None) or ():
        if condition.get("type") == "Dangling":
            return str(condition.get("status", "?"))
    return "?"


def _queuing(level: KubeObject, field: str) -> Any:
    """A queuing setting of a PriorityLevelConfiguration, ``<none>`` when it rejects."""
    queuing = _path(level, "spec", "limited", "limitResponse", "queuing", default=None)
    return "<none>" if not queuing else queuing.get(field, "<none>")


def _none(value: Any) -> str:
    return "<none>" if value in (None, "", []) else str(value)


def _ingress_class_parameters(ingress_class: Any) -> str:
    """``Kind[.group]/name`` of an IngressClass's parameters, as kubectl's printer."""
    parameters = _path(ingress_class, "spec", "parameters")
    if not isinstance(parameters, dict):
        return "<none>"
    kind = str(parameters.get("kind", ""))
    if parameters.get("apiGroup"):
        kind += "." + str(parameters["apiGroup"])
    return f"{kind}/{parameters.get('name', '')}"


def _selector_text(selector: Any) -> str:
    if not isinstance(selector, dict):
        return "<none>"
    labels = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    parts = [f"{k}={v}" for k, v in sorted((labels or {}).items()) if isinstance(v, str)]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        op = expr.get("operator", "")
        key = expr.get("key", "")
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


# --- pods ---------------------------------------------------------------------------------


def _pod_ready(pod: KubeObject) -> str:
    statuses = _path(pod, "status", "containerStatuses", default=[])
    total = len(_path(pod, "spec", "containers", default=[]))
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{total}"


def _pod_status(pod: KubeObject) -> str:
    """The STATUS column as kubectl shows it: a waiting/terminated reason beats the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    init_statuses = status.get("initContainerStatuses") or []
    init_total = len(_path(pod, "spec", "initContainers", default=[]))
    for i, init in enumerate(init_statuses):
        state = init.get("state") or {}
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            reason = "Init:" + (
                terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}"
            )
        elif (state.get("waiting") or {}).get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{init_total}"
        break
    else:
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                terminated = state["terminated"]
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
    if _path(pod, "metadata", "deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(pod: KubeObject) -> str:
    statuses = _path(pod, "status", "containerStatuses", default=[])
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    last = None
    for s in statuses:
        finished = _path(s, "lastState", "terminated", "finishedAt")
        if finished and (last is None or finished > last):
            last = finished
    if restarts and last:
        return f"{restarts} ({_age_of(last)} ago)"
    return str(restarts)


def _readiness_gates(pod: KubeObject) -> str:
    gates = _path(pod, "spec", "readinessGates", default=[])
    if not gates:
        return "<none>"
    conditions = {
        c.get("type"): c.get("status") for c in _path(pod, "status", "conditions", default=[])
    }
    ready = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{ready}/{len(gates)}"


# --- workloads ----------------------------------------------------------------------------


def _containers(obj: KubeObject) -> list[KubeObject]:
    return list(_path(obj, "spec", "template", "spec", "containers", default=[]))


def _container_names(obj: KubeObject) -> str:
    return ",".join(c.get("name", "") for c in _containers(obj)) or "<none>"


def _images(obj: KubeObject) -> str:
    return ",".join(c.get("image", "") for c in _containers(obj)) or "<none>"


def _ready_of(obj: KubeObject) -> str:
    ready = _path(obj, "status", "readyReplicas", default=0)
    return f"{ready}/{_path(obj, 'spec', 'replicas', default=1)}"


# --- services, nodes, misc ----------------------------------------------------------------


def _service_ports(svc: KubeObject) -> str:
    ports = []
    for port in _path(svc, "spec", "ports", default=[]):
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _external_ip(svc: KubeObject) -> str:
    spec = svc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return str(spec.get("externalName", "<none>"))
    ips = list(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        ingress = _path(svc, "status", "loadBalancer", "ingress", default=[])
        ips += [i.get("ip") or i.get("hostname") for i in ingress]
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ips) or "<none>"


def _node_status(node: KubeObject) -> str:
    conditions = _path(node, "status", "conditions", default=[])
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    text = (
        "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    )
    if _path(node, "spec", "unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(node: KubeObject) -> str:
    labels = _path(node, "metadata", "labels", default={})
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(r for r in roles if r) or "<none>"


def _node_address(node: KubeObject, kind: str) -> str:
    for address in _path(node, "status", "addresses", default=[]):
        if address.get("type") == kind:
            return str(address.get("address"))
    return "<none>"


_ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _access_modes(modes: Any) -> str:
    """``RWO,RWX``: access modes as upstream's printer abbreviates them."""
    return ",".join(_ACCESS_MODES.get(m, str(m)) for m in modes or [])


_DEFAULT_CLASS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def _class_name(storage_class: KubeObject) -> str:
    """A StorageClass' name, with `` (default)`` for the default one, as upstream."""
    annotations = _path(storage_class, "metadata", "annotations", default={})
    default = any(annotations.get(a) == "true" for a in _DEFAULT_CLASS)
    return _name(storage_class) + (" (default)" if default else "")


def _storage_phase(obj: KubeObject, default: str) -> str:
    """A claim's or volume's phase, ``Terminating`` once deleted (as upstream prints it)."""
    if _path(obj, "metadata", "deletionTimestamp"):
        return "Terminating"
    return str(_path(obj, "status", "phase", default=default))


def _claim_of(volume: KubeObject) -> str:
    claim = _path(volume, "spec", "claimRef")
    return f"{claim.get('namespace')}/{claim.get('name')}" if claim else ""


def _event_object(event: KubeObject) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _event_last_seen(event: KubeObject) -> str:
    return _age_of(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or _path(event, "metadata", "creationTimestamp")
    )


def _job_completions(job: KubeObject) -> str:
    succeeded = _path(job, "status", "succeeded", default=0)
    return f"{succeeded}/{_path(job, 'spec', 'completions', default=1)}"


def _job_duration(job: KubeObject) -> str:
    start = _path(job, "status", "startTime")
    if not start:
        return ""
    end = _path(job, "status", "completionTime")
    started = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    ended = (
        datetime.datetime.fromisoformat(end.replace("Z", "+00:00"))
        if end
        else datetime.datetime.now(datetime.UTC)
    )
    return human_duration((ended - started).total_seconds())


def _spec_flag(obj: KubeObject, field: str, default: bool) -> bool:
    value = _path(obj, "spec", field)
    return default if value is None else bool(value)


def _csidriver_token_requests(driver: KubeObject) -> str:
    requests = _path(driver, "spec", "tokenRequests")
    if requests is None:
        return "<unset>"
    return ",".join(str(r.get("audience", "")) for r in requests)


_CSIDRIVER_COLUMNS: list[Column] = [
    # kubectl's printCSIDriver: attachRequired is true unless set
    ("AttachRequired", "boolean", 0, lambda d: _spec_flag(d, "attachRequired", True)),
    ("PodInfoOnMount", "boolean", 0, lambda d: _spec_flag(d, "podInfoOnMount", False)),
    ("StorageCapacity", "boolean", 0, lambda d: _spec_flag(d, "storageCapacity", False)),
    ("TokenRequests", "string", 0, _csidriver_token_requests),
    ("RequiresRepublish", "boolean", 0, lambda d: _spec_flag(d, "requiresRepublish", False)),
    (
        "Modes",
        "string",
        0,
        lambda d: (
            ",".join(_path(d, "spec", "volumeLifecycleModes", default=None) or []) or "<none>"
        ),
    ),
    ("Age", "string", 0, _age),
]


def _hpa_v2(hpa: KubeObject) -> KubeObject:
    """An HPA as autoscaling/v2 (a v1 view is converted back), which the row is built from."""
    return autoscaling.to_v2(hpa) if hpa.get("apiVersion") == autoscaling.V1 else hpa


def _hpa_target(spec: KubeObject, status: Any, name: str) -> str:
    """One metric's ``current/target`` as kubectl's ``formatHPAMetrics``."""
    target = spec.get("target") or {}
    current = (status or {}).get("current") or {}
    if target.get("averageValue") is not None:
        now = current.get("averageValue") if status else None
        return f"{name}: {now if now is not None else '<unknown>'}/{target['averageValue']}"
    now = current.get("averageUtilization")
    shown = f"{now}%" if now is not None else "<unknown>"
    wanted = target.get("averageUtilization")
    return f"{name}: {shown}/{f'{wanted}%' if wanted is not None else '<auto>'}"


def _hpa_targets(hpa: KubeObject) -> str:
    """The TARGETS column: each metric's current value against its target, two at most."""
    hpa = _hpa_v2(hpa)
    specs = _path(hpa, "spec", "metrics", default=[])
    statuses = _path(hpa, "status", "currentMetrics", default=[])
    if not specs:
        return "<none>"
    cells = []
    for i, spec in enumerate(specs):
        kind = spec.get("type")
        status = statuses[i] if i < len(statuses) else {}
        key = {
            "Resource": "resource",
            "ContainerResource": "containerResource",
            "Pods": "pods",
            "Object": "object",
            "External": "external",
        }.get(kind)
        if key is None:
            cells.append("<unknown type>")
            continue
        source = spec.get(key) or {}
        found = status.get(key)
        if kind in ("Resource", "ContainerResource"):
            cells.append(_hpa_target(source, found, str(source.get("name", ""))))
            continue
        target = source.get("target") or {}
        current = (found or {}).get("current") or {}
        if kind != "Pods" and target.get("averageValue") is not None:
            now = current.get("averageValue") or "<unknown>"
            cells.append(f"{now}/{target['averageValue']} (avg)")
        elif kind == "Pods":
            now = current.get("averageValue") if found else None
            cells.append(f"{now or '<unknown>'}/{target.get('averageValue')}")
        else:
            now = current.get("value") if found else None
            cells.append(f"{now or '<unknown>'}/{target.get('value')}")
    if len(cells) > 2:
        return f"{', '.join(cells[:2])} + {len(cells) - 2} more..."
    return ", ".join(cells)


def _hpa_min_pods(hpa: KubeObject) -> str:
    minimum = _path(hpa, "spec", "minReplicas")
    return "<unset>" if minimum is None else str(minimum)


def _usage_sum(resource: str) -> Callable[[KubeObject], str]:
    """A PodMetrics' containers' (or a NodeMetrics') usage of ``resource``, summed as
    metrics-server's table does."""

    def cell(metrics: KubeObject) -> str:
        usages = [c.get("usage") or {} for c in metrics.get("containers") or ()]
        if "usage" in metrics:
            usages = [metrics["usage"]]
        found = [Quantity(u[resource]) for u in usages if resource in u]
        return str(sum(found[1:], found[0])) if found else "0"

    return cell


_METRICS_COLUMNS: list[Column] = [
    ("cpu", "string", 0, _usage_sum("cpu")),
    ("memory", "string", 0, _usage_sum("memory")),
    ("Window", "string", 0, lambda m: str(m.get("window") or "")),
]


COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("metrics.k8s.io", "nodes"): _METRICS_COLUMNS,
    ("metrics.k8s.io", "pods"): _METRICS_COLUMNS,
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        # kube-apiserver prints the creation time itself here, not an age
        ("Created At", "date", 0, lambda crd: _path(crd, "metadata", "creationTimestamp")),
    ],
    ("", "pods"): [
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, lambda p: _none(_path(p, "status", "podIP"))),
        ("Node", "string", 1, lambda p: _none(_path(p, "spec", "nodeName"))),
        ("Nominated Node", "string", 1, lambda p: _none(_path(p, "status", "nominatedNodeName"))),
        ("Readiness Gates", "string", 1, _readiness_gates),
    ],
    ("apps", "deployments"): [
        ("Ready", "string", 0, _ready_of),
        ("Up-to-date", "integer", 0, lambda d: _path(d, "status", "updatedReplicas", default=0)),
        ("Available", "integer", 0, lambda d: _path(d, "status", "availableReplicas", default=0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
        ("Selector", "string", 1, lambda d: _selector_text(_path(d, "spec", "selector"))),
    ],
    ("apps", "replicasets"): [
        ("Desired", "integer", 0, lambda r: _path(r, "spec", "replicas", default=1)),
        ("Current", "integer", 0, lambda r: _path(r, "status", "replicas", default=0)),
        ("Ready", "integer", 0, lambda r: _path(r, "status", "readyReplicas", default=0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
        ("Selector", "string", 1, lambda r: _selector_text(_path(r, "spec", "selector"))),
    ],
    ("apps", "statefulsets"): [
        ("Ready", "string", 0, _ready_of),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
    ],
    ("apps", "daemonsets"): [
        (
            "Desired",
            "integer",
            0,
            lambda d: _path(d, "status", "desiredNumberScheduled", default=0),
        ),
        (
            "Current",
            "integer",
            0,
            lambda d: _path(d, "status", "currentNumberScheduled", default=0),
        ),
        ("Ready", "integer", 0, lambda d: _path(d, "status", "numberReady", default=0)),
        (
            "Up-to-date",
            "integer",
            0,
            lambda d: _path(d, "status", "updatedNumberScheduled", default=0),
        ),
        ("Available", "integer", 0, lambda d: _path(d, "status", "numberAvailable", default=0)),
        (
            "Node Selector",
            "string",
            0,
            lambda d: _selector_text(
                _path(d, "spec", "template", "spec", "nodeSelector", default={})
            ),
        ),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
    ],
    ("", "services"): [
        ("Type", "string", 0, lambda s: _path(s, "spec", "type", default="ClusterIP")),
        ("Cluster-IP", "string", 0, lambda s: _none(_path(s, "spec", "clusterIP"))),
        ("External-IP", "string", 0, _external_ip),
        ("Port(s)", "string", 0, _service_ports),
        ("Age", "string", 0, _age),
        ("Selector", "string", 1, lambda s: _selector_text(_path(s, "spec", "selector"))),
    ],
    ("", "nodes"): [
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        ("Age", "string", 0, _age),
        (
            "Version",
            "string",
            0,
            lambda n: _path(n, "status", "nodeInfo", "kubeletVersion", default=""),
        ),
        ("Internal-IP", "string", 1, lambda n: _node_address(n, "InternalIP")),
        ("External-IP", "string", 1, lambda n: _node_address(n, "ExternalIP")),
        ("OS-Image", "string", 1, lambda n: _path(n, "status", "nodeInfo", "osImage", default="")),
        (
            "Kernel-Version",
            "string",
            1,
            lambda n: _path(n, "status", "nodeInfo", "kernelVersion", default=""),
        ),
        (
            "Container-Runtime",
            "string",
            1,
            lambda n: _path(n, "status", "nodeInfo", "containerRuntimeVersion", default=""),
        ),
    ],
    ("", "namespaces"): [
        ("Status", "string", 0, lambda n: _path(n, "status", "phase", default="Active")),
        ("Age", "string", 0, _age),
    ],
    ("", "configmaps"): [
        ("Data", "integer", 0, lambda c: len(c.get("data") or {}) + len(c.get("binaryData") or {})),
        ("Age", "string", 0, _age),
    ],
    ("", "secrets"): [
        ("Type", "string", 0, lambda s: s.get("type", "Opaque")),
        ("Data", "integer", 0, lambda s: len(s.get("data") or {})),
        ("Age", "string", 0, _age),
    ],
    ("", "serviceaccounts"): [
        ("Secrets", "integer", 0, lambda s: len(s.get("secrets") or [])),
        ("Age", "string", 0, _age),
    ],
    ("", "events"): [
        ("Last Seen", "string", 0, _event_last_seen),
        ("Type", "string", 0, lambda e: e.get("type", "")),
        ("Reason", "string", 0, lambda e: e.get("reason", "")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, lambda e: str(e.get("message") or e.get("note") or "").strip()),
    ],
    ("", "persistentvolumeclaims"): [
        ("Status", "string", 0, lambda c: _storage_phase(c, "Pending")),
        ("Volume", "string", 0, lambda c: _path(c, "spec", "volumeName", default="")),
        ("Capacity", "string", 0, lambda c: _path(c, "status", "capacity", "storage", default="")),
        (
            "Access Modes",
            "string",
            0,
            lambda c: _access_modes(_path(c, "status", "accessModes", default=[])),
        ),
        ("StorageClass", "string", 0, lambda c: _path(c, "spec", "storageClassName", default="")),
        ("Age", "string", 0, _age),
    ],
    ("", "persistentvolumes"): [
        ("Capacity", "string", 0, lambda v: _path(v, "spec", "capacity", "storage", default="")),
        (
            "Access Modes",
            "string",
            0,
            lambda v: _access_modes(_path(v, "spec", "accessModes", default=[])),
        ),
        (
            "Reclaim Policy",
            "string",
            0,
            lambda v: _path(v, "spec", "persistentVolumeReclaimPolicy", default=""),
        ),
        ("Status", "string", 0, lambda v: _storage_phase(v, "")),
        (
            "Claim",
            "string",
            0,
            _claim_of,
        ),
        ("StorageClass", "string", 0, lambda v: _path(v, "spec", "storageClassName", default="")),
        ("Reason", "string", 0, lambda v: _path(v, "status", "reason", default="")),
        ("Age", "string", 0, _age),
    ],
    ("storage.k8s.io", "storageclasses"): [
        ("Provisioner", "string", 0, lambda c: c.get("provisioner", "")),
        ("ReclaimPolicy", "string", 0, lambda c: c.get("reclaimPolicy", "Delete")),
        ("VolumeBindingMode", "string", 0, lambda c: c.get("volumeBindingMode", "Immediate")),
        ("AllowVolumeExpansion", "boolean", 0, lambda c: bool(c.get("allowVolumeExpansion"))),
        ("Age", "string", 0, _age),
    ],
    ("batch", "jobs"): [
        ("Completions", "string", 0, _job_completions),
        ("Duration", "string", 0, _job_duration),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
    ],
    ("batch", "cronjobs"): [
        ("Schedule", "string", 0, lambda c: _path(c, "spec", "schedule", default="")),
        ("Suspend", "boolean", 0, lambda c: bool(_path(c, "spec", "suspend", default=False))),
        ("Active", "integer", 0, lambda c: len(_path(c, "status", "active", default=[]))),
        (
            "Last Schedule",
            "string",
            0,
            lambda c: (
                _age_of(_path(c, "status", "lastScheduleTime"))
                if _path(c, "status", "lastScheduleTime")
                else "<none>"
            ),
        ),
        ("Age", "string", 0, _age),
    ],
    ("networking.k8s.io", "ingresses"): [
        ("Class", "string", 0, lambda i: _none(_path(i, "spec", "ingressClassName"))),
        (
            "Hosts",
            "string",
            0,
            lambda i: (
                ",".join(r.get("host", "*") for r in _path(i, "spec", "rules", default=[])) or "*"
            ),
        ),
        (
            "Address",
            "string",
            0,
            lambda i: ",".join(
                x.get("ip") or x.get("hostname", "")
                for x in _path(i, "status", "loadBalancer", "ingress", default=[])
            ),
        ),
        ("Ports", "string", 0, lambda i: "80, 443" if _path(i, "spec", "tls") else "80"),
        ("Age", "string", 0, _age),
    ],
    ("networking.k8s.io", "ingressclasses"): [
        ("Controller", "string", 0, lambda c: _path(c, "spec", "controller", default="")),
        ("Parameters", "string", 0, lambda c: _ingress_class_parameters(c)),
        ("Age", "string", 0, _age),
    ],
    ("certificates.k8s.io", "certificatesigningrequests"): [
        ("Age", "string", 0, _age),
        ("SignerName", "string", 0, lambda c: _path(c, "spec", "signerName", default="")),
        ("Requestor", "string", 0, lambda c: _path(c, "spec", "username", default="")),
        ("RequestedDuration", "string", 0, lambda c: _requested_duration(c)),
        ("Condition", "string", 0, lambda c: _csr_condition(c)),
    ],
    ("flowcontrol.apiserver.k8s.io", "flowschemas"): [
        (
            "PriorityLevel",
            "string",
            0,
            lambda f: _path(f, "spec", "priorityLevelConfiguration", "name", default=""),
        ),
        ("MatchingPrecedence", "string", 0, lambda f: _path(f, "spec", "matchingPrecedence")),
        (
            "DistinguisherMethod",
            "string",
            0,
            lambda f: _path(f, "spec", "distinguisherMethod", "type", default="<none>"),
        ),
        ("Age", "string", 0, _age),
        ("MissingPL", "string", 0, _flow_schema_dangling),
    ],
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"): [
        ("Type", "string", 0, lambda p: _path(p, "spec", "type", default="")),
        (
            "NominalConcurrencyShares",
            "string",
            0,
            lambda p: _path(p, "spec", "limited", "nominalConcurrencyShares", default="<none>"),
        ),
        ("Queues", "string", 0, lambda p: _queuing(p, "queues")),
        ("HandSize", "string", 0, lambda p: _queuing(p, "handSize")),
        ("QueueLengthLimit", "string", 0, lambda p: _queuing(p, "queueLengthLimit")),
        ("Age", "string", 0, _age),
    ],
    ("apiregistration.k8s.io", "apiservices"): [
        ("Service", "string", 0, lambda a: _api_service_backend(a)),
        ("Available", "string", 0, lambda a: _api_service_available(a)),
        ("Age", "string", 0, _age),
    ],
    ("storage.k8s.io", "csinodes"): [
        ("Drivers", "integer", 0, lambda c: len(_path(c, "spec", "drivers", default=None) or [])),
        ("Age", "string", 0, _age),
    ],
    ("storage.k8s.io", "csidrivers"): _CSIDRIVER_COLUMNS,
    ("autoscaling", "horizontalpodautoscalers"): [
        (
            "Reference",
            "string",
            0,
            lambda h: (
                f"{_path(h, 'spec', 'scaleTargetRef', 'kind', default='')}/"
                f"{_path(h, 'spec', 'scaleTargetRef', 'name', default='')}"
            ),
        ),
        ("Targets", "string", 0, _hpa_targets),
        ("MinPods", "string", 0, _hpa_min_pods),
        ("MaxPods", "integer", 0, lambda h: _path(h, "spec", "maxReplicas", default=0)),
        ("Replicas", "integer", 0, lambda h: _path(h, "status", "currentReplicas", default=0)),
        ("Age", "string", 0, _age),
    ],
    ("scheduling.k8s.io", "priorityclasses"): [
        ("Value", "integer", 0, lambda c: c.get("value", 0)),
        ("Global-Default", "boolean", 0, lambda c: bool(c.get("globalDefault"))),
        ("Age", "string", 0, _age),
        ("PreemptionPolicy", "string", 0, lambda c: c.get("preemptionPolicy", "")),
    ],
    ("", "endpoints"): [
        (
            "Endpoints",
            "string",
            0,
            lambda e: (
                ",".join(
                    f"{a.get('ip')}:{p.get('port')}"
                    for s in e.get("subsets") or []
                    for a in s.get("addresses") or []
                    for p in s.get("ports") or [{}]
                )
                or "<none>"
            ),
        ),
        ("Age", "string", 0, _age),
    ],
}


_JSONPATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\*|-?\d+|'[^']*'|\"[^\"]*\")\]")


def json_path_values(obj: Any, json_path: str) -> list[Any]:
    """The values a CRD printer column's ``jsonPath`` selects (``.spec.replicas``,
    ``.status.conditions[0].type``, ``.spec.items[*].name``, ``.metadata.labels['a.b/c']``);
    empty when nothing is there."""
    path = json_path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    values = [obj]
    at = 0
    while at < len(path):
        step = _JSONPATH_STEP.match(path, at)
        if step is None:
            return []
        at = step.end()
        key, index = step.group(1), step.group(2)
        found: list[Any] = []
        for value in values:
            if key is not None or (index and index[0] in "'\""):
                name = key if key is not None else index[1:-1]
                if isinstance(value, dict) and name in value:
                    found.append(value[name])
            elif index == "*":
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
            elif isinstance(value, list):
                position = int(index)
                if -len(value) <= position < len(value):
                    found.append(value[position])
        values = found
    return values


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _custom_cell(kind: str, json_path: str) -> Callable[[KubeObject], Any]:
    """A cell as apiextensions-apiserver's table convertor fills it: the first value at
    ``json_path`` typed by the column (``date`` becomes an age), None when absent."""

    def cell(obj: KubeObject) -> Any:
        values = json_path_values(obj, json_path)
        if not values or values[0] is None:
            return None
        value = values[0]
        if kind == "string":
            return _text(value)
        if kind == "integer":
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if kind == "number":
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if kind == "boolean":
            return value if isinstance(value, bool) else None
        if kind == "date":
            return _age_of(value) if isinstance(value, str) else None
        return _text(value)

    return cell


def _custom_table(info: ResourceInfo) -> tuple[list[KubeObject], list[Column]]:
    """Column definitions and cells of a CRD version's ``additionalPrinterColumns``."""
    assert info.custom is not None
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": NAME_DESCRIPTION,
            "priority": 0,
        }
    ]
    columns: list[Column] = []
    for column in info.custom.printer_columns:
        kind = str(column.get("type", "string"))
        definitions.append(
            {
                "name": str(column.get("name", "")),
                "type": kind,
                "format": str(column.get("format", "")),
                "description": str(column.get("description", "")),
                "priority": int(column.get("priority", 0)),
            }
        )
        columns.append(
            (
                str(column.get("name", "")),
                kind,
                int(column.get("priority", 0)),
                _custom_cell(kind, str(column.get("jsonPath", ""))),
            )
        )
    return definitions, columns


NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)


def _requested_duration(csr: KubeObject) -> str:
    seconds = _path(csr, "spec", "expirationSeconds")
    return human_duration(seconds) if isinstance(seconds, int) else "<none>"


def _csr_condition(csr: KubeObject) -> str:
    """As kubectl's ``extractCSRStatus``: Denied, else Approved, else Pending; then
    ``,Failed`` and ``,Issued``."""
    types = {c.get("type") for c in _path(csr, "status", "conditions", default=[]) if c}
    status = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        status += ",Failed"
    if _path(csr, "status", "certificate"):
        status += ",Issued"
    return status


def _api_service_backend(api_service: KubeObject) -> str:
    """``namespace/name`` of the Service behind an APIService, or ``Local`` (kube-aggregator)."""
    service = _path(api_service, "spec", "service")
    if not isinstance(service, dict):
        return "Local"
    return f"{service.get('namespace', '')}/{service.get('name', '')}"


def _api_service_available(api_service: KubeObject) -> str:
    """The Available condition: ``True``, ``False (Reason)`` or ``Unknown``."""
    for condition in _path(api_service, "status", "conditions", default=[]):
        if isinstance(condition, dict) and condition.get("type") == "Available":
            status = str(condition.get("status", ""))
            if status != "True" and condition.get("reason"):
                return f"{status} ({condition['reason']})"
            return status
    return "Unknown"


def table(
    info: ResourceInfo,
    items: list[KubeObject],
    resource_version: str,
    *,
    include_object: str = "Metadata",
    headers: bool = True,
) -> KubeObject:
    """A ``meta.k8s.io/v1`` Table of ``items`` (objects with kind/metadata)."""
    if info.custom is not None:
        definitions, columns = _custom_table(info)
    else:
        columns = COLUMNS.get((info.group, info.resource)) or [("Age", "string", 0, _age)]
        definitions = [
            {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}
        ] + [
            {"name": name, "type": kind, "format": "", "description": "", "priority": priority}
            for name, kind, priority, _ in columns
        ]
    rows = []
    for obj in items:
        cells = [_class_name(obj) if info.resource == "storageclasses" else _name(obj)]
        for _, _, _, cell in columns:
            try:
                cells.append(cell(obj))
            except Exception:  # a malformed stored object must not break `kubectl get`
                cells.append("<unknown>")
        if include_object == "Object":
            row_object = obj
        elif include_object == "None":
            row_object = None
        else:
            row_object = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        row: KubeObject = {"cells": cells}
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    result: KubeObject = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
    }
    if headers:
        result["columnDefinitions"] = definitions
    result["rows"] = rows
    return result
