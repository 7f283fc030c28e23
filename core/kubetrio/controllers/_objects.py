"""Small readings of API objects that several controllers share (pods, owners, times)."""

from __future__ import annotations

import datetime
import math
from typing import Any

# Re-exported: controllers read pod conditions from here with the rest.
from kubetrio.api.conditions import is_pod_ready as is_pod_ready
from kubetrio.api.conditions import pod_condition as pod_condition
from kubetrio.api.selectors import Selector, label_selector_from_struct
from kubetrio.client import Client, ClientError, KubeObject


def controller_ref(obj: KubeObject) -> KubeObject | None:
    """The ownerReference with ``controller: true``, if any (not a copy: don't modify)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def owner_reference(owner: KubeObject, *, block: bool = True) -> KubeObject:
    """A controller ownerReference pointing at ``owner``."""
    metadata = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def selector_of(obj: KubeObject) -> Selector:
    """The label selector of a workload's ``spec.selector`` (nothing when absent)."""
    return label_selector_from_struct((obj.get("spec") or {}).get("selector"))


_NO_LABELS: dict[str, str] = {}


def labels_of(obj: KubeObject) -> dict[str, str]:
    """The object's labels (not a copy: don't modify; an empty dict if none)."""
    metadata: KubeObject = obj.get("metadata") or {}
    labels: dict[str, str] = metadata.get("labels") or _NO_LABELS
    return labels


def is_deleting(obj: KubeObject) -> bool:
    """Whether the object has a deletionTimestamp."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active_pod(pod: KubeObject) -> bool:
    """A pod that counts toward a controller's replicas: not terminating, not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return not is_deleting(pod) and phase not in ("Succeeded", "Failed")


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (None if absent or bad)."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def wall_now() -> float:
    """Seconds since the epoch (the clock object timestamps are compared with)."""
    return datetime.datetime.now(datetime.UTC).timestamp()


def ready_for(pod: KubeObject, now: float) -> float:
    """Seconds the pod has been Ready (negative: not ready)."""
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return -1.0
    since = parse_time(condition.get("lastTransitionTime"))
    return now - since if since is not None else math.inf


def is_pod_available(pod: KubeObject, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds``."""
    if min_ready_seconds <= 0:
        return is_pod_ready(pod)
    ready = ready_for(pod, now)
    return ready >= 0 and (min_ready_seconds <= 0 or ready >= min_ready_seconds)


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString (``3`` or ``"25%"``) resolved against ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def creation_time(obj: KubeObject) -> str:
    """The creationTimestamp string (sorts chronologically)."""
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


async def delete_exact(
    client: Client, api_version: str, resource: str, obj: KubeObject, **options: Any
) -> bool:
    """Delete exactly ``obj`` (its uid as precondition, so a namesake made since is left
    alone); False when it is gone already. ``options`` go to :meth:`Client.delete`."""
    metadata = obj["metadata"]
    try:
        await client.delete(
            api_version,
            resource,
            metadata["name"],
            namespace=metadata.get("namespace", ""),
            preconditions={"uid": metadata["uid"]},
            **options,
        )
    except ClientError as exc:
        if exc.not_found:
            return False
        raise
    return True
