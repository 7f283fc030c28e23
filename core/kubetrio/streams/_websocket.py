"""WebSocket on a raw connection after our own 101, with wsproto doing the framing.

The API server's HTTP layer sends the 101 (with :func:`accept_headers`), then hands the
connection to :class:`WebSocket`. Pings are answered here; a close from the client is
echoed. Used for the remote-command channel protocols (``v4``/``v5.channel.k8s.io``), the
Python client's port-forward and the SPDY-in-WebSocket tunnel of kubectl 1.31+.
"""

from __future__ import annotations

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import generate_accept_token


def accept_headers(key: str, protocol: str | None) -> list[tuple[str, str]]:
    """Headers of the 101 answer to a WebSocket upgrade (``protocol`` echoed when chosen)."""
    headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", generate_accept_token(key.encode()).decode()),
    ]
    if protocol:
        headers.append(("sec-websocket-protocol", protocol))
    return headers


class WebSocket:
    """The server end of a WebSocket whose handshake is already done."""

    def __init__(self, stream: trio.abc.Stream, initial: bytes = b"") -> None:
        self.stream = stream
        self.ws = Connection(ConnectionType.SERVER, trailing_data=initial)
        self._lock = trio.Lock()
        self._parts: list[bytes] = []
        self.closed = False

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            await self.stream.send_all(data)

    async def send(self, data: bytes) -> None:
        """Send one binary message."""
        if self.ws.state is ConnectionState.OPEN:
            await self._write(self.ws.send(BytesMessage(data=data)))

    async def receive(self) -> bytes | None:
        """The next whole binary (or text) message; None when the peer closed or left."""
        while True:
            for event in self.ws.events():
                if isinstance(event, Message):
                    payload = event.data.encode() if isinstance(event, TextMessage) else event.data
                    self._parts.append(bytes(payload))
                    if event.message_finished:
                        whole = b"".join(self._parts)
                        self._parts.clear()
                        return whole
                elif isinstance(event, Ping):
                    await self._write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._write(self.ws.send(event.response()))
                    self.closed = True
                    return None
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                data = b""
            if not data:
                self.closed = True
                return None
            self.ws.receive_data(bytes(data))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait briefly for the peer's, then close the connection."""
        try:
            if self.ws.state is ConnectionState.OPEN:
                await self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
                with trio.move_on_after(2):
                    while await self.receive() is not None:
                        pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        finally:
            await self.stream.aclose()


class WebSocketStream(trio.abc.Stream):
    """A byte stream over binary messages (the SPDY tunnel of kubectl 1.31+)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send the bytes as one binary message."""
        await self.ws.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        """Never blocks before ``send_all``."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next message's bytes; ``b""`` at the end."""
        while True:
            message = await self.ws.receive()
            if message is None:
                return b""
            if message:
                return message

    async def send_eof(self) -> None:
        """Not supported by the tunnel; the close does it."""

    async def aclose(self) -> None:
        """Close the WebSocket."""
        await self.ws.close()
