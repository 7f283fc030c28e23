"""What object history costs the SQLite store: update throughput and store size, history on
(the default policy: 7 days, each write's note in the same transaction, compaction moving
old versions to the history table) vs off (``HISTORY_OFF``: compaction deletes them), in
the same run.

Each round runs both modes one after the other (alternating which goes first) on fresh
stores: ``--writers`` tasks
updating ``--keys`` keys (1 KiB values, as a small object) with compare-and-swap, each
write noted as the API server notes it (~150 bytes of JSON), while the automatic
compactor runs (min_age 0.5 s, so compaction moves rows during the run). Then
``--edits`` more updates, everything compacted, the WAL checkpointed and the database
file measured: bytes per 10k edits (the log keeps only the live keys; history keeps
every version). Goal (issue 23): history on costs at most 10% of the writes per second.
On a loaded machine the rates swing with the neighbours; the CPU time per update (the
whole process: event loop, writer, checkpointer) swings far less, and is reported too.

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from kubetrio.store import (
    HISTORY_OFF,
    CompactionPolicy,
    HistoryPolicy,
    SQLiteStore,
    noted,
    open_sqlite_store,
)

VALUE = b"x" * 1024
NOTE = json.dumps(
    {
        "user": "system:serviceaccount:kube-system:deployment-controller",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "verb": "update",
        "manager": "kube-controller-manager",
        "userAgent": "kubetrio/0.1.0 (linux) kubernetes/v1.33.0",
    }
).encode()
POLICY = CompactionPolicy(min_age=0.5, min_revisions=100, interval=0.2)


async def _writes(
    store: SQLiteStore, keys: int, writers: int, seconds: float
) -> tuple[float, float]:
    """Updates per second for ``seconds``, and the process's CPU seconds per update."""
    revisions = {}
    for k in range(keys):
        kv = await store.create(f"/registry/core/configmaps/bench/k{k}", VALUE)
        revisions[k] = kv.mod_revision
    done = 0
    deadline = time.monotonic() + seconds

    async def writer(first: int) -> None:
        nonlocal done
        k = first
        with noted(NOTE):
            while time.monotonic() < deadline:
                kv = await store.update(
                    f"/registry/core/configmaps/bench/k{k}", VALUE, expected_revision=revisions[k]
                )
                revisions[k] = kv.mod_revision
                done += 1
                k = (k + writers) % keys

    start, cpu = time.monotonic(), time.process_time()
    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)
    return done / (time.monotonic() - start), (time.process_time() - cpu) / done


async def _size(path: Path, history: HistoryPolicy, keys: int, edits: int) -> int:
    """Bytes of the database after ``edits`` updates of ``keys`` keys, fully compacted."""
    async with open_sqlite_store(
        path, compaction=CompactionPolicy(interval=0), history=history, wal_preallocate=0
    ) as store:
        revisions = {}
        for k in range(keys):
            revisions[k] = (
                await store.create(f"/registry/core/configmaps/s/k{k}", VALUE)
            ).mod_revision
        with noted(NOTE):
            for i in range(edits):
                k = i % keys
                kv = await store.update(
                    f"/registry/core/configmaps/s/k{k}", VALUE, expected_revision=revisions[k]
                )
                revisions[k] = kv.mod_revision
        await store.compact(await store.current_revision())
        while store._compaction_pending:  # the background compactor's progress
            await trio.sleep(0.05)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal") if os.path.exists(f"{path}{s}"))


async def main(rounds: int, seconds: float, keys: int, writers: int, edits: int) -> dict[str, Any]:
    on_rates: list[float] = []
    off_rates: list[float] = []
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            modes = [("on", on_rates), ("off", off_rates)]
            for mode, rates in modes if r % 2 else reversed(modes):  # alternate who goes first
                history = HistoryPolicy() if mode == "on" else HISTORY_OFF
                async with open_sqlite_store(
                    Path(folder) / f"w{r}{mode}.db", compaction=POLICY, history=history
                ) as store:
                    rate, seconds_each = await _writes(store, keys, writers, seconds)
                    rates.append(rate)
                    cpu[mode].append(seconds_each)
        size_on = await _size(Path(folder) / "size-on.db", HistoryPolicy(), keys, edits)
        size_off = await _size(Path(folder) / "size-off.db", HISTORY_OFF, keys, edits)
    on, off = statistics.median(on_rates), statistics.median(off_rates)
    cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    per_10k = 10_000 / edits
    return {
        "writes_per_s_history_on": round(on, 1),
        "writes_per_s_history_off": round(off, 1),
        "throughput_ratio": round(on / off, 3),
        "cpu_us_per_update_on": round(cpu_on * 1e6, 1),
        "cpu_us_per_update_off": round(cpu_off * 1e6, 1),
        "cpu_ratio": round(cpu_off / cpu_on, 3),
        "bytes_per_10k_edits_on": round(size_on * per_10k),
        "bytes_per_10k_edits_off": round(size_off * per_10k),
        "history_bytes_per_edit": round((size_on - size_off) / edits, 1),
        "value_bytes": len(VALUE),
        "writers": writers,
        "rounds": rounds,
        "each_round_on": [round(x) for x in on_rates],
        "each_round_off": [round(x) for x in off_rates],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="per round and mode")
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--edits", type=int, default=10_000, help="updates for the size figure")
    options = parser.parse_args()
    result = trio.run(
        main, options.rounds, options.seconds, options.keys, options.writers, options.edits
    )
    print(
        f"updates/s ({options.writers} writers, 1 KiB): history on "
        f"{result['writes_per_s_history_on']:.0f}, off {result['writes_per_s_history_off']:.0f}"
        f" → ratio {result['throughput_ratio']:.3f}"
    )
    print(
        f"CPU per update: on {result['cpu_us_per_update_on']:.0f} µs, off "
        f"{result['cpu_us_per_update_off']:.0f} µs → off/on {result['cpu_ratio']:.3f}"
    )
    print(
        f"store size per 10k edits: on {result['bytes_per_10k_edits_on'] / 2**20:.1f} MiB, "
        f"off {result['bytes_per_10k_edits_off'] / 2**20:.2f} MiB "
        f"({result['history_bytes_per_edit']:.0f} bytes per kept edit)"
    )
    print(json.dumps(result))
