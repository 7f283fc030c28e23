"""The scheduler's events on their way to the API server: bounded, best effort, and
behind the bindings.

Events are a record for people, bindings are the scheduler's work: under a burst, one
``Scheduled`` event per pod is one more API write per pod, which on a shared server slows
the bindings themselves. As client-go's event broadcaster (a queue of 1,000 events that
drops what does not fit, ``DropIfChannelFull``), the queue here holds at most
``max_normal`` ``Normal`` events (``Scheduled``, ``Preempted``) and drops the newest
beyond that — counted in :attr:`EventQueue.dropped`, in
``kubetrio_scheduler_events_dropped_total{type}`` and in a warning logged at most every
``LOG_EVERY`` seconds, so a loss is never silent.

``Warning`` events (``FailedScheduling``) are never dropped: they tell why a pod waits.
They are kept one per pod and reason; a newer one for the same pod replaces the one not
sent yet and carries the count of both (client-go's correlator counts repeats the same
way), so a pod that fails again and again costs one pending entry, and the latest
message is the one recorded. They are sent before any ``Normal`` event.

One sender drains the queue (:meth:`EventQueue.get`), one request at a time: with the
bindings' many concurrent tasks, it gets a small share of the loop while they run.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import trio

from kubetrio.client import KubeObject

from . import _prom

log = logging.getLogger("kubetrio.scheduler")

MAX_NORMAL_EVENTS = 1000
"""Normal events waiting at most (client-go's event broadcaster queues 1,000)."""
LOG_EVERY = 10.0
"""Seconds between two warnings about dropped events."""


def _warning_key(event: KubeObject) -> tuple[Any, ...]:
    involved = event.get("involvedObject") or {}
    return (
        involved.get("namespace"),
        involved.get("name"),
        involved.get("uid"),
        event.get("reason"),
    )


class EventQueue:
    """Events waiting to be written: warnings (one per pod and reason, never dropped),
    then normal events (at most ``max_normal``, the newest dropped beyond)."""

    def __init__(self, max_normal: int = MAX_NORMAL_EVENTS) -> None:
        self.max_normal = max_normal
        self._normal: collections.deque[KubeObject] = collections.deque()
        self._warnings: dict[tuple[Any, ...], KubeObject] = {}
        self._ready = trio.Event()
        self.dropped = 0
        """Normal events dropped because the queue was full."""
        self.merged = 0
        """Warnings folded into a newer one of the same pod and reason before being sent."""
        self._dropped_logged = 0
        self._next_log = 0.0

    def __len__(self) -> int:
        return len(self._normal) + len(self._warnings)

    def put(self, event: KubeObject) -> bool:
        """Queue an event; False when it was dropped (a Normal one, queue full)."""
        if event.get("type") == "Warning":
            key = _warning_key(event)
            pending = self._warnings.pop(key, None)
            if pending is not None:
                # Not sent yet: the new one stands for both (latest message, summed count).
                event["count"] = int(pending.get("count") or 1) + int(event.get("count") or 1)
                event["firstTimestamp"] = pending.get("firstTimestamp")
                self.merged += 1
            self._warnings[key] = event
        elif self.full():
            involved = event.get("involvedObject") or {}
            self.drop(
                str(event.get("type") or "Normal"),
                str(event.get("reason") or ""),
                f"{involved.get('namespace')}/{involved.get('name')}",
            )
            return False
        else:
            self._normal.append(event)
        self._ready.set()
        return True

    def full(self) -> bool:
        """Whether a Normal event would be dropped now (the caller may then skip
        building it and call :meth:`drop`)."""
        return len(self._normal) >= self.max_normal

    def drop(self, kind: str, reason: str, about: str) -> None:
        """Count (and log, at most every ``LOG_EVERY`` seconds) an event not queued."""
        self.dropped += 1
        _prom.event_dropped(kind)
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY
            log.warning(
                "events: %d %s event(s) dropped (queue of %d full; %d dropped in all), last: %s %s",
                self.dropped - self._dropped_logged,
                kind,
                self.max_normal,
                self.dropped,
                reason,
                about,
            )
            self._dropped_logged = self.dropped

    def get_nowait(self) -> KubeObject | None:
        """The next event to send (warnings first), or None."""
        if self._warnings:
            key = next(iter(self._warnings))
            return self._warnings.pop(key)
        if self._normal:
            return self._normal.popleft()
        return None

    async def get(self) -> KubeObject:
        """The next event to send; waits for one."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            self._ready = trio.Event()
            await self._ready.wait()
