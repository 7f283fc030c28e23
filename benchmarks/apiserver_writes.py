"""API server CPU per write, by kind of write: what a pod's life costs the server.

Runs ``kubetrio server`` (embedded SQLite store, the default plugins: RBAC, admission,
APF, as a cluster runs it) as a separate process and drives it over HTTPS with 16
concurrent keep-alive connections (the minimal client of ``apiserver_pods``, so the
load generator costs little of the 2 cores), while ``--watchers`` pod watches read
every event, as the scheduler's, the kubelets' and the controllers' informers would.

For each pod the writes a pod's life brings, one phase each over all pods in turn:

* ``create``: POST the pod;
* ``update``: PUT it back with a label added (a controller's update);
* ``patch``: a JSON merge patch of one annotation;
* ``binding``: POST ``pods/NAME/binding`` (the scheduler's);
* ``status``: PUT ``pods/NAME/status`` with a Running phase and a condition (the kubelet's);
* ``event``: POST a core/v1 Event about the pod (the scheduler's ``Scheduled``);
* ``configmap``: POST a bare ConfigMap, the lightest create, as the baseline.

Figures per phase: the server process's CPU time (user + system, from
``/proc/PID/stat``) divided by the requests, in ms, and its user part alone; requests
per second and p50/p99 latency. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import apiserver_pods as pods_bench  # a sibling script: its client, its server

NAMESPACE = "default"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process ``pid`` has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


Step = tuple[str, str, bytes, str, int]
"""One request: method, path, body, content type, the status expected."""


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def steps(phase: str, name: str, created: dict[str, dict]) -> Step:
    """The request of ``phase`` for the pod ``name`` (``created``: pods as created)."""
    path = f"{PODS}/{name}"
    if phase == "create":
        pod = pods_bench.pod(name)
        # No scheduler of the server's takes these pods: the binding phase binds them, and
        # its writes (unschedulable status, events) stay out of the other phases' figures.
        pod["spec"]["schedulerName"] = "bench"
        return ("POST", PODS, _json(pod), "application/json", 201)
    if phase == "update":
        pod = json.loads(json.dumps(created[name]))
        pod["metadata"].pop("resourceVersion", None)
        pod["metadata"]["labels"]["updated"] = "yes"
        return ("PUT", path, _json(pod), "application/json", 200)
    if phase == "patch":
        body = {"metadata": {"annotations": {"kubetrio.io/patched": "yes"}}}
        return ("PATCH", path, _json(body), "application/merge-patch+json", 200)
    if phase == "binding":
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "bench-node"},
        }
        return ("POST", f"{path}/binding", _json(body), "application/json", 201)
    if phase == "status":
        pod = json.loads(json.dumps(created[name]))
        pod["metadata"].pop("resourceVersion", None)
        pod["spec"]["nodeName"] = "bench-node"
        pod["status"] = {
            "phase": "Running",
            "hostIP": "10.0.0.1",
            "podIP": "10.1.0.7",
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
        return ("PUT", f"{path}/status", _json(pod), "application/json", 200)
    if phase == "event":
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.scheduled", "namespace": NAMESPACE},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": NAMESPACE,
                "name": name,
            },
            "type": "Normal",
            "reason": "Scheduled",
            "message": f"Successfully assigned {NAMESPACE}/{name} to bench-node",
            "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler",
        }
        return (
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/events",
            _json(body),
            "application/json",
            201,
        )
    assert phase == "configmap"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"key": "value"},
    }
    return (
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/configmaps",
        _json(body),
        "application/json",
        201,
    )


PHASES = ("create", "update", "patch", "binding", "status", "event", "configmap")


async def run_phase(
    connections: list[pods_bench.Connection],
    pid: int,
    phase: str,
    names: list[str],
    created: dict[str, dict],
) -> dict[str, float]:
    """All of ``phase``'s requests, one connection per concurrent client; its figures."""
    prepared = [steps(phase, name, created) for name in names]
    latencies: list[float] = []
    queue = iter(zip(names, prepared, strict=True))

    async def worker(conn: pods_bench.Connection) -> None:
        for name, (method, path, body, content_type, expected) in queue:
            began = time.perf_counter()
            status, payload = await conn.request(method, path, body, content_type)
            latencies.append(time.perf_counter() - began)
            assert status == expected, (phase, status, payload[:300])
            if phase == "create":
                created[name] = json.loads(payload)

    await trio.sleep(0.3)  # let the watchers drain the previous phase
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for conn in connections:
            nursery.start_soon(worker, conn)
    elapsed = time.perf_counter() - started
    await trio.sleep(0.3)  # the watch events of this phase's last writes
    user, system = (after - before for after, before in zip(cpu_seconds(pid), cpu, strict=True))
    ordered = sorted(latencies)
    return {
        f"{phase}_cpu_ms": round((user + system) * 1000 / len(names), 3),
        # Most of the system time is the store's fsyncs, which vary with the disk's load.
        f"{phase}_user_ms": round(user * 1000 / len(names), 3),
        f"{phase}_per_s": round(len(names) / elapsed, 1),
        f"{phase}_p50_ms": round(statistics.median(ordered) * 1000, 2),
        f"{phase}_p99_ms": round(pods_bench.percentile(ordered, 0.99) * 1000, 2),
    }


async def watch_pods(port: int, events: list[int]) -> None:
    """Read a pod watch's stream until cancelled, counting its bytes."""
    conn = await pods_bench.Connection.open(port)
    await conn.stream.send_all(
        f"GET {PODS}?watch=1&allowWatchBookmarks=true HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    )
    while True:
        data = await conn.stream.receive_some(65536)
        if not data:
            return
        events[0] += len(data)


async def measure(
    port: int, pid: int, count: int, concurrency: int, watchers: int
) -> dict[str, float]:
    """Every phase in turn over ``count`` pods; the figures of all."""
    figures: dict[str, float] = {}
    created: dict[str, dict] = {}
    names = [f"w-{i}" for i in range(count)]
    watched = [0]
    async with trio.open_nursery() as nursery:
        for _ in range(watchers):
            nursery.start_soon(watch_pods, port, watched)
        # Opened once: the phases measure requests, not TLS handshakes.
        connections = [await pods_bench.Connection.open(port) for _ in range(concurrency)]
        await trio.sleep(0.5)
        for phase in PHASES:
            phase_names = [f"cm-{i}" for i in range(count)] if phase == "configmap" else names
            figures |= await run_phase(connections, pid, phase, phase_names, created)
        for conn in connections:
            await conn.stream.aclose()
        nursery.cancel_scope.cancel()
    figures["watch_bytes"] = watched[0]
    return figures


def main() -> None:
    """Start the server, run the phases, print the figures and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000, help="pods (requests per phase)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--watchers", type=int, default=4, help="pod watches reading along")
    parser.add_argument("--port", type=int, default=16509)
    parser.add_argument("--plugins", default="", help="KUBETRIO_PLUGINS (empty: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        # Every installed plugin, as a cluster runs (apiserver_pods runs with none).
        proc = pods_bench.start_server(data, args.port, plugins=args.plugins)
        try:
            figures: dict = {"bench": "apiserver_writes", "pods": args.pods}
            figures |= trio.run(
                measure, args.port, proc.pid, args.pods, args.concurrency, args.watchers
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    for phase in PHASES:
        print(
            f"{phase:10} {figures[f'{phase}_cpu_ms']:7.3f} ms CPU/request  "
            f"{figures[f'{phase}_per_s']:8.1f}/s  p50 {figures[f'{phase}_p50_ms']} ms  "
            f"p99 {figures[f'{phase}_p99_ms']} ms"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
