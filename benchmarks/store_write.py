"""Store write benchmark: writes/s and p50/p99 latency at 1, 16 and 128 concurrent writers.

Each write creates a new key with a 1 KiB value and waits for the acknowledgment (SQLite:
committed and fsynced; etcd: committed by raft). Measured in one run:

* ``sqlite``: kubetrio's SQLite backend (group commit), in this process;
* ``etcd``: kubetrio's etcd backend (CAS transactions through the JSON gateway) against a
  fresh single-member etcd 3.4 on loopback;
* ``raw_etcd``: the baseline — the same etcd driven without any kubetrio code: plain
  ``/v3/kv/put`` requests from N keep-alive HTTP/1.1 connections, one OS thread each, in a
  separate Python process. (etcd's Go ``benchmark`` tool is not packaged in Debian; this is
  the leanest client available here.) Plain puts cost etcd less than the backend's
  compare-and-swap transactions, so the headline ratios are conservative;
* ``raw_etcd_txn``: the same raw client sending the backend's exact create transaction,
  to separate the client's cost from the transaction's.

Goals (issue 3): SQLite >= 2x raw single-member etcd at 16 writers with p99 <= 10 ms; the
etcd backend >= 70% of raw etcd. Prints a table, then one JSON object as the last line.

Usage: ``python benchmarks/store_write.py [--duration SECONDS] [--repeats N]``. The three
are interleaved per concurrency level and averaged over the repeats, because the machine
is shared and its load drifts.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from kubetrio.store import Store, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "store"))
from etcd_cluster import EtcdCluster

VALUE = b"x" * 1024
CONCURRENCY = (1, 16, 128)


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "writes_per_s": len(lat) / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


async def _drive(
    write: Callable[[str], Awaitable[object]], writers: int, duration: float, tag: str
) -> dict[str, float]:
    latencies: list[float] = []
    warmup = min(0.5, duration / 4)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def writer(w: int) -> None:
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await write(f"/bench/{tag}/{w}/{i}")
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
            i += 1

    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)
    return _summary(latencies, time.perf_counter() - measure_from)


async def _drive_store(store: Store, writers: int, duration: float, tag: str) -> dict[str, float]:
    async def write(key: str) -> object:
        return await store.create(key, VALUE)

    return await _drive(write, writers, duration, tag)


# -- the raw etcd baseline (runs in a child process: python store_write.py --raw ...) -------


def raw_etcd(endpoint: str, writers: int, duration: float, txn: bool) -> dict[str, float]:
    host, port = endpoint.split(":")
    value = base64.b64encode(VALUE).decode()
    latencies: list[list[float]] = [[] for _ in range(writers)]
    start = time.perf_counter()
    measure_from = start + min(0.5, duration / 4)
    stop_at = measure_from + duration

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection(host, int(port))
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            key = base64.b64encode(f"/bench/raw{txn:d}{writers}/{w}/{i}".encode()).decode()
            if txn:  # the backend's create: compare-and-swap in one transaction
                body = {
                    "compare": [{"key": key, "target": "MOD", "result": "EQUAL"}],
                    "success": [{"request_put": {"key": key, "value": value}}],
                    "failure": [{"request_range": {"key": key}}],
                }
                conn.request("POST", "/v3/kv/txn", json.dumps(body))
            else:
                conn.request("POST", "/v3/kv/put", json.dumps({"key": key, "value": value}))
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies[w].append(t1 - t0)
            i += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _summary([x for lat in latencies for x in lat], time.perf_counter() - measure_from)


def run_raw(endpoint: str, writers: int, duration: float, txn: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--raw", endpoint, str(writers), str(duration), str(int(txn))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def main(duration: float, repeats: int) -> dict[str, object]:
    load_start = os.getloadavg()[0]
    runs: dict[str, dict[int, list[dict[str, float]]]] = {
        name: {n: [] for n in CONCURRENCY}
        for name in ("sqlite", "raw_etcd", "raw_etcd_txn", "etcd")
    }
    with tempfile.TemporaryDirectory(prefix="kubetrio-bench-") as tmp:
        cluster = EtcdCluster(Path(tmp) / "etcd")
        try:
            await trio.to_thread.run_sync(cluster.start)
            endpoint = cluster.endpoints[0]
            async with (
                open_store(f"sqlite://{tmp}/bench.db") as sqlite_store,
                open_store(cluster.url) as etcd_store,
            ):
                # The machine is shared: interleave the three so that load from elsewhere
                # hits them alike, and average over the repeats.
                for rep in range(repeats):
                    for n in CONCURRENCY:
                        runs["raw_etcd"][n].append(
                            await trio.to_thread.run_sync(run_raw, endpoint, n, duration, False)
                        )
                        runs["raw_etcd_txn"][n].append(
                            await trio.to_thread.run_sync(run_raw, endpoint, n, duration, True)
                        )
                        runs["etcd"][n].append(
                            await _drive_store(etcd_store, n, duration, f"etcd{rep}_{n}")
                        )
                        runs["sqlite"][n].append(
                            await _drive_store(sqlite_store, n, duration, f"sqlite{rep}_{n}")
                        )
        finally:
            await trio.to_thread.run_sync(cluster.stop)
    results = {
        name: {n: {k: statistics.mean(r[k] for r in rs) for k in rs[0]} for n, rs in by_n.items()}
        for name, by_n in runs.items()
    }

    print(f"{'backend':<10}{'writers':>8}{'writes/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_n in results.items():
        for n, r in by_n.items():
            print(
                f"{name:<10}{n:>8}{r['writes_per_s']:>12.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            )
    summary: dict[str, object] = {"bench": "store_write", "value_bytes": len(VALUE)}
    # The machine may be shared: record how busy it was, to read the figures against.
    summary["loadavg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    for name, by_n in results.items():
        for n, r in by_n.items():
            summary[f"{name}_{n}_writes_per_s"] = round(r["writes_per_s"], 1)
            summary[f"{name}_{n}_p50_ms"] = round(r["p50_ms"], 3)
            summary[f"{name}_{n}_p99_ms"] = round(r["p99_ms"], 3)
    raw16 = results["raw_etcd"][16]["writes_per_s"]
    summary["ratio_vs_raw_etcd"] = round(results["sqlite"][16]["writes_per_s"] / raw16, 2)
    summary["etcd_backend_ratio_vs_raw"] = round(results["etcd"][16]["writes_per_s"] / raw16, 2)
    summary["etcd_backend_ratio_vs_raw_txn"] = round(
        results["etcd"][16]["writes_per_s"] / results["raw_etcd_txn"][16]["writes_per_s"], 2
    )
    summary["ratios_by_writers"] = {
        n: {
            "sqlite_vs_raw": round(
                results["sqlite"][n]["writes_per_s"] / results["raw_etcd"][n]["writes_per_s"], 2
            ),
            "etcd_vs_raw": round(
                results["etcd"][n]["writes_per_s"] / results["raw_etcd"][n]["writes_per_s"], 2
            ),
        }
        for n in CONCURRENCY
    }
    summary["goal_sqlite_2x_raw_at_16_p99_le_10ms"] = bool(
        summary["ratio_vs_raw_etcd"] >= 2 and results["sqlite"][16]["p99_ms"] <= 10  # type: ignore[operator]
    )
    summary["goal_etcd_backend_ge_70pct_raw"] = bool(
        summary["etcd_backend_ratio_vs_raw"] >= 0.7  # type: ignore[operator]
    )
    summary["baseline"] = (
        "raw etcd: /v3/kv/put (and, as raw_etcd_txn, the same CAS txn the backend sends) from "
        "N keep-alive HTTP/1.1 connections on N threads in a separate process"
    )
    return summary


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--raw":
        print(
            json.dumps(
                raw_etcd(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1")
            )
        )
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds to average")
    args = parser.parse_args()
    result = trio.run(main, args.duration, args.repeats)
    print(json.dumps(result))
