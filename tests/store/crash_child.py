"""Child process for the crash-durability test: write, acknowledge on stdout, get SIGKILLed.

Usage: ``python crash_child.py DB SEED``. Prints ``R`` once the store is open, then one line
per acknowledged write — ``C key rev value``, ``U key rev value``, ``D key rev`` — written
with a single ``os.write`` *after* the store acknowledged it. Compaction runs continuously
(tiny policy), so kills also land in compaction and checkpoints.
"""

from __future__ import annotations

import os
import random
import sys

import trio

from kubetrio.store import CompactionPolicy, open_sqlite_store


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    policy = CompactionPolicy(min_age=0.0, min_revisions=40, interval=0.02, chunk=30)
    async with open_sqlite_store(path, compaction=policy) as store:
        os.write(1, b"R\n")

        async def writer(w: int) -> None:
            for i in range(10**9):
                key = f"/k/{seed}/{w}/{i}"
                value = f"{seed}.{w}.{i}"
                kv = await store.create(key, value.encode())
                os.write(1, f"C {key} {kv.mod_revision} {value}\n".encode())
                if rng.random() < 0.5:
                    value += "u"
                    kv = await store.update(key, value.encode(), expected_revision=kv.mod_revision)
                    os.write(1, f"U {key} {kv.mod_revision} {value}\n".encode())
                if rng.random() < 0.3:
                    d = await store.delete(key, expected_revision=kv.mod_revision)
                    os.write(1, f"D {key} {d.revision}\n".encode())

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
