"""Maglev table build and lookup: Rust (kubetrio.datapath) vs the same algorithm in Python.

Prints each figure with its ratio to the pure-Python baseline measured in the same run
(builds: best and median of 31),
checks that both produce the identical table (correctness beside speed), and ends with one
JSON line. Published reference points (other machines, for orientation only): Envoy
2.1-2.7 ms per build at M=65537, Cilium 8.2 ms at M=16381.

Run: ``python benchmarks/datapath_maglev.py`` (build the extension with ``--release``).
"""

from __future__ import annotations

import json
import statistics
import time
from array import array
from collections.abc import Callable
from functools import partial

from kubetrio.datapath import MaglevTable, reference_maglev_table

M = 65537
SEED = 0


def names(n: int) -> list[str]:
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8080" for i in range(n)]


def run_seconds(fn: Callable[[], object], runs: int) -> list[float]:
    """Seconds of each of ``runs`` calls."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best_seconds(fn: Callable[[], object], runs: int) -> float:
    """Fastest of ``runs`` calls (as ``timeit`` reports): the machine is shared, and the
    fastest run is the one least disturbed by other processes."""
    return min(run_seconds(fn, runs))


def main() -> None:
    result: dict[str, object] = {"bench": "datapath_maglev", "table_size": M}
    tables_equal = True
    ratio_100 = 0.0
    print(f"Maglev table build, M={M} (best of runs)")
    for n in (10, 100, 1000):
        backends = names(n)
        rust_runs = run_seconds(partial(MaglevTable, backends, size=M, seed=SEED), 31)
        rust_s, rust_median = min(rust_runs), statistics.median(rust_runs)
        py_s = best_seconds(partial(reference_maglev_table, backends, None, M, SEED), 3)
        same = MaglevTable(backends, size=M, seed=SEED).table() == reference_maglev_table(
            backends, None, M, SEED
        )
        tables_equal &= same
        ratio = py_s / rust_s
        print(
            f"  {n:5d} backends: rust {rust_s * 1e3:7.3f} ms (median {rust_median * 1e3:.3f})"
            f"   python {py_s * 1e3:8.1f} ms"
            f"   ratio {ratio:6.1f}x   identical={same}"
        )
        result[f"build_ms_{n}_backends"] = round(rust_s * 1e3, 3)
        result[f"build_ms_{n}_backends_median"] = round(rust_median * 1e3, 3)
        result[f"python_build_ms_{n}_backends"] = round(py_s * 1e3, 2)
        if n == 100:
            ratio_100 = ratio
    hundred = names(100)
    small = best_seconds(lambda: MaglevTable(hundred, size=16381), 31)
    # Weighted build (weights 1..4): the turns skip backends that hold their share.
    weighted = {name: 1 + i % 4 for i, name in enumerate(names(100))}
    weighted_s = best_seconds(lambda: MaglevTable(weighted, size=M, seed=SEED), 31)
    weighted_same = MaglevTable(weighted, size=M, seed=SEED).table() == reference_maglev_table(
        list(weighted), list(weighted.values()), M, SEED
    )
    tables_equal &= weighted_same
    print(f"  100 weighted backends: rust {weighted_s * 1e3:.3f} ms   identical={weighted_same}")
    print(f"  100 backends, M=16381: rust {small * 1e3:.3f} ms (Cilium publishes 8.2 ms)")
    print("  references: Envoy 2.1-2.7 ms (M=65537), goal <= 0.5 ms for 100 backends (best run)")
    result["build_ms_100_backends_m16381"] = round(small * 1e3, 3)
    result["build_ms_100_weighted_backends"] = round(weighted_s * 1e3, 3)
    result["goal_1ms_met"] = result["build_ms_100_backends_median"] <= 1.0
    # Issue 22's goal: 0.5 ms at M=65537 for 100 backends, on the best (least disturbed) run.
    best_100 = float(result["build_ms_100_backends"])  # type: ignore[arg-type]
    result["goal_0_5ms_met"] = best_100 <= 0.5
    result["goal_0_5ms_ratio"] = round(0.5 / best_100, 2)

    # Lookup: batches of 1024 uint64 flow hashes through one call (GIL released) vs a
    # Python loop indexing the same table.
    table = MaglevTable(names(100), size=M)
    hashes = array("Q", [(i * 0x9E3779B97F4A7C15 + 12345) & (2**64 - 1) for i in range(1024)])
    out = array("I", bytes(4 * 1024))
    reps = 2000
    t0 = time.perf_counter()
    for _ in range(reps):
        table.lookup_batch(hashes, out)
    rust_ns = (time.perf_counter() - t0) / (reps * 1024) * 1e9
    py_table = table.table()

    def py_lookup() -> list[int]:
        return [py_table[h % M] for h in hashes]

    t0 = time.perf_counter()
    for _ in range(50):
        expected = py_lookup()
    py_ns = (time.perf_counter() - t0) / (50 * 1024) * 1e9
    lookup_ok = list(out) == expected
    print(
        f"Lookup, batches of 1024: rust {rust_ns:.2f} ns/flow   python {py_ns:.1f} ns/flow"
        f"   ratio {py_ns / rust_ns:.1f}x   identical={lookup_ok}"
    )
    result.update(
        lookup_ns_per_flow_batch_1024=round(rust_ns, 3),
        python_lookup_ns_per_flow=round(py_ns, 1),
        lookup_ratio_vs_python=round(py_ns / rust_ns, 1),
        ratio_vs_python=round(ratio_100, 1),
        tables_equal=tables_equal and lookup_ok,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
