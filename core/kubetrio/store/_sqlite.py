"""SQLite backend: an append-only revision log with group commit (the embedded default).

Schema (kine's proven shape)::

    log(id INTEGER PRIMARY KEY,      -- the global revision
        name BLOB, created, deleted, -- key, flags
        create_revision, prev_revision, value,
        time, writer)                -- when, and who wrote it (object history)
    UNIQUE (name, prev_revision)     -- two writers can't both supersede one version
    INDEX  (name, id)                -- "latest version of a key at revision R"
    meta(k, v)                       -- revision, compact_revision, compacted_through
    writers(id, note UNIQUE)         -- each distinct note once (few users write a lot)
    history(id INTEGER PRIMARY KEY, name, created, deleted, create_revision, value,
            replaced, prev_revision, time, writer)
                                     -- versions compaction took out of the log (and the
                                        revision that replaced each), kept for the
                                        history policy (``_history``)
    INDEX  history (replaced)        -- pruning, oldest replaced first
    INDEX  history (name, id) WHERE deleted = 1
                                     -- a deleted key's last version

Every write appends one row. A delete appends a tombstone carrying the deleted value, so a
delete event needs no second read. ``meta.revision`` is bumped in the same transaction, so the
current revision survives compaction of trailing tombstones.

**Writes: one writer, group commit.** Callers queue operations and wait; a single batcher task
takes *everything* queued, applies it in one ``BEGIN IMMEDIATE … COMMIT`` on a worker thread
(checks and inserts run in the transaction, so compare-and-swap is exact), and only after the
commit returns (``synchronous=FULL``: the WAL is fsynced) does it publish the events to the
watch hub and wake the callers. While one batch commits, the next accumulates, so N
concurrent writers share one fsync instead of paying N.

**Reads** run on a small pool of reader connections in worker threads, each in its own
read transaction (WAL snapshot isolation), so a list page and its revision are consistent
and never block the writer.

**Compaction** (kine's rule, made incremental): ``compact(C)`` records C at once (reads below
it then raise ``Compacted``); then every row superseded by a row below C and every tombstone
below C is deleted a slice at a time — a few dozen revisions inside each write batch's
transaction while writes flow (sharing its fsync, so writers never queue behind a
compaction transaction), and in standalone chunks when the writer is idle. The newest
version of every live key always stays. The
automatic policy compacts to the newest revision that is both older than ``min_age`` and at
least ``min_revisions`` behind the head. WAL checkpoints run on their own connection, off
the write path.

**History** (``_history``): with a :class:`HistoryPolicy` that keeps anything, each write
also records its note in its own row (``time``, and ``writer``: the writer's note, stored
once in ``writers``), and compaction *moves* the versions it frees into ``history``
(resources kept for 0 s are deleted as before); the log itself stays as small as the
watch window, so lists and watches cost what they did. The compactor prunes ``history``
by age, per resource, and to the size cap, at start and after each automatic compaction
(when the oldest kept version is due).

What history adds to a write is kept to appends: a key's kept versions are a chain, not
an index range, each row naming the version it replaced (``prev_revision``), so
:meth:`SQLiteStore.history` walks back from the key's oldest version in the log (or, for
a key deleted and compacted away, from its newest tombstone: the only rows indexed by
name) by primary key, and a moved version lands at the end of ``history`` and of
``replaced``. (Schema 0 had a ``(name, id)`` index over every kept version, a random leaf
page per move, and a ``notes`` table, one more B-tree page per commit; ``_migrate``
brings such a store file to schema 1 when it is opened.)
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ._errors import AlreadyExists, Compacted, Conflict, FutureRevision, NotFound, StoreError
from ._history import WRITE_NOTE, HistoryEntry, HistoryPage, HistoryPolicy
from ._protocol import Deleted, Event, EventType, Key, KeyValue, ListResult, as_key, prefix_end
from ._watch import Subscription, WatchHub

log = logging.getLogger("kubetrio.store")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    time REAL,
    writer INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS log_name_prev ON log (name, prev_revision);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (k, v) VALUES
    ('revision', 0), ('compact_revision', 0), ('compacted_through', 0);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    replaced INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL DEFAULT 0,
    time REAL,
    writer INTEGER
);
CREATE INDEX IF NOT EXISTS history_replaced ON history (replaced);
CREATE INDEX IF NOT EXISTS history_tombstones ON history (name, id) WHERE deleted = 1;
CREATE TABLE IF NOT EXISTS writers (id INTEGER PRIMARY KEY, note BLOB NOT NULL UNIQUE);
"""

