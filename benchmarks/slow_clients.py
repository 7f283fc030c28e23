"""Slow clients: normal requests' latency while thousands of connections trickle headers.

Issue 17's probe, scaled: ``--slow`` connections (default 2,000) each send a request line
and then one header line every second, never finishing, and reconnect when the server
closes them (after its 10 s header deadline, with 408) — a steady slowloris. Meanwhile
``--requests`` normal GETs, each on a new connection, are timed.

Three processes, so none of them steals the event loop of another: the API server
(``open_apiserver`` on SQLite, default limits), the slow clients, and this one timing the
normal requests. Baseline, in the same run: the same GETs with no slow client.

Reported: p50/p99 of the normal requests with and without the slow clients,
``ratio_p99`` (with / without), failed normal requests, how many slow connections the
server answered 408, and the server's peak open file count while they were open.
The last line is one JSON object.

Run: ``.venv/bin/python benchmarks/slow_clients.py [--slow 2000] [--requests 300]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import trio

from kubetrio.apiserver import open_apiserver, raise_fd_limit
from kubetrio.store import open_store


async def serve(data_dir: str) -> None:
    """The server process: print the port, serve until killed."""
    raise_fd_limit()
    async with (
        open_store(f"sqlite://{data_dir}/state.db", wal_preallocate=0) as store,
        open_apiserver(store) as running,
    ):
        print(running.port, flush=True)
        await trio.sleep_forever()


async def slow_clients(port: int, count: int) -> None:
    """The slow clients' process: ``count`` trickling connections until its stdin closes;
    prints "ready" once all are connected, and at the end the answers' status lines (as
    JSON: how many of each)."""
    raise_fd_limit()
    answers: dict[str, int] = {}
    connected = 0
    all_connected = trio.Event()

    async def one() -> None:
        nonlocal connected
        first = True
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                answers["connect error"] = answers.get("connect error", 0) + 1
                await trio.sleep(1)
                continue
            if first:
                first = False
                connected += 1
                if connected == count:
                    all_connected.set()
            async with stream:
                try:
                    await stream.send_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
                    answer = b""
                    while True:
                        with trio.move_on_after(1):
                            chunk = await stream.receive_some(4096)
                            if not chunk:
                                break
                            answer += chunk
                            continue
                        await stream.send_all(b"X-Slow: 1\r\n")
                except (trio.BrokenResourceError, OSError):
                    pass
                status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
                answers[status] = answers.get(status, 0) + 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        with trio.move_on_after(120):
            while not all_connected.is_set():
                print(f"connected {connected}/{count}: {answers}", file=sys.stderr, flush=True)
                await trio.sleep(2)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()
    print(json.dumps(answers), flush=True)


def timed_gets(port: int, count: int, seconds: float = 0) -> tuple[list[float], int]:
    """``count`` GETs (more, until ``seconds`` have passed), each on a new connection:
    latencies in ms, and failures."""
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + seconds
    while len(latencies) + failures < count or time.monotonic() < end:
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", "/api/v1/namespaces/default")
            response = connection.getresponse()
            ok = response.status == 200 and bool(response.read())
        except OSError:
            ok = False
        finally:
            connection.close()
        if ok:
            latencies.append((time.perf_counter() - start) * 1000)
        else:
            failures += 1
    return latencies, failures


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class PeakFiles(threading.Thread):
    """Samples a process's open file count every 50 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, open_files(self.pid))


def main(slow: int, requests: int) -> dict[str, Any]:
    raise_fd_limit()
    me = [sys.executable, __file__]
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([*me, "--serve", tmp], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            timed_gets(port, 20)  # warm up
            base, base_failures = timed_gets(port, requests)
            fds_idle = open_files(server.pid)
            clients = subprocess.Popen(
                [*me, "--slow-clients", str(port), str(slow)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert clients.stdout is not None
            started = time.monotonic()
            assert clients.stdout.readline().strip() == "ready"
            connect_s = time.monotonic() - started
            sampler = PeakFiles(server.pid)
            sampler.start()
            # Past the header deadline (10 s): slow ones are answered 408 and come back.
            loaded, loaded_failures = timed_gets(port, requests, seconds=15)
            sampler.done.set()
            sampler.join()
            assert clients.stdin is not None
            clients.stdin.close()
            answers = json.loads(clients.stdout.readline())
            clients.wait()
        finally:
            server.terminate()
            server.wait()
    return {
        "slow_connections": slow,
        "requests_baseline": len(base) + base_failures,
        "requests_with_slow": len(loaded) + loaded_failures,
        "baseline_p50_ms": p(base, 50),
        "baseline_p99_ms": p(base, 99),
        "slow_p50_ms": p(loaded, 50),
        "slow_p99_ms": p(loaded, 99),
        "ratio_p99": round(p(loaded, 99) / p(base, 99), 2),
        "failed_baseline": base_failures,
        "failed_with_slow": loaded_failures,
        "slow_answers": answers,
        "slow_connect_s": round(connect_s, 2),
        "server_fds_idle": fds_idle,
        "server_fds_peak": sampler.peak,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--slow-clients", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve)
    elif args.slow_clients:
        port, count = args.slow_clients
        trio.run(slow_clients, int(port), int(count))
    else:
        print(json.dumps(main(args.slow, args.requests)))
