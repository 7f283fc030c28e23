"""Events: what controllers tell users through ``kubectl describe`` and ``get events``.

:meth:`EventRecorder.record` never blocks a reconcile: it puts the event on a bounded
channel (dropping it, with a log line, if the channel is full — events are advice, not
state) and :meth:`EventRecorder.run` writes them as ``core/v1`` Events. Repeats of the
same (object, type, reason, message) are aggregated the way Kubernetes' recorder does:
the existing Event's ``count`` goes up and ``lastTimestamp`` moves, instead of a new
object per occurrence. Like client-go's spam filter, each object gets a token bucket
(burst :data:`SPAM_BURST`, one more token every :data:`SPAM_REFILL` seconds), so a
ReplicaSet creating a thousand pods writes 25 events, not a thousand.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import TYPE_CHECKING

import trio

from ._client import KubeObject
from ._errors import ClientError

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger("kubetrio.client.events")

NORMAL = "Normal"
WARNING = "Warning"
_BACKLOG = 4096
SPAM_BURST = 25
"""Events one object may get in a burst."""
SPAM_REFILL = 300.0
"""Seconds per further event once the burst is spent."""
_MAX_REMEMBERED = 20000


def now_rfc3339() -> str:
    """The current time as Kubernetes writes ``metav1.Time`` (seconds, UTC, ``Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as ``metav1.MicroTime`` (microseconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    """Records Events about objects on behalf of one component (``source.component``)."""

    def __init__(self, client: Client, component: str, *, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._send, self._receive = trio.open_memory_channel[tuple[KubeObject, str, str, str]](
            _BACKLOG
        )
        # (uid, type, reason, message) -> (namespace, event name, count)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # uid -> (tokens, at)

    def _allowed(self, uid: str) -> bool:
        now = trio.current_time()
        tokens, at = self._buckets.get(uid, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - at) / SPAM_REFILL)
        if tokens < 1:
            self._buckets[uid] = (tokens, now)
            return False
        if len(self._buckets) >= _MAX_REMEMBERED:
            self._buckets.clear()
        self._buckets[uid] = (tokens - 1, now)
        return True

    def record(self, obj: KubeObject, type_: str, reason: str, message: str) -> None:
        """Queue an event about ``obj`` (never blocks; drops when the backlog is full)."""
        if not self._allowed(str((obj.get("metadata") or {}).get("uid") or "")):
            return
        try:
            self._send.send_nowait((obj, type_, reason, message))
        except trio.WouldBlock:
            log.info("event backlog full; dropped %s %s", reason, message)

    def normal(self, obj: KubeObject, reason: str, message: str) -> None:
        """Queue a ``Normal`` event."""
        self.record(obj, NORMAL, reason, message)

    def warning(self, obj: KubeObject, reason: str, message: str) -> None:
        """Queue a ``Warning`` event."""
        self.record(obj, WARNING, reason, message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued events until cancelled."""
        task_status.started()
        async for obj, type_, reason, message in self._receive:
            try:
                await self.write(obj, type_, reason, message)
            except ClientError as exc:
                log.debug("event %s not written: %s", reason, exc)
            except Exception:
                log.exception("event %s not written", reason)

    async def write(self, obj: KubeObject, type_: str, reason: str, message: str) -> None:
        """Create the Event, or bump the count of the one recorded before."""
        metadata = obj.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        key = (uid, type_, reason, message)
        stamp = now_rfc3339()
        known = self._seen.get(key)
        if known is not None:
            namespace, name, count = known
            try:
                await self.client.patch(
                    "v1",
                    "events",
                    name,
                    {"count": count + 1, "lastTimestamp": stamp},
                    namespace=namespace,
                )
                self._seen[key] = (namespace, name, count + 1)
                return
            except ClientError as exc:
                if not exc.not_found:
                    raise
        namespace = metadata.get("namespace") or "default"
        name = f"{metadata.get('name', 'unknown')}.{time.time_ns():x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", ""),
                "kind": obj.get("kind", ""),
                "namespace": metadata.get("namespace", ""),
                "name": metadata.get("name", ""),
                "uid": uid,
                "resourceVersion": metadata.get("resourceVersion", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        await self.client.create("v1", "events", event, namespace=namespace)
        if len(self._seen) >= _MAX_REMEMBERED:
            self._seen.clear()  # forgetting only costs a new Event instead of a count bump
        self._seen[key] = (namespace, name, 1)
