"""The work queue between informers and reconcilers.

Informer handlers only ever *name* what changed (a key such as ``namespace/name``);
the queue turns a storm of events into a short list of keys to look at, with the
guarantees level-based reconcilers rely on (the same as client-go's workqueue):

* **De-duplication.** A key waiting in the queue is queued once however often it is
  added ("dirty" set).
* **One reconcile per key at a time.** A key handed to a worker is "processing"; adding
  it again meanwhile only marks it dirty, and :meth:`WorkQueue.done` puts it back when
  the worker finishes, so the next reconcile sees the newer state.
* **Delays and per-key exponential backoff.** :meth:`add_after` schedules a key;
  :meth:`add_rate_limited` doubles the key's delay on every failure until
  :meth:`forget` (a success) resets it.

Everything is synchronous except :meth:`get`, so informer handlers can enqueue without
awaiting; waiting workers are woken through a :class:`trio.Event` that is replaced on
every wake-up. A queue given a ``name`` is measured as client-go's (``_prom``:
``workqueue_adds_total``, ``workqueue_depth``, the time keys wait and are worked on).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque

import trio

from kubetrio import prom

from ._prom import QueueMetrics

BASE_DELAY = 0.005
"""Seconds before the first retry of a failed key (doubles on each further failure)."""
MAX_DELAY = 300.0
"""The longest backoff of one key."""


class WorkQueue:
    """A de-duplicating, delaying, rate-limited queue of keys (see the module docstring)."""

    def __init__(
        self, *, base_delay: float = BASE_DELAY, max_delay: float = MAX_DELAY, name: str = ""
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._deadlines: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._metrics = QueueMetrics(name) if name and prom.switch.on else None
        self._added_at: dict[str, float] = {}
        """When each queued key was added, and when each key in work was handed out."""
        self._started_at: dict[str, float] = {}

    def __len__(self) -> int:
        """Keys ready to be handed out (not counting delayed ones)."""
        return len(self._queue)

    def _wake(self) -> None:
        self._wakeup.set()

    def add(self, key: str) -> None:
        """Queue ``key`` now (a no-op if it is queued already)."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        metrics = self._metrics
        if metrics is not None:
            metrics.adds.inc()
            self._added_at.setdefault(key, time.perf_counter())
        if key not in self._processing:
            self._queue.append(key)
            self._wake()
            if metrics is not None:
                metrics.depth.set(len(self._queue))

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds; an earlier pending deadline wins."""
        if delay <= 0:
            self.add(key)
            return
        deadline = trio.current_time() + delay
        known = self._deadlines.get(key)
        if known is not None and known <= deadline:
            return
        self._deadlines[key] = deadline
        heapq.heappush(self._delayed, (deadline, next(self._seq), key))
        self._wake()

    def add_rate_limited(self, key: str) -> None:
        """Queue ``key`` after its backoff delay, which doubles with each call."""
        if self._metrics is not None:
            self._metrics.retries.inc()
        self.add_after(key, self.backoff(key))

    def backoff(self, key: str) -> float:
        """Count one more failure of ``key`` and return the delay it earns."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return float(min(self.max_delay, self.base_delay * 2.0 ** min(failures, 40)))

    def failures(self, key: str) -> int:
        """How many times ``key`` failed since it last succeeded."""
        return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        """``key`` succeeded: its next failure starts from the base delay again."""
        self._failures.pop(key, None)

    def _promote_due(self) -> float | None:
        """Move due delayed keys into the queue; return the next deadline, if any."""
        now = trio.current_time()
        while self._delayed:
            deadline, _, key = self._delayed[0]
            if self._deadlines.get(key) != deadline:
                heapq.heappop(self._delayed)  # superseded by an earlier deadline
                continue
            if deadline > now:
                return deadline
            heapq.heappop(self._delayed)
            del self._deadlines[key]
            self.add(key)
        return None

    async def get(self) -> str:
        """Wait for a key; it is "processing" until :meth:`done` is called with it."""
        while True:
            next_deadline = self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                if self._queue:
                    self._wake()  # let another worker take the next key at once
                metrics = self._metrics
                if metrics is not None:
                    now = time.perf_counter()
                    metrics.depth.set(len(self._queue))
                    metrics.queue_duration.observe(now - self._added_at.pop(key, now))
                    self._started_at[key] = now
                return key
            wakeup = self._wakeup
            if wakeup.is_set():
                self._wakeup = wakeup = trio.Event()
            if next_deadline is None:
                await wakeup.wait()
            else:
                with trio.move_on_at(next_deadline):
                    await wakeup.wait()

    def done(self, key: str) -> None:
        """The worker finished ``key``; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        metrics = self._metrics
        if metrics is not None:
            started = self._started_at.pop(key, None)
            if started is not None:
                metrics.work_duration.observe(time.perf_counter() - started)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()
            if metrics is not None:
                metrics.depth.set(len(self._queue))

    def is_processing(self, key: str) -> bool:
        """Whether a worker holds ``key`` right now."""
        return key in self._processing
