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
from typing import Any, Protocol

import trio

from kubetrio.providers import UserInfo

__all__ = [
    "BadQueryParameter",
    "ChunkProducer",
    "Handler",
    "Request",
    "RequestHandler",
    "Response",
    "Upgrade",
    "parse_bool",
]

TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class BadQueryParameter(ValueError):
    """A query parameter with a value of the wrong type (the server answers 400)."""


def parse_bool(name: str, value: str | None) -> bool:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it; None (absent) is
    false. The Python client's ``watch=True`` is true; ``yes`` is an error naming ``name``.

    apimachinery's own converter is laxer (anything but ``0``/``false`` is true); the
    strict reading turns a typo into a clear 400 instead of a silent ``true``, and no
    client sends a value outside these sets.
    """
    if value is None:
        return False
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise BadQueryParameter(
        f"invalid boolean value {value!r} for query parameter {name!r}: "
        "use true or false (1, t, T, TRUE, True; 0, f, F, FALSE, False)"
    )


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
    client_certificate: dict[str, Any] | None = None
    """The client certificate the TLS handshake verified (``getpeercert()`` form), if any."""
    http_version: str = "1.1"
    loopback: bool = False
    """Sent by the API server's own in-process loopback client (never set from a socket):
    the server's identity, allowed everything, as kube-apiserver's loopback client is."""
    user: UserInfo | None = None
    """Who an in-process caller acts as (never set from a socket): the cluster's own
    components (controllers, scheduler) carry their identity here instead of a credential,
    and the server authorizes them as that user."""

    def param(self, name: str, default: str = "") -> str:
        """The last value of a query parameter, or ``default``."""
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        """A boolean query parameter (``watch``, ``follow``, ``stdin``...); absent is false.

        :raises BadQueryParameter: when the value is not one :func:`parse_bool` takes.
        """
        values = self.query.get(name)
        return parse_bool(name, values[0] if values else None)  # the first counts, as upstream


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
