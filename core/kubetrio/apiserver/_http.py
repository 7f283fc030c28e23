"""A small HTTP/1.1 server on trio and h11.

Why our own and not an ASGI server: the API server has to stream watch responses with a
flush per event, notice a watcher that went away while no event is due, and (for exec,
attach and port-forward) take over the raw connection after an ``Upgrade`` — SPDY/3.1
as well as WebSocket. ASGI has no way to hand over a connection for SPDY, and the
request/response core is small with h11 doing the parsing.

A handler is ``async def handler(request) -> Response``. A :class:`Response` carries a
body, or a ``stream`` producer (a coroutine function that sends chunks into a channel;
they go out with chunked encoding, one flush each), or an ``upgrade`` callable that
receives the raw stream after the status line is sent. Producers rather than async
generators: a producer runs as its own task, so it may open nurseries and cancel scopes,
which an async generator must not hold across a ``yield``.
"""

from __future__ import annotations

import http
import logging
import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

from kubetrio.handler import ChunkProducer, Handler, Request, Response

from ._connlimits import ConnectionGate, ServerLimits
from ._tls import accept_tls

log = logging.getLogger("kubetrio.apiserver.http")

MAX_BODY_BYTES = 3 * 1024 * 1024
"""Request bodies larger than this get 413, as kube-apiserver's limit for JSON bodies."""
MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
COALESCE_CHUNKS = 64
"""Most chunks of a streamed response (watch events) already waiting that are sent in
one write."""
LINGER = 0.5
"""Seconds an error answer's connection is drained before it is closed (Go's
``rstAvoidanceDelay``): closing with unread input resets the connection, and a client
still sending might never read the answer."""


def _header_safe(value: str) -> str:
    """A header value as printable ASCII: user text (warnings) may carry anything."""
    ascii_text = value.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in ascii_text)


def _reason(status: int) -> bytes:
    """The standard reason phrase of a status code (``409`` → ``Conflict``), as Go sends it.

    Clients show it: the Python client's ``ApiException`` reads ``(Conflict)``.
    """
    if status in _GO_PHRASES:
        return _GO_PHRASES[status]
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


_GO_PHRASES = {413: b"Request Entity Too Large", 422: b"Unprocessable Entity"}
"""Go's ``http.StatusText`` where newer Pythons renamed the phrase (RFC 9110 wording)."""


class _TooLarge(Exception):
    pass


class _Timeout(Exception):
    """The data for the next event did not come by the deadline."""


class _RequestTimeout(Exception):
    """A request not received in time (answered 408); the message says which part."""


class _Evicted(Exception):
    """The connection gave way, still in its headers, to a new one at the connection cap."""


