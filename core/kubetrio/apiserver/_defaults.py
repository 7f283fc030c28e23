"""Defaults the API server fills in on create and update, as kube-apiserver's defaulters do.

Clients (kubectl describe, rollout status, controllers) read these fields, so an object
that comes back without them behaves differently from Kubernetes. Only values the
upstream defaulters set are filled, and only where the client left them out.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from kubetrio.api import autoscaling
from kubetrio.api.qos import pod_qos_class
from kubetrio.kubeobject import KubeObject


def _set(obj: KubeObject, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


def _image_pull_policy(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    tag = name.rsplit(":", 1)[1] if ":" in name else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _container(container: KubeObject) -> None:
    _set(container, "terminationMessagePath", "/dev/termination-log")
    _set(container, "terminationMessagePolicy", "File")
    if container.get("image"):
        _set(container, "imagePullPolicy", _image_pull_policy(str(container["image"])))
    for port in container.get("ports") or []:
        _set(port, "protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            _set(probe, "timeoutSeconds", 1)
            _set(probe, "periodSeconds", 10)
            _set(probe, "successThreshold", 1)
            _set(probe, "failureThreshold", 3)
            http = probe.get("httpGet")
            if isinstance(http, dict):
                _set(http, "path", "/")
                _set(http, "scheme", "HTTP")


def pod_spec(spec: KubeObject) -> None:
    """Defaults of a PodSpec (pods and every pod template)."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    _set(spec, "enableServiceLinks", True)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _container(container)
    for volume in spec.get("volumes") or []:
        for source, mode in (("secret", "defaultMode"), ("configMap", "defaultMode")):
            if isinstance(volume.get(source), dict):
                _set(volume[source], mode, 0o644)
        if isinstance(volume.get("hostPath"), dict):
            _set(volume["hostPath"], "type", "")


def _template(obj: KubeObject) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def _pod(obj: KubeObject) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        pod_spec(spec)
    status = obj.setdefault("status", {})
    _set(status, "phase", "Pending")


