"""The request/response shapes of the API server's handler, below both ends.

The HTTP server (:mod:`kubetrio.apiserver`) parses each request into a :class:`Request` and
sends the :class:`Response` its handler returns; the client's in-process transport
(:mod:`kubetrio.client`) builds the same :class:`Request` and awaits the same handler
without a socket. Keeping these shapes here, under both, is what lets a node agent use the
client without loading the API server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

__all__ = ["ChunkProducer", "Handler", "Request", "RequestHandler", "Response", "Upgrade"]


@dataclasses.dataclass
class Request:
    """One HTTP request, body read in full."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case; repeated headers joined with ``, ``."""
    body: bytes = b""
    remote: str = ""
    http_version: str = "1.1"

    def param(self, name: str, default: str = "") -> str:
        """The last value of a query parameter, or ``default``."""
        values = self.query.get(name)
        return values[-1] if values else default


Upgrade = Callable[[trio.abc.Stream, bytes], Awaitable[None]]
ChunkProducer = Callable[[trio.MemorySendChannel[bytes]], Awaitable[None]]
"""Sends body chunks into the channel; the response ends when it returns."""
"""Takes over a connection after a 101 answer: (stream, bytes already read past the request)."""


@dataclasses.dataclass
class Response:
    """What a handler answers."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stream: ChunkProducer | None = None
    """When set, the body is streamed with chunked encoding, one flush per chunk."""
    upgrade: Upgrade | None = None
    """When set (with status 101), the connection is handed over after the headers."""


Handler = Callable[[Request], Awaitable[Response]]


class RequestHandler(Protocol):
    """Anything that answers requests, such as the API server (``ApiServer.handle``)."""

    async def handle(self, request: Request) -> Response:
        """Answer one request."""
        ...
