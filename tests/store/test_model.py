"""Differential test: random operations on a store and on a tiny in-memory model with full
history; every read at every retained revision must agree (both backends)."""

from __future__ import annotations

import random

import pytest
import trio

from kubetrio.store import (
    AlreadyExists,
    Compacted,
    Conflict,
    KeyValue,
    NotFound,
    Store,
    WatchClosed,
    open_store,
)


class Model:
    """The contract, executed naively: a list of (revision, key, KeyValue | None)."""

    def __init__(self) -> None:
        self.history: list[tuple[int, bytes, KeyValue | None]] = []

    def state(self, revision: int) -> dict[bytes, KeyValue]:
        out: dict[bytes, KeyValue] = {}
        for rev, key, kv in self.history:
            if rev > revision:
                break
            if kv is None:
                out.pop(key, None)
            else:
                out[key] = kv

        return out


async def test_random_operations_match_the_model(store: Store, prefix: str) -> None:
    rng = random.Random(7)
    model = Model()
    keys = [f"{prefix}{c}".encode() for c in "abcdefgh"] + [f"{prefix}a/{c}".encode() for c in "xy"]
    revisions = []
    compacted = 0
    with trio.fail_after(60):
        for step in range(300):
            key = rng.choice(keys)
            now = model.state(10**18)
            roll = rng.random()
            try:
                if roll < 0.4:
                    kv = await store.create(key, b"c%d" % step)
                    assert key not in now
                    model.history.append((kv.mod_revision, key, kv))
                elif roll < 0.75:
                    expected = now[key].mod_revision if key in now and rng.random() < 0.8 else 1
                    kv = await store.update(key, b"u%d" % step, expected_revision=expected)
                    assert now[key].mod_revision == expected
                    assert kv.create_revision == now[key].create_revision
                    model.history.append((kv.mod_revision, key, kv))
                else:
                    deleted = await store.delete(key)
                    assert deleted.prev_kv == now[key]
                    model.history.append((deleted.revision, key, None))
            except AlreadyExists as e:
                assert e.current == now[key]
            except Conflict as e:
                assert e.current == now[key]
            except NotFound:
                assert key not in now
            if model.history:
                revisions.append(model.history[-1][0])

            if step % 25 == 24:
                if rng.random() < 0.5 and len(revisions) > 50:
                    target = revisions[-40]
                    if target > compacted:
                        await store.compact(target)
                        compacted = target
                # Check reads at a sample of revisions, paged and whole.
                live = [r for r in revisions if r >= compacted]
                for rev in [*rng.sample(live, min(6, len(live))), revisions[-1]]:
                    want = sorted(model.state(rev).values(), key=lambda kv: kv.key)
                    got = await store.list(prefix, revision=rev)
                    assert got.kvs == want, f"list at {rev}"
                    paged: list[KeyValue] = []
                    page = await store.list(prefix, revision=rev, limit=3)
                    while True:
                        paged.extend(page.kvs)
                        if not page.more:
                            break
                        page = await store.list(
                            prefix, revision=rev, limit=3, continue_key=page.continue_key
                        )
                    assert paged == want
                    k = rng.choice(keys)
                    assert await store.get(k, revision=rev) == model.state(rev).get(k)
                assert await store.count(prefix) == len(model.state(10**18))
                assert await store.count(prefix + "a/") == sum(
                    k.startswith((prefix + "a/").encode()) for k in model.state(10**18)
                )
                if compacted:
                    with pytest.raises(Compacted):
                        await store.list(prefix, revision=compacted - 1)


async def test_a_closing_hub_ends_watches(store_url: str, prefix: str) -> None:
    # What a store does to its watchers when its service is cancelled under them.
    with trio.fail_after(20):
        async with (
            open_store(store_url) as store,
            store.watch(prefix, prefix=True) as watch,
        ):
            await store.create(prefix + "x", b"1")
            first = await watch.__anext__()
            assert first.kv.value == b"1"
            store.hub.close()  # type: ignore[attr-defined]
            with pytest.raises(WatchClosed):
                await watch.__anext__()
