"""API server throughput and latency for pod creates over HTTP, and listing 10k pods.

Runs ``kubetrio server`` (embedded SQLite store) as a separate process and drives it over
HTTP from this process with N concurrent keep-alive connections (a minimal HTTP/1.1
client on trio, so the load generator costs little of the 2 cores). Figures:

* creates/s and p50/p99 latency at 16 and 64 concurrent clients;
* p99 latency of creates paced at 200/s (the goal: <= 50 ms; Kubernetes' SLO is 1 s);
* time to list 10 000 pods in one request, and in pages of 500 as informers do;
* baseline, measured in the same run: raw store creates/s at 16 concurrent writers on
  the same SQLite backend (what the API server adds on top of the store).

The last line is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from kubetrio.pki import ClusterPKI, client_context
from kubetrio.store import open_store

ROOT = Path(__file__).resolve().parents[1]
KUBETRIO = [sys.executable, "-m", "kubetrio"]


def pod(name: str) -> dict:
    """A pod like a Deployment makes: labels, owner, one container with resources."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "pod-template-hash": "5d9f7c6b8"},
            "annotations": {"kubetrio.io/bench": "x" * 200},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.local/bench/app:1.0",
                    "args": ["--port=8080", "--verbose"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(8)],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                }
            ]
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


DATA: Path | None = None
"""The server's data directory, whose CA and admin certificate clients use (HTTPS only)."""


