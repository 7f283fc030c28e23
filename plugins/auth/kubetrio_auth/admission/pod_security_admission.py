"""PodSecurity admission: which object carries a pod spec, which namespace policy applies,
and what to answer (refusal, warning, audit log), as upstream's
``k8s.io/pod-security-admission/admission``."""

from __future__ import annotations

import copy
import logging
from typing import Any

from kubetrio.providers import AdmissionRequest, ObjectCache

from . import podsecurity

log = logging.getLogger("kubetrio.admission.podsecurity")

WORKLOADS = {
    ("", "replicationcontrollers"): ("spec", "template"),
    ("", "podtemplates"): ("template",),
    ("apps", "deployments"): ("spec", "template"),
    ("apps", "replicasets"): ("spec", "template"),
    ("apps", "statefulsets"): ("spec", "template"),
    ("apps", "daemonsets"): ("spec", "template"),
    ("batch", "jobs"): ("spec", "template"),
    ("batch", "cronjobs"): ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload keeps its pod template."""

IGNORED_POD_SUBRESOURCES = {
    "attach",
    "binding",
    "eviction",
    "exec",
    "log",
    "portforward",
    "proxy",
    "status",
}
"""Subresources of pods that never change what PodSecurity checks."""
ENFORCE_POLICY = "pod-security.kubernetes.io/enforce-policy"
AUDIT_VIOLATIONS = "pod-security.kubernetes.io/audit-violations"
"""The audit annotations PodSecurity adds (upstream's keys)."""


def validate(request: AdmissionRequest, namespaces: ObjectCache | None) -> list[str] | None:
    """The refusal of a pod violating its namespace's enforced level (None: allowed);
    warnings go to ``request.warnings``, audit violations to the log."""
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return None
    is_pod = request.api_group == "" and request.resource == "pods"
    template_path = WORKLOADS.get((request.api_group, request.resource))
    if not is_pod and template_path is None:
        return None
    if request.subresource and (not is_pod or request.subresource in IGNORED_POD_SUBRESOURCES):
        return None
    policy = _namespace_policy(request.namespace, namespaces)
    if policy is None:
        return None
    if is_pod:
        meta = request.object.get("metadata") or {}
        spec = request.object.get("spec") or {}
        if request.operation == "UPDATE" and not _significant_update(
            request.object, request.old_object or {}
        ):
            return None
        # The level that allowed or refused the pod, in its audit Event, as upstream's.
        request.audit_annotations[ENFORCE_POLICY] = str(policy.enforce)
    if policy.fully_privileged:
        return None
    else:
        template: Any = request.object
        for key in template_path or ():
            template = (template or {}).get(key)
        if not template:
            return None
        meta, spec = template.get("metadata") or {}, template.get("spec") or {}
    if policy.errors:
        log.warning("namespace %s: bad PodSecurity labels: %s", request.namespace, policy.errors)
    what = f"{request.resource} {request.namespace}/{request.name}"
    results: dict[tuple[str, podsecurity.Version], podsecurity.Result] = {}
    if is_pod:
        enforced = podsecurity.evaluate(policy.enforce, meta, spec, results)
        if enforced:
            return [f'violates PodSecurity "{policy.enforce}": {enforced}']
    audited = podsecurity.evaluate(policy.audit, meta, spec, results)
    if audited:
        violation = f'would violate PodSecurity "{policy.audit}": {audited}'
        request.audit_annotations[AUDIT_VIOLATIONS] = violation
        log.info("%s: %s", what, violation)
    warned = podsecurity.evaluate(policy.warn, meta, spec, results)
    if warned:
        request.warnings.append(f'would violate PodSecurity "{policy.warn}": {warned}')
    return None


def _namespace_policy(namespace: str, namespaces: ObjectCache | None) -> podsecurity.Policy | None:
    if namespaces is None or not namespace:
        return None
    ns = namespaces.get(namespace)
    if ns is None:
        # The cache lags a namespace created a moment ago: nothing to enforce yet.
        log.warning("PodSecurity: namespace %s is not in the cache yet; not checked", namespace)
        return None
    return podsecurity.policy_of((ns.get("metadata") or {}).get("labels") or {})


def _significant_update(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether a pod update can change what PodSecurity checks, as upstream's
    ``isSignificantPodUpdate``: the spec apart from images, tolerations, deadlines and
    scheduling, or the seccomp/AppArmor annotations."""

    def relevant(pod: dict[str, Any]) -> tuple[Any, Any]:
        spec = copy.deepcopy(pod.get("spec") or {})
        for field in (
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
            "nodeName",
        ):
            spec.pop(field, None)
        for field in ("initContainers", "containers", "ephemeralContainers"):
            for c in spec.get(field) or []:
                c.pop("image", None)
                c.pop("resources", None)
        annotations = {
            key: value
            for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items()
            if "seccomp" in key or "apparmor" in key
        }
        return spec, annotations

    return relevant(new) != relevant(old)
