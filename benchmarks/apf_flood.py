"""A list flood from one user against node Lease renewals (API Priority and Fairness).

Issue 21's criterion: "a flood of 2,000 list requests/s from one client does not delay node
heartbeats beyond their period" (a kubelet renews its Lease every 10 s).

Processes, so none steals another's event loop: the API server (``open_apiserver`` on
SQLite, default limits, static tokens, APF on with the bootstrap configuration), two
flood processes (user ``flooder``, ``--connections`` kept-alive connections between them,
each paced to its share of ``--rate`` list requests/s of ``default``'s ConfigMaps, so
they send as fast as the server answers when it cannot keep up), and this one: ``--nodes``
nodes (``system:node:node-i``, group ``system:nodes``) each renewing its Lease in
``kube-node-lease`` every ``--renew`` seconds, and user ``alice`` listing pods as often.

Self-calibrating for a shared machine: the flood processes run at nice 10 (a flood from
another host takes no CPU from the server; here it gets what the server leaves); first
the server's list capacity alone (one closed-loop client per flood process,
``list_capacity_per_s``); then the renewals' latency without a flood and, in the same run
on the same kept-alive connections (a cluster's nodes are connected before any flood),
with it (after a warm-up), as this process timed them and as the server did
(``server_renew_p99_le_ms_*``: the bound of the server's
``apiserver_request_duration_seconds`` bucket holding the 99th percentile of Lease PUTs,
free of this process's own scheduling delays on a busy machine). The flood rate reported
is what the flood processes achieved on this machine, with how many answers were 429
(``rejected_apf``: carrying APF's headers; ``rejected_gate``: the HTTP server's
per-address cap, before authentication) and the server's own APF counters.

The renewers and alice connect from 127.0.0.2 and 127.0.0.3, as nodes on other hosts
would: the HTTP server's per-address in-flight cap is not what protects them.

Run: ``.venv/bin/python benchmarks/apf_flood.py [--rate 2000] [--connections 400]``;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import h11
import httpx
import trio

from kubetrio import plugins
from kubetrio.apiserver import ServerLimits, open_apiserver, raise_fd_limit
from kubetrio.store import open_store

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
HEARTBEAT_PERIOD_S = 10.0
"""The kubelet's Lease renew interval (a quarter of the 40 s lease duration)."""
FLOOD_PROCESSES = 2
FLOOD_NICE = 10


def tokens(nodes: int) -> str:
    lines = ['admin-token,admin,1,"system:masters"', "flood-token,flooder,2", "alice-token,alice,3"]
    lines += [f'node-{i}-token,system:node:node-{i},n{i},"system:nodes"' for i in range(nodes)]
    return "\n".join(lines) + "\n"


async def serve(data_dir: str, nodes: int, limits: ServerLimits) -> None:
    """The server process: print the port, serve until killed."""
    raise_fd_limit()
    path = os.path.join(data_dir, "tokens.csv")
    with open(path, "w") as file:
        file.write(tokens(nodes))
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": path}})
    async with (
        open_store(f"sqlite://{data_dir}/state.db", wal_preallocate=0) as store,
        open_apiserver(store, plugins=manager, limits=limits) as running,
    ):
        print(running.port, flush=True)
        await trio.sleep_forever()


