"""Object history: every kept version of a key, who wrote it and how, and how long to keep it.

The store is a revision log already; history keeps old versions longer than the watch
window does, under a policy of its own (:class:`HistoryPolicy`): how long (by default 7
days), per resource (``secrets``, Leases and Events keep nothing by default), and a size
cap. Compaction still ends *watches and reads at a revision* where it always did; the
versions it would have deleted move to a history table instead, and a pruner deletes
them once they are older than their resource's retention.

Who wrote a version is a **note**: opaque bytes (the API server writes JSON with the
user, groups, verb, field manager and user agent) set for the writing task with
:func:`noted`, picked up by the store when the write is queued and committed in the same
transaction as the version itself, with the commit's wall-clock time. A store that keeps
history implements :class:`HistoryStore`.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

import msgspec

from ._errors import StoreError
from ._protocol import Key, KeyValue

DAY = 86400.0

WRITE_NOTE: contextvars.ContextVar[bytes] = contextvars.ContextVar("store_write_note", default=b"")
"""Who is writing, for the history of what the current task writes (see :func:`noted`)."""


@contextlib.contextmanager
def noted(note: bytes) -> Iterator[None]:
    """Attribute the writes made by the current task inside the block to ``note``."""
    token = WRITE_NOTE.set(note)
    try:
        yield
    finally:
        WRITE_NOTE.reset(token)


def resource_prefix(resource: str) -> bytes:
    """The key prefix of a resource named as upstream names it: ``secrets`` →
    ``/registry/core/secrets/``, ``deployments.apps`` → ``/registry/apps/deployments/``."""
    name, _, group = resource.partition(".")
    if not name or not re.fullmatch(r"[a-z0-9.-]*", resource):
        raise ValueError(f"not a resource name: {resource!r}")
    return f"/registry/{group or 'core'}/{name}/".encode()


DEFAULT_OVERRIDES: Mapping[str, float] = {
    # Old values of Secrets are credentials someone rotated away: keep none beyond the
    # watch window unless asked (they would stay encrypted at rest, but readable by
    # anyone allowed secrets/history).
    "secrets": 0.0,
    # Heartbeats and Events: many writes, nothing anyone wants to restore.
    "leases.coordination.k8s.io": 0.0,
    "events": 0.0,
    "events.events.k8s.io": 0.0,
}
"""Resources whose history is not kept by default (``--history-retention-for`` changes it)."""


@dataclasses.dataclass(frozen=True)
class HistoryPolicy:
    """How long old versions are kept after compaction ends their watch window.

    :param retention: seconds a version is kept after it was replaced or deleted
        (0: history off — compaction deletes as before).
    :param overrides: per-resource retention in seconds, keyed as upstream names resources
        (``secrets``, ``deployments.apps``); defaults to :data:`DEFAULT_OVERRIDES`.
    :param max_bytes: a cap on the history table's object bytes (0: none); the oldest
        versions go first.
    :param clock: the wall clock (seconds since the epoch) that stamps writes.
    """

    retention: float = 7 * DAY
    overrides: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_OVERRIDES)
    )
    max_bytes: int = 0
    clock: Callable[[], float] = time.time

    @property
    def enabled(self) -> bool:
        """Whether any resource keeps history."""
        return self.retention > 0 or any(v > 0 for v in self.overrides.values())

    def ranges(self) -> list[tuple[bytes, float]]:
        """(key prefix, retention) of every override."""
        return [(resource_prefix(r), seconds) for r, seconds in self.overrides.items()]


HISTORY_OFF = HistoryPolicy(retention=0.0, overrides={})
"""History off: compaction deletes old versions, writes record no note."""

HISTORY_KEEP_ALL = HistoryPolicy(retention=math.inf, overrides={})
"""Keep everything, prune nothing: for tools that open a server's store for a moment
(``kubetrio admin``), so they never prune what the server's own policy keeps."""


class HistoryEntry(msgspec.Struct, frozen=True, gc=False):
    """One version of a key as history keeps it.

    ``kv`` is the version written at ``revision`` (for a deletion: the deleted object,
    so a deleted object's last state can be read and restored).
    """

    revision: int
    #: ``ADDED``, ``MODIFIED`` or ``DELETED``.
    type: str
    kv: KeyValue
    #: Wall-clock seconds of the commit (0 when not recorded).
    time: float = 0.0
    #: The writer's note (see :func:`noted`); empty when none was set.
    note: bytes = b""


class HistoryPage(msgspec.Struct, frozen=True, gc=False):
    """Versions of one key, newest first."""

    entries: list[HistoryEntry]
    #: Pass as ``before`` for the next page (0: no more).
    next_before: int = 0
    #: The oldest revision still kept for this key (0: nothing kept), when the page is
    #: the last (``next_before`` 0); a page with more after it names its own last entry.
    oldest: int = 0


class HistoryExpired(StoreError):
    """The version asked for is older than anything kept for the key (HTTP 410)."""

    def __init__(self, key: bytes, revision: int, oldest: int) -> None:
        super().__init__(
            f"revision {revision} of {key!r} is no longer kept (the oldest kept is {oldest})"
        )
        self.key = key
        self.revision = revision
        self.oldest = oldest


class HistoryUnsupported(StoreError):
    """The backend keeps no history (HTTP 501)."""


@runtime_checkable
class HistoryStore(Protocol):
    """A store that keeps history (the SQLite store; the etcd store within etcd's own
    compaction window)."""

    async def history(self, key: Key, *, before: int = 0, limit: int = 0) -> HistoryPage:
        """Versions of ``key`` older than revision ``before`` (0: all), newest first,
        at most ``limit`` (0: all)."""
        ...
