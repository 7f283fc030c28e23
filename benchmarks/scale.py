"""Control-plane scale: 5,000 simulated nodes and 150,000 pods (``--scale 1.0``) on one machine.

Three processes, as a real cluster has them apart:

* **server** — this script's ``serve`` mode: the SQLite store (embedded), the API server
  (plain HTTP on loopback), the controller manager and the scheduler with the installed
  scheduler plugins — ``kubetrio server`` without a node agent;
* **nodes** — ``nodes`` mode: :class:`~kubetrio.simnode.SimulatedNodes` over HTTP (the
  kubelets: registration, a Lease renewed every 10 s, node status, pods made Running);
* **driver** — this process: namespaces and Deployments of mixed sizes (500 down to 1
  replicas, about 3,000 pods per namespace) created by 16 writers, then the
  measurements.

Figures (``--scale`` multiplies nodes and pods; 1.0 is Kubernetes' published limits, the
default 0.01 is what fits beside other work on the project's 2-vCPU machine):

* RSS of the server process (current and peak), the part the store holds (SQLite's own
  heap, ``sqlite3_memory_used``) and the store file's size; RSS of the nodes process;
* seconds to create every Deployment (the API), until every pod exists (the controllers),
  and until every pod is Running (scheduled and started by the simulated nodes); the CPU
  time the server and the nodes spent in that phase, per pod (on a machine shared with
  other work the wall-clock figures follow the machine's load; CPU per pod does not);
* with the cluster full and heartbeats running: GET and PUT p99 of single pods; LIST of
  pods in one namespace and cluster-wide, whole and paged (``limit=500``, every page;
  timed to the last byte, not decoded); each against the upstream SLO
  (GET/PUT p99 ≤ 1 s, LIST namespaced ≤ 5 s, cluster-wide ≤ 30 s) as measured / SLO
  (≤ 1.0 meets it);
* node heartbeats: the Leases in ``kube-node-lease`` are listed every few seconds
  throughout; the largest gap between two renewals of one Lease and the oldest
  ``renewTime`` seen, against the 10 s period (and the 40 s after which the node
  lifecycle controller would mark the node NotReady); nodes NotReady at the end;
* how often the controller manager lost its leader Lease (renewed through the same
  server) and how many of its writes were refused meanwhile.

A run whose pods are not all Running within its budget (300 s + 0.1 s per pod) reports
``completed: false``, how far it got, and the other figures measured at that point.

The last line is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import itertools
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _kit import deployment as kit_deployment

from kubetrio.client import Client, ClientError

NODES = 5000
PODS = 150_000
PODS_PER_NAMESPACE = 3000
BLOCK = [500, 100, 100, 100, 30, 30, 30, 30, 30, 10, 10, 10, 5, 5, 5, 1, 1, 1, 1, 1]
"""Deployment sizes, repeated until the pods are placed: 1,000 pods in 20 Deployments."""
HEARTBEAT = 10.0
LEASE_DURATION = 40.0
SLO = {"get_put_p99": 1.0, "list_namespaced": 5.0, "list_cluster": 30.0}
"""Upstream API call latency SLOs (seconds)."""
WRITERS = 16
CPU_OF = ("server", "nodes")
"""Processes whose CPU time the create-to-Running phase is charged with."""


def deployment_sizes(pods: int) -> list[int]:
    """Replica counts of the Deployments: :data:`BLOCK` repeated, the last one trimmed."""
    sizes: list[int] = []
    total = 0
    for size in itertools.cycle(BLOCK):
        if total >= pods:
            return sizes
        size = min(size, pods - total)
        sizes.append(size)
        total += size
    raise AssertionError("unreachable")


def deployment(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment of small pods (100m cpu, 64Mi requested)."""
    resources = {"cpu": "100m", "memory": "64Mi"}
    container = {"name": "main", "image": "nginx:1.25", "resources": {"requests": resources}}
    return kit_deployment(name, replicas, {"containers": [container]})


# --- the server and nodes processes ------------------------------------------------------


