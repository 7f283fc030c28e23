"""The balancer on its own: connections pass through to backends whose /readyz answers
200 over TLS, round robin; a backend that stops being ready gets no new connection."""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from kubetrio.balancer import TCPBalancer
from kubetrio.pki import ensure_cluster_pki


class Backend:
    """An HTTPS server answering /readyz with ``status`` and anything else with its name."""

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        self.name = name
        self.context = context
        self.status = 200
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        tcp = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = tcp[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self.handle, [trio.SSLListener(tcp[0], self.context)])

    async def handle(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            request = await stream.receive_some(4096)
            ready = b"/readyz" in request.split(b"\r\n", 1)[0]
            status = self.status if ready else 200
            body = b"ok" if ready else self.name.encode()
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, len(body), body)
            )
            await stream.aclose()
        except (trio.BrokenResourceError, OSError):
            pass


async def _get(port: int, ca: Path) -> str:
    """GET / through the balancer with TLS verified against the backends' CA."""
    context = ssl.create_default_context(cafile=str(ca))
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = b""
    try:
        while chunk := await stream.receive_some(4096):
            answer += chunk
    except trio.BrokenResourceError:
        pass
    return answer.rsplit(b"\r\n\r\n", 1)[1].decode()


async def test_round_robin_over_ready_backends_only(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, ip_addresses=["127.0.0.1"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.serving.cert_file, pki.serving.key_file)
    backends = [Backend(name, server) for name in ("a", "b", "c")]
    async with trio.open_nursery() as nursery:
        for backend in backends:
            await nursery.start(backend.run)
        backends[2].status = 503  # not ready: never chosen while others are
        balancer = TCPBalancer(
            [f"127.0.0.1:{b.port}" for b in backends],
            tls=ssl.create_default_context(cafile=str(pki.ca.files.cert_file)),
            interval=0.05,
        )
        port = await nursery.start(balancer.run)
        served = [await _get(port, pki.ca.files.cert_file) for _ in range(6)]
        assert sorted(served) == ["a", "a", "a", "b", "b", "b"]
        backends[0].status = 503
        backends[2].status = 200
        with trio.fail_after(10):
            while balancer.backends[f"127.0.0.1:{backends[0].port}"].healthy:
                await trio.sleep(0.05)
            while not balancer.backends[f"127.0.0.1:{backends[2].port}"].healthy:
                await trio.sleep(0.05)
        served = [await _get(port, pki.ca.files.cert_file) for _ in range(4)]
        assert sorted(served) == ["b", "b", "c", "c"]
        nursery.cancel_scope.cancel()


async def test_a_backend_that_refuses_is_skipped_at_once(tmp_path: Path) -> None:
    pki = ensure_cluster_pki(tmp_path, ip_addresses=["127.0.0.1"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.serving.cert_file, pki.serving.key_file)
    alive = Backend("alive", server)
    with trio.socket.socket() as closed:  # a port nothing listens on
        await closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(alive.run)
        balancer = TCPBalancer(
            [f"127.0.0.1:{dead_port}", f"127.0.0.1:{alive.port}"],
            tls=ssl.create_default_context(cafile=str(pki.ca.files.cert_file)),
            interval=60,  # no health check after the first: the connect failure decides
        )
        port = await nursery.start(balancer.run)
        balancer.backends[f"127.0.0.1:{dead_port}"].healthy = True  # a stale check
        served = [await _get(port, pki.ca.files.cert_file) for _ in range(4)]
        assert served == ["alive"] * 4
        assert not balancer.backends[f"127.0.0.1:{dead_port}"].healthy
        nursery.cancel_scope.cancel()
