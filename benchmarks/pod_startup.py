"""Pod startup latency on one real node: created → Running and Ready, image cached.

Starts an in-process API server (SQLite), a local ``docker-registry`` with a busybox
image, and the node agent with the runc runtime and the ``calico`` network plugin, in
this process. The image is pulled once before timing (Kubernetes' pod startup SLO
excludes image pulls). Then pods (``sleep``, no probes, so Ready follows Running) are
created in bursts (all at once: 30, then 100 by default) and in a paced wave (100 at
5 pods/s), each wave deleted before the next, and a pod watch records when each pod is
first seen Running and first seen Ready.

Each configuration runs against a fresh server and agent, one after the other in the
same run (``--rounds`` alternates them): ``ip`` is the code before, pod networks wired
by ``ip`` processes (the private ``KUBETRIO_POD_NET_IP_COMMANDS=1``), ``netlink`` wires
them in-process. Figures per configuration and wave: p50/p99/max of created → Running
and → Ready, CPU per pod of this process and of its children (runc, unshare, ip), the
1-minute load average (the machine is shared), deletion time, RSS. The last line is one
JSON object with the figures, their ratio to the SLO (p99 ≤ 5 s for stateless pods with
cached images), whether each meets the goal (burst p99 ≤ 2 s, paced p99 ≤ 0.3 s), and
netlink's p99 over ip's.

Needs root, runc, docker-registry, busybox-static.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.images import busybox_registry
from kubetrio.kubelet import NodeAgent
from kubetrio.netns import IP_COMMANDS_ENV
from kubetrio.store import open_store

SLO_P99_S = 5.0
GOAL_BURST_P99_S = 2.0
GOAL_PACED_P99_S = 0.3
NODE = "bench-node"
BLOCK = "10.244.252.0/24"


def rss_mib() -> float:
    """This process's resident set size in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                    "resources": {"limits": {"memory": "16Mi", "cpu": "100m"}},
                }
            ],
        },
    }


async def run_wave(client: Client, count: int, rate: float, prefix: str) -> dict[str, Any]:
    """Create ``count`` pods (rate 0: all at once); return latencies in seconds."""
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    ready: dict[str, float] = {}
    listed = await client.list("v1", "pods", namespace="default")
    rv = listed["metadata"]["resourceVersion"]
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            async with client.watch("v1", "pods", namespace="default", resource_version=rv) as ev:
                async for event in ev:
                    name = event.object["metadata"]["name"]
                    if not name.startswith(prefix):
                        continue
                    status = event.object.get("status") or {}
                    now = time.monotonic()
                    if status.get("phase") == "Running":
                        running.setdefault(name, now)
                    for cond in status.get("conditions") or []:
                        if cond["type"] == "Ready" and cond["status"] == "True":
                            ready.setdefault(name, now)
                    if len(ready) == count:
                        nursery.cancel_scope.cancel()

        nursery.start_soon(watch)

        async def create(name: str) -> None:
            created[name] = time.monotonic()
            await client.create("v1", "pods", pod(name), namespace="default")

        start = trio.current_time()  # sleep_until uses trio's clock, not time.monotonic
        for i in range(count):
            name = f"{prefix}{i:03d}"
            if rate:
                await trio.sleep_until(start + i / rate)
                nursery.start_soon(create, name)
            else:
                nursery.start_soon(create, name)
        with trio.fail_after(300):
            await trio.sleep_forever()
    to_running = [running[n] - created[n] for n in created]
    to_ready = [ready[n] - created[n] for n in created]
    return {"running": to_running, "ready": to_ready}


async def delete_all(client: Client, agent: NodeAgent) -> float:
    start = time.monotonic()
    listed = await client.list("v1", "pods", namespace="default")
    async with trio.open_nursery() as nursery:
        for item in listed["items"]:
            nursery.start_soon(
                lambda n=item["metadata"]["name"]: client.delete(
                    "v1", "pods", n, namespace="default"
                )
            )
    with trio.fail_after(120):
        while (await client.list("v1", "pods", namespace="default"))["items"] or agent.workers:
            await trio.sleep(0.05)
    return time.monotonic() - start


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_s": round(statistics.median(values), 3),
        "p99_s": round(percentile(values, 0.99), 3),
        "max_s": round(max(values), 3),
    }


