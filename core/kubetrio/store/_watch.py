"""The watch hub: one publisher, many watchers, no silent gaps.

A backend publishes every committed change to its :class:`WatchHub` exactly once, in revision
order, as a batch of already-decoded :class:`Event` objects. The hub keeps

* a **ring** of the most recent events (all keys), so a watcher that starts a little in the
  past, or falls a little behind, replays from memory;
* **groups** of subscribers keyed by their key range. A batch is filtered once per group and
  the same list of the same ``Event`` objects is appended to every subscriber of the group, so
  a thousand watchers on ``/registry/pods/`` cost one decode and one filter per event, plus a
  list append per watcher per batch.

A watch is *subscribe first, then replay, then live*: the subscriber is registered before the
history it needs is read, so nothing committed meanwhile can fall between the two. The
subscriber remembers the revision up to which the history must be replayed; events from the
live buffer at or below what was already delivered are dropped, so there are no duplicates.

A slow watcher never loses events silently. Its buffer is bounded; when a batch would overflow
it, the buffer is emptied and the subscriber is marked to *resync*: it replays the dropped
span from the ring, or from the backend's log (SQLite), before it continues with live events.
Only when that history is gone (compacted, or not retained by the backend) does the watch end,
with :class:`Compacted` or :class:`HistoryUnavailable` — an error, never a gap.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

import trio

from ._errors import Compacted, StoreError, WatchClosed
from ._protocol import Event

#: ``replay(start, end, after, upto, limit) -> (events, through)``: the backend's log reader.
#: Returns the events with ``after < revision <= upto`` in ``[start, end)`` (``end`` ``None``
#: = unbounded), at most ``limit`` of them, and ``through``: every matching event up to that
#: revision has been returned. Raises :class:`Compacted` when ``after + 1`` is compacted.
ReplayFn = Callable[[bytes, bytes | None, int, int, int], Awaitable[tuple[list[Event], int]]]

_REPLAY_PAGE = 1000


class HistoryUnavailable(StoreError):
    """The hub cannot replay the history a watcher needs (the backend keeps no log for it).

    Backends without a replayable log (etcd) catch this and continue the watch from a
    dedicated upstream stream.
    """

    def __init__(self, after: int) -> None:
        super().__init__(f"history after revision {after} is not retained by the hub")
        self.after = after


def _in_range(key: bytes, start: bytes, end: bytes | None) -> bool:
    return key >= start and (end is None or key < end)


class Subscription:
    """One watcher's view of the hub: an async iterator of events in revision order.

    Create it with :meth:`WatchHub.subscribe`; close it (``aclose`` or ``async with``) to
    unsubscribe.
    """

    def __init__(
        self, hub: WatchHub, start: bytes, end: bytes | None, after: int, max_pending: int
    ) -> None:
        self._hub = hub
        self.start = start
        self.end = end
        self._max_pending = max_pending
        # Live batches for this watcher, as shared lists (never copied per watcher).
        self._buffer: deque[Sequence[Event]] = deque()
        self._pending = 0
        # Every matching event with revision <= _covered is in _ready or was delivered.
        self._covered = after
        # History in (_covered, _resync_upto] must be replayed before the live buffer.
        self._resync_upto = 0
        self._ready: deque[Event] = deque()
        self._waiter: trio.Event | None = None
        self._error: BaseException | None = None
        self.closed = False

    # -- publisher side (called by the hub, in the trio thread, never blocks) --------------

    def _push(self, batch: Sequence[Event], batch_revision: int) -> None:
        if self._pending + len(batch) > self._max_pending:
            # Too far behind: drop the buffer and remember to read this span from history.
            self._buffer.clear()
            self._pending = 0
            self._resync_upto = batch_revision
        else:
            self._buffer.append(batch)
            self._pending += len(batch)
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    # -- consumer side ----------------------------------------------------------------------

    @property
    def delivered_through(self) -> int:
        """Every matching event up to this revision has been delivered or is ready."""
        return self._covered

    def progress(self) -> int | None:
        """The hub's revision when nothing is waiting here: every matching event up to it
        has been handed over (the hub pushes each batch before it advances). None while
        events wait or a resync is due."""
        if self._ready or self._buffer or self._resync_upto > self._covered or self.closed:
            return None
        return max(self._covered, self._hub.live_revision)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self.closed:
                raise StopAsyncIteration
            if self._resync_upto > self._covered:
                await self._replay_page()
                continue
            if self._buffer:
                batch = self._buffer.popleft()
                self._pending -= len(batch)
                covered = self._covered
                if batch[0].kv.mod_revision > covered:
                    self._ready.extend(batch)
                else:  # overlaps what the replay already delivered
                    self._ready.extend(e for e in batch if e.kv.mod_revision > covered)
                self._covered = max(covered, batch[-1].kv.mod_revision)
                continue
            if self._error is not None:
                raise self._error
            waiter = self._waiter = trio.Event()
            await waiter.wait()

    async def _replay_page(self) -> None:
        events, through = await self._hub.replay(
            self.start, self.end, self._covered, self._resync_upto, _REPLAY_PAGE
        )
        self._ready.extend(events)
        self._covered = max(self._covered, through)

    async def aclose(self) -> None:
        """Unsubscribe; iteration stops."""
        if not self.closed:
            self.closed = True
            self._hub._unsubscribe(self)
            self._buffer.clear()
            self._ready.clear()
            self._wake()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class WatchHub:
    """Fans committed events out to subscribers; see the module docstring.

    :param live_revision: the revision already committed when the hub starts.
    :param replay: the backend's log reader, or ``None`` if the backend keeps no log the hub
        can read (then history older than the ring raises :class:`HistoryUnavailable`).
    :param ring_size: how many recent events to keep in memory for replay.
    :param max_pending: events buffered per watcher before it must resync from history.
    """

    def __init__(
        self,
        *,
        live_revision: int,
        replay: ReplayFn | None = None,
        ring_size: int = 10_000,
        max_pending: int = 10_000,
    ) -> None:
        self.live_revision = live_revision
        self.compact_revision = 0
        self._replay = replay
        self._ring_size = max(ring_size, 1)
        self._ring: list[Event] = []
        # The ring holds every event with revision in (_ring_floor, live_revision].
        self._ring_floor = live_revision
        self._max_pending = max_pending
        self._groups: dict[tuple[bytes, bytes | None], set[Subscription]] = {}
        self._closed: BaseException | None = None

    @property
    def watcher_count(self) -> int:
        """How many subscriptions are open."""
        return sum(len(g) for g in self._groups.values())

    def publish(self, events: Sequence[Event], revision: int | None = None) -> None:
        """Publish committed events (strictly increasing revisions, after ``live_revision``).

        ``revision`` is the store's revision after the batch (defaults to the last event's);
        call with no events to advance it.
        """
        if revision is None:
            revision = events[-1].kv.mod_revision if events else self.live_revision
        if events:
            ring = self._ring
            ring.extend(events)
            if len(ring) > 2 * self._ring_size:
                # Trim in bulk so appends stay amortised O(1).
                cut = len(ring) - self._ring_size
                self._ring_floor = ring[cut - 1].kv.mod_revision
                del ring[:cut]
            for (start, end), subs in self._groups.items():
                if end is None and not start:
                    matched: Sequence[Event] = events
                else:
                    matched = [e for e in events if _in_range(e.kv.key, start, end)]
                if matched:
                    for sub in subs:
                        sub._push(matched, revision)
        self.live_revision = revision

    def subscribe(self, start: bytes, end: bytes | None, from_revision: int) -> Subscription:
        """Subscribe to keys in ``[start, end)`` from ``from_revision`` (0 = after now).

        :raises Compacted: ``from_revision`` is below the compaction point.
        :raises WatchClosed: the hub is closed.
        """
        if self._closed is not None:
            raise WatchClosed("store is closed")
        if from_revision and from_revision < self.compact_revision:
            raise Compacted(self.compact_revision, self.live_revision)
        after = self.live_revision if from_revision <= 0 else from_revision - 1
        sub = Subscription(self, start, end, after, self._max_pending)
        if after < self.live_revision:
            sub._resync_upto = self.live_revision
        self._groups.setdefault((start, end), set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        group = self._groups.get((sub.start, sub.end))
        if group is not None:
            group.discard(sub)
            if not group:
                del self._groups[(sub.start, sub.end)]

    async def replay(
        self, start: bytes, end: bytes | None, after: int, upto: int, limit: int
    ) -> tuple[list[Event], int]:
        """Matching events with ``after < revision <= upto``: from the ring, else the log."""
        if after >= self._ring_floor:
            ring = self._ring
            i = bisect.bisect_right(ring, after, key=lambda e: e.kv.mod_revision)
            out: list[Event] = []
            through = upto
            for scanned, j in enumerate(range(i, len(ring)), 1):
                ev = ring[j]
                rev = ev.kv.mod_revision
                if rev > upto:
                    break
                if _in_range(ev.kv.key, start, end):
                    out.append(ev)
                if scanned >= limit * 10 or len(out) >= limit:
                    through = rev
                    break
            return out, through
        if self._replay is None:
            raise HistoryUnavailable(after)
        return await self._replay(start, end, after, upto, limit)

    def fail_all(self, error: BaseException) -> None:
        """End every subscription with ``error`` (after the events already buffered)."""
        for subs in self._groups.values():
            for sub in subs:
                sub._fail(error)

    def close(self, error: BaseException | None = None) -> None:
        """Close the hub: current watchers end with ``error`` (default :class:`WatchClosed`)."""
        self._closed = error or WatchClosed("store is closed")
        self.fail_all(self._closed)
