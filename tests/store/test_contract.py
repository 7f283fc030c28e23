"""The store contract, run against SQLite and a real etcd 3.4 (see conftest.py)."""

from __future__ import annotations

import pytest
import trio

from kubetrio.store import (
    AlreadyExists,
    Compacted,
    Conflict,
    EventType,
    FutureRevision,
    KeyValue,
    NotFound,
    Store,
)


async def test_create_update_delete_semantics(store: Store, prefix: str) -> None:
    with trio.fail_after(20):
        key = prefix + "p1"
        kv = await store.create(key, b"v1")
        assert kv == KeyValue(key.encode(), b"v1", kv.mod_revision, kv.mod_revision)
        assert await store.current_revision() == kv.mod_revision
        assert await store.get(key) == kv

        with pytest.raises(AlreadyExists) as exists:
            await store.create(key, b"again")
        assert exists.value.current == kv

        kv2 = await store.update(key, b"v2", expected_revision=kv.mod_revision)
        assert kv2.mod_revision > kv.mod_revision
        assert kv2.create_revision == kv.create_revision
        assert kv2.value == b"v2"

        with pytest.raises(Conflict) as conflict:
            await store.update(key, b"v3", expected_revision=kv.mod_revision)
        assert conflict.value.current == kv2
        assert conflict.value.current_revision == kv2.mod_revision

        with pytest.raises(Conflict):
            await store.delete(key, expected_revision=kv.mod_revision)
        with pytest.raises(NotFound):
            await store.update(prefix + "missing", b"x", expected_revision=kv.mod_revision)
        with pytest.raises(NotFound):
            await store.delete(prefix + "missing")

        deleted = await store.delete(key, expected_revision=kv2.mod_revision)
        assert deleted.prev_kv == kv2
        assert deleted.revision > kv2.mod_revision
        assert await store.get(key) is None
        with pytest.raises(NotFound):
            await store.update(key, b"v4", expected_revision=kv2.mod_revision)

        # A re-created key starts a new life: new create_revision.
        kv5 = await store.create(key, b"v5")
        assert kv5.create_revision == kv5.mod_revision > deleted.revision
        deleted = await store.delete(key)  # unconditional
        assert deleted.prev_kv == kv5


async def test_reads_at_past_revisions_and_paging(store: Store, prefix: str) -> None:
    with trio.fail_after(20):
        written = [await store.create(f"{prefix}k{i:02d}", b"%d" % i) for i in range(10)]
        mid = written[4].mod_revision
        await store.update(written[0].key, b"changed", expected_revision=written[0].mod_revision)
        await store.delete(written[1].key)

        # At `mid`: exactly keys 0..4 with their original values.
        past = await store.list(prefix, revision=mid)
        assert past.kvs == written[:5]
        assert past.revision == mid
        assert await store.get(written[0].key, revision=mid) == written[0]
        assert await store.get(written[7].key, revision=mid) is None

        now = await store.list(prefix)
        assert [kv.key for kv in now.kvs] == [kv.key for kv in written if kv is not written[1]]
        assert now.kvs[0].value == b"changed"
        assert await store.count(prefix) == 9

        # Paging at a fixed revision, while the keyspace keeps changing underneath.
        pages: list[KeyValue] = []
        page = await store.list(prefix, limit=4)
        rev = page.revision
        await store.create(prefix + "k05a", b"late")  # sorts inside the range, after rev
        while True:
            pages.extend(page.kvs)
            if not page.more:
                break
            assert page.continue_key is not None
            page = await store.list(prefix, revision=rev, limit=4, continue_key=page.continue_key)
        assert pages == now.kvs
        assert await store.count(prefix) == 10
        # Prefixes are byte prefixes, and don't leak into neighbours.
        assert (await store.list(prefix + "k0")).kvs[-1].key == (prefix + "k09").encode()
        assert await store.count(prefix[:-1] + "0/") == 0


