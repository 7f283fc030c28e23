"""The API server ↔ node agent stream protocol (ours, not Kubernetes').

The API server opens a TCP connection to the agent's endpoint — TLS, presenting its
client certificate, when it has one for agents; else plain, with the agent's Bearer
token — and sends an HTTP/1.1 ``POST`` with ``Upgrade: kubetrio-stream``:

``/exec/<namespace>/<pod>/<container>?command=…&command=…&stdin=1&tty=1``
    after the 101, both sides exchange frames ``[channel u8][length u32 BE][payload]``:
    0 stdin, 1 stdout, 2 stderr, 4 resize (``{"Width":w,"Height":h}``) as in the
    Kubernetes channel protocol; 255 closes the channel named by its one payload byte
    (stdin EOF); 3 ends the exchange with ``{"exitCode":n}`` or ``{"error":"…"}``.
``/portForward/<namespace>/<pod>?port=N``
    the agent connects to the port inside the pod's network namespace first; 101 means
    connected and the connection then carries the bytes as frames of channel 0, and a
    255 frame for a half-close (:class:`FramedPipe`: TLS cannot half-close); any other
    status carries the error text.

One connection per exec or per forwarded TCP connection keeps the agent free of
multiplexing; both ends are in the same cluster so the extra handshake is cheap.
"""

from __future__ import annotations

import ssl
import struct
from urllib.parse import quote, urlencode

import trio

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
UPGRADE = "kubetrio-stream"


def frame(channel: int, payload: bytes) -> bytes:
    """One frame on the agent connection."""
    return struct.pack(">BI", channel, len(payload)) + payload


class FrameReader:
    """Reads frames from a stream (with bytes already read past the HTTP head)."""

    def __init__(self, stream: trio.abc.Stream, initial: bytes = b"") -> None:
        self.stream = stream
        self.buffer = bytearray(initial)

    async def next(self) -> tuple[int, bytes] | None:
        """The next ``(channel, payload)``; None at end of input."""
        while True:
            if len(self.buffer) >= 5:
                channel, length = struct.unpack_from(">BI", self.buffer)
                if len(self.buffer) >= 5 + length:
                    payload = bytes(self.buffer[5 : 5 + length])
                    del self.buffer[: 5 + length]
                    return channel, payload
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
                data = b""
            if not data:
                return None
            self.buffer += data


class FramedPipe(trio.abc.HalfCloseableStream):
    """A byte pipe over frames, so a half-close crosses a connection that cannot
    half-close itself (TLS): data as channel-0 frames, EOF as a close frame."""

    def __init__(self, stream: trio.abc.Stream, initial: bytes = b"") -> None:
        self.stream = stream
        self.reader = FrameReader(stream, initial)
        self.ended = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one frame (nothing for empty data)."""
        if data:
            await self.stream.send_all(frame(STDIN, bytes(data)))

    async def send_eof(self) -> None:
        """Tell the other end no more data comes."""
        await self.stream.send_all(frame(CLOSE, bytes([STDIN])))

    async def wait_send_all_might_not_block(self) -> None:
        """As the underlying stream."""
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next frame's data; ``b""`` once the other end half-closed or went away."""
        while not self.ended:
            got = await self.reader.next()
            if got is None or got[0] == CLOSE:
                self.ended = True
                break
            if got[1]:
                return got[1]
        return b""

    async def aclose(self) -> None:
        """Close the connection."""
        await self.stream.aclose()


class AgentRefused(Exception):
    """The agent answered the upgrade with an error: ``(status, message)``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


async def open_agent_stream(
    endpoint: str,
    path: str,
    params: list[tuple[str, str]],
    token: str,
    tls: ssl.SSLContext | None = None,
) -> tuple[trio.abc.Stream, bytes]:
    """Connect to ``host:port`` (over TLS with ``tls``, the agent's certificate verified
    for ``host``), upgrade ``path``; return the stream and bytes past the 101.

    Raises :class:`AgentRefused` for a non-101 answer, ``OSError`` when unreachable or
    the agent's certificate does not verify.
    """
    host, _, port = endpoint.rpartition(":")
    stream: trio.abc.Stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    try:
        if tls is not None:
            # https_compatible: an agent closing without close_notify is a clean EOF.
            stream = trio.SSLStream(
                stream, tls, server_hostname=host.strip("[]"), https_compatible=True
            )
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:  # the certificate, mostly
                raise OSError(f"TLS handshake with the node agent failed: {exc.__cause__}") from exc
        target = quote(path) + ("?" + urlencode(params) if params else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: Upgrade\r\n"
            f"Upgrade: {UPGRADE}\r\nContent-Length: 0\r\n"
            + (f"Authorization: Bearer {token}\r\n" if token else "")
            + "\r\n"
        )
        await stream.send_all(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            more = await stream.receive_some(65536)
            if not more:
                raise AgentRefused(502, "the node agent closed the connection")
            data += more
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        if status != 101:
            with trio.move_on_after(2):
                while more := await stream.receive_some(65536):
                    rest += more
            raise AgentRefused(status, rest.decode(errors="replace").strip())
        return stream, rest
    except BaseException:
        await stream.aclose()
        raise
