"""Concurrent compare-and-swap histories against both backends, checked for linearizability."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, cast

import trio

from kubetrio.store import AlreadyExists, Conflict, NotFound, Store
from tests.store.linearizability import KEY_INIT, Operation, is_linearizable, key_step


def test_checker_rejects_a_stale_read() -> None:
    ops = [
        Operation(0, ("create", "a"), ("ok", 5), 0.0, 1.0),
        Operation(1, ("read",), ("a", 5), 2.0, 3.0),
        Operation(0, ("cas", 5, "b"), ("ok", 6), 4.0, 5.0),
        Operation(1, ("read",), ("a", 5), 6.0, 7.0),  # after the cas returned: stale
    ]
    assert not is_linearizable(ops, KEY_INIT, key_step)
    ops[3] = Operation(1, ("read",), ("a", 5), 4.5, 7.0)  # overlapping the cas: fine
    assert is_linearizable(ops, KEY_INIT, key_step)


async def test_concurrent_cas_histories_are_linearizable(store: Store, prefix: str) -> None:
    keys = [prefix + "a", prefix + "b"]
    history: dict[str, list[Operation]] = defaultdict(list)
    rng = random.Random(1234)

    async def client(c: int) -> None:
        known: dict[str, int] = {}
        for i in range(60):
            key = rng.choice(keys)
            roll = rng.random()
            value = f"c{c}-{i}"
            start = trio.current_time()
            out: Any
            if roll < 0.35:
                inp: tuple[Any, ...] = ("read",)
                kv = await store.get(key)
                out = None if kv is None else (kv.value.decode(), kv.mod_revision)
                if kv is not None:
                    known[key] = kv.mod_revision
            elif roll < 0.5:
                inp = ("create", value)
                try:
                    kv = await store.create(key, value.encode())
                    out = ("ok", kv.mod_revision)
                except AlreadyExists as e:
                    assert e.current is not None
                    out = ("exists", (e.current.value.decode(), e.current.mod_revision))
            else:
                expected = known.get(key, 1)
                delete = roll > 0.9
                inp = ("delete", expected) if delete else ("cas", expected, value)
                try:
                    if delete:
                        out = ("ok", (await store.delete(key, expected_revision=expected)).revision)
                    else:
                        kv = await store.update(key, value.encode(), expected_revision=expected)
                        out = ("ok", kv.mod_revision)
                except Conflict as e:
                    out = ("conflict", (e.current.value.decode(), e.current.mod_revision))
                    known[key] = e.current.mod_revision
                except NotFound:
                    out = ("notfound",)
            history[key].append(Operation(c, inp, out, start, trio.current_time()))
            await trio.sleep(rng.random() * 0.002)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for c in range(6):
                nursery.start_soon(client, c)
    violations = [k for k, ops in history.items() if not is_linearizable(ops, KEY_INIT, key_step)]
    assert violations == []
    assert sum(len(ops) for ops in history.values()) == 360
    # The history must actually contain contended writes, or the check proves little.
    outcomes = [
        cast(tuple[str, ...], op.output)[0]
        for ops in history.values()
        for op in ops
        if cast(tuple[str, ...], op.input)[0] != "read"
    ]
    assert outcomes.count("ok") >= 20 and outcomes.count("conflict") >= 5
