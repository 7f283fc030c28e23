"""A container as the pod worker tracks it: its record, restart back-off, pull policy.

The pieces of the container phase of :class:`~._worker.PodWorker` that stand alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import trio

from kubetrio.providers import KubeObject


def rfc3339(seconds: float | None = None) -> str:
    """UNIX seconds (default now) as ``metav1.Time``."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if seconds is None else seconds, tz=datetime.UTC
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pull_policy(container: KubeObject) -> str:
    """``imagePullPolicy`` with Kubernetes' default (Always for ``:latest`` or no tag)."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image", ""))
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


@dataclasses.dataclass
class ContainerRecord:
    """What the worker knows of one container, in the shape of a ContainerStatus."""

    name: str
    image: str
    init: bool = False
    container_id: str = ""
    restart_count: int = 0
    state: KubeObject = dataclasses.field(default_factory=dict)
    last_state: KubeObject = dataclasses.field(default_factory=dict)
    ready: bool = False
    started: bool = False
    image_id: str = ""
    spec_changed: bool = False
    """The container's image changed in the pod spec: restart it with the new one."""
    sidecar: bool = False
    """An init container with ``restartPolicy: Always`` (a native sidecar)."""
    ephemeral: bool = False
    """An ephemeral (debug) container: started once, never restarted."""
    started_event: trio.Event = dataclasses.field(default_factory=trio.Event)
    """Set once the container has started (and passed its startup probe)."""
    loop_done: trio.Event = dataclasses.field(default_factory=trio.Event)

    @property
    def spec_field(self) -> str:
        """The pod spec's list holding this container."""
        if self.ephemeral:
            return "ephemeralContainers"
        return "initContainers" if self.init else "containers"

    @property
    def status_field(self) -> str:
        """The pod status's list reporting this container."""
        if self.ephemeral:
            return "ephemeralContainerStatuses"
        return "initContainerStatuses" if self.init else "containerStatuses"

    def status(self) -> KubeObject:
        """The ``containerStatuses`` entry."""
        result: KubeObject = {
            "name": self.name,
            "state": self.state or {"waiting": {"reason": "ContainerCreating"}},
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.image,
            "imageID": self.image_id,
            "started": self.started,
        }
        if self.container_id:
            result["containerID"] = f"runc://{self.container_id}"
        return result


class BackOff:
    """kubelet's restart back-off: none for the first restart, then base doubling to max.

    A container that ran for twice the maximum before exiting starts over.
    """

    def __init__(self, base: float, maximum: float) -> None:
        self.base = base
        self.maximum = maximum
        self.current = 0.0

    def next(self, ran_for: float) -> float:
        """The delay before the next restart, given how long the last run lasted."""
        if ran_for > 2 * self.maximum:
            self.current = 0.0
        delay = self.current
        self.current = self.base if not self.current else min(self.current * 2, self.maximum)
        return delay


def go_duration(seconds: float) -> str:
    """Go's time.Duration text for whole or fractional seconds (``10s``, ``2m40s``)."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
