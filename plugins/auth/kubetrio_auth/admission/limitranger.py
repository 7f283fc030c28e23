"""LimitRanger: a namespace's LimitRanges default the resources of new pods' containers
(mutating admission) and bound them (validating admission), worded as kube-apiserver's
``LimitRanger`` admission plugin. Only ``type: Container`` items are applied.

Pods are checked on creation only: containers' resources cannot change afterwards.
"""

from __future__ import annotations

from typing import Any

from kubetrio.api.quantity import Quantity
from kubetrio.providers import AdmissionRequest, ObjectCache

ANNOTATION = "kubernetes.io/limit-ranger"
CONTAINER = "Container"


def _is_new_pod(request: AdmissionRequest) -> bool:
    return (
        request.operation == "CREATE"
        and request.api_group == ""
        and request.resource == "pods"
        and not request.subresource
        and request.object is not None
    )


def _container_items(limit_ranges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        item
        for lr in sorted(limit_ranges, key=lambda lr: lr["metadata"]["name"])
        for item in (lr.get("spec") or {}).get("limits") or []
        if item.get("type") == CONTAINER
    ]


def defaults_of(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An item's default limits and requests, completed as the API server defaults a
    LimitRange: the limit defaults to ``max``, the request to the default limit, then
    to ``min``."""
    limits = dict(item.get("default") or {})
    requests = dict(item.get("defaultRequest") or {})
    for name, value in (item.get("max") or {}).items():
        limits.setdefault(name, value)
    for name, value in limits.items():
        requests.setdefault(name, value)
    for name, value in (item.get("min") or {}).items():
        requests.setdefault(name, value)
    return limits, requests


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("container", c) for c in spec.get("containers") or []] + [
        ("init container", c) for c in spec.get("initContainers") or []
    ]


def mutate(request: AdmissionRequest, limit_ranges: ObjectCache | None) -> None:
    """Fill in containers' missing requests and limits from the namespace's defaults and
    say so in the ``kubernetes.io/limit-ranger`` annotation."""
    if not _is_new_pod(request) or limit_ranges is None:
        return
    assert request.object is not None
    items = _container_items(limit_ranges.list(request.namespace))
    if not items:
        return
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    for item in items:  # the first LimitRange naming a resource wins
        item_limits, item_requests = defaults_of(item)
        limits = item_limits | limits
        requests = item_requests | requests
    notes: list[str] = []
    spec = request.object.setdefault("spec", {})
    for prefix, container in _containers(spec):
        resources = container.setdefault("resources", {})
        set_requests = [n for n in sorted(requests) if n not in (resources.get("requests") or {})]
        set_limits = [n for n in sorted(limits) if n not in (resources.get("limits") or {})]
        if set_requests:
            target = resources.setdefault("requests", {})
            target.update({n: requests[n] for n in set_requests})
            notes.append(f"{', '.join(set_requests)} request for {prefix} {container.get('name')}")
        if set_limits:
            target = resources.setdefault("limits", {})
            target.update({n: limits[n] for n in set_limits})
            notes.append(f"{', '.join(set_limits)} limit for {prefix} {container.get('name')}")
    if notes:
        annotations = request.object.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _quantities(resources: dict[str, Any], bucket: str) -> dict[str, Quantity]:
    return {name: Quantity(value) for name, value in (resources.get(bucket) or {}).items()}


def _check(item: dict[str, Any], requests: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    """What one container breaks of one item, in upstream's order and words."""
    errors: list[str] = []
    req = _quantities({"r": requests}, "r")
    lim = _quantities({"l": limits}, "l")
    for name, raw in (item.get("min") or {}).items():
        enforced = Quantity(raw)
        if name not in req:
            errors.append(
                f"minimum {name} usage per {CONTAINER} is {enforced}.  No request is specified"
            )
        elif req[name] < enforced:
            errors.append(
                f"minimum {name} usage per {CONTAINER} is {enforced}, but request is {req[name]}"
            )
        elif name in lim and lim[name] < enforced:
            errors.append(
                f"minimum {name} usage per {CONTAINER} is {enforced}, but limit is {lim[name]}"
            )
    for name, raw in (item.get("max") or {}).items():
        enforced = Quantity(raw)
        if name not in lim:
            errors.append(
                f"maximum {name} usage per {CONTAINER} is {enforced}.  No limit is specified"
            )
        elif lim[name] > enforced:
            errors.append(
                f"maximum {name} usage per {CONTAINER} is {enforced}, but limit is {lim[name]}"
            )
        elif name in req and req[name] > enforced:
            errors.append(
                f"maximum {name} usage per {CONTAINER} is {enforced}, but request is {req[name]}"
            )
    for name, raw in (item.get("maxLimitRequestRatio") or {}).items():
        enforced = Quantity(raw)
        prefix = f"{name} max limit to request ratio per {CONTAINER} is {enforced}"
        if name not in req or req[name].is_zero():
            errors.append(f"{prefix}, but no request is specified or request is 0")
        elif name not in lim or lim[name].is_zero():
            errors.append(f"{prefix}, but no limit is specified or limit is 0")
        else:
            ratio = lim[name].as_fraction() / req[name].as_fraction()
            if ratio > enforced.as_fraction():
                errors.append(f"{prefix}, but provided ratio is {float(ratio):f}")
    return errors


def validate(request: AdmissionRequest, limit_ranges: ObjectCache | None) -> list[str] | None:
    """Refuse a new pod whose containers fall outside the namespace's min, max or
    maxLimitRequestRatio; several problems are listed as upstream's aggregate: ``[a, b]``."""
    if not _is_new_pod(request) or limit_ranges is None:
        return None
    assert request.object is not None
    items = _container_items(limit_ranges.list(request.namespace))
    errors: list[str] = []
    for item in items:
        for _, container in _containers(request.object.get("spec") or {}):
            resources = container.get("resources") or {}
            errors += _check(item, resources.get("requests") or {}, resources.get("limits") or {})
    if not errors:
        return None
    return [errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"]
