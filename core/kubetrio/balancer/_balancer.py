"""The balancer: a trio TCP listener, health checks of ``/readyz``, byte pipes."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import trio

log = logging.getLogger("kubetrio.balancer")

HEALTH_INTERVAL = 1.0
"""Seconds between two health checks of a backend (k3s' agent balancer checks each second)."""
HEALTH_TIMEOUT = 2.0
"""Seconds a health check (connect, TLS, ``GET /readyz``) may take before it counts as failed."""
CUT_AFTER_FAILURES = 2
"""Failed health checks in a row after which a backend's open connections are ended."""
CONNECT_TIMEOUT = 2.0
"""Seconds to connect to a backend before the next one is tried."""
_BUFFER = 65536


def parse_backend(text: str) -> tuple[str, int]:
    """``host:port`` or ``https://host:port`` as (host, port); ValueError if not one."""
    parts = urlsplit(text if "://" in text else f"//{text}")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"not host:port: {text!r}")
    return parts.hostname, parts.port


@dataclasses.dataclass
class Backend:
    """An API server the balancer forwards to, and what its last health check found."""

    host: str
    port: int
    healthy: bool = False
    failures: int = 0
    connections: int = 0
    pipes: set[trio.CancelScope] = dataclasses.field(default_factory=set)
    """The connections passed to it, to end when it is found cut off."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TCPBalancer:
    """Pass connections through to healthy backends, round robin.

    :param backends: ``host:port`` of each API server (or a function returning them,
        called before each round of health checks: servers added or removed are followed).
    :param tls: the context health checks verify a backend's ``/readyz`` with (the cluster
        CA); connections themselves are passed through untouched.
    """

    def __init__(
        self,
        backends: Sequence[str] | Callable[[], Sequence[str]],
        *,
        tls: ssl.SSLContext,
        interval: float = HEALTH_INTERVAL,
    ) -> None:
        self._source = backends if callable(backends) else (lambda: list(backends))
        self._tls = tls
        self._interval = interval
        self.backends: dict[str, Backend] = {}
        self._turn = itertools.count()
        self.port = 0
        self._checked = trio.Event()

    def _refresh(self) -> None:
        wanted = [parse_backend(text) for text in self._source()]
        names = {f"{host}:{port}" for host, port in wanted}
        for name in set(self.backends) - names:
            log.info("backend %s removed", name)
            del self.backends[name]
        for host, port in wanted:
            self.backends.setdefault(f"{host}:{port}", Backend(host, port))

    async def run(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: a free port) and serve until cancelled; reports the
        port once the first round of health checks is done."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._check_forever)
            with trio.move_on_after(HEALTH_TIMEOUT + 1):
                await self._checked.wait()
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    # -- health ------------------------------------------------------------------------------

    async def _check_forever(self) -> None:
        while True:
            try:
                self._refresh()
            except (OSError, ValueError) as exc:
                log.warning("backends unreadable, keeping the last ones: %s", exc)
            async with trio.open_nursery() as nursery:
                for backend in list(self.backends.values()):
                    nursery.start_soon(self._check, backend)
            self._checked.set()
            await trio.sleep(self._interval)

    async def _check(self, backend: Backend) -> None:
        ok = False
        with trio.move_on_after(HEALTH_TIMEOUT):
            ok = await self._ready(backend)
        if ok != backend.healthy:
            log.info("backend %s is %s", backend.address, "healthy" if ok else "unhealthy")
        backend.healthy = ok
        backend.failures = 0 if ok else backend.failures + 1
        if backend.failures == CUT_AFTER_FAILURES:
            # Like k3s' balancer: a server cut off by the network leaves its connections
            # stalled (no reset ever comes); end them so clients reconnect to the others.
            log.info("ending %d connections to %s", len(backend.pipes), backend.address)
            for pipe in backend.pipes:
                pipe.cancel()

    async def _ready(self, backend: Backend) -> bool:
        """Whether ``GET /readyz`` over TLS answers 200."""
        try:
            stream = await trio.open_tcp_stream(backend.host, backend.port)
        except OSError:
            return False
        tls = trio.SSLStream(stream, self._tls, server_hostname=backend.host)
        answer = bytearray()
        try:
            request = (
                f"GET /readyz HTTP/1.1\r\nHost: {backend.address}\r\nConnection: close\r\n\r\n"
            )
            await tls.send_all(request.encode())
            while len(answer) <= _BUFFER and (chunk := await tls.receive_some(_BUFFER)):
                answer += chunk
        except (OSError, trio.BrokenResourceError):
            pass  # a server may end without TLS' close_notify: judge what arrived
        finally:
            stream.socket.close()
        return status_ok(bytes(answer))

    # -- connections -------------------------------------------------------------------------

    def _order(self) -> list[Backend]:
        """Healthy backends, starting from the next in turn; then the others (a health
        check may be stale: a connection tried beats a refusal)."""
        healthy = [b for b in self.backends.values() if b.healthy]
        others = [b for b in self.backends.values() if not b.healthy]
        if healthy:
            start = next(self._turn) % len(healthy)
            healthy = healthy[start:] + healthy[:start]
        return healthy + others

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            for backend in self._order():
                try:
                    with trio.fail_after(CONNECT_TIMEOUT):
                        upstream = await trio.open_tcp_stream(backend.host, backend.port)
                except (OSError, trio.TooSlowError):
                    backend.healthy = False  # until the next check finds it well again
                    continue
                backend.connections += 1
                pipe = trio.CancelScope()
                backend.pipes.add(pipe)
                try:
                    async with upstream:
                        with pipe:
                            await _pipe(client, upstream)
                finally:
                    backend.connections -= 1
                    backend.pipes.discard(pipe)
                return
            log.warning("no API server to pass a connection to (%d known)", len(self.backends))


def status_ok(answer: bytes) -> bool:
    """Whether an HTTP answer's status is 200 (``/readyz`` answers 503 until ready)."""
    status = answer.split(b"\r\n", 1)[0].split(b" ")
    return len(status) > 1 and status[0].startswith(b"HTTP/") and status[1] == b"200"


async def _pipe(a: trio.SocketStream, b: trio.SocketStream) -> None:
    """Copy bytes both ways until both ends are done; one end broken ends both."""

    async def copy(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some(_BUFFER):
                await sink.send_all(data)
            await sink.send_eof()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(copy, a, b)
        nursery.start_soon(copy, b, a)
