"""Fields an update may not change, as kube-apiserver's update validation says.

A Pod's spec is fixed once created except for a few fields (``kubectl replace`` of a
changed command must fail, so that ``replace --force`` is what users reach for); a
workload's selector never changes; a Job's template is fixed; an ``immutable``
ConfigMap or Secret keeps its data. The checks run on defaulted objects, old and new.
"""

from __future__ import annotations

import copy

from kubetrio.kubeobject import KubeObject

from ._status import invalid

POD_MUTABLE = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
    "negative)"
)
STATEFULSET_MUTABLE = (
    "'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds'"
)
WORKLOADS = {
    ("apps", "deployments"): "Deployment",
    ("apps", "replicasets"): "ReplicaSet",
    ("apps", "daemonsets"): "DaemonSet",
    ("apps", "statefulsets"): "StatefulSet",
    ("batch", "jobs"): "Job",
}


def _cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    return {"reason": reason, "field": field, "message": message}


def _immutable(field: str, value: object) -> dict[str, str]:
    return _cause(field, f"Invalid value: {value!r}: field is immutable")


def _pod_spec_without_mutable(spec: KubeObject, old: KubeObject) -> KubeObject:
    """``spec`` with the fields a pod update may change taken from ``old``."""
    spec = copy.deepcopy(spec)
    for kind in ("containers", "initContainers"):
        new_list, old_list = spec.get(kind) or [], old.get(kind) or []
        if len(new_list) == len(old_list):
            for new_c, old_c in zip(new_list, old_list, strict=True):
                if "image" in old_c:
                    new_c["image"] = old_c["image"]
    for field in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "schedulingGates"):
        if field in old:
            spec[field] = old[field]
        else:
            spec.pop(field, None)
    old_tolerations = old.get("tolerations") or []
    new_tolerations = spec.get("tolerations") or []
    if all(t in new_tolerations for t in old_tolerations):  # additions only
        if "tolerations" in old:
            spec["tolerations"] = old["tolerations"]
        else:
            spec.pop("tolerations", None)
    return spec


def check_update(group: str, resource: str, old: KubeObject, new: KubeObject) -> None:
    """Raise 422 Invalid when ``new`` changes a field ``old`` fixed."""
    name = str((new.get("metadata") or {}).get("name", ""))
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    causes: list[dict[str, str]] = []
    kind = ""
    if (group, resource) == ("", "pods"):
        kind = "Pod"
        if _pod_spec_without_mutable(new_spec, old_spec) != old_spec:
            causes.append(
                _cause(
                    "spec",
                    f"Forbidden: pod updates may not change fields other than {POD_MUTABLE}",
                    "FieldValueForbidden",
                )
            )
    elif (group, resource) in WORKLOADS:
        kind = WORKLOADS[group, resource]
        if "selector" in old_spec and new_spec.get("selector") != old_spec["selector"]:
            causes.append(_immutable("spec.selector", new_spec.get("selector")))
        if kind == "Job" and new_spec.get("template") != old_spec.get("template"):
            causes.append(_immutable("spec.template", new_spec.get("template")))
        if kind == "StatefulSet":
            ignored = {"replicas", "ordinals", "template", "updateStrategy", "minReadySeconds"}
            ignored |= {"persistentVolumeClaimRetentionPolicy", "selector"}
            if {k: v for k, v in new_spec.items() if k not in ignored} != {
                k: v for k, v in old_spec.items() if k not in ignored
            }:
                causes.append(
                    _cause(
                        "spec",
                        "Forbidden: updates to statefulset spec for fields other than "
                        f"{STATEFULSET_MUTABLE} are forbidden",
                        "FieldValueForbidden",
                    )
                )
    elif (group, resource) in (("", "configmaps"), ("", "secrets")) and old.get("immutable"):
        kind = "ConfigMap" if resource == "configmaps" else "Secret"
        if not new.get("immutable"):
            causes.append(_immutable("immutable", new.get("immutable")))
        for field in ("data", "binaryData"):
            if new.get(field) != old.get(field):
                causes.append(
                    _cause(
                        field,
                        "Forbidden: field is immutable when `immutable` is set",
                        "FieldValueForbidden",
                    )
                )
    if causes:
        raise invalid(kind, group, name, causes)
