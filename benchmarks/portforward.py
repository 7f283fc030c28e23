"""Port-forward throughput and exec round-trip latency through the API server and agent.

Runs a real node in this process (API server, node agent, runc, a busybox pod serving a
64 MiB file with httpd) and measures, in the same run:

* MB/s of an HTTP download through ``kubectl port-forward`` (1.27: SPDY; 1.33: SPDY
  tunnelled in WebSocket) and straight to the pod's IP (the baseline);
* exec round trip: wall time of ``kubectl exec box -- true`` (1.27 SPDY, 1.33 WebSocket;
  includes kubectl's own start-up, measured alone with ``kubectl version --client``).

Needs root, runc and docker-registry. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.apiserver import merge_kubeconfig
from kubetrio.cluster import open_local_node

KD = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent
SIZE_MB = 64
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "box"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "box",
                "image": "busybox",
                "command": [
                    "sh",
                    "-c",
                    f"dd if=/dev/urandom of=/tmp/big bs=1M count={SIZE_MB} 2>/dev/null; "
                    "exec httpd -f -p 8080 -h /tmp",
                ],
            }
        ],
    },
}


async def download(url: str) -> float:
    """MB/s of one GET of the big file."""
    async with httpx.AsyncClient(timeout=60) as http:
        start = time.perf_counter()
        size = 0
        async with http.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                size += len(chunk)
        elapsed = time.perf_counter() - start
    assert size == SIZE_MB * 1024 * 1024, size
    return size / elapsed / 1e6


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def timed(argv: list[str], runs: int) -> float:
    """Median wall time in ms of running ``argv``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def measure(tmp: Path) -> dict[str, Any]:
    """Bring up the node and the pod, then take every figure."""
    results: dict[str, Any] = {}
    async with open_local_node(
        tmp, node_name="bench-node", block="10.244.252.192/26", proxy=False, dns=False
    ) as cluster:
        await cluster.client.create("v1", "pods", POD, namespace="default")
        with trio.fail_after(90):
            while True:
                pod = await cluster.client.get("v1", "pods", "box", namespace="default")
                if (pod.get("status") or {}).get("phase") == "Running":
                    break
                await trio.sleep(0.2)
        pod_ip = pod["status"]["podIP"]
        kubeconfig = tmp / "kubeconfig"
        merge_kubeconfig(kubeconfig, name="t", server=cluster.url, token="x")
        direct = f"http://{pod_ip}:8080/big"
        for _ in range(100):  # the file is written before httpd starts
            try:
                results["direct_mb_s"] = await download(direct)
                break
            except (httpx.HTTPError, AssertionError):
                await trio.sleep(0.2)
        results["direct_mb_s"] = max(results["direct_mb_s"], await download(direct))
        for version in ("1.27", "1.33"):
            kubectl = [str(KD / f"kubectl.{version}"), "--kubeconfig", str(kubeconfig)]
            port = free_port()
            async with trio.open_nursery() as nursery:
                process = await nursery.start(
                    partial(
                        trio.run_process,
                        [*kubectl, "port-forward", "pod/box", f"{port}:8080"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=False,
                    )
                )
                url = f"http://127.0.0.1:{port}/big"
                for _ in range(100):
                    try:
                        await download(url)
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.1)
                results[f"portforward_{version}_mb_s"] = max(
                    [await download(url) for _ in range(3)]
                )
                process.terminate()
            results[f"exec_{version}_ms"] = await timed([*kubectl, "exec", "box", "--", "true"], 10)
            results[f"kubectl_{version}_startup_ms"] = await timed(
                [*kubectl, "version", "--client"], 10
            )
    for version in ("1.27", "1.33"):
        results[f"portforward_{version}_vs_direct"] = round(
            results[f"portforward_{version}_mb_s"] / results["direct_mb_s"], 3
        )
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}


def main() -> None:
    """Run once and print the figures; the last line is JSON."""
    with tempfile.TemporaryDirectory(prefix="kt-pf-bench-") as tmp:
        results = trio.run(measure, Path(tmp))
    for key, value in results.items():
        print(f"{key:32} {value}")
    print(json.dumps({"bench": "portforward", **results}))


if __name__ == "__main__":
    main()
