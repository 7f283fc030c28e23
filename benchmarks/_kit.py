"""Pieces the benchmarks share: the pod and Deployment manifests they write, timed rounds
of requests and percentiles, so each benchmark file says only what it compares.

Benchmarks run as scripts (``python benchmarks/NAME.py``), so this module is imported by
its bare name from the benchmarks folder.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import trio


def bench_pod(name: str) -> dict[str, Any]:
    """A pod like a Deployment makes (baseline-compliant, with requests)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.local/bench/app:1.0",
                    "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(8)],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ]
        },
    }


def deployment(name: str, replicas: int, pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods with ``pod_spec``, selected by the label ``app=name``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


async def timed_round(
    url: str,
    names: list[str],
    concurrency: int,
    request: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]],
    expected: int,
    latencies: list[float],
    headers: Mapping[str, str] | None = None,
) -> None:
    """One request per name, ``concurrency`` keep-alive clients at a time, appending each
    latency (seconds) to LATENCIES; every answer must have status EXPECTED."""
    queue = iter(names)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=httpx.Limits(max_connections=concurrency)
    ) as http:

        async def worker() -> None:
            for name in queue:
                started = time.perf_counter()
                answer = await request(http, name)
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == expected, answer.text

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)


def quantiles(latencies: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000
