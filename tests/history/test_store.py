"""Object history in the SQLite store: notes in the write's transaction, versions moved out
of the log by compaction, retention per resource applied after a restart, encryption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio

from kubetrio.store import (
    CompactionPolicy,
    EncryptedStore,
    HistoryPolicy,
    noted,
    open_sqlite_store,
    parse_encryption_config,
)

MANUAL = CompactionPolicy(interval=0)
CM = "/registry/core/configmaps/ns/a"
SECRET = "/registry/core/secrets/ns/s"


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _edits(store: object, key: str, count: int, clock: Clock) -> list[int]:
    """Create ``key`` and update it ``count - 1`` times, one clock second apart, each noted."""
    revisions = []
    assert hasattr(store, "create") and hasattr(store, "update")
    with noted(b"user-0"):
        kv = await store.create(key, b"v0")
    revisions.append(kv.mod_revision)
    for i in range(1, count):
        clock.now += 1
        with noted(b"user-%d" % i):
            kv = await store.update(key, b"v%d" % i, expected_revision=kv.mod_revision)
        revisions.append(kv.mod_revision)
    return revisions


async def test_history_survives_compaction_with_notes_and_times(tmp_path: Path) -> None:
    clock = Clock()
    async with open_sqlite_store(
        tmp_path / "h.db",
        compaction=MANUAL,
        wal_preallocate=0,
        history=HistoryPolicy(clock=clock),
    ) as store:
        revs = await _edits(store, CM, 5, clock)
        with noted(b"deleter"):
            gone = await store.delete(CM)
        await store.create("/registry/core/configmaps/ns/other", b"x")  # the tombstone is old
        await store.compact(await store.current_revision())
        await store.prune_history()
        with trio.fail_after(10):  # the compactor deletes in the background
            while True:
                n = sqlite3.connect(tmp_path / "h.db").execute("SELECT COUNT(*) FROM log")
                if n.fetchone()[0] <= 1:
                    break
                await trio.sleep(0.01)
        page = await store.history(CM)
        assert [e.revision for e in page.entries] == [gone.revision, *reversed(revs)]
        assert [e.type for e in page.entries] == ["DELETED"] + ["MODIFIED"] * 4 + ["ADDED"]
        assert page.entries[0].kv.value == b"v4"  # a deletion carries the last state
        assert [e.note for e in page.entries[1:]] == [b"user-%d" % i for i in range(4, -1, -1)]
        assert page.entries[0].note == b"deleter"
        assert page.entries[-1].time == 1_000_000.0 and page.entries[1].time == 1_000_004.0
        assert page.oldest == revs[0]
        # Paging: two at a time, newest first, no gaps.
        seen, before = [], 0
        while True:
            part = await store.history(CM, before=before, limit=2)
            seen += [e.revision for e in part.entries]
            if not part.next_before:
                break
            before = part.next_before
        assert seen == [e.revision for e in page.entries]


async def test_retention_applies_per_resource_after_restart(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    clock = Clock()
    keep_all = HistoryPolicy(clock=clock, overrides={"secrets": 3600.0})
    async with open_sqlite_store(
        db, compaction=MANUAL, wal_preallocate=0, history=keep_all
    ) as store:
        await _edits(store, CM, 3, clock)
        await _edits(store, SECRET, 3, clock)
        clock.now += 100
        await _edits(store, "/registry/apps/deployments/ns/d", 2, clock)
        await store.create("/registry/core/pods/ns/p", b"x")  # the edits are all older
        await store.compact(await store.current_revision())
        with trio.fail_after(10):
            while len((await store.history(SECRET)).entries) != 3 or (
                sqlite3.connect(db).execute("SELECT COUNT(*) FROM history").fetchone()[0] != 5
            ):
                await trio.sleep(0.01)
    # Two hours later, restarted with: 1 h for everything, Secrets 3 h, Deployments 0.
    clock.now += 7200
    policy = HistoryPolicy(
        retention=3600.0,
        overrides={"secrets": 3 * 3600.0, "deployments.apps": 0.0},
        clock=clock,
    )
    async with open_sqlite_store(db, compaction=MANUAL, wal_preallocate=0, history=policy) as store:
        with trio.fail_after(10):  # pruned at start
            while len((await store.history(CM)).entries) != 1:
                await trio.sleep(0.01)
        assert [e.kv.value for e in (await store.history(CM)).entries] == [b"v2"]
        assert [e.kv.value for e in (await store.history(SECRET)).entries] == [b"v2", b"v1", b"v0"]
        # Deployments were not kept at all by the new policy's pruning.
        dep = await store.history("/registry/apps/deployments/ns/d")
        assert [e.kv.value for e in dep.entries] == [b"v1"]
        rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM history").fetchone()[0]
        assert rows == 2  # the Secret's two old versions


async def test_unkept_resources_are_not_moved_and_size_cap(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    clock = Clock()
    policy = HistoryPolicy(clock=clock, max_bytes=4)  # secrets: 0 by default
    async with open_sqlite_store(db, compaction=MANUAL, wal_preallocate=0, history=policy) as store:
        await _edits(store, SECRET, 3, clock)
        await _edits(store, CM, 4, clock)
        await store.create("/registry/core/pods/ns/p", b"x")
        await store.compact(await store.current_revision())
        with trio.fail_after(10):
            while len((await store.history(SECRET)).entries) != 1:
                await trio.sleep(0.01)
        await store.prune_history()
        # Three old ConfigMap versions of 2 bytes each; the cap of 4 keeps the newest two.
        assert [e.kv.value for e in (await store.history(CM)).entries] == [b"v3", b"v2", b"v1"]


async def test_encrypted_history_stays_encrypted(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    config = parse_encryption_config(
        """
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - secretbox:
      keys:
      - name: k1
        secret: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=
"""
    )
    clock = Clock()
    policy = HistoryPolicy(clock=clock, overrides={"secrets": 3600.0})
    async with open_sqlite_store(db, compaction=MANUAL, wal_preallocate=0, history=policy) as inner:
        store = EncryptedStore(inner, config)
        kv = await store.create(SECRET, b"hunter2-old-password")
        await store.update(SECRET, b"hunter2-new-password", expected_revision=kv.mod_revision)
        await store.create("/registry/core/pods/ns/p", b"x")
        await store.compact(await store.current_revision())
        with trio.fail_after(10):
            while sqlite3.connect(db).execute("SELECT COUNT(*) FROM history").fetchone()[0] < 1:
                await trio.sleep(0.01)
        page = await store.history(SECRET)
        assert [e.kv.value for e in page.entries] == [
            b"hunter2-new-password",
            b"hunter2-old-password",
        ]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"hunter2" not in raw
    assert b"k8s:enc:secretbox:v1:k1:" in raw
