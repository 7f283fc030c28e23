"""Requests/s and latency through the node's nginx (an Ingress) vs straight to the pod.

Runs a real node in this process (API server, node agent, runc, nginx) with one busybox
httpd pod behind a Service and an Ingress, and measures in the same run, with the same
load generator:

* ``direct``: GETs of a small file straight to the pod's IP (the baseline);
* ``ingress``: the same GETs to the node's ingress port with the Ingress's ``Host``,
  nginx proxying to the pod's IP.

The load: ``CONCURRENCY`` threads, each a new TCP connection per request (busybox httpd
closes every connection, so both paths pay one connect per request to the pod), for
``SECONDS`` per round; two rounds each, alternating, the better round kept. Figures:
requests/s, p50 and p99 latency in ms. Needs root, runc, docker-registry and nginx.
The last line is one JSON object.
"""

from __future__ import annotations

import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

from kubetrio.api.ingress import INGRESS_CLASS
from kubetrio.cluster import open_local_node

HTTP_PORT, HTTPS_PORT = 18080, 18443
CONCURRENCY = 8
SECONDS = 5.0
HOST = "bench.test"

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "echo"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "echo"}},
        "template": {
            "metadata": {"labels": {"app": "echo"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "echo",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            "echo hello > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
                        ],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    }
                ],
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "echo"},
    "spec": {
        "selector": {"app": "echo"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
    },
}
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "echo"},
    "spec": {
        "ingressClassName": INGRESS_CLASS,
        "rules": [
            {
                "host": HOST,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "echo", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    },
}


def get(address: tuple[str, int]) -> bool:
    """One ``GET /index.html`` on a new connection; True on a 200."""
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(f"GET /index.html HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def load(address: tuple[str, int]) -> dict[str, float]:
    """CONCURRENCY threads of back-to-back requests for SECONDS: rate and latencies."""
    latencies: list[list[float]] = [[] for _ in range(CONCURRENCY)]
    failures = [0] * CONCURRENCY
    deadline = time.perf_counter() + SECONDS

    def worker(i: int) -> None:
        while (start := time.perf_counter()) < deadline:
            try:
                ok = get(address)
            except OSError:
                ok = False
            if ok:
                latencies[i].append(time.perf_counter() - start)
            else:
                failures[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONCURRENCY)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    done = sorted(x for per in latencies for x in per)
    return {
        "rps": len(done) / elapsed,
        "p50_ms": statistics.median(done) * 1000,
        "p99_ms": done[int(len(done) * 0.99) - 1] * 1000,
        "failures": float(sum(failures)),
    }


async def measure(tmp: Path) -> dict[str, Any]:
    """Bring up the node, the pod and the Ingress; then alternate the two loads."""
    async with open_local_node(
        tmp,
        node_name="bench-ingress",
        block="10.244.251.64/26",
        dns=False,
        ingress_ports=(HTTP_PORT, HTTPS_PORT),
    ) as cluster:
        client = cluster.client
        await client.create("apps/v1", "deployments", DEPLOYMENT, namespace="default")
        await client.create("v1", "services", SERVICE, namespace="default")
        await client.create("networking.k8s.io/v1", "ingresses", INGRESS, namespace="default")
        ingress = ("127.0.0.1", HTTP_PORT)
        with trio.fail_after(120):
            while True:
                try:
                    if await trio.to_thread.run_sync(get, ingress):
                        break
                except OSError:
                    pass
                await trio.sleep(0.2)
        pods = await client.list("v1", "pods", namespace="default", label_selector="app=echo")
        direct = (pods["items"][0]["status"]["podIP"], 8080)
        rounds: dict[str, list[dict[str, float]]] = {"direct": [], "ingress": []}
        for _ in range(2):
            for name, address in (("direct", direct), ("ingress", ingress)):
                rounds[name].append(await trio.to_thread.run_sync(load, address))
    results: dict[str, Any] = {"concurrency": CONCURRENCY, "seconds_per_round": SECONDS}
    for name, runs in rounds.items():
        best = max(runs, key=lambda r: r["rps"])
        for key, value in best.items():
            results[f"{name}_{key}"] = round(value, 2)
    results["ingress_vs_direct_rps"] = round(results["ingress_rps"] / results["direct_rps"], 3)
    results["ingress_vs_direct_p99"] = round(
        results["ingress_p99_ms"] / results["direct_p99_ms"], 3
    )
    return results


def main() -> None:
    """Run once and print the figures; the last line is JSON."""
    with tempfile.TemporaryDirectory(prefix="kt-ingress-bench-") as tmp:
        results = trio.run(measure, Path(tmp))
    for key, value in results.items():
        print(f"{key:28} {value}")
    print(json.dumps({"bench": "ingress", **results}))


if __name__ == "__main__":
    main()