def _rss(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def _sqlite_memory() -> tuple[float, float]:
    """SQLite's heap in this process (current, peak) in MiB: the store's own memory."""
    import sqlite3  # noqa: F401  (loads the library whose counters these are)

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return 0.0, 0.0
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return lib.sqlite3_memory_used() / 2**20, lib.sqlite3_memory_highwater(0) / 2**20


async def _write_stats(path: Path, extra: Any) -> None:
    while True:
        rss, hwm = _rss()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        stats = {"rss_mb": rss, "hwm_mb": hwm, "cpu_s": cpu, **extra()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(path)
        await trio.sleep(1.0)


async def serve(db: Path, url_file: Path, stats: Path) -> None:
    """The control plane: store, API server, controllers, scheduler (no nodes)."""
    from kubetrio import plugins
    from kubetrio.cluster import open_cluster
    from kubetrio.store import open_store

    def store_stats() -> dict[str, float]:
        used, peak = _sqlite_memory()
        size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
        return {"sqlite_mb": used, "sqlite_peak_mb": peak, "store_file_mb": size / 2**20}

    async with (
        open_store(f"sqlite://{db}") as store,
        open_cluster(store, plugins=plugins.load(only=["scheduler"])) as cluster,
    ):
        url_file.write_text(cluster.url)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write_stats, stats, store_stats)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()


async def nodes(url: str, count: int, stats: Path) -> None:
    """The simulated kubelets of ``count`` nodes, over HTTP."""
    from kubetrio.simnode import SimulatedNodes

    async with Client.connect(url) as client:
        sim = SimulatedNodes(
            client, count=count, heartbeat=HEARTBEAT, lease_duration=int(LEASE_DURATION)
        )
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(sim.run)
                nursery.start_soon(_write_stats, stats, lambda: {"ready": True})
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()


# --- the driver ----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class LeaseWatch:
    """Lists the node Leases every few seconds; keeps the largest renewal gap seen."""

    def __init__(self, client: Client, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.renewed: dict[str, float] = {}
        self.max_gap = 0.0
        self.max_age = 0.0
        self.samples = 0
        self.slowest_list = 0.0

    async def sample(self) -> None:
        """One pass over the Leases (paged)."""
        token = ""
        start = time.perf_counter()
        while True:
            page = await self.client.list(
                "coordination.k8s.io/v1",
                "leases",
                namespace="kube-node-lease",
                limit=500,
                continue_token=token,
            )
            now = time.time()
            for lease in page["items"]:
                renew = (lease.get("spec") or {}).get("renewTime")
                if not renew:
                    continue
                at = _parse_time(renew)
                name = lease["metadata"]["name"]
                previous = self.renewed.get(name)
                if previous is not None and at > previous:
                    self.max_gap = max(self.max_gap, at - previous)
                self.renewed[name] = at
                self.max_age = max(self.max_age, now - at)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                break
        self.slowest_list = max(self.slowest_list, time.perf_counter() - start)
        self.samples += 1

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            await self.sample()
            await trio.sleep(self.interval)


async def _wait_for(what: str, check: Any, deadline: float, poll: float) -> float:
    start = time.perf_counter()
    while True:
        done, note = await check()
        if done:
            return time.perf_counter() - start
        if time.perf_counter() - start > deadline:
            raise TimeoutError(f"{what}: not done after {deadline:.0f} s ({note})")
        await trio.sleep(poll)


async def _deployment_totals(client: Client) -> tuple[int, int]:
    """Pods the Deployments have (status.replicas) and have available, summed (paged)."""
    have = available = 0
    token = ""
    while True:
        page = await client.list("apps/v1", "deployments", limit=500, continue_token=token)
        for d in page["items"]:
            status = d.get("status") or {}
            have += int(status.get("replicas") or 0)
            available += int(status.get("availableReplicas") or 0)
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return have, available


async def _raw_list(client: Client, path: str, limit: int) -> tuple[float, int]:
    """Seconds to read a whole LIST (every page when ``limit``) and the items counted."""
    start = time.perf_counter()
    token = ""
    items = 0
    while True:
        query = {"limit": str(limit), "continue": token} if limit else {}
        response = await client.transport.request(
            "GET", path, query={k: v for k, v in query.items() if v}, body=b"", content_type=""
        )
        if response.status != 200:
            raise RuntimeError(f"LIST {path}: {response.status} {response.body[:200]!r}")
        if not limit:
            # Counted without decoding (every pod is bound by now): a sanity check only.
            items = response.body.count(b'"nodeName":')
            break
        page = json.loads(response.body)
        items += len(page["items"])
        token = page["metadata"].get("continue") or ""
        if not token:
            break
    return time.perf_counter() - start, items


async def measure_requests(client: Client, namespaces: list[str], samples: int) -> dict[str, Any]:
    """GET/PUT p99 on single pods and LIST latencies, with the cluster full."""
    names: list[tuple[str, str]] = []
    for namespace in namespaces[:3]:
        page = await client.list("v1", "pods", namespace=namespace, limit=500)
        names.extend((namespace, p["metadata"]["name"]) for p in page["items"])
    rng = random.Random(7)
    gets: list[float] = []
    puts: list[float] = []
    targets = [rng.choice(names) for _ in range(samples)]

    async def worker(queue: list[tuple[str, str]]) -> None:
        while queue:
            namespace, name = queue.pop()
            start = time.perf_counter()
            try:
                pod = await client.get("v1", "pods", name, namespace=namespace)
            except ClientError as exc:
                if not exc.not_found:
                    raise
                continue  # replaced since it was listed (a ReplicaSet trimming a surplus)
            gets.append(time.perf_counter() - start)
            labels = pod["metadata"].setdefault("labels", {})
            labels["scale-touched"] = str(int(labels.get("scale-touched", "0")) + 1)
            start = time.perf_counter()
            try:
                await client.update("v1", "pods", pod, namespace=namespace)
            except ClientError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
            puts.append(time.perf_counter() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(worker, targets)
    result: dict[str, Any] = {
        "get_p99_s": _percentile(gets, 0.99),
        "put_p99_s": _percentile(puts, 0.99),
        "get_p50_s": _percentile(gets, 0.5),
        "put_p50_s": _percentile(puts, 0.5),
    }
    namespace = namespaces[0]
    for label, path in (
        ("namespaced", f"/api/v1/namespaces/{namespace}/pods"),
        ("cluster", "/api/v1/pods"),
    ):
        for limit in (0, 500):
            key = f"list_{label}{'_paged' if limit else ''}"
            times = []
            for _ in range(2):
                took, items = await _raw_list(client, path, limit)
                times.append(took)
            result[f"{key}_s"] = max(times)
            result[f"{key}_items"] = items
    return result


def _read_json(path: Path) -> dict[str, Any]:
    for _ in range(50):
        try:
            value: dict[str, Any] = json.loads(path.read_text())
            return value
        except (OSError, ValueError):
            time.sleep(0.1)
    return {}


async def drive(url: str, scale: float, work: Path, samples: int) -> dict[str, Any]:
    """Create the workload, wait for it, measure (the cluster's processes already run)."""
    node_count = max(5, round(NODES * scale))
    pod_count = max(20, round(PODS * scale))
    sizes = deployment_sizes(pod_count)
    namespace_count = max(1, round(pod_count / PODS_PER_NAMESPACE))
    namespaces = [f"scale-{i}" for i in range(namespace_count)]
    results: dict[str, Any] = {
        "nodes": node_count,
        "pods": pod_count,
        "deployments": len(sizes),
        "namespaces": namespace_count,
    }
    async with Client.connect(url, verify=False) as client:
        leases = LeaseWatch(client, interval=min(5.0, HEARTBEAT / 2))

        async def nodes_ready() -> tuple[bool, str]:
            page = await client.list(
                "coordination.k8s.io/v1", "leases", namespace="kube-node-lease"
            )
            return len(page["items"]) >= node_count, f"{len(page['items'])} leases"

        results["nodes_registered_s"] = await _wait_for(
            "node registration", nodes_ready, 60 + node_count * 0.1, 1.0
        )
        async with trio.open_nursery() as background:
            background.start_soon(leases.run)
            for namespace in namespaces:
                await client.create(
                    "v1",
                    "namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
            cpu_before = {n: _read_json(work / f"{n}.json").get("cpu_s", 0.0) for n in CPU_OF}
            start = time.perf_counter()
            work_items = [
                (namespaces[i % namespace_count], f"app-{i}", size) for i, size in enumerate(sizes)
            ]
            work_items.reverse()

            async def writer() -> None:
                while work_items:
                    namespace, name, size = work_items.pop()
                    await client.create(
                        "apps/v1", "deployments", deployment(name, size), namespace=namespace
                    )

            async with trio.open_nursery() as writers:
                for _ in range(WRITERS):
                    writers.start_soon(writer)
            results["deployments_created_s"] = time.perf_counter() - start
            poll = max(1.0, min(10.0, pod_count / 20_000))
            totals = {"have": 0, "available": 0}

            async def pods_exist() -> tuple[bool, str]:
                totals["have"], totals["available"] = await _deployment_totals(client)
                return totals["have"] >= pod_count, f"{totals['have']}/{pod_count} pods"

            async def pods_running() -> tuple[bool, str]:
                totals["have"], totals["available"] = await _deployment_totals(client)
                return totals["available"] >= pod_count, f"{totals['available']} available"

            budget = 300 + pod_count * 0.1
            try:
                created = await _wait_for("pods created", pods_exist, budget, poll)
                results["pods_created_s"] = results["deployments_created_s"] + created
                running = await _wait_for("pods running", pods_running, budget, poll)
                results["pods_running_s"] = results["pods_created_s"] + running
                results["pods_per_s"] = pod_count / results["pods_running_s"]
                results["completed"] = True
            except TimeoutError as exc:
                # Measured all the same, as far as it got: the figures say why.
                print(f"not completed: {exc}", flush=True)
                results["completed"] = False
                results["pods_existing_at_timeout"] = totals["have"]
                results["pods_running_at_timeout"] = totals["available"]
                results["pods_per_s"] = totals["available"] / (time.perf_counter() - start)
            for name in CPU_OF:
                used = _read_json(work / f"{name}.json").get("cpu_s", 0.0) - cpu_before[name]
                results[f"{name}_cpu_s"] = used
                results[f"{name}_cpu_ms_per_pod"] = 1000 * used / pod_count
            if results["completed"]:
                print(
                    f"{pod_count} pods in {len(sizes)} Deployments on {node_count} nodes: "
                    f"created {results['pods_created_s']:.1f} s, all Running "
                    f"{results['pods_running_s']:.1f} s",
                    flush=True,
                )
            results.update(await measure_requests(client, namespaces, samples))
            await leases.sample()
            background.cancel_scope.cancel()
        nodes_page = await client.list("v1", "nodes", label_selector="kubetrio.io/simulated=true")
        results["nodes_not_ready"] = sum(
            1
            for n in nodes_page["items"]
            for c in (n.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") != "True"
        )
    results["lease_max_gap_s"] = leases.max_gap
    results["lease_max_age_s"] = leases.max_age
    results["lease_samples"] = leases.samples
    results["lease_list_slowest_s"] = leases.slowest_list
    return results


def _spawn(mode: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, __file__, mode, *args], stdout=out, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(scale: float, samples: int) -> dict[str, Any]:
    """Start the server and the nodes, drive the workload, gather every figure."""
    node_count = max(5, round(NODES * scale))
    with tempfile.TemporaryDirectory(prefix="kubetrio-scale-") as tmp:
        work = Path(tmp)
        url_file = work / "url"
        server = _spawn(
            "serve",
            str(work / "store.db"),
            str(url_file),
            str(work / "server.json"),
            log=work / "server.log",
        )
        sim = None
        try:
            deadline = time.monotonic() + 60
            while not url_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "server.log").read_text()[-3000:])
                time.sleep(0.2)
            url = url_file.read_text()
            sim = _spawn(
                "nodes", url, str(node_count), str(work / "nodes.json"), log=work / "nodes.log"
            )
            results = trio.run(drive, url, scale, work, samples)
            server_log = (work / "server.log").read_text(errors="replace")
            # The controller manager's leadership (its Lease goes through the same server):
            # lost rounds restart every controller; refused writes are retried later.
            results["leadership_lost"] = server_log.count("lost leadership")
            results["writes_refused_not_leader"] = server_log.count("NotLeader")
            server_stats = _read_json(work / "server.json")
            node_stats = _read_json(work / "nodes.json")
            for name, process in (("server", server), ("nodes", sim)):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited: {(work / f'{name}.log').read_text()[-3000:]}"
                    )
        except BaseException:
            for name in ("server", "nodes"):
                log = work / f"{name}.log"
                if log.exists():
                    print(f"--- {name}.log (tail)\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            if sim is not None:
                _stop(sim)
            _stop(server)
    results.update(
        {
            "server_rss_mb": server_stats.get("rss_mb"),
            "server_peak_rss_mb": server_stats.get("hwm_mb"),
            "store_sqlite_mb": server_stats.get("sqlite_mb"),
            "store_sqlite_peak_mb": server_stats.get("sqlite_peak_mb"),
            "store_file_mb": server_stats.get("store_file_mb"),
            "nodes_rss_mb": node_stats.get("rss_mb"),
        }
    )
    return results


def main() -> None:
    """Run at ``--scale`` and print the figures; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "serve", "nodes"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--scale", type=float, default=0.01, help="1.0 = 5,000 nodes, 150,000 pods")
    parser.add_argument("--samples", type=int, default=400, help="GET/PUT pairs measured")
    options = parser.parse_args()
    if options.mode == "serve":
        db, url_file, stats = options.args
        trio.run(serve, Path(db), Path(url_file), Path(stats))
        return
    if options.mode == "nodes":
        url, count, stats = options.args
        trio.run(nodes, url, int(count), Path(stats))
        return
    results: dict[str, Any] = {"bench": "scale", "scale": options.scale}
    results.update(run(options.scale, options.samples))
    results["ratio_get_p99_vs_slo"] = results["get_p99_s"] / SLO["get_put_p99"]
    results["ratio_put_p99_vs_slo"] = results["put_p99_s"] / SLO["get_put_p99"]
    for key in ("list_namespaced", "list_namespaced_paged"):
        results[f"ratio_{key}_vs_slo"] = results[f"{key}_s"] / SLO["list_namespaced"]
    for key in ("list_cluster", "list_cluster_paged"):
        results[f"ratio_{key}_vs_slo"] = results[f"{key}_s"] / SLO["list_cluster"]
    results["ratio_lease_gap_vs_period"] = results["lease_max_gap_s"] / HEARTBEAT
    results["heartbeats_on_time"] = (
        results["lease_max_age_s"] < LEASE_DURATION and results["nodes_not_ready"] == 0
    )
    results = {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}
    print(
        f"server RSS {results['server_rss_mb']} MB (peak {results['server_peak_rss_mb']}), "
        f"SQLite heap {results['store_sqlite_mb']} MB, store file {results['store_file_mb']} MB; "
        f"nodes process {results['nodes_rss_mb']} MB"
    )
    print(
        f"GET p99 {results['get_p99_s']} s, PUT p99 {results['put_p99_s']} s; LIST namespaced "
        f"{results['list_namespaced_s']} s (paged {results['list_namespaced_paged_s']}), "
        f"cluster {results['list_cluster_s']} s (paged {results['list_cluster_paged_s']})"
    )
    print(
        f"leases: max renew gap {results['lease_max_gap_s']} s, oldest renewTime seen "
        f"{results['lease_max_age_s']} s (period {HEARTBEAT:g} s); "
        f"{results['nodes_not_ready']} nodes NotReady"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
