"""Slow watchers get every event, or an error — never a silent gap (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from kubetrio.store import Compacted, Event, Store, open_store


@pytest.fixture
async def tiny_store(store_url: str) -> AsyncIterator[Store]:
    """A store whose watch buffers and ring are tiny, so slowness overflows them at once."""
    async with open_store(store_url, watch_ring=20, watch_max_pending=8) as s:
        yield s


async def test_slow_consumer_gets_every_event(tiny_store: Store, prefix: str) -> None:
    store = tiny_store
    with trio.fail_after(60):
        first = await store.create(prefix + "0", b"x")
        written = [first]
        got: list[Event] = []

        async def writer() -> None:
            for i in range(1, 300):
                written.append(await store.create(f"{prefix}{i}", b"x"))

        async with (
            store.watch(prefix, prefix=True, revision=first.mod_revision) as watch,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(writer)
            async for ev in watch:
                got.append(ev)
                if len(got) % 10 == 0:
                    await trio.sleep(0.01)  # far slower than the writer
                if len(got) == 300:
                    break
        assert [e.kv for e in got] == written


async def test_watch_from_before_the_store_opened(store_url: str, prefix: str) -> None:
    with trio.fail_after(30):
        async with open_store(store_url) as store:
            written = [await store.create(f"{prefix}{i}", b"x") for i in range(50)]
        # A new store (new hub, empty ring): history must come from the backend.
        async with open_store(store_url, watch_ring=20, watch_max_pending=8) as store:
            more = [await store.create(f"{prefix}m{i}", b"y") for i in range(30)]
            got = []
            async with store.watch(prefix, prefix=True, revision=written[0].mod_revision) as w:
                async for ev in w:
                    got.append(ev.kv)
                    if len(got) == 80:
                        break
        assert got == written + more


async def test_slow_consumer_behind_compaction_gets_all_or_an_error(
    tiny_store: Store, store_url: str, prefix: str
) -> None:
    store = tiny_store
    with trio.fail_after(60):
        first = await store.create(prefix + "0", b"x")
        written = [first]
        got: list[Event] = []
        ended_with: Exception | None = None
        async with store.watch(prefix, prefix=True, revision=first.mod_revision) as watch:
            got.append(await watch.__anext__())
            for i in range(1, 200):
                written.append(await store.create(f"{prefix}{i}", b"x"))
            await store.compact(written[-1].mod_revision)
            try:
                async for ev in watch:
                    got.append(ev)
                    if len(got) == len(written):
                        break
            except Compacted as exc:
                ended_with = exc
        # Whatever arrived is a gap-free prefix of what was written; if it is not all of
        # it, the watch ended with Compacted (SQLite: the history it needed was deleted).
        # etcd keeps streaming to a watcher that was already in sync, so it may get all.
        assert [e.kv for e in got] == written[: len(got)]
        assert len(got) == len(written) or ended_with is not None
        if store_url.startswith("sqlite"):
            assert isinstance(ended_with, Compacted)
