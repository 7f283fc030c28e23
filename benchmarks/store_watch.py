"""Watch fan-out benchmark: events/s delivered to 1000 watchers of one prefix.

1000 watchers subscribe to ``/bench/watch/``; a writer task creates N keys (256-byte values)
with 16 concurrent writers; the clock runs from the first write until every watcher has
received every event. Delivered events/s = watchers x N / elapsed. Measured for the SQLite
backend and for the etcd backend (fresh single-member etcd 3.4 on loopback). The baseline
printed beside it is the same store's write rate with no watchers, so the ratio shows what
fan-out to 1000 watchers costs the writers.

Prints a table, then one JSON object as the last line.

Usage: ``python benchmarks/store_watch.py [--events N] [--watchers W]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from kubetrio.store import Store, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))
from etcd_cluster import EtcdCluster

VALUE = b"v" * 256


async def _write(store: Store, tag: str, n_events: int, writers: int = 16) -> float:
    start = time.perf_counter()

    async def writer(w: int) -> None:
        for i in range(w, n_events, writers):
            await store.create(f"/bench/watch/{tag}/{i}", VALUE)

    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)
    return time.perf_counter() - start


async def fan_out(store: Store, tag: str, watchers: int, n_events: int) -> dict[str, float]:
    # Baseline: the same writes with nobody watching.
    bare = _write(store, tag + "bare", n_events)
    bare_elapsed = await bare
    prefix = f"/bench/watch/{tag}/"
    done = 0
    all_done = trio.Event()
    ready = trio.Semaphore(0)
    start = 0.0
    finished_at = 0.0

    async def watcher() -> None:
        nonlocal done, finished_at
        async with store.watch(prefix, prefix=True) as w:
            ready.release()
            seen = 0
            async for _ in w:
                seen += 1
                if seen == n_events:
                    break
        done += 1
        if done == watchers:
            finished_at = time.perf_counter()
            all_done.set()

    async with trio.open_nursery() as nursery:
        for _ in range(watchers):
            nursery.start_soon(watcher)
        for _ in range(watchers):
            await ready.acquire()
        start = time.perf_counter()
        write_elapsed = await _write(store, tag, n_events)
        await all_done.wait()
    elapsed = finished_at - start
    return {
        "delivered_events_per_s": watchers * n_events / elapsed,
        "elapsed_s": elapsed,
        "writes_per_s_with_watchers": n_events / write_elapsed,
        "writes_per_s_no_watchers": n_events / bare_elapsed,
    }


async def main(n_events: int, watchers: int) -> dict[str, object]:
    load_start = os.getloadavg()[0]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kubetrio-bench-") as tmp:
        async with open_store(f"sqlite://{tmp}/watch.db") as store:
            results["sqlite"] = await fan_out(store, "sqlite", watchers, n_events)
        cluster = EtcdCluster(Path(tmp) / "etcd")
        try:
            await trio.to_thread.run_sync(cluster.start)
            async with open_store(cluster.url) as store:
                results["etcd"] = await fan_out(store, "etcd", watchers, n_events)
        finally:
            await trio.to_thread.run_sync(cluster.stop)

    print(f"{watchers} watchers, {n_events} events")
    print(f"{'backend':<8}{'events/s delivered':>20}{'writes/s':>10}{'(no watchers)':>15}")
    for name, r in results.items():
        print(
            f"{name:<8}{r['delivered_events_per_s']:>20.0f}"
            f"{r['writes_per_s_with_watchers']:>10.0f}{r['writes_per_s_no_watchers']:>15.0f}"
        )
    summary: dict[str, object] = {"bench": "store_watch", "watchers": watchers, "events": n_events}
    # The machine may be shared: record how busy it was, to read the figures against.
    summary["loadavg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    for name, r in results.items():
        for k, v in r.items():
            summary[f"{name}_{k}"] = round(v, 3 if k == "elapsed_s" else 1)
        summary[f"{name}_write_ratio_with_vs_without_watchers"] = round(
            r["writes_per_s_with_watchers"] / r["writes_per_s_no_watchers"], 2
        )
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(trio.run(main, args.events, args.watchers)))
