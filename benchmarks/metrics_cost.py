"""What the Prometheus metrics cost a request, measured in one run.

Two API servers in this process, each over its own SQLite store: one built with metrics
on (requests counted and timed, its store calls timed), one with them off
(``kubetrio.prom.switch``, flipped for each round to match the server it drives). The
same load goes to both in alternating rounds, so drift of the machine hits both alike,
over HTTP with ``--concurrency`` keep-alive clients:

* pod creates and pod gets: p50/p99 latency with metrics on and off, and their ratios;
* the direct costs, which load on a shared machine cannot blur: microseconds the request
  metrics add to one request (a stub handler), a store call's timing, and one scrape of
  ``/metrics`` after the run.

The last line is one JSON object with the figures and the on/off ratios.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import trio
from _kit import bench_pod, quantiles, timed_round

from kubetrio import prom
from kubetrio import store as kv
from kubetrio.apiserver import RunningApiServer, open_apiserver

PODS = "/api/v1/namespaces/default/pods"


async def create(http: httpx.AsyncClient, name: str) -> httpx.Response:
    """POST one pod."""
    return await http.post(PODS, json=bench_pod(name))


async def get(http: httpx.AsyncClient, name: str) -> httpx.Response:
    """GET one pod."""
    return await http.get(f"{PODS}/{name}")


async def direct_costs() -> dict[str, float]:
    """Microseconds the request metrics add to one pod create (its handler a stub), and
    that timing one store call adds (over a store that answers at once): figures load on
    the machine cannot blur."""
    from kubetrio.apiserver import _prom
    from kubetrio.handler import Request, Response

    body = json.dumps(bench_pod("p")).encode()
    request = Request(
        method="POST",
        target=PODS,
        path=PODS,
        query={},
        headers={"content-type": "application/json"},
        body=body,
    )

    async def handler(_: Request) -> Response:
        return Response(status=201, body=body)

    async def per_call(call: Callable[[], Awaitable[object]], n: int) -> float:
        """Seconds per call, the best of a few batches (the least disturbed by others)."""
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                await call()
            best = min(best, (time.perf_counter() - started) / n)
        return best

    bare = await per_call(lambda: handler(request), 5000)
    counted = await per_call(lambda: _prom.around(request, handler), 5000)

    class Stub:
        """A store answering at once: what remains is the timing wrapper's own cost."""

        async def get(self, key: kv.Key, *, revision: int = 0) -> kv.KeyValue | None:
            return found

    key = "/registry/core/pods/default/p"
    found = kv.KeyValue(key=key.encode(), value=body, create_revision=1, mod_revision=1)
    stub = Stub()
    timed = _prom.TimedStore(stub)  # type: ignore[arg-type]
    plain = await per_call(lambda: stub.get(key), 5000)
    with_timing = await per_call(lambda: timed.get(key), 5000)
    return {
        "request_metrics_us_per_request": round((counted - bare) * 1e6, 2),
        "store_timing_us_per_call": round((with_timing - plain) * 1e6, 2),
    }


async def main(count: int, rounds: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kubetrio-metrics-bench-") as tmp:
        root = Path(tmp)
        async with (
            kv.open_store(f"sqlite://{root}/on.db") as on_store,
            kv.open_store(f"sqlite://{root}/off.db") as off_store,
        ):
            prom.switch.on = True
            async with open_apiserver(on_store) as on:
                prom.switch.on = False
                async with open_apiserver(off_store) as off:
                    servers: dict[str, RunningApiServer] = {"on": on, "off": off}
                    latencies: dict[tuple[str, str], list[float]] = {
                        (kind, mode): [] for kind in ("create", "get") for mode in servers
                    }
                    for r in range(rounds):
                        names = [f"pod-{r}-{i}" for i in range(count // rounds)]
                        for kind, request, code in (("create", create, 201), ("get", get, 200)):
                            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                                prom.switch.on = mode == "on"
                                await timed_round(
                                    servers[mode].url,
                                    names,
                                    concurrency,
                                    request,
                                    code,
                                    latencies[kind, mode],
                                )
                    prom.switch.on = True
                    async with httpx.AsyncClient(base_url=on.url) as http:
                        started = time.perf_counter()
                        scraped = await http.get("/metrics")
                        scrape_ms = (time.perf_counter() - started) * 1000
    direct = await direct_costs()
    figures: dict[str, float] = {}
    for (kind, mode), values in latencies.items():
        p50, p99 = quantiles(values)
        figures[f"{kind}_{mode}_p50_ms"] = round(p50, 3)
        figures[f"{kind}_{mode}_p99_ms"] = round(p99, 3)
    for kind in ("create", "get"):
        for q in ("p50", "p99"):
            figures[f"{kind}_{q}_ratio"] = round(
                figures[f"{kind}_on_{q}_ms"] / figures[f"{kind}_off_{q}_ms"], 3
            )
    figures["scrape_ms"] = round(scrape_ms, 2)
    figures["scrape_bytes"] = len(scraped.content)
    # What the direct costs come to against a request (a create times its store a few
    # calls: a get of the namespace at most, the create): load blurs the ratios above.
    added_ms = (
        direct["request_metrics_us_per_request"] + 2 * direct["store_timing_us_per_call"]
    ) / 1000
    figures["direct_share_of_create_p50"] = round(added_ms / figures["create_off_p50_ms"], 5)
    figures["direct_share_of_get_p50"] = round(
        (direct["request_metrics_us_per_request"] + direct["store_timing_us_per_call"])
        / 1000
        / figures["get_off_p50_ms"],
        5,
    )
    return {**figures, **direct}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="pods per mode")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    result = trio.run(main, options.count, options.rounds, options.concurrency)
    for kind in ("create", "get"):
        on = [result[f"{kind}_on_{q}_ms"] for q in ("p50", "p99")]
        off = [result[f"{kind}_off_{q}_ms"] for q in ("p50", "p99")]
        print(
            f"pod {kind}, metrics on / off: p50 {on[0]:.2f} / {off[0]:.2f} ms, "
            f"p99 {on[1]:.2f} / {off[1]:.2f} ms"
        )
    print(
        f"request metrics: +{result['request_metrics_us_per_request']:.1f} µs per request; "
        f"store timing: +{result['store_timing_us_per_call']:.1f} µs per call; "
        f"one scrape: {result['scrape_ms']:.1f} ms, {result['scrape_bytes']} bytes"
    )
    print(json.dumps(result))
