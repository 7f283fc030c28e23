"""Backups, restores and migrations (``kubetrio.store._backup``) on real stores: a backup
taken during writes is one consistent revision, a restore starts a new revision epoch
(old revisions are compacted, so clients relist), and live keys move between backends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from kubetrio.store import (
    BUMP_REVISION,
    Compacted,
    StoreError,
    backup_sqlite,
    copy_live,
    noted,
    open_sqlite_store,
    open_store,
    restore_sqlite,
)
from tests.store.etcd_cluster import EtcdCluster

PREFIX = "/registry/core/configmaps/default/"


async def test_a_backup_during_writes_is_one_revision(tmp_path: Path) -> None:
    """Keys written one after another: the backup holds exactly the first n, for some n
    (a torn copy would miss an earlier key or hold a later value)."""
    source, backup = tmp_path / "state.db", tmp_path / "backup.db"
    async with open_sqlite_store(source) as store:
        written = 0

        async def write() -> None:
            nonlocal written
            for i in range(3000):
                await store.create(f"{PREFIX}k{i:05}", f"v{i}".encode())
                written = i + 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            while written < 300:
                await trio.sleep(0.01)
            copied = await trio.to_thread.run_sync(backup_sqlite, source, backup)
    assert 300 <= copied.keys < 3000, "the backup was not taken while writes flowed"
    async with open_sqlite_store(backup) as restored:
        page = await restored.list(PREFIX)
    assert [kv.key for kv in page.kvs] == [f"{PREFIX}k{i:05}".encode() for i in range(copied.keys)]
    assert all(kv.value == f"v{i}".encode() for i, kv in enumerate(page.kvs))
    assert backup.stat().st_mode & 0o777 == 0o600


async def test_a_restore_starts_a_new_revision_epoch_and_keeps_history(tmp_path: Path) -> None:
    source, backup, target = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "new" / "state.db"
    async with open_sqlite_store(source) as store:
        first = await store.create(f"{PREFIX}cm", b"one")
        with noted(b'{"user": "jane"}'):
            second = await store.update(f"{PREFIX}cm", b"two", expected_revision=first.mod_revision)
        await store.create(f"{PREFIX}gone", b"x")
        await store.delete(f"{PREFIX}gone")
        old_head = await store.current_revision()
    await trio.to_thread.run_sync(backup_sqlite, source, backup)
    copied = await trio.to_thread.run_sync(restore_sqlite, backup, target)
    assert copied.keys == 1 and copied.revision == old_head + BUMP_REVISION
    async with open_sqlite_store(target) as store:
        assert await store.current_revision() == old_head + BUMP_REVISION
        current = await store.get(f"{PREFIX}cm")
        assert current is not None and current.value == b"two"
        # A client's old resourceVersion is gone: reads and watches from it say so.
        with pytest.raises(Compacted):
            await store.get(f"{PREFIX}cm", revision=second.mod_revision)
        with pytest.raises(Compacted):
            async with store.watch(PREFIX, prefix=True, revision=old_head) as events:
                async for _ in events:
                    break
        # The object's history came along, with who wrote it.
        page = await store.history(f"{PREFIX}cm")
        assert [e.kv.value for e in page.entries][:2] == [b"two", b"one"]
        assert page.entries[0].note == b'{"user": "jane"}'
        # Writes continue in the new epoch, compare-and-swap on the kept revision.
        again = await store.update(f"{PREFIX}cm", b"three", expected_revision=current.mod_revision)
        assert again.mod_revision > old_head + BUMP_REVISION


def test_restore_and_backup_refuse_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"")
    not_a_store = tmp_path / "plain.db"
    not_a_store.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
    with pytest.raises(StoreError, match="already exists"):
        backup_sqlite(tmp_path / "x.db", tmp_path / "x.db")
    with pytest.raises(StoreError, match="is not a kubetrio SQLite store"):
        restore_sqlite(not_a_store, tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new.db.partial").exists()


async def test_live_keys_move_between_stores_and_the_target_must_be_empty(
    tmp_path: Path,
) -> None:
    async with open_sqlite_store(tmp_path / "a.db") as source:
        for i in range(1234):  # more than one page
            await source.create(f"{PREFIX}k{i}", f"v{i}".encode())
        await source.delete(f"{PREFIX}k7")
        async with open_sqlite_store(tmp_path / "b.db") as target:
            seen: list[int] = []
            copied = await copy_live(source, target, progress=seen.append)
            assert copied.keys == 1233 and seen[-1] == 1233 and len(seen) == 3
            assert await target.count(PREFIX) == 1233
            kv = await target.get(f"{PREFIX}k42")
            assert kv is not None and kv.value == b"v42"
            assert await target.get(f"{PREFIX}k7") is None
            # Compacted at the head: no revision of the copy can be watched from before it.
            assert await target.compact_revision() == await target.current_revision()
            with pytest.raises(StoreError, match="not empty"):
                await copy_live(source, target)


@pytest.mark.etcd
@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")
async def test_migrate_sqlite_to_etcd_and_back(tmp_path: Path) -> None:
    """The live state survives SQLite → a fresh etcd → a new SQLite file."""
    etcd = EtcdCluster(tmp_path / "etcd")
    await trio.to_thread.run_sync(etcd.start)
    try:
        async with open_sqlite_store(tmp_path / "a.db") as source:
            for i in range(700):
                await source.create(f"{PREFIX}k{i}", f"v{i}".encode() * 10)
            async with open_store(etcd.url) as middle:
                there = await copy_live(source, middle)
                assert await middle.compact_revision() == await middle.current_revision()
                async with open_sqlite_store(tmp_path / "c.db") as target:
                    back = await copy_live(middle, target)
                    page = await target.list(PREFIX)
        assert there.keys == back.keys == 700 and there.size == back.size
        assert sorted(kv.value for kv in page.kvs) == sorted(
            f"v{i}".encode() * 10 for i in range(700)
        )
    finally:
        await trio.to_thread.run_sync(etcd.stop)
