"""The scheduling queue: active, backoff and unschedulable pods, as kube-scheduler's.

* **active**: a heap ordered by ``spec.priority`` (higher first), then by the time the
  pod entered the queue (older first). The scheduler pops from here.
* **backoff**: pods that failed recently wait ``initial * 2**(attempts-1)`` seconds
  (capped at ``maximum``) before returning to active.
* **unschedulable**: pods no node fits. They stay until the cluster changes (a node is
  added or updated, a pod is deleted or bound): :meth:`move_all_to_active_or_backoff`
  then gives them another chance; pods left here longer than ``max_unschedulable`` are
  retried anyway (kube-scheduler's ``podMaxInUnschedulablePodsDuration``).

A change that happens while a pod is being scheduled would be missed if the pod then
went to unschedulable; the queue remembers the cycle of the last move request and sends
such pods to backoff instead (kube-scheduler's ``moveRequestCycle``).

Every pod is in at most one place, keyed by ``namespace/name``; adding a pod that is
queued already updates it where it is.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from kubetrio.providers import PodInfo

CLUSTER_EVENTS = frozenset(
    {"NodeAdd", "NodeUpdate", "PodAdd", "PodUpdate", "PodDelete", "NamespaceUpdate"}
)
"""The changes that can make an unschedulable pod fit (a plugin's ``requeue_on``)."""


@dataclass(eq=False, slots=True)
class QueuedPod:
    """A pod in the queue, with its scheduling history."""

    info: PodInfo
    timestamp: float
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    cycle: int = 0
    """The scheduling cycle in which it was last popped."""
    attempt_started: float = 0.0
    """When its last attempt began (``time.perf_counter``), for the scheduler's metrics."""
    unschedulable_plugins: set[str] = field(default_factory=set)


class SchedulingQueue:
    """Priority queue of pending pods with backoff and an unschedulable pool."""

    def __init__(
        self,
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        max_unschedulable: float = 300.0,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable = max_unschedulable
        self._counter = itertools.count()
        self._active: list[tuple[int, float, int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        self._unschedulable: dict[str, QueuedPod] = {}
        self._where: dict[str, tuple[str, QueuedPod]] = {}
        """key → (``active`` | ``backoff`` | ``unschedulable`` | ``in-flight``, entry)."""
        self._wakeup = trio.Event()
        self.scheduling_cycle = 0
        self._move_request_cycle = -1
        self._next_stale_check = 0.0

    def __len__(self) -> int:
        return len(self._where)

    def counts(self) -> dict[str, int]:
        """How many pods are in each place (for metrics and tests)."""
        counts = {"active": 0, "backoff": 0, "unschedulable": 0, "in-flight": 0}
        for place, _ in self._where.values():
            counts[place] += 1
        return counts

    # --- adding ---------------------------------------------------------------------------

    def _push_active(self, entry: QueuedPod) -> None:
        key = entry.info.key
        self._where[key] = ("active", entry)
        heapq.heappush(
            self._active, (-entry.info.priority, entry.timestamp, next(self._counter), entry)
        )
        self._wakeup.set()

    def _push_backoff(self, entry: QueuedPod) -> None:
        self._where[entry.info.key] = ("backoff", entry)
        heapq.heappush(self._backoff, (entry.backoff_until, next(self._counter), entry))
        self._wakeup.set()  # the popper re-arms its timer for the earliest expiry

    def add(self, info: PodInfo) -> None:
        """A new pending pod, or a new version of one already queued."""
        found = self._where.get(info.key)
        if found is None:
            self._push_active(QueuedPod(info, trio.current_time()))
            return
        place, entry = found
        spec_changed = entry.info.pod.get("spec") != info.pod.get("spec")
        entry.info = info
        if place == "unschedulable" and spec_changed:
            # An edited pod may fit now (kube-scheduler moves it on PodUpdate too).
            del self._unschedulable[info.key]
            self._requeue(entry)
        elif place == "active":
            self._push_active(entry)  # the stale heap entry is skipped when popped

    def _requeue(self, entry: QueuedPod) -> None:
        if entry.backoff_until > trio.current_time():
            self._push_backoff(entry)
        else:
            self._push_active(entry)

    def delete(self, key: str) -> None:
        """Forget a pod (deleted, or bound by someone else)."""
        found = self._where.pop(key, None)
        if found is not None and found[0] == "unschedulable":
            self._unschedulable.pop(key, None)

    def done(self, key: str) -> None:
        """The pod popped last was placed: it leaves the queue."""
        found = self._where.get(key)
        if found is not None and found[0] == "in-flight":
            del self._where[key]

    def add_unschedulable(self, entry: QueuedPod, *, plugins: set[str] | None = None) -> None:
        """Put back a pod whose cycle failed: unschedulable, or backoff if the cluster
        changed during its cycle (or the failure was an error rather than a misfit)."""
        key = entry.info.key
        found = self._where.get(key)
        if found is None or found[1] is not entry:
            return  # deleted (or replaced) while it was being scheduled
        now = trio.current_time()
        entry.attempts += 1
        delay = min(self.max_backoff, self.initial_backoff * 2 ** (entry.attempts - 1))
        entry.backoff_until = now + delay
        if plugins is None or self._move_request_cycle >= entry.cycle:
            self._push_backoff(entry)
            return
        entry.unschedulable_plugins = plugins
        entry.unschedulable_since = now
        self._where[key] = ("unschedulable", entry)
        self._unschedulable[key] = entry

    def move_all_to_active_or_backoff(
        self, event: str = "", interested: Callable[[set[str], str], bool] | None = None
    ) -> None:
        """The cluster changed: unschedulable pods get another chance.

        :param event: what changed (``NodeAdd``, ``PodDelete``, …; see
            :data:`CLUSTER_EVENTS`); with ``interested`` it picks the pods to move.
        :param interested: ``interested(plugins, event)`` tells whether a pod rejected by
            ``plugins`` may fit after ``event`` (kube-scheduler's queueing hints, by
            event kind); None moves every pod.
        """
        self._move_request_cycle = self.scheduling_cycle
        if not self._unschedulable:
            return
        if interested is None or not event:
            pods = list(self._unschedulable.values())
        else:
            pods = [
                e
                for e in self._unschedulable.values()
                if interested(e.unschedulable_plugins, event)
            ]
        for entry in pods:
            del self._unschedulable[entry.info.key]
            self._requeue(entry)

    # --- popping --------------------------------------------------------------------------

    def _flush(self, now: float) -> float:
        """Move due backoff pods and stale unschedulable ones; return the next due time."""
        while self._backoff and self._backoff[0][0] <= now:
            _, _, entry = heapq.heappop(self._backoff)
            found = self._where.get(entry.info.key)
            if found is not None and found[1] is entry and found[0] == "backoff":
                self._push_active(entry)
        if self._unschedulable and now >= self._next_stale_check:
            self._next_stale_check = now + 1.0  # a scan per second, not per pop
            stale = [
                e
                for e in self._unschedulable.values()
                if now - e.unschedulable_since >= self.max_unschedulable
            ]
            for entry in stale:
                del self._unschedulable[entry.info.key]
                self._requeue(entry)
        next_due = self._backoff[0][0] if self._backoff else math.inf
        if self._unschedulable:
            oldest = min(e.unschedulable_since for e in self._unschedulable.values())
            next_due = min(next_due, oldest + self.max_unschedulable)
        return next_due

    def pop_nowait(self) -> QueuedPod | None:
        """The next pod if one is ready now, else None (it is in-flight until put back)."""
        self._flush(trio.current_time())
        while self._active:
            _, _, _, entry = heapq.heappop(self._active)
            found = self._where.get(entry.info.key)
            if found is None or found[1] is not entry or found[0] != "active":
                continue  # stale heap entry
            self.scheduling_cycle += 1
            entry.cycle = self.scheduling_cycle
            self._where[entry.info.key] = ("in-flight", entry)
            return entry
        return None

    async def pop(self) -> QueuedPod:
        """The next pod to schedule (waits for one); it is in-flight until put back."""
        while True:
            entry = self.pop_nowait()
            if entry is not None:
                return entry
            next_due = self._flush(trio.current_time())
            self._wakeup = trio.Event()
            with trio.move_on_at(next_due):
                await self._wakeup.wait()
