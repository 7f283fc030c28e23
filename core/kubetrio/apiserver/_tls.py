"""HTTPS for the API server: the TLS handshake on an accepted connection.

What a connection carries after the handshake is the same HTTP/1.1 as without TLS; the
verified client certificate (if one was sent) goes with every request of the connection
to the authenticators. A plain HTTP request to the TLS port is answered as Go's
``net/http`` answers it: ``400`` and "Client sent an HTTP request to an HTTPS server."
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import trio

log = logging.getLogger("kubetrio.apiserver.tls")

HANDSHAKE_TIMEOUT = 10.0
"""A client that has not finished the handshake by then is dropped (as Go's default)."""
_TLS_HANDSHAKE = 0x16
"""The content type of a TLS record that starts a handshake: the first byte a client sends."""
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
"""Go's answer (``net/http``) to plain HTTP on a TLS port, byte for byte."""


class _Replayed(trio.abc.Stream):
    """A stream whose first bytes were already read: they are received again first."""

    def __init__(self, stream: trio.abc.Stream, head: bytes) -> None:
        self.stream = stream
        self.head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.head:
            head, self.head = self.head, b""
            await trio.lowlevel.checkpoint()
            return head
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def accept_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, remote: str
) -> tuple[trio.SSLStream[trio.abc.Stream], dict[str, Any] | None] | None:
    """The TLS stream over ``stream`` after a handshake, and the client's verified
    certificate (``getpeercert()`` form; None when it sent none). None when there is no
    TLS connection: plain HTTP (answered with 400), a failed handshake (a certificate
    that does not verify), a client that went away or took too long; ``stream`` is
    closed then."""
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        try:
            head = await stream.receive_some(4096)
            if head and head[0] != _TLS_HANDSHAKE:
                await stream.send_all(PLAIN_HTTP_ANSWER)
            elif head:
                tls: trio.SSLStream[trio.abc.Stream] = trio.SSLStream(
                    _Replayed(stream, bytes(head)),
                    context,
                    server_side=True,
                    https_compatible=True,
                )
                await tls.do_handshake()
                return tls, tls.getpeercert() or None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", remote, exc.__cause__ or exc)
    with trio.move_on_after(1) as scope:
        scope.shield = True
        await stream.aclose()
    return None
