"""HA benchmark: ``kubetrio up --servers 3`` against one server, and leader failover.

* **Writes**: ``--writers`` tasks creating ConfigMaps as fast as they are answered for
  ``--seconds`` s, through (a) the API address of three servers on a 3-member etcd (TLS,
  the balancer spreading connections), (b) one of those servers directly (same etcd),
  (c) one ``kubetrio server`` on a 1-member etcd (plain HTTP to etcd, no balancer) —
  throughput and p50/p99 latency of each;
* **Failover**: ``--kills`` times, kill -9 of the server holding the controllers' and
  scheduler's Leases while a probe writes through the API address; the time until both
  Leases have a live holder again (``failover_s``), the longest time without an
  acknowledged write (``api_gap_s``); ``kubetrio up`` then restarts the server.
* **Partition** (``--partitions N``, default 0; root and nftables): N times, the leader
  server and its etcd member cut off for 30 s under the chaos kit's write load, then
  healed (``tests.chaos.ha.partition``): the Leases' failover, the first write after the
  cut, the longest pause of acknowledged writes, the time until the healed server serves
  the newest write directly.

Prints one line per measurement, then one JSON object (figures and ratios) as the last
line. Usage: ``python benchmarks/ha.py [--kills N] [--seconds S] [--writers W]
[--partitions N]`` (a quick run: ``--kills 2 --seconds 3``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubetrio.client import Client, ClientError  # noqa: E402
from tests.chaos import kit  # noqa: E402
from tests.chaos.ha import HACluster, leader_server, lease_holders, partition  # noqa: E402
from tests.chaos.kit import Server  # noqa: E402
from tests.store.etcd_cluster import EtcdCluster  # noqa: E402


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def writes(client: Client, tag: str, *, seconds: float, writers: int) -> dict[str, Any]:
    """Creates of small ConfigMaps from ``writers`` tasks for ``seconds``."""
    namespace = f"bench-{tag}"
    try:
        await client.create("v1", "namespaces", {"metadata": {"name": namespace}})
    except ClientError as exc:
        if not exc.conflict:
            raise
    latencies: list[float] = []
    errors = 0
    deadline = trio.current_time() + seconds

    async def writer(w: int) -> None:
        nonlocal errors
        i = 0
        while trio.current_time() < deadline:
            i += 1
            body = {"metadata": {"name": f"w{w}-{i}"}, "data": {"v": "x" * 64}}
            start = trio.current_time()
            try:
                await client.create("v1", "configmaps", body, namespace=namespace)
            except (ClientError, httpx.HTTPError):
                errors += 1
                continue
            latencies.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for w in range(writers):
            nursery.start_soon(writer, w)
    return {
        "writes_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(_quantile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(_quantile(latencies, 0.99) * 1000, 1),
        "errors": errors,
    }


async def failover(cluster: HACluster) -> dict[str, Any]:
    """One kill -9 of the leader server; the Leases' new holder and the API's gap."""
    async with cluster.client() as client:
        victim = await leader_server(cluster, client)
        dead = f"{socket.gethostname()}-{cluster.pid(f'server-{victim}')}"
        acks: list[float] = []

        async def probe(stop: trio.Event) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"metadata": {"name": f"probe-{time.time_ns()}-{i}"}}
                try:
                    await client.create("v1", "configmaps", body, namespace="default")
                    acks.append(trio.current_time())
                except (ClientError, httpx.HTTPError):
                    pass
                await trio.sleep(0.02)

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, stop)
            await trio.sleep(1.0)
            killed_at = trio.current_time()
            await trio.to_thread.run_sync(cluster.kill, f"server-{victim}")
            taken: dict[str, float] = {}
            with trio.fail_after(90):
                while len(taken) < 2:
                    try:
                        held = await lease_holders(client)
                    except (ClientError, httpx.HTTPError):
                        held = {}
                    for name, holder in held.items():
                        if holder and holder != dead and name not in taken:
                            taken[name] = trio.current_time() - killed_at
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            stop.set()
    around = [killed_at, *[a for a in acks if a >= killed_at]]
    gaps = [b - a for a, b in itertools.pairwise(around)]
    await trio.to_thread.run_sync(cluster.up)  # the killed server back, as a standby
    return {
        "killed": victim,
        "failover_s": round(max(taken.values()), 3),
        "controllers_s": round(taken["kube-controller-manager"], 3),
        "scheduler_s": round(taken["kube-scheduler"], 3),
        "api_gap_s": round(max(gaps, default=0.0), 3),
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "min": round(ordered[0], 3),
        "p50": round(statistics.median(ordered), 3),
        "p90": round(_quantile(ordered, 0.9), 3),
        "max": round(ordered[-1], 3),
    }


async def main(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    # (c) one server on a one-member etcd
    etcd = EtcdCluster(work / "etcd1", size=1)
    etcd.start()
    single = Server(work / "single", "--store", etcd.url)
    (work / "single").mkdir()
    single.start()
    try:
        await trio.to_thread.run_sync(single.wait_ready)
        async with single.client() as client:
            result["one_server"] = await writes(
                client, "one", seconds=args.seconds, writers=args.writers
            )
        print("one server, 1-member etcd:", result["one_server"], flush=True)
    finally:
        await trio.to_thread.run_sync(single.stop)
        etcd.stop()
    cluster = HACluster(work / "ha")
    (work / "ha").mkdir()
    try:
        started = time.monotonic()
        await trio.to_thread.run_sync(cluster.up)
        result["up_s"] = round(time.monotonic() - started, 1)
        async with cluster.client() as client:
            result["three_servers"] = await writes(
                client, "three", seconds=args.seconds, writers=args.writers
            )
        print("three servers through the API address:", result["three_servers"], flush=True)
        plan = json.loads((cluster.home / "ha.json").read_text())
        async with cluster.client(f"https://127.0.0.1:{plan['server_ports'][0]}") as client:
            result["one_of_three_direct"] = await writes(
                client, "direct", seconds=args.seconds, writers=args.writers
            )
        print("one of the three, directly:", result["one_of_three_direct"], flush=True)
        kills: list[dict[str, Any]] = []
        cuts: list[dict[str, Any]] = []
        for n in range(args.kills):
            kills.append(await failover(cluster))
            print(f"kill {n + 1}/{args.kills}:", kills[-1], flush=True)
        for n in range(args.partitions):
            kit.NAMESPACE = f"chaos-partition-{n}"  # the load's names repeat between runs
            cuts.append(await partition(cluster))
            print(f"partition {n + 1}/{args.partitions}:", cuts[-1], flush=True)
    finally:
        await trio.to_thread.run_sync(cluster.down)
    result["kills"] = len(kills)
    if kills:
        result["failover_s"] = _spread([k["failover_s"] for k in kills])
        result["api_gap_s"] = _spread([k["api_gap_s"] for k in kills])
    if cuts:
        result["partitions"] = len(cuts)
        result["partition_lost_writes"] = sum(c["acked_writes_lost"] for c in cuts)
        for key in ("failover_s", "api_recover_s", "longest_ack_gap_s", "recover_s"):
            result[f"partition_{key}"] = _spread([c[key] for c in cuts])
    one, three = result["one_server"], result["three_servers"]
    result["ratio_writes_three_vs_one"] = round(
        three["writes_per_s"] / max(one["writes_per_s"], 0.1), 2
    )
    result["ratio_p99_three_vs_one"] = round(three["p99_ms"] / max(one["p99_ms"], 0.1), 2)
    result["load_after"] = os.getloadavg()[0]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="leader kills (default 10)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each write run")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument(
        "--partitions", type=int, default=0, help="30 s partitions of the leader (root, nft)"
    )
    options = parser.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("benchmarks/ha.py needs etcd (Debian's etcd-server)")
    with tempfile.TemporaryDirectory(prefix="kubetrio-ha-bench-") as tmp:
        figures = trio.run(main, options, Path(tmp))
    print(json.dumps(figures, sort_keys=True))
