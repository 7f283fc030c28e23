"""SQLite compaction: the automatic policy, physical deletion in chunks, live keys kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from kubetrio.store import Compacted, CompactionPolicy, KeyValue, open_sqlite_store, open_store


async def test_auto_compaction_keeps_latest_and_recent_history(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    policy = CompactionPolicy(min_age=0.3, min_revisions=50, interval=0.05, chunk=40)
    with trio.fail_after(30):
        async with open_sqlite_store(db, compaction=policy) as store:
            live: dict[str, KeyValue] = {}
            for round_ in range(20):
                for i in range(20):
                    key = f"/c/{i}"
                    old = live.get(key)
                    if old is None:
                        live[key] = await store.create(key, b"0")
                    else:
                        live[key] = await store.update(
                            key, b"%d" % round_, expected_revision=old.mod_revision
                        )
                await store.delete(f"/c/gone{round_}") if round_ % 2 else await store.create(
                    f"/c/gone{round_ + 1}", b"x"
                )
                await trio.sleep(0.05)
            head = await store.current_revision()
            # Let the policy catch up: history older than min_age, beyond min_revisions.
            while await store.compact_revision() < head - 50:
                await trio.sleep(0.05)
            compact = await store.compact_revision()
            assert compact <= head - 50
            # Reads at or above the compaction point work; below raise Compacted.
            at_compact = await store.list("/c/", revision=compact)
            assert at_compact.revision == compact
            with pytest.raises(Compacted):
                await store.list("/c/", revision=compact - 1)
            assert {kv.key.decode(): kv for kv in (await store.list("/c/")).kvs} == live
            # Deletion is chunked and runs in the background: wait for it to finish.
            while store._compacted_through < compact - 1:
                await trio.sleep(0.05)

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT COUNT(*) FROM log WHERE id < ?", (compact,)).fetchone()[0]
        # Below the compaction point only the versions live *at* that point remain, plus the
        # one the write *at* the compaction point replaced (a watch from there shows it as
        # that event's prev_kv).
        assert rows <= len([kv for kv in at_compact.kvs if kv.mod_revision < compact]) + 1
        assert (
            conn.execute(
                "SELECT COUNT(*) FROM log WHERE deleted = 1 AND id < ?", (compact,)
            ).fetchone()[0]
            == 0
        )
    finally:
        conn.close()


async def test_open_store_urls(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_store(f"sqlite://{tmp_path / 'u.db'}") as store:
            await store.create("/a", b"1")
        async with open_store(f"sqlite://{tmp_path / 'u.db'}") as store:
            kv = await store.get("/a")
            assert kv is not None and kv.value == b"1"
    for bad in ("nope", "mysql://x"):
        with pytest.raises(ValueError):
            async with open_store(bad):
                pass
