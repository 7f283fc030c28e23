"""How soon every node's service rules follow a scaled Deployment (root).

Issue #10 asks that scaling a Deployment updates the rules within 1 s. This measures it
on a real cluster: ``kubetrio up --nodes 3`` (node network namespaces, runc pods), a
Deployment of busybox httpd behind a ClusterIP Service, then a scale from 1 to
``--replicas`` and back to 1. For each endpoint that turns ready (or goes away) in the
Service's EndpointSlices — seen by a watch, the moment the control plane has decided —
it records when that pod's address appears in (or leaves) the endpoint map of the nftables
table of each of the three nodes, polled in each node's namespace:

* ``add_ms`` — EndpointSlice says ready → the address is in the node's rules;
* ``remove_ms`` — the endpoint left the slice (or turned not ready) → the address is out.

Figures are p50/p99/max over every (endpoint, node) pair; the poll interval (printed)
bounds their resolution. ``ratio_p99_vs_goal`` divides the worse p99 by the 1 s goal.
Baseline, in the same run against the same API server: how long a plain watching client
takes to see a write (a ConfigMap patched 20 times, p50) — ``ratio_add_p50_vs_watch``
is what the proxies add on top of the watch (render, nft transaction, poll resolution).
Everything it starts is stopped with ``kubetrio down``. The last line is one JSON object.

Run: ``sudo .venv/bin/python benchmarks/service_update.py [--replicas 12]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from kubetrio.cli._nodes import Topology
from kubetrio.client import Client, FunctionHandler, Informer
from kubetrio.pki import ClusterPKI, client_context
from kubetrio.proxy._rules import SERVICE_ENDPOINTS, TABLE

GOAL_MS = 1000.0
NAME = "bench-scale"
UNDERLAY = "172.31.220.0/24"
KUBETRIO = [sys.executable, "-m", "kubetrio"]


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web", "image": "busybox",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }  # fmt: skip


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}


class Recorder:
    """When each address turned ready in the slices, and when each node's rules had it."""

    def __init__(self, nodes: list[str]) -> None:
        self.ready_at: dict[str, float] = {}
        self.gone_at: dict[str, float] = {}
        self.in_rules: dict[str, set[str]] = {node: set() for node in nodes}
        self.added: dict[tuple[str, str], float] = {}
        self.removed: dict[tuple[str, str], float] = {}
        self.ready: set[str] = set()
        self.poll_ms: list[float] = []

    def slice_changed(self, slices: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        ready = {
            address
            for item in slices
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint.get("addresses") or []
        }
        for address in ready - self.ready:
            self.ready_at.setdefault(address, now)
        for address in self.ready - ready:
            self.gone_at.setdefault(address, now)
        self.ready = ready

    def rules_seen(self, node: str, text: str) -> None:
        now = time.monotonic()
        # Whole addresses only: 10.244.0.1 must not match inside 10.244.0.12.
        present = set(re.findall(r"(?<![\d.])\d+\.\d+\.\d+\.\d+(?![\d])", text))
        for address in self.ready_at:
            if address in present and (address, node) not in self.added:
                self.added[address, node] = now
        for address in self.gone_at:
            if address not in present and (address, node) not in self.removed:
                self.removed[address, node] = now


async def poll_rules(recorder: Recorder, node: str, netns: str) -> None:
    # The map a ClusterIP's connections pick their endpoint from (proxy/_rules.py).
    command = ["ip", "netns", "exec", netns, "nft", "list", "map", "ip", TABLE, SERVICE_ENDPOINTS]
    while True:
        start = time.monotonic()
        result = await trio.run_process(command, capture_stdout=True, check=False)
        recorder.poll_ms.append((time.monotonic() - start) * 1000)
        recorder.rules_seen(node, result.stdout.decode())
        await trio.sleep(0.005)


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = trio.current_time() + timeout
    while not condition():
        if trio.current_time() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        await trio.sleep(0.05)


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50": round(statistics.median(ordered), 1),
        "p99": round(p99, 1),
        "max": round(ordered[-1], 1),
    }


async def watch_latency_ms(client: Client, rounds: int = 20) -> list[float]:
    """The baseline: milliseconds from a write until a watching client has it (a
    ConfigMap changed ``rounds`` times) — the propagation any controller sees."""
    seen: dict[str, float] = {}

    def changed(configmap: dict[str, Any]) -> None:
        seen.setdefault((configmap.get("data") or {}).get("n", ""), time.monotonic())

    configmaps = Informer(client, "v1", "configmaps", namespace="default")
    configmaps.add_handler(FunctionHandler(changed))
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-watch"}}
    await client.create("v1", "configmaps", body, namespace="default")
    latencies = []
    async with trio.open_nursery() as nursery:
        await nursery.start(configmaps.run)
        for n in range(rounds):
            written = time.monotonic()
            patch = {"data": {"n": str(n)}}
            await client.patch("v1", "configmaps", "bench-watch", patch, namespace="default")
            await wait_until(lambda n=n: str(n) in seen, 10, "the ConfigMap change")
            latencies.append((seen[str(n)] - written) * 1000)
        nursery.cancel_scope.cancel()
    return latencies


