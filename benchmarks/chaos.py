"""Chaos benchmark: the scenarios of tests/chaos, repeated, with their figures summed up.

* ``server_kill`` (SQLite, and etcd 3.4 when ``etcd`` is installed): kill -9 of
  ``kubetrio server`` under a 200 writes/s load with 100 watches open, restarted at once;
  acknowledged writes lost (goal 0), the time from the restart to the first acknowledged
  write (goal <= 10 s), watch events missing or duplicated (goal 0), linearizability;
* ``agent_kill`` (root and runc): kill -9 of a node agent while its pod runs; whether
  the container survived and was adopted, the time to adoption;
* ``disk_full`` (root): the SQLite store's disk filled; the refusals, reads, integrity,
  recovery;
* ``clock_jump`` (libfaketime): the server's wall clock a day forward and back.

Prints one line per run, then one JSON object as the last line.

Usage: ``python benchmarks/chaos.py [--kills N] [--repeats N]`` (``--kills``: server
kills per store, default 10; ``--repeats``: runs of each other scenario, default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubetrio.cluster import agent_can_run  # noqa: E402
from tests.chaos.scenarios import (  # noqa: E402
    LIBFAKETIME,
    agent_kill,
    clock_jump,
    disk_full,
    server_kill,
)
from tests.store.etcd_cluster import EtcdCluster  # noqa: E402


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "min": round(ordered[0], 3),
        "p50": round(statistics.median(ordered), 3),
        "max": round(ordered[-1], 3),
    }


async def _runs(
    name: str, count: int, scenario: Callable[[Path], Awaitable[dict[str, Any]]]
) -> list[dict[str, Any]]:
    results = []
    for i in range(count):
        with tempfile.TemporaryDirectory(prefix=f"kubetrio-chaos-{name}-") as tmp:
            figures = await scenario(Path(tmp))
        print(f"{name} #{i + 1}: {json.dumps(figures, sort_keys=True)}", flush=True)
        results.append(figures)
    return results


async def _kill_with_etcd(workdir: Path) -> dict[str, Any]:
    cluster = EtcdCluster(workdir / "etcd")
    try:
        await trio.to_thread.run_sync(cluster.start)
        return await server_kill(workdir, "--store", cluster.url)
    finally:
        cluster.stop()


def _kill_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "recover_s": _spread([r["recover_s"] for r in runs]),
        "unavailable_s": _spread([r["unavailable_s"] for r in runs]),
        "acked_writes": sum(r["acked_writes"] for r in runs),
        "acked_writes_lost": sum(r["acked_writes_lost"] for r in runs),
        "non_linearizable_runs": sum(bool(r["non_linearizable_keys"]) for r in runs),
        "watch_missing_events": sum(r["watch_missing_events"] for r in runs),
        "watch_duplicate_events": sum(r["watch_duplicate_events"] for r in runs),
        "watchers_expired": sum(r["watchers_expired"] for r in runs),
    }


async def main(kills: int, repeats: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    result["server_kill_sqlite"] = _kill_summary(
        await _runs("server_kill_sqlite", kills, server_kill)
    )
    if shutil.which("etcd"):
        runs = await _runs("server_kill_etcd", kills, _kill_with_etcd)
        result["server_kill_etcd"] = _kill_summary(runs)
    if agent_can_run() is None:
        runs = await _runs("agent_kill", repeats, agent_kill)
        result["agent_kill"] = {
            "runs": len(runs),
            "adopt_s": _spread([r["adopt_s"] for r in runs]),
            "containers_replaced": sum(not (r["same_container"] and r["same_pid"]) for r in runs),
            "not_ready_observations": sum(r["not_ready_observations"] for r in runs),
        }
    if os.geteuid() == 0:
        runs = await _runs("disk_full", repeats, disk_full)
        result["disk_full"] = {
            "runs": len(runs),
            "refused_statuses": sorted({c for r in runs for c in r["refused_statuses"]}),
            "refused_message": runs[0]["refused_message"],
            "integrity_ok": all(
                r["integrity_when_full"] == r["integrity_after"] == "ok" for r in runs
            ),
            "writes_after_space_returns_s": _spread(
                [r["writes_after_space_returns_s"] for r in runs]
            ),
            "acked_writes_lost": sum(r["acked_writes_lost"] for r in runs),
        }
    if LIBFAKETIME.exists():
        runs = await _runs("clock_jump", repeats, clock_jump)
        result["clock_jump"] = {
            "runs": len(runs),
            "acked_writes_lost": sum(r["acked_writes_lost"] for r in runs),
            "non_linearizable_runs": sum(bool(r["non_linearizable_keys"]) for r in runs),
            "controllers_act_after_jump_s": _spread(
                [r["controllers_act_s"][k] for r in runs for k in ("forward", "back")]
            ),
            "node_stayed_ready": all(r["node_ready"] for r in runs),
        }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    print(json.dumps(trio.run(main, options.kills, options.repeats), sort_keys=True))
