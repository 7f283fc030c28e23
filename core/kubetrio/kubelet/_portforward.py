"""The agent's end of ``pods/portforward``: a TCP connection inside the pod's netns.

The socket is created inside the pod's network namespace (:func:`kubetrio.netns.socket_in_netns`,
in a worker thread that returns to its own namespace afterwards); a socket keeps the
namespace it was made in, so trio connects and relays it as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from kubetrio.netns import socket_in_netns

from ..streams._agentwire import FramedPipe
from ._exec import SWITCHING, find_pod, http_error

if TYPE_CHECKING:
    from ._agent import NodeAgent


async def connect_in_pod(netns: str, port: int) -> trio.SocketStream:
    """Connect to ``localhost:port`` in the pod's network namespace."""
    sock = await trio.to_thread.run_sync(socket_in_netns, netns)
    tsock = trio.socket.from_stdlib_socket(sock)
    try:
        await tsock.connect(("127.0.0.1", port))
    except BaseException:
        tsock.close()
        raise
    return trio.SocketStream(tsock)


async def relay(
    a: trio.abc.HalfCloseableStream, b: trio.abc.HalfCloseableStream, initial: bytes = b""
) -> None:
    """Copy both ways until both directions ended; EOF is passed on as a half-close."""

    async def one_way(
        src: trio.abc.HalfCloseableStream, dst: trio.abc.HalfCloseableStream, first: bytes
    ) -> None:
        try:
            if first:
                await dst.send_all(first)
            while data := await src.receive_some(65536):
                await dst.send_all(data)
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_way, a, b, initial)
        nursery.start_soon(one_way, b, a, b"")


async def serve_port_forward(
    agent: NodeAgent,
    stream: trio.abc.Stream,
    initial: bytes,
    namespace: str,
    pod: str,
    query: dict[str, list[str]],
) -> None:
    """Answer one port-forward upgrade: connect first, 101 only when connected."""
    try:
        port = int((query.get("port") or [""])[-1])
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        await stream.send_all(http_error(400, "a valid port is required"))
        return
    try:
        worker = find_pod(agent, namespace, pod)
    except LookupError as exc:
        await stream.send_all(http_error(404, str(exc.args[0])))
        return
    runtime: Any = agent.runtime
    try:
        target = await connect_in_pod(runtime.netns_path(worker.uid), port)
    except OSError as exc:
        message = (
            f"error forwarding port {port} to pod {worker.uid}: "
            f"failed to connect to localhost:{port}: {exc.strerror or exc}"
        )
        await stream.send_all(http_error(502, message))
        return
    async with target:
        await stream.send_all(SWITCHING)
        # Frames, not the bare connection: a half-close must cross TLS (see _agentwire).
        await relay(FramedPipe(stream, initial), target)
