"""Priority: a new pod's ``spec.priority`` from its PriorityClass, as kube-apiserver's
``Priority`` admission plugin.

A pod naming a ``priorityClassName`` gets that class' ``value`` (and its
``preemptionPolicy``); a pod naming none gets the class marked ``globalDefault`` (its name
too), or priority 0 when there is none. A pod may not bring its own different priority or
preemption policy, nor name a class that does not exist (403, upstream's wording). An update
keeps the priority set at creation. A PriorityClass may be marked ``globalDefault`` only when
no other class is.
"""

from __future__ import annotations

from typing import Any

from kubetrio.providers import AdmissionDenied, AdmissionRequest, ObjectCache

NO_DEFAULT_PRIORITY = 0
"""A pod's priority when it names no class and no class is the global default."""


def _is(request: AdmissionRequest, group: str, resource: str) -> bool:
    return (
        request.api_group == group
        and request.resource == resource
        and not request.subresource
        and request.object is not None
    )


def _global_default(classes: ObjectCache | None) -> dict[str, Any] | None:
    """The global default class; with several, the lowest value, as upstream."""
    defaults = [c for c in (classes.list() if classes else []) if c.get("globalDefault")]
    return min(defaults, key=lambda c: int(c.get("value") or 0), default=None)


def mutate(request: AdmissionRequest, classes: ObjectCache | None) -> None:
    """Resolve a new pod's priority; keep an updated pod's; refuse a second default."""
    if _is(request, "scheduling.k8s.io", "priorityclasses"):
        _check_single_default(request, classes)
        return
    if not _is(request, "", "pods"):
        return
    assert request.object is not None
    spec = request.object.setdefault("spec", {})
    if request.operation == "UPDATE":
        old_spec = (request.old_object or {}).get("spec") or {}
        for field in ("priority", "preemptionPolicy"):
            if spec.get(field) is None and old_spec.get(field) is not None:
                spec[field] = old_spec[field]
        return
    if request.operation != "CREATE":
        return
    name = spec.get("priorityClassName") or ""
    policy: str | None
    if not name:
        default = _global_default(classes)
        if default is None:
            priority, policy = NO_DEFAULT_PRIORITY, None
        else:
            spec["priorityClassName"] = default["metadata"]["name"]
            priority, policy = int(default.get("value") or 0), default.get("preemptionPolicy")
    else:
        found = classes.get(name) if classes is not None else None
        if found is None:
            raise AdmissionDenied(f"no PriorityClass with name {name} was found")
        priority, policy = int(found.get("value") or 0), found.get("preemptionPolicy")
    given = spec.get("priority")
    if given is not None and given != priority:
        raise AdmissionDenied(
            f"the integer value of priority ({given}) must not be provided in pod spec; "
            f"priority admission controller computed {priority} from the given PriorityClass name"
        )
    spec["priority"] = priority
    if policy is not None:
        wanted = spec.get("preemptionPolicy")
        if wanted is not None and wanted != policy:
            raise AdmissionDenied(
                f"the string value of PreemptionPolicy ({wanted}) must not be provided in pod "
                f"spec; priority admission controller computed {policy} from the given "
                "PriorityClass name"
            )
        spec["preemptionPolicy"] = policy


def _check_single_default(request: AdmissionRequest, classes: ObjectCache | None) -> None:
    assert request.object is not None
    if not request.object.get("globalDefault") or request.operation not in ("CREATE", "UPDATE"):
        return
    current = _global_default(classes)
    if current is None:
        return
    if request.operation == "CREATE" or current["metadata"]["name"] != request.name:
        raise AdmissionDenied(
            f"PriorityClass {current['metadata']['name']} is already marked as default. "
            "Only one default can exist"
        )
