"""Defaults the API server fills in on create and update, as kube-apiserver's defaulters do.

Clients (kubectl describe, rollout status, controllers) read these fields, so an object
that comes back without them behaves differently from Kubernetes. Only values the
upstream defaulters set are filled, and only where the client left them out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KubeObject = dict[str, Any]


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
    for key in ("containers", "initContainers"):
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


def _pvc(obj: KubeObject) -> None:
    _set(obj.setdefault("spec", {}), "volumeMode", "Filesystem")
    _set(obj.setdefault("status", {}), "phase", "Pending")


def _pv(obj: KubeObject) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "persistentVolumeReclaimPolicy", "Retain")
    _set(spec, "volumeMode", "Filesystem")
    _set(obj.setdefault("status", {}), "phase", "Pending")


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


def default_on_create(group: str, resource: str, obj: KubeObject) -> None:
    """Defaults that need the new object's uid or apply only when it is created."""
    if (group, resource) == ("", "pods") and isinstance(obj.get("spec"), dict):
        _pod_tolerations(obj["spec"])
    elif (group, resource) == ("batch", "jobs") and obj.get("metadata", {}).get("name"):
        _job_selector(obj)