async def test_compacted_and_future_revisions(store: Store, prefix: str) -> None:
    with trio.fail_after(20):
        key = prefix + "c"
        kv1 = await store.create(key, b"1")
        kv2 = await store.update(key, b"2", expected_revision=kv1.mod_revision)
        kv3 = await store.update(key, b"3", expected_revision=kv2.mod_revision)
        current = await store.current_revision()
        with pytest.raises(FutureRevision):
            await store.get(key, revision=current + 100)
        with pytest.raises(FutureRevision):
            await store.list(prefix, revision=current + 100)

        await store.compact(kv3.mod_revision)
        assert await store.compact_revision() == kv3.mod_revision
        # The state *at* the compaction revision stays readable; below it is gone.
        assert await store.get(key, revision=kv3.mod_revision) == kv3
        with pytest.raises(Compacted) as err:
            await store.get(key, revision=kv2.mod_revision)
        assert err.value.compact_revision == kv3.mod_revision
        assert err.value.current_revision >= kv3.mod_revision
        with pytest.raises(Compacted):
            await store.list(prefix, revision=kv1.mod_revision)
        with pytest.raises(Compacted):
            async with store.watch(key, revision=kv2.mod_revision) as w:
                await w.__anext__()
        with pytest.raises(Compacted):
            await store.compact(kv2.mod_revision)
        assert await store.get(key) == kv3
        # Still writable and watchable from the compaction point.
        kv4 = await store.update(key, b"4", expected_revision=kv3.mod_revision)
        async with store.watch(key, revision=kv3.mod_revision) as w:
            assert (await w.__anext__()).kv == kv3
            assert (await w.__anext__()).kv == kv4


async def test_watch_ordered_unique_resumable(store: Store, prefix: str) -> None:
    with trio.fail_after(30):
        first = await store.create(prefix + "seed", b"0")
        received = []
        n_writers, per_writer = 4, 25
        total = 1 + n_writers * per_writer * 2  # each writer creates and updates

        async def writer(w: int) -> None:
            for i in range(per_writer):
                kv = await store.create(f"{prefix}w{w}/{i}", b"a")
                await store.update(kv.key, b"b", expected_revision=kv.mod_revision)

        async with (
            store.watch(prefix, prefix=True, revision=first.mod_revision) as watch,
            trio.open_nursery() as nursery,
        ):
            for w in range(n_writers):
                nursery.start_soon(writer, w)
            async for ev in watch:
                received.append(ev)
                if len(received) == total:
                    break
        revs = [e.revision for e in received]
        assert revs == sorted(set(revs)), "events must be strictly increasing, no duplicates"
        assert revs[0] == first.mod_revision
        for ev in received[1:]:
            if ev.kv.value == b"b":
                assert ev.prev_kv is not None and ev.prev_kv.value == b"a"
            else:
                assert ev.prev_kv is None

        # Resume from arbitrary points: exactly the suffix, every time.
        for cut in (1, 37, len(received) - 1):
            got = []
            async with store.watch(prefix, prefix=True, revision=revs[cut]) as watch:
                async for ev in watch:
                    got.append(ev)
                    if len(got) == len(received) - cut:
                        break
            assert got == received[cut:]

        # A single-key watch sees only its key (not keys it prefixes).
        await store.create(prefix + "w0/1x", b"neighbour")
        async with store.watch(prefix + "w0/1", revision=first.mod_revision) as watch:
            events = [await watch.__anext__(), await watch.__anext__()]
        assert {e.kv.key for e in events} == {(prefix + "w0/1").encode()}


async def test_watch_from_now_and_deletes(store: Store, prefix: str) -> None:
    with trio.fail_after(20):
        before = await store.create(prefix + "x", b"before")
        async with store.watch(prefix, prefix=True) as watch:
            after = await store.update(
                prefix + "x", b"after", expected_revision=before.mod_revision
            )
            deleted = await store.delete(prefix + "x")
            ev1 = await watch.__anext__()
            ev2 = await watch.__anext__()
        assert ev1.type is EventType.PUT and ev1.kv == after and ev1.prev_kv == before
        assert ev2.type is EventType.DELETE
        assert ev2.revision == deleted.revision
        assert ev2.prev_kv == after


async def test_many_watchers_share_decoded_events(store: Store, prefix: str) -> None:
    with trio.fail_after(30):
        n = 1000
        seen: list[list[object]] = [[] for _ in range(n)]
        ready = trio.Semaphore(0)

        async def watcher(i: int) -> None:
            async with store.watch(prefix, prefix=True) as w:
                ready.release()
                async for ev in w:
                    seen[i].append(ev)
                    if len(seen[i]) == 5:
                        return

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(watcher, i)
            for _ in range(n):
                await ready.acquire()
            for i in range(5):
                await store.create(f"{prefix}{i}", b"v")
        # One decode per event: every watcher holds the very same Event objects.
        for events in seen[1:]:
            assert all(a is b for a, b in zip(events, seen[0], strict=True))
