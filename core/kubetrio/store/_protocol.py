"""The store contract: a revisioned key-value log, shaped like etcd's v3 API.

Kubernetes needs very little from etcd (see etcd's ``client/v3/kubernetes`` interface), and
this protocol is that little, in trio terms:

* every write gets the next **global revision** (one increasing integer, the resourceVersion);
* a key's state is a :class:`KeyValue` with its ``create_revision`` and ``mod_revision``;
* writes are compare-and-swap on ``mod_revision`` (``create`` is "compare with absent");
* reads can be served *at* a past revision, paged with ``limit`` and a continue key;
* a watch streams :class:`Event` objects for one key or a prefix, from any retained revision,
  strictly in revision order, without gaps or duplicates;
* ``compact`` forgets history below a revision; asking for it afterwards raises
  :class:`~kubetrio.store.Compacted` (HTTP 410 Expired).

Keys are ``str`` or ``bytes`` (``/registry/pods/default/p1``) and come back as ``bytes``;
values are opaque ``bytes``. The store never sees a model or an HTTP request.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

import msgspec

#: A key as callers may pass it; the store hands keys back as bytes.
Key = str | bytes


def as_key(key: Key) -> bytes:
    """Return ``key`` as bytes (``str`` keys are UTF-8 encoded)."""
    return key.encode() if isinstance(key, str) else bytes(key)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix``.

    ``None`` means "no upper bound" (an empty prefix, or one made only of 0xff bytes), the way
    etcd's ``GetPrefixRangeEnd`` answers ``"\\0"``.
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None


class KeyValue(msgspec.Struct, frozen=True, gc=False):
    """One version of a key, as etcd's ``mvccpb.KeyValue`` (same field names, so the etcd
    backend decodes the gateway's JSON straight into it)."""

    key: bytes
    value: bytes = b""
    #: Revision at which this key was (last) created.
    create_revision: int = 0
    #: Revision of the write that produced this version; the compare-and-swap token.
    mod_revision: int = 0


class EventType(enum.IntEnum):
    """What happened to a key."""

    PUT = 0
    DELETE = 1


class Event(msgspec.Struct, frozen=True, gc=False):
    """One change to one key, at ``kv.mod_revision``.

    For ``PUT``, ``kv`` is the new version and ``prev_kv`` the version it replaced (``None``
    for a create). For ``DELETE``, ``kv`` carries only the key and the deletion revision
    (empty value, ``create_revision`` 0, as etcd sends it) and ``prev_kv`` is the deleted
    version, so a watcher learns what was deleted.
    """

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        """The revision of this change."""
        return self.kv.mod_revision


class ListResult(msgspec.Struct, frozen=True, gc=False):
    """A page of a list, read at one consistent revision."""

    kvs: list[KeyValue]
    #: The revision the page was read at; read the next page at this revision too.
    revision: int
    #: Whether keys remain after this page.
    more: bool = False
    #: Pass as ``continue_key`` to read the next page (``None`` when ``more`` is false).
    continue_key: bytes | None = None


class Deleted(msgspec.Struct, frozen=True, gc=False):
    """The outcome of a delete: the revision of the deletion and what was deleted."""

    revision: int
    prev_kv: KeyValue


@runtime_checkable
class Store(Protocol):
    """A revisioned key-value log (see the module docstring for the contract).

    All methods are trio-async and safe to call from many tasks at once.
    """

    async def current_revision(self) -> int:
        """The revision of the latest acknowledged write (0 for an empty store)."""
        ...

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """The version of ``key`` live at ``revision`` (0 = latest), or ``None``.

        :raises Compacted: ``revision`` is below the compaction point.
        :raises FutureRevision: ``revision`` is above the current revision.
        """
        ...

    async def list(
        self,
        prefix: Key,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_key: Key | None = None,
    ) -> ListResult:
        """Keys starting with ``prefix`` live at ``revision`` (0 = latest), in key order.

        ``limit`` caps the page size (0 = no cap); ``continue_key`` resumes after a previous
        page (pass that page's ``continue_key`` and ``revision``).

        :raises Compacted: ``revision`` is below the compaction point.
        :raises FutureRevision: ``revision`` is above the current revision.
        """
        ...

    async def count(self, prefix: Key) -> int:
        """How many live keys start with ``prefix``."""
        ...

    async def create(self, key: Key, value: bytes) -> KeyValue:
        """Create ``key``; returns the new version.

        :raises AlreadyExists: the key is live.
        """
        ...

    async def update(self, key: Key, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace ``key`` if its mod-revision is ``expected_revision``; returns the new version.

        :raises NotFound: the key is not live.
        :raises Conflict: the key's mod-revision differs (the error carries the current version).
        """
        ...

    async def delete(self, key: Key, *, expected_revision: int | None = None) -> Deleted:
        """Delete ``key`` (only if its mod-revision is ``expected_revision``, when given).

        :raises NotFound: the key is not live.
        :raises Conflict: the key's mod-revision differs.
        """
        ...

    def watch(
        self, key: Key, *, prefix: bool = False, revision: int = 0
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Watch ``key`` (or every key under it, with ``prefix``) from ``revision``.

        ``revision`` 0 means "changes after now"; otherwise every change with a revision
        ``>= revision`` is delivered, in order, without gaps or duplicates. Iteration raises
        :class:`Compacted` when the history needed was compacted, and
        :class:`WatchClosed` when the store shuts down; it never skips events silently.

        The iterator may also be :class:`ProgressReporting` (:func:`watch_progress`).
        """
        ...

    async def compact(self, revision: int) -> None:
        """Forget history below ``revision`` (reads and watches below it raise ``Compacted``).

        :raises Compacted: already compacted at or above ``revision``.
        :raises FutureRevision: ``revision`` is above the current revision.
        """
        ...

    async def compact_revision(self) -> int:
        """The current compaction point (0 if never compacted)."""
        ...


@runtime_checkable
class ProgressReporting(Protocol):
    """A store's watch iterator that can tell how far it has handed over its range.

    Both backends' iterators (and the encryption layer's wrapper) implement it; a store
    that does not simply gets no progress bookmarks.
    """

    def progress(self) -> int | None:
        """See :func:`watch_progress`."""
        ...


def watch_progress(events: AsyncIterator[Event]) -> int | None:
    """The revision through which a store's watch iterator has handed over every event of
    its range, or None when it cannot tell (events are waiting in it, or the backend keeps
    no progress). A quiet watch learns from it that nothing of its range changed up to a
    revision other keys moved to — what kube-apiserver's progress bookmarks carry.
    """
    return events.progress() if isinstance(events, ProgressReporting) else None