async def run_path(
    path: str, bursts: list[int], paced: int, rate: float, tmp: Path, concurrency: int
) -> dict[str, Any]:
    """One configuration: a fresh API server and agent, then each burst and the paced wave
    (every wave's pods deleted before the next). ``path`` ``ip`` wires pods with ``ip``
    processes as the code before did (the baseline), ``netlink`` in-process."""
    if path == "ip":
        os.environ[IP_COMMANDS_ENV] = "1"
    else:
        os.environ.pop(IP_COMMANDS_ENV, None)
    results: dict[str, Any] = {}
    tag = uuid.uuid4().hex[:6]
    async with busybox_registry(tmp / "registry") as mirrors:
        manager = plugins.load(only=["cni_calico"])
        manager.configure(config={"network": {"block": BLOCK}})
        async with (
            open_store(f"sqlite://{tmp}/s-{tag}.db") as store,
            open_apiserver(store) as running,
            Client.in_process(running.api) as client,
        ):
            agent = NodeAgent(
                client,
                node_name=NODE,
                plugins=manager,
                root_dir=tmp / f"agent-{tag}",
                registries=mirrors,
                cgroup_parent=f"/kubetrio-bench-{tag}",
                netns_prefix=f"ktb{tag}-",
                address="127.0.0.1",
                startup_concurrency=concurrency,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                try:
                    await agent.runtime.pull_image("busybox")
                    results["rss_idle_mib"] = round(rss_mib(), 1)
                    for count in bursts:
                        before = cpu_seconds()
                        burst = await run_wave(client, count, 0, f"burst{count}-")
                        after = cpu_seconds()
                        # Where the burst's CPU went: this process (API server + agent)
                        # versus its children (runc, ip, unshare): per pod, in ms.
                        results[f"burst{count}"] = {
                            "running": summary(burst["running"]),
                            "ready": summary(burst["ready"]),
                            "cpu_ms_per_pod_process": round(
                                (after[0] - before[0]) / count * 1000, 1
                            ),
                            "cpu_ms_per_pod_children": round(
                                (after[1] - before[1]) / count * 1000, 1
                            ),
                            "load_1m": round(os.getloadavg()[0], 1),
                        }
                        if count == max(bursts):
                            results["rss_with_pods_mib"] = round(rss_mib(), 1)
                        results[f"burst{count}"]["delete_all_s"] = round(
                            await delete_all(client, agent), 3
                        )
                        print(
                            f"{path}: burst of {count}: {results[f'burst{count}']}", file=sys.stderr
                        )
                    if paced:
                        wave = await run_wave(client, paced, rate, "paced-")
                        results["paced"] = {
                            "running": summary(wave["running"]),
                            "ready": summary(wave["ready"]),
                            "load_1m": round(os.getloadavg()[0], 1),
                        }
                        print(
                            f"{path}: {paced} paced at {rate}/s: {results['paced']}",
                            file=sys.stderr,
                        )
                        await delete_all(client, agent)
                finally:
                    with trio.CancelScope(shield=True):
                        await agent.shutdown(grace_period=0)
                        await agent.runtime.cleanup()  # type: ignore[attr-defined]
                    nursery.cancel_scope.cancel()
    os.environ.pop(IP_COMMANDS_ENV, None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bursts", default="30,100", help="comma-separated sizes of the bursts, in order"
    )
    parser.add_argument("--pods", type=int, default=100, help="pods of the paced wave")
    parser.add_argument("--rate", type=float, default=5.0, help="pods/s of the paced wave")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="pods the agent brings up at once"
    )
    parser.add_argument(
        "--paths",
        default="ip,netlink",
        help="configurations run one after the other: ip (the baseline: pods wired by ip "
        "processes), netlink (in-process)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each path is run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"skipped": "needs root (runc, netns, cgroups)"}))
        return
    bursts = [int(n) for n in args.bursts.split(",") if n]
    paths = [p for p in args.paths.split(",") if p]
    results: dict[str, Any] = {
        "bursts": bursts,
        "paced_pods": args.pods,
        "paced_rate_per_s": args.rate,
        "startup_concurrency": args.concurrency,
        "cpus": os.cpu_count(),
    }
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    for _ in range(args.rounds):
        for path in paths:  # alternating, so the machine's load falls on both alike
            with tempfile.TemporaryDirectory(prefix="kubetrio-bench-") as tmp:
                runs[path].append(
                    trio.run(
                        run_path, path, bursts, args.pods, args.rate, Path(tmp), args.concurrency
                    )
                )
    waves = [f"burst{n}" for n in bursts] + (["paced"] if args.pods else [])
    for path, rounds in runs.items():
        results[path] = rounds[-1] if len(rounds) == 1 else rounds
        for wave in waves:
            p99 = max(r[wave]["ready"]["p99_s"] for r in rounds)
            goal = GOAL_PACED_P99_S if wave == "paced" else GOAL_BURST_P99_S
            results[f"{path}_{wave}_ready_p99_s"] = p99
            results[f"{path}_{wave}_ready_p50_s"] = max(r[wave]["ready"]["p50_s"] for r in rounds)
            results[f"{path}_{wave}_slo_over_p99"] = round(SLO_P99_S / p99, 2)
            if wave != "paced":  # CPU per pod: steadier than latency on a shared machine
                cpu = [
                    r[wave]["cpu_ms_per_pod_process"] + r[wave]["cpu_ms_per_pod_children"]
                    for r in rounds
                ]
                results[f"{path}_{wave}_cpu_ms_per_pod"] = round(statistics.mean(cpu), 1)
            results[f"{path}_{wave}_meets_goal"] = p99 <= goal
    if "ip" in runs and "netlink" in runs:
        for wave in waves:
            if wave != "paced":
                results[f"{wave}_cpu_netlink_over_ip"] = round(
                    results[f"netlink_{wave}_cpu_ms_per_pod"]
                    / results[f"ip_{wave}_cpu_ms_per_pod"],
                    2,
                )
            before = results[f"ip_{wave}_ready_p99_s"]
            results[f"{wave}_p99_netlink_over_ip"] = round(
                results[f"netlink_{wave}_ready_p99_s"] / before, 2
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
