"""Requests/s and latency through the ingress's LoadBalancer address vs a node's own nginx.

Brings up ``kubetrio up --nodes 2`` (root: node network namespaces on an underlay
bridge, in a temporary HOME) with one busybox httpd pod behind a Service and an Ingress,
and measures from the host, on the underlay, with :mod:`ingress`'s load generator (8
threads, a new connection per request, 5 s rounds, two each alternating, the better kept):

* ``node``: GETs to node 1's address, port 80 — its nginx, then the pod;
* ``lb``: the same GETs to ``kube-system/kubetrio-ingress``'s pool address — ARP finds
  the announcing node, its service proxy DNATs (and masquerades) to either node's nginx,
  which proxies to the pod: the extra hop the LoadBalancer costs.

Run: ``sudo .venv/bin/python benchmarks/ingress_lb.py``. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ingress import DEPLOYMENT, INGRESS, SERVICE, get, load

from kubetrio.images import free_loopback_port

KUBETRIO = [sys.executable, "-m", "kubetrio"]
NAME = "benchilb"
UNDERLAY = "172.31.213.0/24"


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl; its output (raises on failure)."""
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip


def until(what: str, check: Any, timeout: float = 120) -> Any:
    """Poll ``check()`` until truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except (OSError, subprocess.CalledProcessError):
            pass
        time.sleep(0.3)
    raise TimeoutError(what)


def measure(home: Path) -> dict[str, Any]:
    """Bring the cluster up, the pod and the Ingress; alternate the two loads; down."""
    env = {**os.environ, "HOME": str(home)}
    kubeconfig = home / "kubeconfig"
    up = [*KUBETRIO, "up", "--name", NAME, "--nodes", "2", "--underlay", UNDERLAY]
    up += ["--registry-port", str(free_loopback_port()), "--kubeconfig", str(kubeconfig)]
    try:
        subprocess.run(up, env=env, check=True, capture_output=True, timeout=300)
        listed = {"apiVersion": "v1", "kind": "List", "items": [DEPLOYMENT, SERVICE, INGRESS]}
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(listed))
        nodes = json.loads(kubectl(kubeconfig, "get", "nodes", "-o", "json"))["items"]
        node_ip = sorted(
            a["address"]
            for n in nodes
            for a in n["status"]["addresses"]
            if a["type"] == "InternalIP"
        )[0]

        def lb_ip() -> str | None:
            shown = kubectl(kubeconfig, "get", "svc", "-n", "kube-system", "kubetrio-ingress",
                            "-o", "json")  # fmt: skip
            service = json.loads(shown)
            ips = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            return str(ips[0]["ip"]) if ips else None

        lb = (until("the LoadBalancer address", lb_ip), 80)
        node = (node_ip, 80)
        for address in (node, lb):
            until(f"an answer from {address}", lambda a=address: get(a))
        rounds: dict[str, list[dict[str, float]]] = {"node": [], "lb": []}
        for _ in range(2):
            for name, address in (("node", node), ("lb", lb)):
                rounds[name].append(load(address))
    finally:
        subprocess.run([*KUBETRIO, "down", "--name", NAME], env=env, capture_output=True)
    results: dict[str, Any] = {}
    for name, runs in rounds.items():
        best = max(runs, key=lambda r: r["rps"])
        for key, value in best.items():
            results[f"{name}_{key}"] = round(value, 2)
    results["lb_vs_node_rps"] = round(results["lb_rps"] / results["node_rps"], 3)
    results["lb_vs_node_p99"] = round(results["lb_p99_ms"] / results["node_p99_ms"], 3)
    return results


def main() -> None:
    """Run once and print the figures; the last line is JSON."""
    with tempfile.TemporaryDirectory(prefix="kt-ingress-lb-bench-") as tmp:
        results = measure(Path(tmp))
    for key, value in results.items():
        print(f"{key:20} {value}")
    print(json.dumps({"bench": "ingress_lb", **results}))


if __name__ == "__main__":
    main()