async def flood(port: int, rate: float, connections: int, seconds: float) -> None:
    """A flood process: ``connections`` connections listing ConfigMaps, together at most
    ``rate`` requests/s, for ``seconds``; prints its counts as JSON."""
    raise_fd_limit()
    # On one shared machine the flood would otherwise take the CPU from the server it
    # floods, which a flood from another host does not: it gets what is left over.
    os.nice(FLOOD_NICE)
    counts = {"ok": 0, "rejected_apf": 0, "rejected_gate": 0, "other": 0, "errors": 0}
    request = h11.Request(
        method="GET",
        target=CONFIGMAPS,
        headers=[("host", f"127.0.0.1:{port}"), ("authorization", "Bearer flood-token")],
    )
    interval = connections / rate
    started = time.monotonic()
    end = started + seconds

    async def one(index: int) -> None:
        due = started + interval * index / connections
        while time.monotonic() < end:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                counts["errors"] += 1
                await trio.sleep(0.1)
                continue
            connection = h11.Connection(h11.CLIENT)
            try:
                while time.monotonic() < end:
                    now = time.monotonic()
                    if due > now:
                        await trio.sleep(due - now)
                    due = max(due + interval, time.monotonic() - interval)  # no burst later
                    await stream.send_all(
                        connection.send(request) + connection.send(h11.EndOfMessage())
                    )
                    status, apf = 0, False
                    while True:
                        event = connection.next_event()
                        if event is h11.NEED_DATA:
                            data = await stream.receive_some(1 << 16)
                            connection.receive_data(data)
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                            apf = any(
                                n == b"x-kubernetes-pf-flowschema-uid" for n, _ in event.headers
                            )
                        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                            break
                    if status == 200:
                        counts["ok"] += 1
                    elif status == 429:
                        counts["rejected_apf" if apf else "rejected_gate"] += 1
                    else:
                        counts["other"] += 1
                    if (
                        connection.our_state is h11.MUST_CLOSE
                        or connection.their_state is not h11.DONE
                    ):
                        break
                    connection.start_next_cycle()
            except (OSError, trio.BrokenResourceError, h11.ProtocolError):
                counts["errors"] += 1
            finally:
                await stream.aclose()

    async with trio.open_nursery() as nursery:
        for index in range(connections):
            nursery.start_soon(one, index)
    counts["seconds"] = round(time.monotonic() - started, 2)  # type: ignore[assignment]
    print(json.dumps(counts), flush=True)


Renewals = tuple[list[float], int, list[float], int]


async def phases(
    port: int, args: argparse.Namespace
) -> tuple[Renewals, Renewals, list[subprocess.Popen[str]], list[dict[float, float]]]:
    """The renewals without a flood, then with one (the flood started here): the nodes'
    connections are opened before the flood, as a cluster's nodes are connected already."""
    url = f"http://127.0.0.1:{port}"
    nodes_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    alice_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
    async with (
        httpx.AsyncClient(base_url=url, transport=nodes_transport, timeout=60) as client,
        httpx.AsyncClient(base_url=url, transport=alice_transport, timeout=60) as alice_client,
    ):
        scraped = [await lease_put_buckets(port)]
        base = await renewals(client, alice_client, args.nodes, args.renew, args.seconds)
        scraped.append(await lease_put_buckets(port))
        floods = start_floods(port, args.rate, args.connections, args.seconds + args.warmup)
        await trio.sleep(args.warmup)
        scraped.append(await lease_put_buckets(port))
        loaded = await renewals(client, alice_client, args.nodes, args.renew, args.seconds)
        scraped.append(await lease_put_buckets(port))
    return base, loaded, floods, scraped


