"""Slow and greedy clients: header and body deadlines (408), the connection cap (503),
in-flight caps (429) that open watches do not count against — issue 17's slow-connection
probe, scaled down, against a served API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from kubetrio.apiserver import (
    ConnectionGate,
    RunningApiServer,
    ServerLimits,
    open_apiserver,
    raise_fd_limit,
    serve_http,
)
from kubetrio.apiserver._connlimits import is_long_running
from kubetrio.handler import Request, Response
from kubetrio.store import open_store

SLOW_CLIENTS = 300
HANG_GUARD = 60  # seconds: a broken server fails the test instead of hanging it


@asynccontextmanager
async def served(tmp_path: Path, limits: ServerLimits) -> AsyncIterator[RunningApiServer]:
    async with (
        open_store(f"sqlite://{tmp_path}/state.db", wal_preallocate=0) as store,
        open_apiserver(store, limits=limits) as running,
    ):
        yield running


def gate_of(running: RunningApiServer) -> ConnectionGate:
    assert running.gate is not None
    return running.gate


async def until(condition: Callable[[], bool]) -> None:
    """Wait (polling) until ``condition`` holds."""
    with trio.fail_after(HANG_GUARD):
        while not condition():
            await trio.sleep(0.01)


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    with trio.fail_after(HANG_GUARD):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def slow_client(port: int, answers: list[bytes]) -> None:
    """Trickle a request's headers, a line every 0.2 s, until the server answers."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                try:
                    while True:
                        await trio.sleep(0.2)
                        await stream.send_all(b"X-Slow: 1\r\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            nursery.start_soon(trickle)
            answers.append(await read_all(stream))
            nursery.cancel_scope.cancel()


def status_of(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    """The status code, headers and JSON body of a raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


async def test_slow_headers_do_not_starve_others_and_get_408(tmp_path: Path) -> None:
    raise_fd_limit()
    limits = ServerLimits(request_header_timeout=5, max_connections=SLOW_CLIENTS + 50)
    async with served(tmp_path, limits) as running, trio.open_nursery() as nursery:
        gate = gate_of(running)
        answers: list[bytes] = []
        for _ in range(SLOW_CLIENTS):
            nursery.start_soon(slow_client, running.port, answers)
        # Every slow client connected (on a loaded machine the first may be answered
        # already: the deadline runs from the accept).
        await until(lambda: gate.connections + len(answers) >= SLOW_CLIENTS)
        # With every slow client holding a connection, a normal client is served.
        async with httpx.AsyncClient(base_url=running.url, timeout=HANG_GUARD) as http:
            response = await http.get("/api/v1/namespaces/default")
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["name"] == "default"
        # Then each slow one gets 408 at the header deadline, and its connection closes.
        await until(lambda: len(answers) == SLOW_CLIENTS)
    for answer in answers:
        code, _, status = status_of(answer)
        assert code == 408 and status["reason"] == "Timeout", answer
        assert "request headers were not received within 5 s" in str(status["message"])
    assert gate.connections == 0


async def test_a_slow_body_gets_408(tmp_path: Path) -> None:
    limits = ServerLimits(request_body_timeout=1)
    async with (
        served(tmp_path, limits) as running,
        await trio.open_tcp_stream("127.0.0.1", running.port) as stream,
    ):
        await stream.send_all(
            b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"kind":'
        )
        code, _, status = status_of(await read_all(stream))
    assert code == 408, status
    assert "request body was not received within 1 s" in str(status["message"])


async def test_an_idle_kept_alive_connection_is_closed_without_an_answer(tmp_path: Path) -> None:
    limits = ServerLimits(idle_timeout=0.5)
    async with (
        served(tmp_path, limits) as running,
        await trio.open_tcp_stream("127.0.0.1", running.port) as stream,
    ):
        await stream.send_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += await stream.receive_some(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        # Nothing more comes: the server closes the idle connection, saying nothing.
        assert await read_all(stream) == b""


def server_sockets(port: int) -> int:
    """This process's established TCP sockets whose local port is ``port`` (the server's
    side of its connections), from /proc/net/tcp and /proc/self/fd."""
    mine = {
        target[len("socket:[") : -1]
        for fd in os.listdir("/proc/self/fd")
        if (target := _readlink(f"/proc/self/fd/{fd}")).startswith("socket:[")
    }
    count = 0
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in mine:
                count += 1
    return count


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


async def open_watch(port: int) -> trio.SocketStream:
    """A connection holding a watch: past its headers, answered, streaming."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"GET /api/v1/namespaces/default/configmaps?watch=true HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    head = b""
    with trio.fail_after(HANG_GUARD):
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(65536)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return stream


async def test_connections_beyond_the_cap_get_503_and_are_closed(tmp_path: Path) -> None:
    cap, extra = 20, 100
    async with served(tmp_path, ServerLimits(max_connections=cap)) as running:
        gate = gate_of(running)
        held = [await open_watch(running.port) for _ in range(cap)]
        assert gate.connections == cap
        answers = []
        for _ in range(extra):
            async with await trio.open_tcp_stream("127.0.0.1", running.port) as stream:
                answers.append(await read_all(stream))
        for answer in answers:
            code, headers, status = status_of(answer)
            assert code == 503 and headers["retry-after"] == "1", answer
            assert status["reason"] == "ServiceUnavailable"
            assert "too many open connections (limit 20)" in str(status["message"])
        assert gate.refused_connections == extra
        # The server holds only the connections under the cap, none of the others.
        assert server_sockets(running.port) == cap
        # Below the cap again, a new client is served.
        await held.pop().aclose()
        await until(lambda: gate.connections < cap)
        async with httpx.AsyncClient(base_url=running.url, timeout=HANG_GUARD) as http:
            assert (await http.get("/api/v1/namespaces/default")).status_code == 200
        for stream in held:
            await stream.aclose()


async def test_at_the_cap_a_new_client_takes_the_place_of_a_slow_one(tmp_path: Path) -> None:
    """Slow clients filling the cap do not lock others out: the oldest gives way."""
    cap = 20
    async with (
        served(tmp_path, ServerLimits(max_connections=cap)) as running,
        trio.open_nursery() as nursery,
    ):
        gate = gate_of(running)
        answers: list[bytes] = []
        for _ in range(cap):
            nursery.start_soon(slow_client, running.port, answers)
        await until(lambda: gate.connections == cap)
        async with httpx.AsyncClient(base_url=running.url, timeout=HANG_GUARD) as http:
            for _ in range(5):
                response = await http.get("/api/v1/namespaces/default")
                assert response.status_code == 200, response.text
        await until(lambda: len(answers) >= 1)
        code, headers, status = status_of(answers[0])
        assert code == 503 and headers["retry-after"] == "1", answers[0]
        assert status["reason"] == "ServiceUnavailable"
        assert gate.evicted_connections >= 1
        assert gate.refused_connections == 0
        nursery.cancel_scope.cancel()


async def test_in_flight_cap_per_client_is_429_and_watches_do_not_count() -> None:
    release = trio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
            return Response(body=b"{}")
        if request.flag("watch"):

            async def forever(send: trio.MemorySendChannel[bytes]) -> None:
                await send.send(b'{"type":"BOOKMARK"}\n')
                await trio.sleep_forever()

            return Response(stream=forever)
        return Response(body=b"{}")

    gate = ConnectionGate(ServerLimits(max_requests_inflight_per_client=2))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_http, handler, gate=gate))
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=HANG_GUARD) as http:
            watches = []
            for _ in range(3):
                watch = await http.send(http.build_request("GET", "/w?watch=true"), stream=True)
                watches.append(watch)
            await until(lambda: gate.long_running["127.0.0.1"] == 3)
            slow: list[int] = []

            async def slow_request() -> None:
                slow.append((await http.get("/slow")).status_code)

            nursery.start_soon(slow_request)
            nursery.start_soon(slow_request)
            await until(lambda: gate.inflight["127.0.0.1"] == 2)
            refused = await http.get("/fast")
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["reason"] == "TooManyRequests"
            assert refused.json()["message"] == "Too many requests, please try again later."
            assert refused.json()["details"] == {"retryAfterSeconds": 1}
            release.set()
            await until(lambda: len(slow) == 2)
            assert slow == [200, 200]
            assert (await http.get("/fast")).status_code == 200
            for watch in watches:
                await watch.aclose()
        nursery.cancel_scope.cancel()


