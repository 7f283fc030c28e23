"""Controller throughput: a large Deployment becoming Available on simulated nodes.

Everything runs in this process (API server on a SQLite store in a temporary directory,
the controller manager, simulated nodes binding pods round-robin, all over the
in-process client), as ``kubetrio server`` with simulated nodes would. Figures:

* seconds until a Deployment of ``--replicas`` pods over ``--nodes`` simulated nodes is
  fully available (``kubectl rollout status`` would return), and pods/s;
* seconds for a rolling update of that Deployment (new image, default 25 % / 25 %);
* peak RSS of the process (controllers + API server + nodes share it), and the part of
  it the controller manager's informer caches and indexes hold (tracemalloc is too slow
  at this size, so: RSS growth while the manager alone lists the cluster afresh);
* with ``--scheduler`` the pods are placed by ``kubetrio.scheduler`` (the real
  scheduling cycle with the installed plugins) instead of the simulated nodes' binder;
* baseline, measured in the same run on a fresh store: the same number of pods created
  straight through the client (16 concurrent writers, no controllers), bound and made
  Running by the same simulated nodes — the API and node work the controllers cannot
  avoid. ``ratio_controller_vs_direct`` is controller time / direct time (1.0 would mean
  the controllers add nothing).

The last line is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _kit import deployment as kit_deployment

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.simnode import SimulatedNodes
from kubetrio.store import open_store


def deployment(name: str, replicas: int, image: str = "nginx:1.25") -> dict[str, Any]:
    """A plain Deployment manifest."""
    return kit_deployment(name, replicas, {"containers": [{"name": "main", "image": image}]})


async def _wait_available(client: Client, name: str, replicas: int) -> None:
    while True:
        d = await client.get("apps/v1", "deployments", name, namespace="default")
        status = d.get("status") or {}
        if (
            status.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and status.get("updatedReplicas") == replicas
            and status.get("replicas") == replicas
            and status.get("availableReplicas") == replicas
        ):
            return
        await trio.sleep(0.1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def with_controllers(
    path: Path, replicas: int, nodes: int, scheduler: bool
) -> dict[str, float]:
    """Time the Deployment's rollout and an image update, controllers doing the work."""
    async with open_store(f"sqlite://{path}") as store, open_apiserver(store) as running:
        client = Client.in_process(running.api)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                SimulatedNodes(client, count=nodes, bind_unscheduled=not scheduler, workers=16).run
            )
            if scheduler:
                from kubetrio.scheduler import Scheduler

                await nursery.start(Scheduler(client).run)
            manager = ControllerManager(client, identity="bench")
            await nursery.start(manager.run)
            await manager.leading.wait()
            start = time.perf_counter()
            await client.create(
                "apps/v1", "deployments", deployment("big", replicas), namespace="default"
            )
            await _wait_available(client, "big", replicas)
            created = time.perf_counter() - start
            start = time.perf_counter()
            await client.patch(
                "apps/v1",
                "deployments",
                "big",
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "main", "image": "x:2"}]}}
                    }
                },
                namespace="default",
            )
            await trio.sleep(0.2)
            await _wait_available(client, "big", replicas)
            rolled = time.perf_counter() - start
            # What a manager's caches cost at this size: a second manager (never leading)
            # lists everything into its informers and indexes.
            before = _rss_mb()
            standby = ControllerManager(client, identity="measure", leader_election=True)
            await nursery.start(standby.run)
            cache_mb = _rss_mb() - before
            nursery.cancel_scope.cancel()
    return {"available_s": created, "rolling_update_s": rolled, "manager_cache_mb": cache_mb}


async def direct(path: Path, replicas: int, nodes: int, scheduler: bool) -> float:
    """Create the pods straight through the client; time until all are Running."""
    async with open_store(f"sqlite://{path}") as store, open_apiserver(store) as running:
        client = Client.in_process(running.api)
        async with trio.open_nursery() as nursery:
            sim = SimulatedNodes(client, count=nodes, bind_unscheduled=not scheduler, workers=16)
            await nursery.start(sim.run)
            if scheduler:
                from kubetrio.scheduler import Scheduler

                await nursery.start(Scheduler(client).run)
            template = deployment("direct", replicas)["spec"]["template"]
            start = time.perf_counter()
            counter = iter(range(replicas))

            async def writer() -> None:
                for i in counter:
                    await client.create(
                        "v1",
                        "pods",
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {"name": f"direct-{i}", **template["metadata"]},
                            "spec": template["spec"],
                        },
                        namespace="default",
                    )

            async with trio.open_nursery() as writers:
                for _ in range(16):
                    writers.start_soon(writer)
            while True:
                running_pods = sum(
                    1
                    for p in sim.pods.list("default")
                    if (p.get("status") or {}).get("phase") == "Running"
                )
                if running_pods >= replicas:
                    break
                await trio.sleep(0.05)
            took = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    return took


def main() -> None:
    """Run both measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--scheduler", action="store_true", help="bind with kubetrio.scheduler")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured = trio.run(
            with_controllers, Path(tmp) / "c.db", args.replicas, args.nodes, args.scheduler
        )
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        baseline = trio.run(direct, Path(tmp) / "d.db", args.replicas, args.nodes, args.scheduler)
    results = {
        "bench": "controllers_deployment",
        "replicas": args.replicas,
        "nodes": args.nodes,
        "available_s": round(measured["available_s"], 2),
        "pods_per_s": round(args.replicas / measured["available_s"], 1),
        "rolling_update_s": round(measured["rolling_update_s"], 2),
        "peak_rss_mb": round(peak_mb, 1),
        "manager_cache_mb": round(measured["manager_cache_mb"], 1),
        "scheduler": "kubetrio.scheduler" if args.scheduler else "simnode round-robin",
        "direct_pods_running_s": round(baseline, 2),
        "ratio_controller_vs_direct": round(measured["available_s"] / baseline, 2),
    }
    print(
        f"{args.replicas} replicas on {args.nodes} simulated nodes: available in "
        f"{results['available_s']} s ({results['pods_per_s']} pods/s); rolling update "
        f"{results['rolling_update_s']} s; peak RSS {results['peak_rss_mb']} MB "
        f"(manager caches {results['manager_cache_mb']} MB); binder: {results['scheduler']}"
    )
    print(f"baseline: same pods created directly, Running in {results['direct_pods_running_s']} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