async def measure(
    url: str, token: str, tls: ssl.SSLContext, topology: Topology, replicas: int
) -> dict[str, Any]:
    nodes = [node.name for node in topology.nodes]
    recorder = Recorder(nodes)
    async with Client.connect(url, token=token, verify=tls) as client:
        slices = Informer(client, "discovery.k8s.io/v1", "endpointslices", namespace="default")
        slices.add_handler(FunctionHandler(lambda _o: recorder.slice_changed(slices.list())))
        await client.create("apps/v1", "deployments", deployment(1), namespace="default")
        await client.create("v1", "services", SERVICE, namespace="default")
        async with trio.open_nursery() as nursery:
            await nursery.start(slices.run)
            for node in topology.nodes:
                nursery.start_soon(poll_rules, recorder, node.name, node.netns)
            await wait_until(lambda: len(recorder.ready) == 1, 120, "the first replica")
            scale = {"spec": {"replicas": replicas}}
            started = time.monotonic()
            await client.patch("apps/v1", "deployments", "web", scale, namespace="default")
            await wait_until(
                lambda: len(recorder.added) == replicas * len(nodes), 180, "every endpoint in rules"
            )
            scale_up_s = time.monotonic() - started
            await client.patch(
                "apps/v1", "deployments", "web", {"spec": {"replicas": 1}}, namespace="default"
            )
            gone = replicas - 1
            await wait_until(
                lambda: len(recorder.removed) == gone * len(nodes), 180, "endpoints out of rules"
            )
            nursery.cancel_scope.cancel()
        watch_ms = statistics.median(await watch_latency_ms(client))
    added = [(t - recorder.ready_at[a]) * 1000 for (a, _), t in recorder.added.items()]
    removed = [(t - recorder.gone_at[a]) * 1000 for (a, _), t in recorder.removed.items()]
    # The first replica was in the rules before the watch saw it ready only if the
    # informer started late; clamp at zero rather than report negative latencies.
    add, remove = spread([max(0.0, v) for v in added]), spread([max(0.0, v) for v in removed])
    return {
        "replicas": replicas,
        "nodes": len(nodes),
        "add_ms": add,
        "remove_ms": remove,
        "scale_up_to_all_rules_s": round(scale_up_s, 2),
        "rules_poll_ms_p50": round(statistics.median(recorder.poll_ms), 1),
        "baseline_watch_ms_p50": round(watch_ms, 1),
        "ratio_add_p50_vs_watch": round(add["p50"] / watch_ms, 1) if watch_ms else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=12)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (node network namespaces, runc)")
    with tempfile.TemporaryDirectory(prefix="kt-bench-scale-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "HOME": tmp}
        topology = Topology.plan(NAME, 3, UNDERLAY)
        up = [*KUBETRIO, "up", "--name", NAME, "--nodes", "3", "--underlay", UNDERLAY,
              "--kubeconfig", str(home / "kubeconfig"), "--registry-port", "15923"]  # fmt: skip
        try:
            subprocess.run(up, env=env, check=True, capture_output=True, timeout=300)
            cluster_home = home / ".local/share/kubetrio/clusters" / NAME
            token = (cluster_home / "data" / "admin-token").read_text().strip()
            url = f"https://{topology.nodes[0].address}:6443"
            pki = ClusterPKI(cluster_home / "data" / "pki")
            tls = client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)
            results = trio.run(measure, url, token, tls, topology, args.replicas)
        finally:
            subprocess.run([*KUBETRIO, "down", "--name", NAME], env=env, capture_output=True)
    worst = max(results["add_ms"]["p99"], results["remove_ms"]["p99"])
    poll, scale_up = results["rules_poll_ms_p50"], results["scale_up_to_all_rules_s"]
    print(f"{args.replicas} replicas on 3 nodes, rules polled every ~{poll} ms")
    print(f"  EndpointSlice ready -> address in a node's rules: {results['add_ms']} ms")
    print(f"  endpoint gone -> address out of a node's rules:   {results['remove_ms']} ms")
    print(f"  scale to {args.replicas} -> in every node's rules after {scale_up} s")
    print(
        f"  baseline: a write seen by a watching client after {results['baseline_watch_ms_p50']} ms"
    )
    print(json.dumps({"bench": "service_update", **results, "goal_ms": GOAL_MS,
                      "ratio_p99_vs_goal": round(worst / GOAL_MS, 3)}))  # fmt: skip


if __name__ == "__main__":
    main()