class _Connection:
    """One client connection: a loop of request → handler → response."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        handler: Handler,
        remote: str,
        client_certificate: dict[str, Any] | None = None,
        *,
        gate: ConnectionGate | None = None,
        client: str = "",
    ) -> None:
        self.stream = stream
        self.handler = handler
        self.remote = remote
        self.client_certificate = client_certificate
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.gate = gate or ConnectionGate(ServerLimits())
        self.limits = self.gate.limits
        self.client = client
        """Whose in-flight requests these are: the remote address without the port."""
        self.accepted = trio.current_time()
        self.first = True

    async def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send_all(data)

    async def _next_event(
        self, deadline: float
    ) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next h11 event, reading as needed until ``deadline`` (trio's clock).

        :raises _Timeout: when its data has not all come by then.
        """
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_at(deadline):
                data = await self.stream.receive_some(READ_SIZE)
                self.h11.receive_data(bytes(data))
                continue
            raise _Timeout

    async def _next_request_started(self) -> bool:
        """Wait (at most the idle timeout) for the first byte of a kept-alive
        connection's next request; False when it did not come."""
        buffered, closed = self.h11.trailing_data
        if buffered or closed or self.h11.their_state is not h11.IDLE:
            return True  # sent already (pipelined), or the client closed
        with trio.move_on_after(self.limits.idle_timeout):
            self.h11.receive_data(bytes(await self.stream.receive_some(READ_SIZE)))
            return True
        return False

    async def _read_head(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA] | None:
        """The next request's head within the header deadline: counted from the accept
        for a connection's first request, from its first byte for a later one.

        None when the client sent nothing at all (closed without a word); 408 when it
        sent part of a request.
        """
        if self.first:
            start = self.accepted
        elif await self._next_request_started():
            start = trio.current_time()
        else:
            return None
        self.first = False
        timeout = self.limits.request_header_timeout
        with self.gate.reading_head():
            try:
                return await self._next_event(start + timeout)
            except _Timeout:
                if not self.h11.trailing_data[0]:
                    return None
                raise _RequestTimeout(
                    f"the request headers were not received within {timeout:g} s"
                ) from None
        raise _Evicted  # the gate cancelled the block to make room

    async def serve(self) -> None:
        try:
            while await self._one_exchange():
                self.h11.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        except h11.RemoteProtocolError as exc:
            with trio.move_on_after(1):  # a client that reads nothing gets no more time
                await self._refuse(exc.error_status_hint, f"bad HTTP request: {exc}")
            await _linger(self.stream)
        except _RequestTimeout as exc:
            # kube-apiserver's name for a slow request; 408 is the code for this one.
            with trio.move_on_after(1):
                await self._refuse(408, str(exc), reason="Timeout")
            await _linger(self.stream)
        except _Evicted:
            await _turn_away(self.stream, self.gate.too_many_connections())
        finally:
            with trio.move_on_after(1) as scope:
                scope.shield = True
                await self.stream.aclose()

    async def _refuse(self, status: int, message: str, **status_fields: Any) -> None:
        from ._status import status_body

        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = status_body(status, message, **status_fields)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        try:
            await self._send(
                h11.Response(status_code=status, headers=headers, reason=_reason(status))
            )
            await self._send(h11.Data(data=body))
            await self._send(h11.EndOfMessage())
        except Exception:  # the client is gone or the state machine is past repair
            pass

    async def _read_request(self) -> Request | None:
        event = await self._read_head()
        if event is None or isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            return None
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _TooLarge
        body = bytearray()
        body_timeout = self.limits.request_body_timeout
        body_deadline = trio.current_time() + body_timeout
        while True:
            try:
                part = await self._next_event(body_deadline)
            except _Timeout:
                raise _RequestTimeout(
                    f"the request body was not received within {body_timeout:g} s"
                ) from None
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY_BYTES:
                    raise _TooLarge
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        target = event.target.decode("latin-1")
        split = urlsplit(target)
        return Request(
            method=event.method.decode("ascii"),
            target=target,
            path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=bytes(body),
            remote=self.remote,
            client_certificate=self.client_certificate,
            http_version=event.http_version.decode("ascii"),
        )

    async def _one_exchange(self) -> bool:
        """Serve one request; return whether the connection can carry another."""
        try:
            request = await self._read_request()
        except _TooLarge:
            # kube-apiserver's words (limitedReadBody).
            await self._refuse(413, f"Request entity too large: limit is {MAX_BODY_BYTES}")
            return False
        if request is None:
            return False
        with self.gate.admit(request, self.client) as refused:
            if refused is not None:
                await self._respond(request, refused)
            else:
                await self._respond(request, await self._handle(request))
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def _handle(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            log.exception("handler failed on %s %s", request.method, request.target)
            from ._status import status_body

            return Response(status=500, body=status_body(500, "internal error"))

    async def _respond(self, request: Request, response: Response) -> None:
        headers = [(name, _header_safe(value)) for name, value in response.headers]
        if response.content_type is not None:
            headers.append(("content-type", response.content_type))
        if response.upgrade is not None:
            await self._send(
                h11.InformationalResponse(status_code=101, headers=headers, reason=_reason(101))
            )
            trailing, _ = self.h11.trailing_data
            await response.upgrade(self.stream, trailing)
            return
        if response.stream is None:
            headers.append(("content-length", str(len(response.body))))
            # One write for the whole response: fewer syscalls, one TCP segment when small.
            head = h11.Response(
                status_code=response.status, headers=headers, reason=_reason(response.status)
            )
            data = self.h11.send(head) or b""
            if request.method != "HEAD" and response.body:
                data += self.h11.send(h11.Data(data=response.body)) or b""
            data += self.h11.send(h11.EndOfMessage()) or b""
            await self.stream.send_all(data)
            return
        headers.append(("transfer-encoding", "chunked"))
        await self._send(
            h11.Response(
                status_code=response.status, headers=headers, reason=_reason(response.status)
            )
        )
        await self._stream_chunks(response.stream)

    async def _stream_chunks(self, producer: ChunkProducer) -> None:
        """Send what the producer makes until it returns or the client goes away."""
        send, receive = trio.open_memory_channel[bytes](16)

        async def produce() -> None:
            async with send:
                await producer(send)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_when_client_leaves, nursery.cancel_scope)
            nursery.start_soon(produce)
            async with receive:
                ended = False
                while not ended:
                    try:
                        parts = [await receive.receive()]
                    except trio.EndOfChannel:
                        break
                    # What the producer made meanwhile goes out in the same write: a
                    # watch gets a batch commit's events in a burst, and one TLS record
                    # and one send for all of them cost far less than one per event.
                    while len(parts) < COALESCE_CHUNKS:
                        try:
                            parts.append(receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                        except trio.EndOfChannel:
                            ended = True
                            break
                    data = b"".join(parts)
                    if data:
                        await self._send(h11.Data(data=data))
            await self._send(h11.EndOfMessage())
            nursery.cancel_scope.cancel()

    async def _cancel_when_client_leaves(self, scope: trio.CancelScope) -> None:
        # While streaming, the client sends nothing more (HTTP/1.1 without pipelining);
        # end of input means it closed the connection, so stop producing.
        # Bytes that do arrive (a next request sent early) go to h11, which keeps them
        # for the next cycle.
        try:
            while data := await self.stream.receive_some(READ_SIZE):
                self.h11.receive_data(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass
        scope.cancel()


async def serve_http(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    gate: ConnectionGate | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP/1.1 on ``host:port`` until cancelled; ``task_status`` gets the listeners.

    ``gate`` holds the deadlines and caps (:mod:`._connlimits`; default
    :class:`ServerLimits`' defaults) and counts what is open. With ``ssl_context``,
    HTTPS only (:mod:`._tls`).
    """
    gate = gate or ConnectionGate(ServerLimits())
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def on_connection(stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
            client, remote = str(peer[0]), f"{peer[0]}:{peer[1]}"
        except OSError:
            client = remote = ""
        try:
            if not gate.open_connection():
                await _turn_away(stream, gate.too_many_connections())
                return
            try:
                connection: trio.abc.Stream = stream
                certificate = None
                if ssl_context is not None:
                    if (accepted := await accept_tls(stream, ssl_context, remote)) is None:
                        return
                    connection, certificate = accepted
                await _Connection(
                    connection, handler, remote, certificate, gate=gate, client=client
                ).serve()
            finally:
                gate.close_connection()
        except Exception:
            # One broken exchange must never take the listener (and the server) down.
            log.exception("connection from %s failed", remote)

    await trio.serve_listeners(on_connection, listeners, task_status=task_status)


async def _turn_away(stream: trio.abc.Stream, response: Response) -> None:
    """Answer ``response`` to a connection before reading anything from it, and close it."""
    head = [f"HTTP/1.1 {response.status} {_reason(response.status).decode()}"]
    head += [f"{name}: {value}" for name, value in response.headers]
    head += [
        f"content-type: {response.content_type}",
        f"content-length: {len(response.body)}",
        "connection: close",
    ]
    data = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + response.body
    try:
        with trio.move_on_after(1):  # a client that reads nothing gets no more time
            await stream.send_all(data)
        await _linger(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()  # closes the socket even when cancelled


async def _linger(stream: trio.abc.Stream) -> None:
    """End our side of ``stream`` and drain the client's for up to :data:`LINGER`
    seconds, so that closing it does not reset the connection under an answer just sent."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with trio.move_on_after(LINGER):
        try:
            await stream.send_eof()
            while await stream.receive_some(READ_SIZE):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