def _deployment(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _set(rolling, "maxUnavailable", "25%")
        _set(rolling, "maxSurge", "25%")
    _template(obj)


def _replica_set(obj: KubeObject) -> None:
    _set(obj.setdefault("spec", {}), "replicas", 1)
    _template(obj)


def _stateful_set(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    _set(spec, "revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        _set(strategy.setdefault("rollingUpdate", {}), "partition", 0)
    _set(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        {"whenDeleted": "Retain", "whenScaled": "Retain"},
    )
    _template(obj)


def _daemon_set(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        _set(rolling, "maxUnavailable", 1)
        _set(rolling, "maxSurge", 0)
    _template(obj)


def _job(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _template(obj)


def _cron_job(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        _job(job_template)


def _service(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "type", "ClusterIP")
    if spec["type"] == "ExternalName":
        return
    _set(spec, "sessionAffinity", "None")
    _set(spec, "internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        _set(spec, "externalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
            _set(port, "targetPort", port.get("port"))


def _namespace(obj: KubeObject) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    _set(obj.setdefault("spec", {}), "finalizers", ["kubernetes"])
    status = obj.setdefault("status", {})
    _set(status, "phase", "Active")


def _secret(obj: KubeObject) -> None:
    _set(obj, "type", "Opaque")
    _merge_string_data(obj)


def _merge_string_data(secret: KubeObject) -> None:
    """``stringData`` is write-only: merged into ``data`` (base64), winning over a ``data``
    value of the same key, and never stored or returned — upstream does this when it
    converts a v1 Secret to its internal form, so on create, update and every patch."""
    string_data = secret.pop("stringData", None)
    if not isinstance(string_data, dict) or not string_data:
        return
    data = secret.get("data")
    if not isinstance(data, dict):
        data = secret["data"] = {}
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode("ascii")


def _pvc(obj: KubeObject) -> None:
    _set(obj.setdefault("spec", {}), "volumeMode", "Filesystem")
    _set(obj.setdefault("status", {}), "phase", "Pending")


def _pv(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    _set(obj.setdefault("status", {}), "phase", "Pending")


def _role_binding(obj: KubeObject) -> None:
    """rbac/v1's SetDefaults_RoleBinding and SetDefaults_Subject: the RBAC API group for
    the roleRef and for User and Group subjects."""
    rbac = "rbac.authorization.k8s.io"
    if isinstance(obj.get("roleRef"), dict) and not obj["roleRef"].get("apiGroup"):
        obj["roleRef"]["apiGroup"] = rbac
    for subject in obj.get("subjects") or []:
        kind = subject.get("kind") if isinstance(subject, dict) else None
        if kind in ("User", "Group") and not subject.get("apiGroup"):
            subject["apiGroup"] = rbac


DEFAULTERS: dict[tuple[str, str], Callable[[KubeObject], None]] = {
    ("", "pods"): _pod,
    ("", "podtemplates"): lambda o: pod_spec((o.get("template") or {}).get("spec") or {}),
    ("", "replicationcontrollers"): _replica_set,
    ("apps", "deployments"): _deployment,
    ("apps", "replicasets"): _replica_set,
    ("apps", "statefulsets"): _stateful_set,
    ("apps", "daemonsets"): _daemon_set,
    ("batch", "jobs"): _job,
    ("batch", "cronjobs"): _cron_job,
    ("", "services"): _service,
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
    ("", "persistentvolumeclaims"): _pvc,
    ("", "persistentvolumes"): _pv,
    ("rbac.authorization.k8s.io", "rolebindings"): _role_binding,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _role_binding,
    ("autoscaling", "horizontalpodautoscalers"): autoscaling.set_defaults,
}


def apply_defaults(group: str, resource: str, obj: KubeObject) -> None:
    """Fill in the defaults of a resource's objects, in place."""
    defaulter = DEFAULTERS.get((group, resource))
    if defaulter is not None:
        defaulter(obj)


# --- defaults that exist only at creation --------------------------------------------------

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_TOLERATION_SECONDS = 300


def _pod_tolerations(spec: KubeObject) -> None:
    """DefaultTolerationSeconds: pods ride out a not-ready/unreachable node for 5 minutes."""
    tolerations = spec.setdefault("tolerations", [])
    present = {(t.get("key"), t.get("effect")) for t in tolerations if isinstance(t, dict)}
    for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        if (key, "NoExecute") not in present and not any(
            t.get("operator") == "Exists" and not t.get("key") for t in tolerations
        ):
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                }
            )


def _job_selector(job: KubeObject) -> None:
    """A Job selects its pods by its own uid, and labels its template so (as upstream)."""
    uid = job["metadata"]["uid"]
    name = job["metadata"].get("name", "")
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)


def default_on_create(group: str, resource: str, obj: KubeObject, *, now: str = "") -> None:
    """Defaults that need the new object's uid or apply only when it is created.

    Also the status a new object starts with (``status_on_create``); ``now`` is the
    creation time as RFC 3339, for status timestamps.
    """
    if (group, resource) == ("", "pods") and isinstance(obj.get("spec"), dict):
        _pod_tolerations(obj["spec"])
        _requests_from_limits(obj["spec"])
    elif (group, resource) == ("batch", "jobs") and obj.get("metadata", {}).get("name"):
        _job_selector(obj)
    status_on_create(group, resource, obj, now=now)


# --- the status a new object starts with ------------------------------------------------

RESET_STATUS: dict[tuple[str, str], KubeObject] = {
    ("", "services"): {"loadBalancer": {}},
    ("", "namespaces"): {"phase": "Active"},
    ("", "persistentvolumeclaims"): {"phase": "Pending"},
    ("", "persistentvolumes"): {"phase": "Pending"},
    ("", "replicationcontrollers"): {"replicas": 0},
    ("", "resourcequotas"): {},
    ("apps", "deployments"): {},
    ("apps", "replicasets"): {"replicas": 0},
    ("apps", "statefulsets"): {"replicas": 0, "availableReplicas": 0},
    ("apps", "daemonsets"): {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
    ("autoscaling", "horizontalpodautoscalers"): {"desiredReplicas": 0},
    ("batch", "jobs"): {},
    ("batch", "cronjobs"): {},
    ("networking.k8s.io", "ingresses"): {"loadBalancer": {}},
    ("networking.k8s.io", "servicecidrs"): {},
    ("policy", "poddisruptionbudgets"): {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    },
    ("storage.k8s.io", "volumeattachments"): {"attached": False},
}
"""Kinds whose create ignores the client's status (upstream strategies' ``PrepareForCreate``
set ``obj.Status = XStatus{...}``), each with that status as Go encodes it: fields without
``omitempty`` appear as zeros, struct-valued fields (``loadBalancer``) as ``{}``. Phases
are the ones upstream's strategy or defaulter sets (``pkg/registry/*/strategy.go``)."""

NODE_STATUS_ZEROS: KubeObject = {
    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
    "nodeInfo": {
        key: ""
        for key in (
            "machineID",
            "systemUUID",
            "bootID",
            "kernelVersion",
            "osImage",
            "containerRuntimeVersion",
            "kubeletVersion",
            "kubeProxyVersion",
            "operatingSystem",
            "architecture",
        )
    },
}
"""A Node keeps the status it is created with (its kubelet registers it so), and Go encodes
the struct fields it leaves out as zeros."""

SCHEDULING_GATED = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "SchedulingGated",
    "message": "Scheduling is blocked due to non-empty scheduling gates",
}


def status_on_create(group: str, resource: str, obj: KubeObject, *, now: str = "") -> None:
    """The status a new object starts with, as upstream's create strategies set it."""
    if (group, resource) == ("", "pods"):
        status: KubeObject = {"phase": "Pending", "qosClass": pod_qos_class(obj.get("spec") or {})}
        if (obj.get("spec") or {}).get("schedulingGates"):
            status["conditions"] = [{**SCHEDULING_GATED, "lastProbeTime": None}]
            if now:
                status["conditions"][0]["lastTransitionTime"] = now
        obj["status"] = status
    elif (group, resource) == ("", "nodes"):
        given = obj.get("status")
        obj["status"] = node_status = given if isinstance(given, dict) else {}
        _fill_zeros(node_status, NODE_STATUS_ZEROS)
    elif (group, resource) == ("apiregistration.k8s.io", "apiservices"):
        obj["status"] = api_service_status(obj, now)
    elif (group, resource) in RESET_STATUS:
        obj["status"] = copy.deepcopy(RESET_STATUS[(group, resource)])
        if (group, resource) == ("", "persistentvolumes") and now:
            obj["status"]["lastPhaseTransitionTime"] = now


def api_service_status(api_service: KubeObject, now: str) -> KubeObject:
    """The Available condition kube-aggregator's availability controller would set.

    Local APIServices (no ``spec.service``) are always available. kubetrio does not proxy
    to aggregated API servers, so one that names a Service is not available.
    """
    if (api_service.get("spec") or {}).get("service"):
        condition = {
            "type": "Available",
            "status": "False",
            "reason": "NotProxied",
            "message": "kubetrio does not proxy to aggregated API servers",
        }
    else:
        condition = {
            "type": "Available",
            "status": "True",
            "reason": "Local",
            "message": "Local APIServices are always available",
        }
    return {"conditions": [{**condition, "lastTransitionTime": now}] if now else [condition]}


def _fill_zeros(target: KubeObject, zeros: KubeObject) -> None:
    for key, zero in zeros.items():
        present = target.get(key)
        if isinstance(zero, dict):
            if not isinstance(present, dict):
                present = target[key] = {}
            _fill_zeros(present, zero)
        elif present is None:
            target[key] = zero


def _requests_from_limits(spec: KubeObject) -> None:
    """A Pod's containers request what they limit unless they say otherwise (SetDefaults_Pod)."""
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            resources = container.get("resources") if isinstance(container, dict) else None
            if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict):
                continue
            requests = resources.setdefault("requests", {})
            if isinstance(requests, dict):
                for name, limit in resources["limits"].items():
                    requests.setdefault(name, limit)
