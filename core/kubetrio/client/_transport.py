"""How requests reach the API server: in the same process, or over HTTP.

Both transports take the same request shape and give back status, headers and either a
body or a stream of body chunks, so everything above them (paths, errors, watches) is
written once. The in-process transport calls the server's handler directly (a
:class:`~kubetrio.handler.RequestHandler`, such as the API server): the
request goes through the very same authentication, admission and validation as over
HTTP, without a socket.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol
from urllib.parse import urlencode

import httpx
import trio

import kubetrio
from kubetrio.handler import ChunkProducer, Request, RequestHandler
from kubetrio.providers import UserInfo

from ._errors import leaf_errors

USER_AGENT = f"kubetrio/{kubetrio.__version__} (linux) kubernetes/{kubetrio.KUBERNETES_GIT_VERSION}"
"""As client-go's ``<program>/<version> (<os>) kubernetes/<release>``: what audit logs show."""


@dataclasses.dataclass
class RawResponse:
    """A response as the transports return it."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


class Transport(Protocol):
    """Carries one request to the API server."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes,
        content_type: str,
    ) -> RawResponse:
        """Send a request and read the whole response."""
        ...

    def stream(
        self, method: str, path: str, *, query: Mapping[str, str]
    ) -> AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]]:
        """Send a request and yield (status, body chunks) while the response streams."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class InProcessTransport:
    """Calls the API server's handler directly: no sockets, same semantics."""

    def __init__(
        self,
        server: RequestHandler,
        *,
        token: str = "",
        loopback: bool = False,
        user: UserInfo | None = None,
    ) -> None:
        self.server = server
        self.loopback = loopback
        self.user = user
        self.headers = {"user-agent": USER_AGENT}
        if token:
            self.headers["authorization"] = f"Bearer {token}"

    def _request(
        self, method: str, path: str, query: Mapping[str, str], body: bytes, content_type: str
    ) -> Request:
        encoded = urlencode(query)
        headers = dict(self.headers)
        if body:
            headers["content-type"] = content_type
        return Request(
            method=method,
            target=f"{path}?{encoded}" if encoded else path,
            path=path,
            # What parsing ``encoded`` back would give, without the parse: the
            # cluster's own controllers make every request through here.
            query={name: [str(value)] for name, value in query.items()},
            headers=headers,
            body=body,
            remote="in-process",
            loopback=self.loopback,
            user=self.user,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> RawResponse:
        response = await self.server.handle(self._request(method, path, query, body, content_type))
        if response.stream is not None:  # a stream asked for as a whole: collect it
            send, receive = trio.open_memory_channel[bytes](16)
            parts: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_produce, response.stream, send)
                async with receive:
                    parts.extend([chunk async for chunk in receive])
            return RawResponse(response.status, dict(response.headers), b"".join(parts))
        return RawResponse(response.status, dict(response.headers), response.body)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, query: Mapping[str, str]
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        response = await self.server.handle(self._request(method, path, query, b"", ""))
        if response.stream is None:

            async def whole() -> AsyncIterator[bytes]:
                yield response.body

            yield response.status, whole()
            return
        send, receive = trio.open_memory_channel[bytes](16)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_produce, response.stream, send)
                async with receive:
                    yield response.status, receive.__aiter__()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The consumer's own error (a ClientError for an ERROR event, say) crossed the
            # producer's nursery and came out grouped; callers expect it as it was raised,
            # exactly as over HTTP.
            raise _sole_error(group) from None

    async def aclose(self) -> None:
        return None


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group carries (however nested), or the group itself."""
    leaves = leaf_errors(group)
    return leaves[0] if len(leaves) == 1 else group


async def _produce(producer: ChunkProducer, send: trio.MemorySendChannel[bytes]) -> None:
    async with send:
        await producer(send)


class HttpTransport:
    """Talks to an API server over HTTP with httpx (trio-compatible through anyio)."""

    def __init__(
        self, base_url: str, *, token: str = "", verify: bool | str | ssl.SSLContext = True
    ) -> None:
        headers = {"user-agent": USER_AGENT}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.client = httpx.AsyncClient(
            base_url=base_url, headers=headers, verify=verify, timeout=httpx.Timeout(60.0)
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> RawResponse:
        headers = {"content-type": content_type} if body else {}
        response = await self.client.request(
            method, path, params=dict(query), content=body or None, headers=headers
        )
        return RawResponse(response.status_code, dict(response.headers), response.content)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, query: Mapping[str, str]
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        timeout = httpx.Timeout(60.0, read=None)  # a watch may be idle for long
        async with self.client.stream(method, path, params=dict(query), timeout=timeout) as r:
            if r.status_code >= 400:
                await r.aread()

                async def whole() -> AsyncIterator[bytes]:
                    yield r.content

                yield r.status_code, whole()
                return
            yield r.status_code, r.aiter_bytes()

    async def aclose(self) -> None:
        await self.client.aclose()
