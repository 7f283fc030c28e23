"""Cost of resource metrics per node: one ``/metrics/resource`` scrape with N pods.

Runs a real node in this process (API server, node agent, runc, N busybox pods of two
containers each) and measures, in the same run:

* wall time and bytes of ``GET /metrics/resource`` on the agent (as the API server's
  scraper asks it), against ``GET /healthz`` on the same agent (the baseline: the same
  HTTP exchange with no work behind it) and ``GET /stats/summary`` (the JSON document);
* CPU of the agent to answer one scrape (reading the cgroups and the exposition);
* CPU of the scraper per node per period: decoding one answer and storing it
  (``decode_resource_metrics`` + ``MetricsStore.store``), and a whole round
  (``scrape_all``: list Nodes, the HTTP GET, decode, store; the agent's side included,
  since it runs in this process) as a share of one core over the 15 s resolution.

Needs root, runc and docker-registry. ``METRICS_BENCH_PODS`` sets N (default 20). The
last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.apiserver._resourcemetrics import RESOLUTION, MetricsStore, decode_resource_metrics
from kubetrio.cluster import open_local_node

PODS = int(os.environ.get("METRICS_BENCH_PODS", "20"))
RUNS = 50


def pod(index: int) -> dict[str, Any]:
    sleep = {"image": "busybox", "command": ["sleep", "3600"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{index}", "labels": {"app": "bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "a", **sleep}, {"name": "b", **sleep}],
        },
    }


async def timed_get(http: httpx.AsyncClient, url: str) -> tuple[float, int]:
    """Median wall ms of RUNS GETs, and the answer's size."""
    times, size = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        response = await http.get(url)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return statistics.median(times), size


async def measure(tmp: Path) -> dict[str, Any]:
    """Bring up the node and N pods, then take every figure."""
    results: dict[str, Any] = {"pods": PODS, "containers": 2 * PODS}
    async with open_local_node(
        tmp, node_name="bench-node", block="10.244.251.0/24", proxy=False, dns=False
    ) as cluster:
        client, api, agent = cluster.client, cluster.api, cluster.agent
        assert agent is not None
        for index in range(PODS):
            await client.create("v1", "pods", pod(index), namespace="default")
        with trio.fail_after(300):
            while True:
                listed = await client.list("v1", "pods", namespace="default")
                phases = [(p.get("status") or {}).get("phase") for p in listed["items"]]
                if phases.count("Running") == PODS:
                    break
                await trio.sleep(0.5)
        node = await client.get("v1", "nodes", "bench-node")
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        base = f"http://{addresses['InternalIP']}:{port}"
        headers = {"authorization": f"Bearer {api.kubelet_token}"} if api.kubelet_token else {}
        async with httpx.AsyncClient(timeout=30, headers=headers) as http:
            await http.get(f"{base}/metrics/resource")  # first read: no rates yet
            healthz_ms, healthz_bytes = await timed_get(http, f"{base}/healthz")
            scrape_ms, scrape_bytes = await timed_get(http, f"{base}/metrics/resource")
            summary_ms, summary_bytes = await timed_get(http, f"{base}/stats/summary")
            text = (await http.get(f"{base}/metrics/resource")).text
        results.update(
            healthz_ms=healthz_ms,
            scrape_ms=scrape_ms,
            summary_ms=summary_ms,
            healthz_bytes=healthz_bytes,
            scrape_bytes=scrape_bytes,
            summary_bytes=summary_bytes,
        )
        batch = decode_resource_metrics(text, "bench-node")
        assert sum(len(c) for c in batch.pods.values()) >= 2 * PODS, "containers missing"

        start = time.process_time()
        for _ in range(RUNS):
            await agent.resource_metrics()  # type: ignore[attr-defined]
        results["agent_cpu_ms_per_scrape"] = (time.process_time() - start) / RUNS * 1000

        store = MetricsStore()
        start = time.process_time()
        for _ in range(RUNS):
            store.store(decode_resource_metrics(text, "bench-node"))
        results["scraper_decode_cpu_ms"] = (time.process_time() - start) / RUNS * 1000

        rounds = 10
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await api.resource_metrics.scrape_all()
        round_cpu = (time.process_time() - start_cpu) / rounds
        results["round_wall_ms"] = (time.perf_counter() - start_wall) / rounds * 1000
        results["round_cpu_ms"] = round_cpu * 1000
        results["round_core_share_pct"] = round_cpu / RESOLUTION * 100
    results["scrape_vs_healthz_time"] = results["scrape_ms"] / results["healthz_ms"]
    results["scrape_vs_healthz_bytes"] = results["scrape_bytes"] / results["healthz_bytes"]
    results["scrape_vs_summary_time"] = results["scrape_ms"] / results["summary_ms"]
    results["bytes_per_container"] = results["scrape_bytes"] / (2 * PODS)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}


def main() -> None:
    """Run once and print the figures; the last line is JSON."""
    with tempfile.TemporaryDirectory(prefix="kt-metrics-bench-") as tmp:
        results = trio.run(measure, Path(tmp))
    for key, value in results.items():
        print(f"{key:32} {value}")
    print(json.dumps({"bench": "metrics_scrape", **results}))


if __name__ == "__main__":
    main()
