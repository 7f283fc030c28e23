"""A store file written before history rows were chained and notes moved into their
versions' rows (schema 0: a ``(name, id)`` index over every kept version, a ``notes``
table) opens, is migrated once, and its history reads as it did; a file from a newer
kubetrio is refused. Also the chain's own edge: a key created again
after its tombstone was compacted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from kubetrio.store import (
    CompactionPolicy,
    HistoryPolicy,
    SQLiteStore,
    StoreError,
    noted,
    open_sqlite_store,
)
from kubetrio.store._sqlite import SCHEMA_VERSION

MANUAL = CompactionPolicy(interval=0)
A = b"/registry/core/configmaps/ns/a"
GONE = b"/registry/core/configmaps/ns/gone"
AGAIN = b"/registry/core/configmaps/ns/again"

# The schema as kubetrio wrote it before the migration (schema 0), verbatim.
OLD_SCHEMA = """
CREATE TABLE log (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX log_name_prev ON log (name, prev_revision);
CREATE INDEX log_name_id ON log (name, id);
CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE history (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    replaced INTEGER NOT NULL
);
CREATE INDEX history_name_id ON history (name, id);
CREATE INDEX history_replaced ON history (replaced);
CREATE TABLE notes (id INTEGER PRIMARY KEY, time REAL NOT NULL, writer INTEGER NOT NULL);
CREATE TABLE writers (id INTEGER PRIMARY KEY, note BLOB NOT NULL UNIQUE);
"""


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _old_store(path: Path) -> None:
    """A schema-0 store compacted through revision 9, as the old compactor left it:

    * ``a``: created at 1, updated at 3 and 5 (kept), updated at 7 (live in the log);
    * ``gone``: created at 2, updated at 4, deleted at 6: all kept, nothing in the log;
    * ``again``: created at 8, deleted at 9 (kept), created again at 10 (in the log,
      ``prev_revision`` 0: its tombstone was compacted before it was written).
    """
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    with conn:
        conn.executemany(
            "INSERT INTO meta (k, v) VALUES (?, ?)",
            [("revision", 10), ("compact_revision", 10), ("compacted_through", 9)],
        )
        conn.executemany(
            "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision,"
            " value) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(7, A, 0, 0, 1, 5, b"a7"), (10, AGAIN, 1, 0, 10, 0, b"again10")],
        )
        conn.executemany(
            "INSERT INTO history (id, name, created, deleted, create_revision, value,"
            " replaced) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, A, 1, 0, 1, b"a1", 3),
                (2, GONE, 1, 0, 2, b"gone2", 4),
                (3, A, 0, 0, 1, b"a3", 5),
                (4, GONE, 0, 0, 2, b"gone4", 6),
                (5, A, 0, 0, 1, b"a5", 7),
                (6, GONE, 0, 1, 2, b"gone4", 6),  # a tombstone carries the last state
                (8, AGAIN, 1, 0, 8, b"again8", 9),
                (9, AGAIN, 0, 1, 8, b"again8", 9),
            ],
        )
        conn.executemany(
            "INSERT INTO writers (id, note) VALUES (?, ?)", [(1, b"jane"), (2, b"bob")]
        )
        conn.executemany(
            "INSERT INTO notes (id, time, writer) VALUES (?, ?, ?)",
            [(rev, 1_000_000.0 + rev, 1 if rev % 2 else 2) for rev in range(1, 11)],
        )
    conn.close()


async def _revisions(store: SQLiteStore, key: bytes, limit: int = 0) -> list[int]:
    """Every kept revision of ``key``, newest first, read ``limit`` at a time."""
    seen: list[int] = []
    before = 0
    while True:
        page = await store.history(key, before=before, limit=limit)
        seen += [e.revision for e in page.entries]
        if not page.next_before:
            return seen
        before = page.next_before


async def test_a_schema_0_store_is_migrated_and_reads_as_before(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _old_store(db)
    clock = Clock(1_000_100.0)
    policy = HistoryPolicy(clock=clock)
    async with open_sqlite_store(db, compaction=MANUAL, wal_preallocate=0, history=policy) as store:
        page = await store.history(A)
        assert [(e.revision, e.type, e.kv.value, e.note) for e in page.entries] == [
            (7, "MODIFIED", b"a7", b"jane"),
            (5, "MODIFIED", b"a5", b"jane"),
            (3, "MODIFIED", b"a3", b"jane"),
            (1, "ADDED", b"a1", b"jane"),
        ]
        assert page.entries[-1].time == 1_000_001.0 and page.oldest == 1
        gone = await store.history(GONE)
        assert [(e.revision, e.type, e.kv.value) for e in gone.entries] == [
            (6, "DELETED", b"gone4"),
            (4, "MODIFIED", b"gone4"),
            (2, "ADDED", b"gone2"),
        ]
        assert [e.note for e in gone.entries] == [b"bob", b"bob", b"bob"]
        assert [e.type for e in (await store.history(AGAIN)).entries] == [
            "ADDED",
            "DELETED",
            "ADDED",
        ]
        for key, revisions in [(A, [7, 5, 3, 1]), (GONE, [6, 4, 2]), (AGAIN, [10, 9, 8])]:
            for limit in (1, 2, 3):  # pages crossing from the log into history
                assert await _revisions(store, key, limit) == revisions
        # The version live at a revision (the API's …/history/{rv}): the newest below rv+1.
        live = await store.history(A, before=5, limit=1)
        assert [e.revision for e in live.entries] == [3]
        expired = await store.history(A, before=1, limit=1)
        assert expired.entries == [] and expired.oldest == 1

        # The migrated store goes on keeping history: the next version of ``a`` moves on
        # compaction and chains to what the migration kept.
        with noted(b"carol"):
            kv = await store.update(A, b"a11", expected_revision=7)
        await store.create(b"/registry/core/configmaps/ns/z", b"z")
        await store.compact(await store.current_revision())
        with trio.fail_after(10):
            while store._compaction_pending:
                await trio.sleep(0.01)
        assert await _revisions(store, A, 2) == [kv.mod_revision, 7, 5, 3, 1]

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "history_name_id" not in names and "history_tombstones" in names
    assert "notes" not in names  # each note went into its version's row
    assert conn.execute("SELECT time, writer FROM log WHERE id = 10").fetchone() == (
        1_000_010.0,
        2,
    )
    chain = dict(conn.execute("SELECT id, prev_revision FROM history"))
    conn.close()
    assert chain == {1: 0, 2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5, 8: 0, 9: 8}

    # Opened again, nothing more to migrate; the history reads the same.
    async with open_sqlite_store(db, compaction=MANUAL, wal_preallocate=0, history=policy) as store:
        assert await _revisions(store, GONE) == [6, 4, 2]


def test_a_store_from_a_newer_kubetrio_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"newer than this kubetrio's \\({SCHEMA_VERSION}\\)"):
        SQLiteStore(db, wal_preallocate=0)


async def test_a_key_created_again_after_its_tombstone_was_compacted(tmp_path: Path) -> None:
    clock = Clock()
    async with open_sqlite_store(
        tmp_path / "c.db", compaction=MANUAL, wal_preallocate=0, history=HistoryPolicy(clock=clock)
    ) as store:
        first = await store.create(AGAIN, b"one")
        second = await store.update(AGAIN, b"two", expected_revision=first.mod_revision)
        gone = await store.delete(AGAIN)
        await store.create(A, b"x")
        await store.compact(await store.current_revision())
        with trio.fail_after(10):
            while store._compaction_pending:
                await trio.sleep(0.01)
        # Only history holds the key now; the new object starts a chain of its own.
        assert await store.get(AGAIN) is None
        again = await store.create(AGAIN, b"three")
        revisions = [again.mod_revision, gone.revision, second.mod_revision, first.mod_revision]
        assert await _revisions(store, AGAIN) == revisions
        assert await _revisions(store, AGAIN, 1) == revisions
        page = await store.history(AGAIN)
        assert [e.type for e in page.entries] == ["ADDED", "DELETED", "MODIFIED", "ADDED"]
        assert page.oldest == first.mod_revision