async def renewals(
    client: httpx.AsyncClient,
    alice_client: httpx.AsyncClient,
    nodes: int,
    every: float,
    seconds: float,
) -> Renewals:
    """Each node renews its Lease every ``every`` s and alice lists pods as often, for
    ``seconds``: renew latencies (ms) and failures, alice's latencies and failures."""
    renew_ms: list[float] = []
    slow: list[tuple[float, int]] = []
    alice_ms: list[float] = []
    failures = {"node": 0, "alice": 0}
    end = time.monotonic() + seconds
    began = time.perf_counter()

    async def node(i: int) -> None:
        headers = {"authorization": f"Bearer node-{i}-token"}
        lease = (await client.get(f"{LEASES}/node-{i}", headers=headers)).json()
        await trio.sleep(every * i / nodes)
        while time.monotonic() < end:
            lease["spec"]["renewTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            start = time.perf_counter()
            answer = await client.put(f"{LEASES}/node-{i}", json=lease, headers=headers)
            if answer.status_code == 200:
                renew_ms.append((time.perf_counter() - start) * 1000)
                if renew_ms[-1] > 2000:
                    slow.append((round(start - began, 1), round(renew_ms[-1])))
                lease = answer.json()
            else:
                failures["node"] += 1
                lease = (await client.get(f"{LEASES}/node-{i}", headers=headers)).json()
            await trio.sleep(every)

    async def alice() -> None:
        headers = {"authorization": "Bearer alice-token"}
        while time.monotonic() < end:
            start = time.perf_counter()
            answer = await alice_client.get("/api/v1/namespaces/default/pods", headers=headers)
            if answer.status_code == 200:
                alice_ms.append((time.perf_counter() - start) * 1000)
            else:
                failures["alice"] += 1
            await trio.sleep(every)

    async with trio.open_nursery() as nursery:
        for i in range(nodes):
            nursery.start_soon(node, i)
        nursery.start_soon(alice)
    if slow:
        print(f"renewals over 2 s (start s, ms): {slow}", file=sys.stderr, flush=True)
    return renew_ms, failures["node"], alice_ms, failures["alice"]


async def setup(port: int, nodes: int, configmaps: int) -> None:
    admin = {"authorization": "Bearer admin-token"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=admin) as client:
        for i in range(configmaps):
            cm = {
                "metadata": {"name": f"cm-{i}", "labels": {"app": "flood"}},
                "data": {"k": "v" * 256},
            }
            (await client.post(CONFIGMAPS, json=cm)).raise_for_status()
        for i in range(nodes):
            lease = {
                "metadata": {"name": f"node-{i}", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": f"node-{i}", "leaseDurationSeconds": 40},
            }
            (await client.post(LEASES, json=lease)).raise_for_status()


async def flowcontrol_counters(port: int) -> dict[str, float]:
    """The server's APF counters by metric and priority level (non-zero ones)."""
    from prometheus_client.parser import text_string_to_metric_families

    admin = {"authorization": "Bearer admin-token"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=admin) as client:
        text = (await client.get("/metrics")).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (
            "apiserver_flowcontrol_rejected_requests",
            "apiserver_flowcontrol_dispatched_requests",
        ):
            continue
        for sample in family.samples:
            short = family.name.removeprefix("apiserver_flowcontrol_")
            key = f"{short}/{sample.labels['priority_level']}"
            if "reason" in sample.labels:
                key += f"/{sample.labels['reason']}"
            found[key] = found.get(key, 0) + sample.value
    return {k: v for k, v in sorted(found.items()) if v}


async def lease_put_buckets(port: int) -> dict[float, float]:
    """The server's own ``apiserver_request_duration_seconds`` of Lease PUTs: cumulative
    count per bucket bound (seconds)."""
    from prometheus_client.parser import text_string_to_metric_families

    admin = {"authorization": "Bearer admin-token"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=admin) as client:
        text = (await client.get("/metrics")).text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_bucket")
                and labels.get("verb") == "PUT"
                and labels.get("resource") == "leases"
            ):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0) + sample.value
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The bucket bound (ms) under which a fraction ``q`` of the requests between two
    scrapes were answered (the server's view, without the client's own delays)."""
    deltas = sorted((bound, after[bound] - before.get(bound, 0)) for bound in after)
    total = deltas[-1][1] if deltas else 0
    for bound, count in deltas:
        if total and count >= q * total:
            return bound * 1000
    return float("nan")


def p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return float("nan")
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def start_floods(
    port: int, rate: float, connections: int, seconds: float
) -> list[subprocess.Popen[str]]:
    me = [sys.executable, __file__]
    return [
        subprocess.Popen(
            [
                *me,
                "--flood",
                str(port),
                str(rate / FLOOD_PROCESSES),
                str(max(1, connections // FLOOD_PROCESSES)),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(FLOOD_PROCESSES)
    ]


def collect(floods: list[subprocess.Popen[str]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for process in floods:
        out, _ = process.communicate(timeout=120)
        for key, count in json.loads(out.strip().splitlines()[-1]).items():
            total[key] = (
                max(total.get(key, 0), count) if key == "seconds" else total.get(key, 0) + count
            )
    return total


def main(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    me = [sys.executable, __file__]
    with tempfile.TemporaryDirectory() as tmp:
        limits = [
            str(args.max_requests_inflight),
            str(args.max_mutating_requests_inflight),
            str(args.max_requests_inflight_per_client),
        ]
        apf = [] if args.apf else ["--no-apf"]
        server = subprocess.Popen(
            [*me, "--serve", tmp, str(args.nodes), *limits, *apf],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            trio.run(setup, port, args.nodes, args.configmaps)
            # 1. Calibration: the server's list throughput, one closed-loop client per process.
            capacity = collect(start_floods(port, 1e6, FLOOD_PROCESSES, args.calibrate))
            list_capacity = capacity["ok"] / capacity["seconds"]
            # 2. Renewals without a flood, 3. the same with the flood (warmed up first).
            base_run, loaded_run, floods, scraped = trio.run(phases, port, args)
            base, base_failed, base_alice, base_alice_failed = base_run
            loaded, loaded_failed, loaded_alice, loaded_alice_failed = loaded_run
            flooded = collect(floods)
            counters = trio.run(flowcontrol_counters, port)
        finally:
            server.terminate()
            server.wait()
    answered = flooded["ok"] + flooded["rejected_apf"] + flooded["rejected_gate"] + flooded["other"]
    return {
        "apf": args.apf,
        "max_requests_inflight": args.max_requests_inflight,
        "max_mutating_requests_inflight": args.max_mutating_requests_inflight,
        "max_requests_inflight_per_client": args.max_requests_inflight_per_client,
        "list_capacity_per_s": round(list_capacity, 1),
        "flood_target_per_s": args.rate,
        "flood_connections": args.connections,
        "flood_achieved_per_s": round(answered / flooded["seconds"], 1),
        "flood_served_per_s": round(flooded["ok"] / flooded["seconds"], 1),
        "flood_429": int(flooded["rejected_apf"] + flooded["rejected_gate"]),
        "flood_429_apf": int(flooded["rejected_apf"]),
        "flood_429_gate": int(flooded["rejected_gate"]),
        "flood_errors": int(flooded["errors"] + flooded["other"]),
        "renewals_baseline": len(base),
        "renewals_flood": len(loaded),
        "renew_p50_ms_baseline": p(base, 50),
        "renew_p99_ms_baseline": p(base, 99),
        "renew_p50_ms_flood": p(loaded, 50),
        "renew_p99_ms_flood": p(loaded, 99),
        "renew_max_ms_flood": round(max(loaded), 1) if loaded else None,
        "server_renew_p99_le_ms_baseline": bucket_quantile(scraped[0], scraped[1], 0.99),
        "server_renew_p99_le_ms_flood": bucket_quantile(scraped[2], scraped[3], 0.99),
        "renew_failed_baseline": base_failed,
        "renew_failed_flood": loaded_failed,
        "alice_p99_ms_baseline": p(base_alice, 99),
        "alice_p99_ms_flood": p(loaded_alice, 99),
        "alice_failed_flood": loaded_alice_failed + base_alice_failed,
        "heartbeat_period_ms": HEARTBEAT_PERIOD_S * 1000,
        "heartbeats_within_period": bool(loaded)
        and loaded_failed == 0
        and max(loaded) < HEARTBEAT_PERIOD_S * 1000,
        "server_flowcontrol": counters,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="flood list requests/s")
    parser.add_argument("--connections", type=int, default=400, help="flood connections")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--renew", type=float, default=1.0, help="seconds between renewals")
    parser.add_argument("--seconds", type=float, default=15.0, help="each measured phase")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--calibrate", type=float, default=4.0)
    parser.add_argument("--configmaps", type=int, default=50)
    defaults = ServerLimits()
    parser.add_argument("--max-requests-inflight", type=int, default=defaults.max_requests_inflight)
    parser.add_argument(
        "--max-mutating-requests-inflight",
        type=int,
        default=defaults.max_mutating_requests_inflight,
    )
    parser.add_argument("--no-apf", dest="apf", action="store_false", help="APF off")
    parser.add_argument(
        "--max-requests-inflight-per-client",
        type=int,
        default=defaults.max_requests_inflight_per_client,
    )
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        data_dir, nodes, reading, mutating, per_client = args.serve
        limits = ServerLimits(
            max_requests_inflight=int(reading),
            max_mutating_requests_inflight=int(mutating),
            max_requests_inflight_per_client=int(per_client),
            enable_priority_and_fairness=args.apf,
        )
        trio.run(serve, data_dir, int(nodes), limits)
    elif args.flood:
        port, rate, connections, seconds = args.flood
        trio.run(flood, int(port), float(rate), int(connections), float(seconds))
    else:
        print(json.dumps(main(args)))