def tls_context() -> ssl.SSLContext:
    """Trust the server's CA, present the admin's client certificate."""
    assert DATA is not None
    pki = ClusterPKI(DATA / "pki")
    return client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection.

    httpx costs about as much CPU per request as the server does; on a 2-core machine the
    load generator would then measure itself. This sends prebuilt requests and reads
    responses by Content-Length, nothing more.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> Connection:
        stream = trio.SSLStream(
            await trio.open_tcp_stream("127.0.0.1", port),
            tls_context(),
            server_hostname="127.0.0.1",
            https_compatible=True,
        )
        await stream.do_handshake()
        return cls(stream)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, body)

    async def request(
        self, method: str, path: str, body: bytes, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """One request on this keep-alive connection; the answer's status and body."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        await self.stream.send_all(head + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive_some(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive_some(65536)
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, payload


PODS = "/api/v1/namespaces/default/pods"


async def create_many(
    port: int, prefix: str, count: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    bodies = [json.dumps(pod(f"{prefix}-{i}")).encode() for i in range(count)]
    connections = [await Connection.open(port) for _ in range(concurrency)]
    next_index = iter(range(count))

    async def worker(conn: Connection) -> None:
        for i in next_index:
            started = time.perf_counter()
            status, payload = await conn.post(PODS, bodies[i])
            latencies.append(time.perf_counter() - started)
            assert status == 201, payload

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for conn in connections:
            nursery.start_soon(worker, conn)
    elapsed = time.perf_counter() - started
    for conn in connections:
        await conn.stream.aclose()
    return count / elapsed, latencies


async def paced(port: int, rate: float, seconds: float) -> list[float]:
    """Creates started at a fixed rate whatever the answers' pace (open loop)."""
    latencies: list[float] = []
    total = int(rate * seconds)
    bodies = [json.dumps(pod(f"paced-{i}")).encode() for i in range(total)]
    idle: list[Connection] = [await Connection.open(port) for _ in range(32)]

    async def one(i: int) -> None:
        conn = idle.pop() if idle else await Connection.open(port)
        started = time.perf_counter()
        status, payload = await conn.post(PODS, bodies[i])
        latencies.append(time.perf_counter() - started)
        idle.append(conn)
        assert status == 201, payload

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(total):
            await trio.sleep_until(start + i / rate)
            nursery.start_soon(one, i)
    for conn in idle:
        await conn.stream.aclose()
    return latencies


async def list_all(url: str) -> tuple[float, float, int]:
    async with httpx.AsyncClient(base_url=url, timeout=120, verify=tls_context()) as client:
        started = time.perf_counter()
        whole = await client.get("/api/v1/pods")
        one_request = time.perf_counter() - started
        count = len(whole.json()["items"])
        started = time.perf_counter()
        token = ""
        while True:
            params = {"limit": "500"} | ({"continue": token} if token else {})
            page = (await client.get("/api/v1/pods", params=params)).json()
            token = page["metadata"].get("continue", "")
            if not token:
                break
        paged = time.perf_counter() - started
    return one_request, paged, count


async def raw_store(path: Path, count: int, concurrency: int) -> float:
    value = json.dumps(pod("raw")).encode()
    async with open_store(f"sqlite://{path}") as store:
        next_index = iter(range(count))

        async def worker() -> None:
            for i in next_index:
                await store.create(f"/registry/core/pods/default/raw-{i}", value)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        return count / (time.perf_counter() - started)


def start_server(data: Path, port: int, plugins: str = "none") -> subprocess.Popen[bytes]:
    """``kubetrio server`` on DATA at PORT, ready; PLUGINS: its ``KUBETRIO_PLUGINS``
    (empty: every installed plugin, as a cluster runs)."""
    env = {**os.environ, "KUBETRIO_PLUGINS": plugins}
    if not plugins:
        env.pop("KUBETRIO_PLUGINS")
    proc = subprocess.Popen(
        [
            *KUBETRIO,
            "server",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--kubeconfig",
            str(data / "kubeconfig"),
            "--no-agent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    global DATA
    DATA = data
    deadline = time.time() + 60  # a loaded machine may take a while to start it
    while time.time() < deadline:
        try:
            verify = tls_context()
            if httpx.get(f"https://127.0.0.1:{port}/readyz", timeout=1, verify=verify).text == "ok":
                return proc
        except (httpx.HTTPError, OSError):  # not listening, or no certificates yet
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("kubetrio server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=3000, help="creates per concurrency level")
    parser.add_argument("--list-size", type=int, default=10000, help="pods to list")
    parser.add_argument("--port", type=int, default=16499)
    args = parser.parse_args()

    results: dict[str, float | str] = {"bench": "apiserver_pods"}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        proc = start_server(data, args.port)
        url = f"https://127.0.0.1:{args.port}"
        try:
            for concurrency in (16, 64):
                rate, lat = trio.run(
                    create_many, args.port, f"c{concurrency}", args.creates, concurrency
                )
                results[f"creates_per_s_{concurrency}"] = round(rate, 1)
                results[f"p50_ms_{concurrency}"] = round(statistics.median(lat) * 1000, 2)
                results[f"p99_ms_{concurrency}"] = round(percentile(lat, 0.99) * 1000, 2)
                print(
                    f"{concurrency:>3} clients: {rate:8.1f} creates/s  "
                    f"p50 {results[f'p50_ms_{concurrency}']} ms  "
                    f"p99 {results[f'p99_ms_{concurrency}']} ms"
                )
            lat = trio.run(paced, args.port, 200.0, 10.0)
            results["paced_200_per_s_p99_ms"] = round(percentile(lat, 0.99) * 1000, 2)
            print(
                f"paced 200/s for 10 s: p99 {results['paced_200_per_s_p99_ms']} ms (goal <= 50 ms)"
            )
            existing = 2 * args.creates + 2000
            if existing < args.list_size:
                trio.run(create_many, args.port, "fill", args.list_size - existing, 32)
            one, paged, count = trio.run(list_all, url)
            results["listed_pods"] = count
            results["list_all_s"] = round(one, 3)
            results["list_paged_500_s"] = round(paged, 3)
            print(f"list {count} pods: {one:.3f} s in one request, {paged:.3f} s in pages of 500")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        raw = trio.run(raw_store, Path(tmp) / "raw.db", args.creates, 16)
    results["store_raw_creates_per_s_16"] = round(raw, 1)
    results["ratio_api_vs_store_16"] = round(float(results["creates_per_s_16"]) / raw, 3)
    results["ratio_p99_goal_50ms_vs_paced"] = round(
        50.0 / float(results["paced_200_per_s_p99_ms"]), 2
    )
    print(f"raw store, 16 writers: {raw:.1f} creates/s (baseline)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
