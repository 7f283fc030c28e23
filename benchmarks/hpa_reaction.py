"""HPA reaction time: load start → the new replicas Ready, on a real node.

Runs a real node in this process (API server with its ``metrics.k8s.io`` scraper, the
controller manager with the horizontal pod autoscaler, node agent, runc) and one
Deployment of busybox pods that burn CPU while a ``hostPath`` file exists (request 100m,
limit 200m), autoscaled by an ``autoscaling/v2`` HPA (target 50%, 1 to 3 replicas,
upstream's default behavior). After the idle pod has been measured, the file is created
(load start) and the run records, in the same run:

* ``decision_s``: until the HPA writes the new scale;
* ``reaction_s``: until the new replicas are Ready;
* the baselines they are bounded by: the HPA's sync period (15 s, upstream's) and the
  metrics resolution (15 s, metrics-server's; a CPU rate needs two scrapes), with
  ``reaction_vs_sync_period`` = reaction / sync period.

Needs root, runc and docker-registry. ``HPA_BENCH_RUNS`` sets the number of runs (each
on a fresh Deployment; default 1). The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _kit import deployment as kit_deployment

from kubetrio.apiserver._resourcemetrics import RESOLUTION
from kubetrio.client import Client
from kubetrio.cluster import open_local_node
from kubetrio.controllers._hpa import SYNC_PERIOD

RUNS = int(os.environ.get("HPA_BENCH_RUNS", "1"))
NS = "default"


def deployment(name: str, trigger: Path) -> dict[str, Any]:
    spin = "while :; do if [ -f /trigger/go ]; then :; else sleep 0.5; fi; done"
    pod_spec = {
        "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "trigger", "hostPath": {"path": str(trigger), "type": "Directory"}}],
        "containers": [
            {
                "name": "spin",
                "image": "busybox",
                "command": ["sh", "-c", spin],
                "resources": {
                    "requests": {"cpu": "100m"},
                    "limits": {"cpu": "200m"},
                },
                "volumeMounts": [{"name": "trigger", "mountPath": "/trigger"}],
            }
        ],
    }
    return kit_deployment(name, 1, pod_spec)


def hpa(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        },
    }


async def one_run(client: Client, name: str, trigger: Path) -> tuple[float, float]:
    """(decision, reaction) seconds for one Deployment."""
    await client.create("apps/v1", "deployments", deployment(name, trigger), namespace=NS)
    await client.create("autoscaling/v2", "horizontalpodautoscalers", hpa(name), namespace=NS)
    with trio.fail_after(300):  # the idle pod measured: the HPA is at work
        while True:
            found = await client.get(
                "autoscaling/v2", "horizontalpodautoscalers", name, namespace=NS
            )
            if (found.get("status") or {}).get("currentMetrics"):
                break
            await trio.sleep(0.2)
    start = time.perf_counter()
    (trigger / "go").touch()
    decision = 0.0
    try:
        with trio.fail_after(300):
            while True:
                got = await client.get("apps/v1", "deployments", name, namespace=NS)
                wanted = got["spec"]["replicas"]
                if wanted > 1 and not decision:
                    decision = time.perf_counter() - start
                if wanted > 1 and (got.get("status") or {}).get("readyReplicas", 0) >= wanted:
                    return decision, time.perf_counter() - start
                await trio.sleep(0.1)
    finally:
        (trigger / "go").unlink(missing_ok=True)
        await client.delete("autoscaling/v2", "horizontalpodautoscalers", name, namespace=NS)
        await client.delete("apps/v1", "deployments", name, namespace=NS)


async def measure(tmp: Path) -> dict[str, Any]:
    trigger = tmp / "trigger"
    trigger.mkdir()
    decisions, reactions = [], []
    async with open_local_node(
        tmp, node_name="bench-node", block="10.244.252.0/24", proxy=False, dns=False
    ) as cluster:
        try:
            for run in range(RUNS):
                decision, reaction = await one_run(cluster.client, f"burn{run}", trigger)
                decisions.append(decision)
                reactions.append(reaction)
        finally:
            await cluster.stop_pods(grace_period=1)
    reaction = statistics.median(reactions)
    results: dict[str, Any] = {
        "runs": RUNS,
        "decision_s": statistics.median(decisions),
        "reaction_s": reaction,
        "ready_after_decision_s": reaction - statistics.median(decisions),
        "sync_period_s": SYNC_PERIOD,
        "metric_resolution_s": RESOLUTION,
        "reaction_vs_sync_period": reaction / SYNC_PERIOD,
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}


def main() -> None:
    """Run and print the figures; the last line is JSON."""
    with tempfile.TemporaryDirectory(prefix="kt-hpa-bench-") as tmp:
        results = trio.run(measure, Path(tmp))
    for key, value in results.items():
        print(f"{key:28} {value}")
    print(json.dumps({"bench": "hpa_reaction", **results}))


if __name__ == "__main__":
    main()
