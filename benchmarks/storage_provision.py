"""Dynamic provisioning throughput: claims from creation to Bound.

Everything runs in this process: an API server on a SQLite store in a temporary
directory, the controller manager's volume controllers (binder and provisioner,
protection, expansion) over the in-process client, and the storage plugin's
``kubetrio.io/local`` driver making one directory per volume under the temporary
directory (an ``Immediate`` class, so no scheduler is needed). Figures:

* per claim, seconds from its create call returning to the claim's ``Bound`` status
  reaching a watch: p50, p99, max; and claims Bound per second over the whole batch
  (``--claims`` claims created by 16 concurrent writers);
* baseline, measured in the same run on a fresh store: the same number of ConfigMaps
  created by 16 writers — the create call's p50/p99 and creates per second, the API
  work every claim costs before any controller sees it. ``ratio_bound_p99_vs_create_p99``
  and ``ratio_rate`` compare the two;
* CPU: this process's CPU time (API server, controllers and driver all run here) per
  claim and per API request made while the claims were provisioned
  (``cpu_ms_per_claim``, ``requests_per_claim``, ``cpu_ms_per_request``), and per
  ConfigMap create in the baseline (``create_cpu_ms``).

Goal (issue 19): p99 ≤ 1 s for 200 claims. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from kubetrio_storage.local import LocalVolumes

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.handler import Request, RequestHandler, Response
from kubetrio.plugins import PluginManager, hookimpl
from kubetrio.store import open_store

WRITERS = 16
VOLUME_CONTROLLERS = [
    "persistentvolume-binder",
    "persistentvolume-expander",
    "pvc-protection",
    "pv-protection",
]


class _LocalDriverPlugin:
    def __init__(self, root: Path) -> None:
        self.root = root

    @hookimpl
    def kubetrio_register_storage_drivers(self, register: Any) -> None:
        register(LocalVolumes(self.root))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Counted:
    """The API server's handler, counting the requests the in-process clients make."""

    def __init__(self, api: RequestHandler) -> None:
        self.api = api
        self.requests = 0

    async def handle(self, request: Request) -> Response:
        """Count, then answer as the server does."""
        self.requests += 1
        return await self.api.handle(request)


def _claim(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"claim-{i}"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "bench",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


async def claims_to_bound(work: Path, count: int) -> dict[str, float]:
    """Create ``count`` claims; time each until the watch sees it Bound."""
    plugins = PluginManager()
    plugins.register(_LocalDriverPlugin(work / "volumes"), name="bench_storage")
    async with (
        open_store(f"sqlite://{work}/claims.db") as store,
        open_apiserver(store) as running,
    ):
        counted = _Counted(running.api)
        client = Client.in_process(counted)
        async with trio.open_nursery() as nursery:
            manager = ControllerManager(
                client,
                identity="bench",
                plugins=plugins,
                leader_election=False,
                controllers=VOLUME_CONTROLLERS,
            )
            await nursery.start(manager.run)
            await manager.leading.wait()
            await client.create(
                "storage.k8s.io/v1",
                "storageclasses",
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": "bench"},
                    "provisioner": "kubetrio.io/local",
                },
            )
            created: dict[str, float] = {}
            bound: dict[str, float] = {}
            all_bound = trio.Event()
            listed = await client.list("v1", "persistentvolumeclaims", namespace="default")

            async def watch() -> None:
                async with client.watch(
                    "v1",
                    "persistentvolumeclaims",
                    namespace="default",
                    resource_version=listed["metadata"]["resourceVersion"],
                ) as events:
                    async for event in events:
                        obj = event.object
                        name = str((obj.get("metadata") or {}).get("name"))
                        phase = (obj.get("status") or {}).get("phase")
                        if phase == "Bound" and name not in bound:
                            bound[name] = time.perf_counter()
                            if len(bound) == count:
                                all_bound.set()

            nursery.start_soon(watch)
            numbers = iter(range(count))
            start = time.perf_counter()
            cpu_start, requests_start = time.process_time(), counted.requests

            async def writer() -> None:
                for i in numbers:
                    await client.create(
                        "v1", "persistentvolumeclaims", _claim(i), namespace="default"
                    )
                    created[f"claim-{i}"] = time.perf_counter()

            async with trio.open_nursery() as writers:
                for _ in range(WRITERS):
                    writers.start_soon(writer)
            await all_bound.wait()
            total = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            requests = counted.requests - requests_start
            nursery.cancel_scope.cancel()
    latencies = [bound[name] - created[name] for name in created]
    return {
        "bound_p50_s": statistics.median(latencies),
        "bound_p99_s": _percentile(latencies, 0.99),
        "bound_max_s": max(latencies),
        "bound_per_s": count / total,
        "cpu_ms_per_claim": cpu * 1000 / count,
        "requests_per_claim": requests / count,
        "cpu_ms_per_request": cpu * 1000 / requests,
    }


async def configmap_creates(work: Path, count: int) -> dict[str, float]:
    """Baseline: ``count`` ConfigMap creates by the same number of writers."""
    async with (
        open_store(f"sqlite://{work}/configmaps.db") as store,
        open_apiserver(store) as running,
    ):
        client = Client.in_process(running.api)
        latencies: list[float] = []
        numbers = iter(range(count))

        async def writer() -> None:
            for i in numbers:
                began = time.perf_counter()
                await client.create(
                    "v1",
                    "configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}},
                    namespace="default",
                )
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        cpu_start = time.process_time()
        async with trio.open_nursery() as writers:
            for _ in range(WRITERS):
                writers.start_soon(writer)
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    return {
        "create_p50_s": statistics.median(latencies),
        "create_p99_s": _percentile(latencies, 0.99),
        "creates_per_s": count / total,
        "create_cpu_ms": cpu * 1000 / count,
    }


def main() -> None:
    """Run both measurements and print the figures, then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        claims = trio.run(claims_to_bound, work, args.claims)
        baseline = trio.run(configmap_creates, work, args.claims)
    figures: dict[str, Any] = {"claims": args.claims, **claims, **baseline}
    figures["ratio_bound_p99_vs_create_p99"] = claims["bound_p99_s"] / baseline["create_p99_s"]
    figures["ratio_rate"] = claims["bound_per_s"] / baseline["creates_per_s"]
    for key, value in figures.items():
        print(f"{key:32} {value:.4f}" if isinstance(value, float) else f"{key:32} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
