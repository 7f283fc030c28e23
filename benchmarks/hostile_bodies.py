"""How long ``/readyz`` waits while the API server handles the worst request bodies.

Runs ``kubetrio server`` (embedded SQLite store) as a separate process. For each hostile
body (a 2.9 MiB YAML ConfigMap created and applied, the same as JSON, a 1.4 MiB Secret of
many keys, a YAML alias bomb sent to a CRD that keeps unknown fields, JSON nested 100 000
deep, a Table list of large objects) one client sends it while another probes ``/readyz``
every 10 ms on its own connection. Figures, per body: the request's time and status, and
the longest ``/readyz`` answer while it was in flight; the baseline is the longest
``/readyz`` answer with nothing else running, measured in the same run.

The goal is "while any single request is processed, /readyz answers within 100 ms".
The last line is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

KUBETRIO = [sys.executable, "-m", "kubetrio"]
CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
GOAL_MS = 100.0


def yaml_configmap(name: str, keys: int = 30000) -> bytes:
    """A ConfigMap of ``keys`` 80-byte values as block YAML (2.9 MiB at 30 000)."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}", "data:"]
    lines += [f"  key-{i:06d}: " + "v" * 80 for i in range(keys)]
    return ("\n".join(lines) + "\n").encode()


def json_configmap(name: str, keys: int = 30000) -> bytes:
    data = {f"key-{i:06d}": "v" * 80 for i in range(keys)}
    return json.dumps({"metadata": {"name": name}, "data": data}).encode()


def secret(name: str, keys: int = 1000) -> bytes:
    """A Secret of ``keys`` 1.4 KiB values (1.4 MiB at 1000)."""
    data = {f"key-{i:06d}": "dmFsdWU=" * 180 for i in range(keys)}
    return json.dumps({"metadata": {"name": name}, "data": data}).encode()


ALIAS_BOMB = b"""apiVersion: example.com/v1
kind: Widget
metadata: {name: bomb}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""

DEEP_JSON = b'{"metadata":{"name":"deep"},"data":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
YAML = "application/yaml"
APPLY = "application/apply-patch+yaml"


def cases() -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(name, method, path, body, headers) of each hostile request, in order."""
    return [
        ("yaml_configmap_create", "POST", CM, yaml_configmap("big-yaml"), {"content-type": YAML}),
        (
            "yaml_configmap_apply",
            "PATCH",
            f"{CM}/big-apply?fieldManager=bench",
            yaml_configmap("big-apply"),
            {"content-type": APPLY},
        ),
        ("json_configmap_create", "POST", CM, json_configmap("big-json"), {}),
        ("secret_1_4mib_create", "POST", SECRETS, secret("big-secret"), {}),
        (
            "secret_1_4mib_update",
            "PUT",
            f"{SECRETS}/big-secret",
            secret("big-secret").replace(b"dmFsdWU=", b"dmFsdWE="),
            {},
        ),
        ("alias_bomb", "POST", WIDGETS, ALIAS_BOMB, {"content-type": YAML}),
        ("deep_json", "POST", CM, DEEP_JSON, {}),
        ("secrets_table_list", "GET", SECRETS, b"", {"accept": TABLE}),
    ]


async def probe_readyz(client: httpx.AsyncClient, done: trio.Event) -> list[float]:
    """``/readyz`` answer times (s), one probe every 10 ms until ``done``."""
    latencies: list[float] = []
    while not done.is_set():
        started = time.perf_counter()
        try:
            response = await client.get("/readyz")
            assert response.text == "ok"
        except httpx.TimeoutException:  # counted as a probe that waited the whole timeout
            pass
        latencies.append(time.perf_counter() - started)
        await trio.sleep(0.01)
    return latencies


async def measure(url: str, timeout: float) -> dict[str, float | int | str]:
    results: dict[str, float | int | str] = {"bench": "hostile_bodies"}
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout) as heavy,
        httpx.AsyncClient(base_url=url, timeout=timeout) as light,
    ):
        assert (
            await heavy.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD
            )
        ).status_code == 201
        await trio.sleep(1.5)  # the CRD is served once established
        idle = trio.Event()
        baseline: list[float] = []

        async def quiet() -> None:
            baseline.extend(await probe_readyz(light, idle))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(quiet)
            await trio.sleep(2)
            idle.set()
        results["baseline_readyz_max_ms"] = round(max(baseline) * 1000, 2)
        print(f"baseline: /readyz max {results['baseline_readyz_max_ms']} ms")
        worst = 0.0
        for name, method, path, body, headers in cases():
            done = trio.Event()
            probes: list[float] = []

            async def watch_readyz(done: trio.Event = done, probes: list[float] = probes) -> None:
                probes.extend(await probe_readyz(light, done))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_readyz)
                await trio.sleep(0.05)
                started = time.perf_counter()
                try:
                    response = await heavy.request(method, path, content=body, headers=headers)
                    status = response.status_code
                except httpx.TimeoutException:  # the server before issue 17: the alias bomb
                    status = 0
                elapsed = time.perf_counter() - started
                done.set()
            longest = max(probes) * 1000
            worst = max(worst, longest)
            results[f"{name}_status"] = status
            results[f"{name}_s"] = round(elapsed, 3)
            results[f"{name}_readyz_max_ms"] = round(longest, 2)
            print(
                f"{name:24} {len(body):>9} B -> {status} in {elapsed:6.3f} s; "
                f"/readyz max {longest:8.2f} ms over {len(probes)} probes"
            )
        results["worst_readyz_max_ms"] = round(worst, 2)
        results["ratio_worst_vs_baseline"] = round(
            worst / max(float(results["baseline_readyz_max_ms"]), 0.001), 2
        )
        results["ratio_goal_100ms_vs_worst"] = round(GOAL_MS / worst, 2)
    return results


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
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
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KUBETRIO_PLUGINS": "none"},
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).text == "ok":
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("kubetrio server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=16511)
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp) / "data", args.port)
        try:
            results = trio.run(measure, f"http://127.0.0.1:{args.port}", args.timeout)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