async def test_open_watches_leave_room_for_other_requests(tmp_path: Path) -> None:
    """Against the API server: watches beyond the per-client cap, and a GET still served."""
    async with (
        served(tmp_path, ServerLimits(max_requests_inflight_per_client=1)) as running,
        httpx.AsyncClient(base_url=running.url, timeout=HANG_GUARD) as http,
    ):
        gate = gate_of(running)
        watches = []
        for _ in range(3):
            request = http.build_request("GET", "/api/v1/namespaces/default/configmaps?watch=1")
            watches.append(await http.send(request, stream=True))
        await until(lambda: gate.long_running["127.0.0.1"] == 3)
        response = await http.get("/api/v1/namespaces/default/configmaps")
        assert response.status_code == 200, response.text
        for watch in watches:
            await watch.aclose()


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("GET", "/api/v1/pods?watch=true", {}, True),
        ("GET", "/api/v1/watch/namespaces/default/pods", {}, True),
        ("GET", "/apis/apps/v1/watch/deployments", {}, True),
        ("GET", "/api/v1/namespaces/default/pods/web/log", {}, True),
        ("POST", "/api/v1/namespaces/default/pods/web/exec", {}, True),
        ("GET", "/api/v1/namespaces/default/pods/web/attach", {}, True),
        ("GET", "/api/v1/namespaces/default/pods/web/portforward", {}, True),
        ("GET", "/api/v1/namespaces/default/services/web:80/proxy/x", {}, True),
        ("GET", "/api/v1/nodes/n1/proxy/metrics", {}, True),
        ("GET", "/api/v1/namespaces/default/pods/x", {"upgrade": "SPDY/3.1"}, True),
        ("GET", "/api/v1/pods", {}, False),
        ("GET", "/api/v1/namespaces/default/pods/exec", {}, False),
        ("GET", "/api/v1/namespaces/log", {}, False),
        ("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", {}, False),
        ("PATCH", "/api/v1/namespaces/default/pods/web/status", {}, False),
        ("GET", "/healthz", {}, False),
    ],
)
def test_long_running_requests_as_upstream_classifies_them(
    method: str, target: str, headers: dict[str, str], expected: bool
) -> None:
    path, _, query = target.partition("?")
    request = Request(
        method=method,
        target=target,
        path=path,
        query={"watch": ["true"]} if query else {},
        headers=headers,
    )
    assert is_long_running(request) is expected


def test_the_open_file_limit_is_raised_and_caps_the_connections() -> None:
    """In a process started with a low soft limit (as Python often is: 1024): the cap is
    lowered to fit it, and ``raise_fd_limit`` lifts it to the hard limit."""
    script = (
        "import resource\n"
        "from kubetrio.apiserver import ConnectionGate, ServerLimits, raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "print(ConnectionGate(ServerLimits()).max_connections)\n"
        "print(*raise_fd_limit(), hard, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(ConnectionGate(ServerLimits()).max_connections)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    capped, raised, after = result.stdout.splitlines()
    assert capped == "768"  # 1024 less the descriptors kept for everything else
    old, new, hard, soft = map(int, raised.split())
    assert (old, new, soft) == (1024, min(hard, 1 << 20), min(hard, 1 << 20))
    assert int(after) == min(10_000, min(hard, 1 << 20) - 256)