SCHEMA_VERSION = 1
"""The store file's schema (``PRAGMA user_version``): 0 before notes moved into their
versions' rows and history rows were chained."""


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring a store file written by an older kubetrio to :data:`SCHEMA_VERSION`, in one
    transaction (a crash leaves the old schema, migrated again at the next open).

    Version 0 → 1: ``history`` rows get ``prev_revision`` (the key's previous kept
    version: what its ``(name, id)`` index listed next), and that index makes way for
    one over tombstones only; each ``notes`` row's time and writer move into the row of
    its version (``log`` or ``history``), and the table goes.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema {version}, newer than this kubetrio's ({SCHEMA_VERSION})"
        )
    if version == SCHEMA_VERSION:
        return

    def columns(table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "log" in tables:
            log.info("migrating %s to store schema %d", path, SCHEMA_VERSION)
        if "history" in tables and "prev_revision" not in columns("history"):
            conn.execute("ALTER TABLE history ADD COLUMN prev_revision INTEGER NOT NULL DEFAULT 0")
            conn.execute(
                "UPDATE history SET prev_revision = COALESCE((SELECT MAX(p.id) FROM history"
                " AS p WHERE p.name = history.name AND p.id < history.id), 0)"
            )
        for table in ("log", "history"):
            if table in tables and "time" not in columns(table):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN time REAL")
                conn.execute(f"ALTER TABLE {table} ADD COLUMN writer INTEGER")
                if "notes" in tables:
                    conn.execute(
                        f"UPDATE {table} SET (time, writer) ="
                        f" (SELECT time, writer FROM notes WHERE notes.id = {table}.id)"
                    )
        conn.execute("DROP INDEX IF EXISTS history_name_id")
        conn.execute("DROP TABLE IF EXISTS notes")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_CREATE, _UPDATE, _DELETE = 0, 1, 2
_NO_BOUND = 1 << 62


def _next_kept(prev: str, below: str) -> str:
    """SQL: the ``history`` id of the kept version before one whose ``prev_revision`` is
    ``prev`` and id is ``below``; when that one is not kept (or ``prev`` is 0: created
    after its key's tombstone was compacted), the key's newest tombstone below it."""
    return (
        f"COALESCE((SELECT id FROM history WHERE id = {prev}),"
        " (SELECT MAX(id) FROM history WHERE name = :key AND deleted = 1"
        f" AND id < {below}))"
    )


# A key's kept versions, newest first, from the one before (:prev, :below), until :want
# of them are below :bound (``n`` counts those); values and notes only of those. Ids
# strictly decrease along it, so it ends.
_HISTORY_CHAIN = f"""
WITH RECURSIVE chain(id, prev, n) AS (
    SELECT id, prev_revision, id < :bound FROM history
    WHERE id = {_next_kept(":prev", ":below")}
    UNION ALL
    SELECT h.id, h.prev_revision, c.n + (h.id < :bound) FROM chain AS c JOIN history AS h
    ON h.id = {_next_kept("c.prev", "c.id")} WHERE c.n < :want
)
SELECT c.id, h.created, h.deleted, h.create_revision,
    CASE WHEN c.id < :bound THEN h.value END, h.time, w.note
FROM chain AS c JOIN history AS h ON h.id = c.id
LEFT JOIN writers AS w ON w.id = h.writer AND c.id < :bound
ORDER BY c.id DESC
"""

_EventList = list[Event]  # `list` is shadowed by Store.list inside the class body


@dataclass(frozen=True)
class CompactionPolicy:
    """How much history the automatic compactor keeps.

    It compacts to the newest revision that is at least ``min_age`` seconds old *and* at
    least ``min_revisions`` behind the current revision, checking every ``interval`` seconds.
    ``interval=0`` disables automatic compaction (``compact()`` still works).
    """

    min_age: float = 300.0
    min_revisions: int = 1000
    interval: float = 30.0
    #: Revisions compacted inside each write batch's transaction while writes flow. Deleting
    #: old rows dirties scattered pages, so this is kept small: under a sustained full write
    #: load compaction proceeds at a fraction of the write rate and catches up when idle.
    per_batch: int = 8
    #: Revisions per standalone deletion transaction, when no writes are waiting.
    chunk: int = 200
    #: How often an idle-waiting compactor looks again.
    pause: float = 0.01


class _Op:
    """A queued write; the batcher fills ``result``/``error`` and sets ``done``."""

    __slots__ = ("done", "error", "expected", "key", "kind", "note", "result", "value")

    def __init__(self, kind: int, key: bytes, value: bytes, expected: int | None) -> None:
        self.kind = kind
        self.note = WRITE_NOTE.get()  # the writing task's, captured before it is queued
        self.key = key
        self.value = value
        self.expected = expected
        self.result: KeyValue | Deleted | None = None
        self.error: StoreError | None = None
        self.done = trio.Event()


DATABASE_FILES = ("", "-wal", "-shm", "-journal")
"""The suffixes of a database's files: the database itself, its WAL and shared memory."""


def _make_private(path: str) -> None:
    """Create the database file 0600 when missing, and keep its files 0600.

    The objects hold Secrets and tokens; SQLite creates a database 0644 (less the umask)
    and gives its ``-wal`` and ``-shm`` files the database's mode, so a database made
    0600 here keeps all three private, and older ones are tightened on open.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # empty: a valid new database
    for suffix in DATABASE_FILES:
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass
        except OSError as exc:  # not the owner: still usable, just not tightened
            log.warning("cannot make %s private (mode 0600): %s", path + suffix, exc)


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: a
    # connection is used by one worker thread at a time, but not always the same thread.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _range_sql(end: bytes | None) -> str:
    return "name >= ? AND name < ?" if end is not None else "name >= ?"


def _range_args(start: bytes, end: bytes | None) -> tuple[bytes, ...]:
    return (start, end) if end is not None else (start,)


def _check_revision(revision: int, current: int, compacted: int) -> int:
    if revision <= 0:
        return current
    if revision > current:
        raise FutureRevision(revision, current)
    if revision < compacted:
        raise Compacted(compacted, current)
    return revision


class SQLiteStore:
    """The :class:`~kubetrio.store.Store` on one SQLite file (see :func:`open_sqlite_store`).

    Two ways to run it: ``async with open_sqlite_store(path) as store`` (owns its tasks), or
    construct it (blocking I/O: do it in ``trio.to_thread``), ``await nursery.start(store.run)``
    in your nursery, and call :meth:`close` after ``run`` has ended.

    :param path: the database file, created if missing (a real file: readers share it).
    :param compaction: the automatic compaction policy (default: keep 5 min and 1000 revisions).
    :param readers: concurrent read transactions (each in a worker thread).
    :param max_batch: most writes committed in one transaction.
    :param watch_ring: recent events kept in memory for watch replay.
    :param watch_max_pending: events buffered per watcher before it resyncs from the log.
    :param wal_preallocate: bytes to grow the WAL to at open (see :meth:`_preallocate_wal`).
    :param history: how long old versions are kept past compaction (default: 7 days;
        ``HISTORY_OFF`` for none).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compaction: CompactionPolicy | None = None,
        readers: int = 4,
        max_batch: int = 2000,
        watch_ring: int = 10_000,
        watch_max_pending: int = 10_000,
        wal_preallocate: int = 16 << 20,
        history: HistoryPolicy | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.policy = compaction or CompactionPolicy()
        self.history_policy = history or HistoryPolicy()
        self._keep_history = self.history_policy.enabled
        #: The condition leaving the versions of resources kept for 0 s in the log.
        self._unkept = self._unkept_sql("p.name") if self._keep_history else ("", ())
        self._max_batch = max_batch
        _make_private(self.path)
        self._writer = _connect(self.path)
        _migrate(self._writer, self.path)
        self._writer.executescript(_SCHEMA)
        # Checkpoints are taken off the write path by the checkpoint task.
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._preallocate_wal(wal_preallocate)
        meta = dict(self._writer.execute("SELECT k, v FROM meta").fetchall())
        (max_id,) = self._writer.execute("SELECT COALESCE(MAX(id), 0) FROM log").fetchone()
        self._revision: int = max(meta["revision"], max_id)  # touched by the writer thread
        self._compact_revision: int = meta["compact_revision"]
        self._compacted_through: int = meta["compacted_through"]
        #: note → id in ``writers`` (the table is small: one row per distinct writer).
        self._writers: dict[bytes, int] = {
            bytes(note): wid for wid, note in self._writer.execute("SELECT id, note FROM writers")
        }
        self._readers: list[sqlite3.Connection] = []
        self._reader_limiter = trio.CapacityLimiter(readers)
        # One writer at a time: write batches, compaction chunks and checkpoints take turns.
        self._writer_limiter = trio.CapacityLimiter(1)
        self._queue: list[_Op] = []
        self._queue_wakeup = trio.Event()
        self._compact_wakeup = trio.Event()
        self._closed = False
        self.hub = WatchHub(
            live_revision=self._revision,
            replay=self._replay,
            ring_size=watch_ring,
            max_pending=watch_max_pending,
        )
        self.hub.compact_revision = self._compact_revision
        #: (monotonic time, revision) samples for the age-based compaction policy.
        self._samples: deque[tuple[float, int]] = deque()

    def _preallocate_wal(self, size: int) -> None:
        """Grow the WAL file to ``size`` bytes once, so commits overwrite instead of append.

        An fsync that also extends the file must commit filesystem metadata too; measured
        here, a 1 KiB commit cost ~1.2 ms appending to the WAL and ~0.3 ms overwriting a
        WAL of that size. SQLite rewrites its WAL from the start after a checkpoint and
        never shrinks it (journal_size_limit is off), so growing it once is enough. The
        growth comes from a transaction that spills to the WAL and is rolled back: nothing
        is committed, the frames are dead, the file keeps its size. (SQLite deletes the WAL
        on a clean close, so this costs each open ~50 ms for the default 16 MiB; pass
        ``wal_preallocate=0`` where opens are many and writes few, e.g. in tests.)
        """
        wal = self.path + "-wal"
        if size <= 0 or (os.path.exists(wal) and os.path.getsize(wal) >= size):
            return
        conn = self._writer
        conn.execute("PRAGMA cache_size=-1024")  # a 1 MiB cache spills early
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE wal_fill (b BLOB)")
                conn.execute(
                    "INSERT INTO wal_fill WITH RECURSIVE n(i) AS"
                    " (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                    " SELECT zeroblob(65536) FROM n",
                    (size // 65536 + 1,),
                )
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.execute("PRAGMA cache_size=-2000")
        # Flush it now, or the first acknowledged write would wait for all of it.
        fd = os.open(wal, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- service ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the batcher, compactor and checkpointer until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._batcher)
                nursery.start_soon(self._compactor)
                nursery.start_soon(self._checkpointer)
                task_status.started()
        finally:
            self._closed = True
            self.hub.close()
            for op in self._queue:
                op.error = StoreError("store is closed")
                op.done.set()
            self._queue.clear()

    def close(self) -> None:
        """Close the database connections (after :meth:`run` has returned)."""
        self._closed = True
        for conn in [self._writer, *self._readers]:
            conn.close()
        self._readers.clear()

    # -- writes -----------------------------------------------------------------------------

    async def _submit(self, op: _Op) -> Any:
        if self._closed:
            raise StoreError("store is closed")
        self._queue.append(op)
        self._queue_wakeup.set()
        # The batcher owns the op now; waiting must not be cut short, or a caller could
        # miss learning that its write was committed. Cancellation waits for the commit.
        with trio.CancelScope(shield=True):
            await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def create(self, key: Key, value: bytes) -> KeyValue:
        """See :meth:`Store.create`."""
        kv: KeyValue = await self._submit(_Op(_CREATE, as_key(key), bytes(value), None))
        return kv

    async def update(self, key: Key, value: bytes, *, expected_revision: int) -> KeyValue:
        """See :meth:`Store.update`."""
        op = _Op(_UPDATE, as_key(key), bytes(value), expected_revision)
        kv: KeyValue = await self._submit(op)
        return kv

    async def delete(self, key: Key, *, expected_revision: int | None = None) -> Deleted:
        """See :meth:`Store.delete`."""
        d: Deleted = await self._submit(_Op(_DELETE, as_key(key), b"", expected_revision))
        return d

    async def _batcher(self) -> None:
        while True:
            if not self._queue:
                self._queue_wakeup = trio.Event()
                await self._queue_wakeup.wait()
            ops = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                events = await trio.to_thread.run_sync(
                    self._apply_batch, ops, limiter=self._writer_limiter
                )
            except BaseException as exc:
                # Not an SQLite error (those fail the batch's ops inside): a bug. The
                # callers wait shielded, so they must hear of it before it propagates.
                for op in ops:
                    op.error = StoreError(f"store writer failed: {exc!r}")
                    op.done.set()
                raise
            # Committed and fsynced: publish first, so anyone woken below who then starts a
            # watch "from now" can't see an event they already caused.
            if events:
                self.hub.publish(events)
            for op in ops:
                op.done.set()

    def _apply_batch(self, ops: list[_Op]) -> list[Event]:
        """Worker thread: apply ``ops`` in one transaction; returns the committed events."""
        conn = self._writer
        rev = self._revision
        events: list[Event] = []
        new_writers: dict[bytes, int] = {}
        now = self.history_policy.clock() if self._keep_history else None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    writer = None if now is None else self._writer_id(conn, op.note, new_writers)
                    ev = self._apply_op(conn, op, rev + 1, now, writer)
                    if ev is not None:
                        rev += 1
                        events.append(ev)
                if events:
                    conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (rev,))
                through = self._compacted_through
                if self._compaction_pending:
                    # Compaction rides along with writes: a small slice per batch shares
                    # the batch's commit instead of stalling writers with its own.
                    through = self._delete_range(conn, self.policy.per_batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            error = StoreError(f"sqlite write failed: {exc}")
            for op in ops:
                op.error, op.result = error, None
            return []
        self._revision = rev
        self._compacted_through = through
        self._writers.update(new_writers)  # committed: their ids are real now
        return events

    def _writer_id(self, conn: sqlite3.Connection, note: bytes, new: dict[bytes, int]) -> int:
        """Inside the batch's transaction: the ``writers`` id of ``note``, added if new."""
        found = self._writers.get(note) or new.get(note)
        if found is None:
            conn.execute("INSERT OR IGNORE INTO writers (note) VALUES (?)", (note,))
            (found,) = conn.execute("SELECT id FROM writers WHERE note = ?", (note,)).fetchone()
            new[note] = found
        return found

    def _apply_op(
        self, conn: sqlite3.Connection, op: _Op, rev: int, when: float | None, writer: int | None
    ) -> Event | None:
        """Inside the batch's transaction: check and append ``op`` as revision ``rev``,
        noted with its commit time and writer (``None`` with history off)."""
        row = conn.execute(
            "SELECT id, deleted, create_revision, value FROM log"
            " WHERE name = ? ORDER BY id DESC LIMIT 1",
            (op.key,),
        ).fetchone()
        live = row is not None and not row[1]
        prev_id = row[0] if row is not None else 0
        current = KeyValue(op.key, row[3], row[2], row[0]) if live else None
        if op.kind == _CREATE:
            if current is not None:
                op.error = AlreadyExists(op.key, current)
                return None
            created, deleted, create_rev, value = 1, 0, rev, op.value
        else:
            if current is None:
                op.error = NotFound(op.key)
                return None
            if op.expected is not None and current.mod_revision != op.expected:
                op.error = Conflict(op.key, op.expected, current)
                return None
            create_rev = current.create_revision
            if op.kind == _UPDATE:
                created, deleted, value = 0, 0, op.value
            else:  # the tombstone keeps the deleted value, for delete events
                created, deleted, value = 0, 1, current.value
        try:
            conn.execute(
                "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision,"
                " value, time, writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rev, op.key, created, deleted, create_rev, prev_id, value, when, writer),
            )
        except sqlite3.IntegrityError as exc:  # unique (name, prev_revision): a bug guard
            op.error = StoreError(f"write of {op.key!r} violated the log's invariants: {exc}")
            return None
        if deleted:
            op.result = Deleted(rev, current)  # type: ignore[arg-type]
            return Event(EventType.DELETE, KeyValue(op.key, b"", 0, rev), current)
        kv = KeyValue(op.key, value, create_rev, rev)
        op.result = kv
        return Event(EventType.PUT, kv, current)

    # -- reads ------------------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        async with self._reader_limiter:
            conn = self._readers.pop() if self._readers else None
            holder: list[sqlite3.Connection] = []
            try:
                return await trio.to_thread.run_sync(self._in_snapshot, fn, conn, holder)
            finally:
                if holder:
                    if self._closed:
                        holder[0].close()
                    else:
                        self._readers.append(holder[0])

    def _in_snapshot(
        self,
        fn: Callable[[sqlite3.Connection], T],
        conn: sqlite3.Connection | None,
        holder: list[sqlite3.Connection],
    ) -> T:
        # Worker thread: opening a connection is blocking I/O too, so it happens here.
        if conn is None:
            conn = _connect(self.path)
        holder.append(conn)
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _meta(conn: sqlite3.Connection) -> tuple[int, int]:
        rows = dict(
            conn.execute(
                "SELECT k, v FROM meta WHERE k IN ('revision', 'compact_revision')"
            ).fetchall()
        )
        return rows["revision"], rows["compact_revision"]

    async def current_revision(self) -> int:
        """See :meth:`Store.current_revision`."""
        return self.hub.live_revision

    async def compact_revision(self) -> int:
        """See :meth:`Store.compact_revision`."""
        return self._compact_revision

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """See :meth:`Store.get`."""
        k = as_key(key)

        def read(conn: sqlite3.Connection) -> KeyValue | None:
            current, compacted = self._meta(conn)
            rev = _check_revision(revision, current, compacted)
            row = conn.execute(
                "SELECT id, deleted, create_revision, value FROM log"
                " WHERE name = ? AND id <= ? ORDER BY id DESC LIMIT 1",
                (k, rev),
            ).fetchone()
            if row is None or row[1]:
                return None
            return KeyValue(k, row[3], row[2], row[0])

        return await self._read(read)

    async def list(
        self,
        prefix: Key,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_key: Key | None = None,
    ) -> ListResult:
        """See :meth:`Store.list`."""
        start = as_key(prefix)
        end = prefix_end(start)
        if continue_key is not None:
            start = max(start, as_key(continue_key))

        def read(conn: sqlite3.Connection) -> ListResult:
            current, compacted = self._meta(conn)
            rev = _check_revision(revision, current, compacted)
            # Walk (name, id) in key order; keep a row if it is the newest version of its key
            # at `rev` and not a tombstone. Streaming, so LIMIT stops the scan early.
            sql = (
                "SELECT id, name, create_revision, value FROM log AS l"
                f" WHERE {_range_sql(end)} AND id <= ? AND deleted = 0"
                " AND id = (SELECT MAX(id) FROM log WHERE name = l.name AND id <= ?)"
                " ORDER BY name"
            )
            args: tuple[Any, ...] = (*_range_args(start, end), rev, rev)
            if limit > 0:
                sql += " LIMIT ?"
                args += (limit + 1,)
            rows = conn.execute(sql, args).fetchall()
            more = limit > 0 and len(rows) > limit
            if more:
                rows = rows[:limit]
            kvs = [KeyValue(r[1], r[3], r[2], r[0]) for r in rows]
            cont = kvs[-1].key + b"\x00" if more else None
            return ListResult(kvs, rev, more, cont)

        return await self._read(read)

    async def count(self, prefix: Key) -> int:
        """See :meth:`Store.count`."""
        start = as_key(prefix)
        end = prefix_end(start)

        def read(conn: sqlite3.Connection) -> int:
            (n,) = conn.execute(
                f"SELECT COUNT(*) FROM log AS l WHERE {_range_sql(end)} AND deleted = 0"
                " AND id = (SELECT MAX(id) FROM log WHERE name = l.name)",
                _range_args(start, end),
            ).fetchone()
            return int(n)

        return await self._read(read)

    # -- watch ------------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self, key: Key, *, prefix: bool = False, revision: int = 0
    ) -> AsyncIterator[Subscription]:
        """See :meth:`Store.watch`."""
        start = as_key(key)
        end = prefix_end(start) if prefix else start + b"\x00"
        sub = self.hub.subscribe(start, end, revision)
        async with sub:
            yield sub

    async def _replay(
        self, start: bytes, end: bytes | None, after: int, upto: int, limit: int
    ) -> tuple[_EventList, int]:
        def read(conn: sqlite3.Connection) -> tuple[_EventList, int]:
            current, compacted = self._meta(conn)
            if after + 1 < compacted:
                raise Compacted(compacted, current)
            rows = conn.execute(
                "SELECT l.id, l.name, l.deleted, l.create_revision, l.value,"
                " p.id, p.create_revision, p.value, p.deleted"
                " FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision"
                f" WHERE l.id > ? AND l.id <= ? AND {_range_sql(end).replace('name', 'l.name')}"
                " ORDER BY l.id LIMIT ?",
                (after, upto, *_range_args(start, end), limit),
            ).fetchall()
            events = []
            for rid, name, deleted, crev, value, pid, pcrev, pvalue, pdeleted in rows:
                if deleted:
                    prev = KeyValue(name, value, crev, pid or 0)
                    events.append(Event(EventType.DELETE, KeyValue(name, b"", 0, rid), prev))
                else:
                    prev_kv = KeyValue(name, pvalue, pcrev, pid) if pid and not pdeleted else None
                    events.append(Event(EventType.PUT, KeyValue(name, value, crev, rid), prev_kv))
            through = upto if len(rows) < limit else events[-1].kv.mod_revision
            return events, through

        return await self._read(read)

    # -- compaction -------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """See :meth:`Store.compact`. Old rows are deleted in the background, in chunks."""
        current = self.hub.live_revision
        if revision > current:
            raise FutureRevision(revision, current)
        if revision <= self._compact_revision:
            raise Compacted(self._compact_revision, current)

        def record(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("UPDATE meta SET v = ? WHERE k = 'compact_revision'", (revision,))
                conn.execute("COMMIT")
            except BaseException:
                # (A failed COMMIT — a full disk — must not leave the writer's
                # connection inside a transaction every later write would trip on.)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        async with self._writer_limiter:
            if revision <= self._compact_revision:  # lost a race with another compact()
                raise Compacted(self._compact_revision, current)
            await trio.to_thread.run_sync(record, self._writer)
            self._compact_revision = revision
            self.hub.compact_revision = revision
        self._compact_wakeup.set()

    def _delete_range(self, conn: sqlite3.Connection, revisions: int) -> int:
        """Inside a write transaction: delete what compaction frees in the next ``revisions``
        revisions; returns the new ``compacted_through`` (applied by the caller on commit)."""
        lo = self._compacted_through
        hi = min(self._compact_revision - 1, lo + revisions)
        if hi <= lo:
            return lo
        # Rows superseded by a row in (lo, hi], then tombstones in (lo, hi]: order matters,
        # a tombstone names the row it superseded.
        if self._keep_history:
            # What history keeps moves out of the log, so the log stays the watch window;
            # each version's note goes with it.
            skip, args = self._unkept
            # In primary-key order: the rows land at the table's end, a page or two.
            conn.execute(
                "INSERT OR IGNORE INTO history (id, name, created, deleted, create_revision,"
                " value, replaced, prev_revision, time, writer) SELECT p.id, p.name,"
                " p.created, p.deleted, p.create_revision, p.value, s.id, p.prev_revision,"
                " p.time, p.writer FROM log AS s JOIN log AS p ON p.id = s.prev_revision"
                f" WHERE s.id > ? AND s.id <= ?{skip} ORDER BY p.id",
                (lo, hi, *args),
            )
            conn.execute(
                "INSERT OR IGNORE INTO history (id, name, created, deleted, create_revision,"
                " value, replaced, prev_revision, time, writer) SELECT id, name, created,"
                " deleted, create_revision, value, id, prev_revision, time, writer FROM log"
                f" AS p WHERE id > ? AND id <= ? AND deleted = 1{skip}",
                (lo, hi, *args),
            )
        conn.execute(
            "DELETE FROM log WHERE id IN (SELECT prev_revision FROM log"
            " WHERE id > ? AND id <= ? AND prev_revision != 0)",
            (lo, hi),
        )
        conn.execute("DELETE FROM log WHERE id > ? AND id <= ? AND deleted = 1", (lo, hi))
        conn.execute("UPDATE meta SET v = ? WHERE k = 'compacted_through'", (hi,))
        return hi

    def _delete_chunk(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            through = self._delete_range(conn, self.policy.chunk)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                conn.execute("ROLLBACK")
            raise
        self._compacted_through = through

    @property
    def _compaction_pending(self) -> bool:
        # Physically delete up to (compact_revision - 1): the state *at* the compaction
        # revision stays readable (and watchable), as in etcd.
        return self._compacted_through < self._compact_revision - 1

    async def _compactor(self) -> None:
        while True:
            try:
                await self._compact_forever()
            except sqlite3.Error as exc:
                # A full disk (deleting needs room in the WAL too): compaction only tidies
                # up, so it waits and tries again rather than take the store down.
                log.warning("store compaction failed, retrying in 10 s: %s", exc)
                await trio.sleep(10)

    async def _compact_forever(self) -> None:
        await self.prune_history()
        while True:
            # A fresh event before the work, so a compact() during the work is not missed.
            self._compact_wakeup = trio.Event()
            while self._compaction_pending:
                if self._queue or self._writer_limiter.borrowed_tokens:
                    # Writes are flowing: each write batch deletes a slice in its own
                    # transaction (no extra fsync); just wait.
                    await trio.sleep(self.policy.pause)
                    continue
                await trio.to_thread.run_sync(
                    self._delete_chunk, self._writer, limiter=self._writer_limiter
                )
                await trio.sleep(0)
            timeout = self.policy.interval if self.policy.interval > 0 else math.inf
            with trio.move_on_after(timeout):
                await self._compact_wakeup.wait()
            if self.policy.interval > 0:
                await self._auto_compact()
                await self.prune_history(when_due=True)

    async def _auto_compact(self) -> None:
        now = time.monotonic()
        head = self.hub.live_revision
        samples = self._samples
        if not samples or samples[-1][1] != head:
            samples.append((now, head))
        target = 0
        oldest: tuple[float, int] | None = None
        while samples and now - samples[0][0] >= self.policy.min_age:
            oldest = samples.popleft()
        if oldest is not None:  # keep the newest old-enough sample for the next round
            samples.appendleft(oldest)
            target = oldest[1]
        target = min(target, head - self.policy.min_revisions)
        if target > self._compact_revision:
            with suppress(Compacted, FutureRevision):
                await self.compact(target)

    # -- history ----------------------------------------------------------------------------

    def _unkept_sql(self, column: str) -> tuple[str, tuple[bytes, ...]]:
        """A condition on ``column`` (a key) leaving out the resources kept for 0 s."""
        policy = self.history_policy
        ranges = [(p, prefix_end(p) or b"\xff") for p, secs in policy.ranges() if secs <= 0]
        if policy.retention > 0:
            sql = "".join(f" AND NOT ({column} >= ? AND {column} < ?)" for _ in ranges)
            return sql, tuple(b for r in ranges for b in r)
        kept = [(p, prefix_end(p) or b"\xff") for p, secs in policy.ranges() if secs > 0]
        sql = " OR ".join(f"({column} >= ? AND {column} < ?)" for _ in kept)
        return f" AND ({sql})", tuple(b for r in kept for b in r)

    async def history(self, key: Key, *, before: int = 0, limit: int = 0) -> HistoryPage:
        """See :meth:`HistoryStore.history`: the log's versions of the key, then the kept
        ones walked back from there (see the module's docstring)."""
        k = as_key(key)
        bound = before if before > 0 else _NO_BOUND
        want = limit + 1 if limit > 0 else _NO_BOUND  # one more than a page: "more" or not

        def read(conn: sqlite3.Connection) -> HistoryPage:
            rows: list[tuple[Any, ...]] = []
            # ``before`` continuing a page is a kept version of the key: go on from there
            # (the log holds only newer versions of it).
            row = conn.execute(
                "SELECT prev_revision FROM history WHERE id = ? AND name = ?", (bound, k)
            ).fetchone()
            if row is not None:
                prev, below, seen = row[0], bound, bound
            else:
                rows += conn.execute(
                    "SELECT l.id, l.created, l.deleted, l.create_revision, l.value, l.time,"
                    " w.note FROM log AS l LEFT JOIN writers AS w ON w.id = l.writer"
                    " WHERE l.name = ? AND l.id < ? ORDER BY l.id DESC LIMIT ?",
                    (k, bound, want),
                ).fetchall()
                first = conn.execute(
                    "SELECT id, prev_revision FROM log WHERE name = ? ORDER BY id LIMIT 1", (k,)
                ).fetchone()
                # No version in the log: deleted and compacted, its tombstone is the newest.
                below, prev = first if first is not None else (_NO_BOUND, 0)
                seen = first[0] if first is not None else 0
            if len(rows) < want:
                chain = conn.execute(
                    _HISTORY_CHAIN,
                    {
                        "key": k,
                        "prev": prev,
                        "below": below,
                        "bound": bound,
                        "want": want - len(rows),
                    },
                ).fetchall()
                rows += [r for r in chain if r[0] < bound]
                if chain:
                    seen = chain[-1][0]
            more = len(rows) == want
            if more:
                rows = rows[:limit]
            entries = [
                HistoryEntry(
                    rid,
                    "DELETED" if deleted else "ADDED" if created else "MODIFIED",
                    KeyValue(k, value, crev, rid),
                    when or 0.0,
                    note or b"",
                )
                for rid, created, deleted, crev, value, when, note in rows
            ]
            # Walked to the end: the oldest kept version is the last one seen (as etcd's
            # backend, a page with more after it names its own last entry).
            oldest = entries[-1].revision if more else seen
            return HistoryPage(entries, entries[-1].revision if more else 0, oldest)

        return await self._read(read)

    @staticmethod
    def _written(conn: sqlite3.Connection, revision: int) -> float | None:
        """When the newest version at or below ``revision`` still held (log or history)
        was written (``None``: none held, or written without a note)."""
        row = conn.execute(
            "SELECT time FROM (SELECT * FROM (SELECT id, time FROM log WHERE id <= ?1"
            " ORDER BY id DESC LIMIT 1) UNION ALL SELECT * FROM (SELECT id, time FROM history"
            " WHERE id <= ?1 ORDER BY id DESC LIMIT 1)) ORDER BY id DESC LIMIT 1",
            (revision,),
        ).fetchone()
        return None if row is None else row[0]

    def _floor(self, conn: sqlite3.Connection, cutoff: float) -> int:
        """The newest revision written before ``cutoff`` (by the versions' times; one
        without a note counts as old)."""
        lo, hi = 0, self._revision
        while lo < hi:
            mid = (lo + hi + 1) // 2
            when = self._written(conn, mid)
            if when is None or when < cutoff:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _prune(self, conn: sqlite3.Connection) -> int:
        """Delete the kept versions replaced longer ago than their retention, then the
        oldest beyond the size cap; returns how many went."""
        policy = self.history_policy
        now = policy.clock()
        ranges = [(p, prefix_end(p) or b"\xff", secs) for p, secs in policy.ranges()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            doomed = [
                (
                    "replaced <= ?" + "".join(" AND NOT (name >= ? AND name < ?)" for _ in ranges),
                    (
                        self._floor(conn, now - policy.retention),
                        *(b for start, end, _ in ranges for b in (start, end)),
                    ),
                )
            ]
            doomed += [
                ("replaced <= ? AND name >= ? AND name < ?", (self._floor(conn, now - secs), s, e))
                for s, e, secs in ranges
            ]
            if policy.max_bytes > 0:
                cap = self._size_cap_floor(conn, policy.max_bytes)
                if cap:
                    doomed.append(("replaced <= ?", (cap,)))
            for where, args in doomed:
                conn.execute(f"DELETE FROM history WHERE {where}", args)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                conn.execute("ROLLBACK")
            raise
        return conn.total_changes - before

    @staticmethod
    def _size_cap_floor(conn: sqlite3.Connection, max_bytes: int) -> int:
        """The ``replaced`` revision up to which the oldest versions must go to fit the cap."""
        (total,) = conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM history").fetchone()
        excess = total - max_bytes
        floor = 0
        if excess <= 0:
            return 0
        for replaced, size in conn.execute(
            "SELECT replaced, LENGTH(value) FROM history ORDER BY replaced"
        ):
            excess -= size
            floor = replaced
            if excess <= 0:
                break
        return floor

    def _nothing_due(self, conn: sqlite3.Connection) -> bool:
        """Whether a prune would delete nothing, by two index lookups instead of the
        prune's searches and deletes per resource: the oldest kept replacement is
        younger than the shortest retention, and no size cap applies. (Resources kept
        for 0 s gain no rows while the store runs: the prune at open took any out.)"""
        policy = self.history_policy
        kept = [s for s in (policy.retention, *(s for _, s in policy.ranges())) if s > 0]
        if policy.max_bytes > 0 or not kept:
            return False
        (oldest,) = conn.execute("SELECT MIN(replaced) FROM history").fetchone()
        if oldest is None:
            return True
        when = self._written(conn, oldest)
        # Without its note the version counts as old (as in ``_floor``): prune.
        return when is not None and when >= policy.clock() - min(kept)

    async def prune_history(self, *, when_due: bool = False) -> None:
        """Apply the history policy now (the compactor does it at start and after each
        automatic compaction, ``when_due``: only when something is old enough to go)."""
        if not self._keep_history:
            return
        if when_due and await self._read(self._nothing_due):
            return
        await trio.to_thread.run_sync(self._prune, self._writer, limiter=self._writer_limiter)

    async def _checkpointer(self) -> None:
        conn = _connect(self.path)
        failing = False
        try:
            while True:
                await trio.sleep(1.0)
                # PASSIVE never waits for readers or the writer; the writer restarts the WAL
                # from the top on its own once a checkpoint has caught up.
                try:
                    await trio.to_thread.run_sync(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    # The database file cannot grow (a full disk): the WAL still holds
                    # every commit, writes fail on their own with a clear error, and the
                    # next checkpoint tries again. Said once, not every second.
                    if not failing:
                        log.error("WAL checkpoint of %s failed (retrying): %s", self.path, exc)
                    failing = True
                else:
                    if failing:
                        log.warning("WAL checkpoint of %s works again", self.path)
                    failing = False
        finally:
            conn.close()


@asynccontextmanager
async def open_sqlite_store(
    path: str | os.PathLike[str], **options: Any
) -> AsyncIterator[SQLiteStore]:
    """Open (creating if needed) the SQLite store at ``path`` and run it while in the block.

    ``options`` go to :class:`SQLiteStore` (``compaction=CompactionPolicy(...)``, ...).
    """
    store = await trio.to_thread.run_sync(lambda: SQLiteStore(path, **options))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(store.close)
