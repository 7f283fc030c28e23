"""The API server's end of ``pods/exec`` and ``pods/portforward``: client protocol ↔ agent.

The client speaks one of:

* WebSocket ``v5.channel.k8s.io`` / ``v4.channel.k8s.io`` (kubectl 1.30+, the Python
  client, lightkube, kr8s) for exec: a channel byte per binary message;
* SPDY/3.1 with ``X-Stream-Protocol-Version: v4.channel.k8s.io`` (kubectl 1.27-1.29 exec):
  one SPDY stream per channel;
* SPDY/3.1 ``portforward.k8s.io`` (every kubectl's port-forward; 1.31+ tunnels the SPDY
  bytes in WebSocket binary messages, subprotocol ``SPDY/3.1+portforward.k8s.io``): a
  data and an error stream per forwarded connection, paired by ``requestid``;
* WebSocket port-forward with ``?ports=`` (the Python client, kr8s): channels 2i/2i+1.

The agent always speaks :mod:`._agentwire`. The agent connection is made before the 101,
so a missing container or an unreachable port becomes a plain HTTP error.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kubetrio.handler import parse_bool

from ._agentwire import (
    CLOSE,
    RESIZE,
    STATUS,
    STDERR,
    STDIN,
    STDOUT,
    AgentRefused,
    FramedPipe,
    FrameReader,
    frame,
    open_agent_stream,
)
from ._spdy import SpdySession, SpdyStream
from ._websocket import WebSocket, WebSocketStream, accept_headers

log = logging.getLogger(__name__)

Upgrade = Callable[[trio.abc.Stream, bytes], Awaitable[None]]

CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
PORT_FORWARD = "portforward.k8s.io"


class StreamRefused(Exception):
    """The request cannot be upgraded: ``(status, message)`` for an HTTP error answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _offered(headers: dict[str, str], name: str) -> list[str]:
    return [p.strip() for p in headers.get(name, "").split(",") if p.strip()]


def exit_status(result: dict[str, Any] | None, command: list[str] | None = None) -> dict[str, Any]:
    """The Status that ends a remote command, from the agent's final frame.

    A non-zero exit reads as kubelet (through the CRI runtime) words it, the command
    printed as Go prints a ``[]string``.
    """
    if result is None:
        result = {"error": "the node agent closed the stream"}
    if "error" in result:
        return {
            "metadata": {},
            "status": "Failure",
            "message": str(result["error"]),
            "reason": "InternalError",
            "code": 500,
        }
    code = int(result.get("exitCode", 0))
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command or [])}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _agent(
    endpoint: str,
    path: str,
    params: list[tuple[str, str]],
    token: str,
    tls: ssl.SSLContext | None,
) -> Any:
    try:
        return await open_agent_stream(endpoint, path, params, token, tls)
    except AgentRefused as exc:
        raise StreamRefused(exc.status if exc.status < 500 else 502, exc.message) from exc
    except OSError as exc:
        raise StreamRefused(502, f"the node agent could not be reached: {exc}") from exc


# --- exec ---------------------------------------------------------------------------------


async def exec_upgrade(
    headers: dict[str, str],
    query: dict[str, list[str]],
    *,
    endpoint: str,
    path: str,
    token: str,
    tls: ssl.SSLContext | None = None,
) -> tuple[list[tuple[str, str]], Upgrade]:
    """Pick the protocol, open the agent stream (over TLS with ``tls``); return the 101
    headers and the relay."""
    flag = {
        k: parse_bool(k, query[k][0] if query.get(k) else None)
        for k in ("stdin", "stdout", "stderr", "tty")
    }
    if not (flag["stdin"] or flag["stdout"] or flag["stderr"]):
        raise StreamRefused(400, "you must specify at least 1 of stdin, stdout, stderr")
    command = list(query.get("command") or [])
    params = [("command", c) for c in command]
    params += [("stdin", "1" if flag["stdin"] else "0"), ("tty", "1" if flag["tty"] else "0")]
    upgrade = headers.get("upgrade", "").lower()
    if "websocket" in upgrade:
        offered = _offered(headers, "sec-websocket-protocol")
        protocol = next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
        if protocol is None:
            raise StreamRefused(400, f"none of the subprotocols {offered} is supported")
        agent, rest = await _agent(endpoint, path, params, token, tls)

        async def ws_relay(stream: trio.abc.Stream, initial: bytes) -> None:
            await _ws_exec(
                WebSocket(stream, initial),
                agent,
                rest,
                protocol == CHANNEL_PROTOCOLS[0],
                flag,
                command,
            )

        return accept_headers(headers.get("sec-websocket-key", ""), protocol), ws_relay
    if "spdy/3.1" in upgrade:
        versions = _offered(headers, "x-stream-protocol-version")
        if "v4.channel.k8s.io" not in versions:
            raise StreamRefused(400, f"unsupported stream protocol versions {versions}")
        agent, rest = await _agent(endpoint, path, params, token, tls)

        async def spdy_relay(stream: trio.abc.Stream, initial: bytes) -> None:
            await _spdy_exec(SpdySession(stream, initial), agent, rest, flag, command)

        return [
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ], spdy_relay
    raise StreamRefused(400, "upgrade to WebSocket or SPDY/3.1 is required")


async def _from_agent(
    reader: FrameReader, deliver: Callable[[int, bytes], Awaitable[None]]
) -> dict[str, Any] | None:
    """Hand output frames to ``deliver``; return the final status (None if cut short)."""
    while (item := await reader.next()) is not None:
        channel, payload = item
        if channel == STATUS:
            result: dict[str, Any] = json.loads(payload)
            return result
        await deliver(channel, payload)
    return None


def _wanted(flag: dict[str, bool]) -> set[int]:
    """The output channels the client asked for (a terminal has no separate stderr)."""
    wanted = {STDOUT} if flag["stdout"] else set()
    if flag["stderr"] and not flag["tty"]:
        wanted.add(STDERR)
    return wanted


async def _ws_exec(
    ws: WebSocket,
    agent: trio.abc.Stream,
    rest: bytes,
    v5: bool,
    flag: dict[str, bool],
    command: list[str],
) -> None:
    result: dict[str, Any] | None = None
    wanted = _wanted(flag)
    try:
        async with agent, trio.open_nursery() as nursery:

            async def from_client() -> None:
                while (message := await ws.receive()) is not None:
                    if not message:
                        continue
                    channel, payload = message[0], message[1:]
                    if channel in (STDIN, RESIZE):
                        await agent.send_all(frame(channel, payload))
                    elif channel == CLOSE and v5:
                        await agent.send_all(frame(CLOSE, payload[:1]))
                nursery.cancel_scope.cancel()  # the client left: dropping the agent ends it

            async def deliver(channel: int, payload: bytes) -> None:
                if channel in wanted:
                    await ws.send(bytes([channel]) + payload)

            nursery.start_soon(from_client)
            result = await _from_agent(FrameReader(agent, rest), deliver)
            nursery.cancel_scope.cancel()
        if not ws.closed:
            status = exit_status(result, command)
            await ws.send(bytes([STATUS]) + json.dumps(status).encode())
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
        log.debug("exec over WebSocket ended early: %s", exc)
    finally:
        await ws.close(1000)


async def _spdy_exec(
    session: SpdySession,
    agent: trio.abc.Stream,
    rest: bytes,
    flag: dict[str, bool],
    command: list[str],
) -> None:
    expected = {"error"}
    expected |= {name for name in ("stdin", "stdout") if flag[name]}
    if flag["stderr"] and not flag["tty"]:
        expected.add("stderr")
    if flag["tty"]:
        expected.add("resize")
    streams: dict[str, SpdyStream] = {}
    try:
        async with agent, trio.open_nursery() as outer:
            outer.start_soon(session.run)
            with trio.move_on_after(30):
                while not expected <= streams.keys():
                    accepted = await session.accept()
                    if accepted is None:
                        break
                    streams[accepted.header("streamtype")] = accepted
            if not expected <= streams.keys():
                outer.cancel_scope.cancel()
                return
            result: dict[str, Any] | None = None
            sending = trio.Lock()  # stdin and resize arrive on two streams at once

            async def to_agent(channel: int, payload: bytes) -> None:
                async with sending:
                    await agent.send_all(frame(channel, payload))

            async with trio.open_nursery() as nursery:

                async def stdin(s: SpdyStream) -> None:
                    while data := await s.receive():
                        await to_agent(STDIN, data)
                    await to_agent(CLOSE, bytes([STDIN]))

                async def resize(s: SpdyStream) -> None:
                    decoder, buffer = json.JSONDecoder(), ""
                    while data := await s.receive():
                        buffer += data.decode(errors="replace")
                        while buffer.strip():
                            try:
                                size, end = decoder.raw_decode(buffer.lstrip())
                            except ValueError:
                                break
                            buffer = buffer.lstrip()[end:]
                            await to_agent(RESIZE, json.dumps(size).encode())

                async def left() -> None:
                    await session.closed.wait()
                    nursery.cancel_scope.cancel()

                async def deliver(channel: int, payload: bytes) -> None:
                    target = streams.get("stdout" if channel == STDOUT else "stderr")
                    if channel in (STDOUT, STDERR) and target is not None:
                        await target.send(payload)

                if "stdin" in streams:
                    nursery.start_soon(stdin, streams["stdin"])
                if "resize" in streams:
                    nursery.start_soon(resize, streams["resize"])
                nursery.start_soon(left)
                result = await _from_agent(FrameReader(agent, rest), deliver)
                nursery.cancel_scope.cancel()
            if not session.closed.is_set():
                for name in ("stdout", "stderr"):
                    if name in streams:
                        await streams[name].close()
                status = json.dumps(exit_status(result, command)).encode()
                await streams["error"].send(status, fin=True)
                # The client closes the connection once it has read everything.
                with trio.move_on_after(5):
                    await session.closed.wait()
            outer.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
        log.debug("exec over SPDY ended early: %s", exc)
    finally:
        await session.stream.aclose()


# --- port-forward -------------------------------------------------------------------------


async def port_forward_upgrade(
    headers: dict[str, str],
    query: dict[str, list[str]],
    *,
    endpoint: str,
    path: str,
    token: str,
    tls: ssl.SSLContext | None = None,
) -> tuple[list[tuple[str, str]], Upgrade]:
    """Pick the protocol for a port-forward; return the 101 headers and the relay."""
    upgrade = headers.get("upgrade", "").lower()

    async def connect(port: int) -> tuple[trio.abc.HalfCloseableStream, bytes]:
        stream, rest = await open_agent_stream(endpoint, path, [("port", str(port))], token, tls)
        return FramedPipe(stream, rest), b""

    if "websocket" in upgrade:
        offered = _offered(headers, "sec-websocket-protocol")
        key = headers.get("sec-websocket-key", "")
        if SPDY_TUNNEL in offered:

            async def tunnel(stream: trio.abc.Stream, initial: bytes) -> None:
                ws = WebSocket(stream, initial)
                await _spdy_port_forward(SpdySession(WebSocketStream(ws)), connect)

            return accept_headers(key, SPDY_TUNNEL), tunnel
        try:
            ports = [int(p) for p in ",".join(query.get("ports") or []).split(",") if p]
        except ValueError as exc:
            raise StreamRefused(400, f"invalid port: {exc}") from exc
        if not ports or not all(0 < p < 65536 for p in ports):
            raise StreamRefused(400, "query parameter ports is required")
        protocol = next((p for p in offered if p in CHANNEL_PROTOCOLS[::-1]), None)

        async def channels(stream: trio.abc.Stream, initial: bytes) -> None:
            await _ws_port_forward(WebSocket(stream, initial), ports, connect)

        return accept_headers(key, protocol), channels
    if "spdy/3.1" in upgrade:
        versions = _offered(headers, "x-stream-protocol-version")
        if versions and PORT_FORWARD not in versions:
            raise StreamRefused(400, f"unsupported stream protocol versions {versions}")

        async def spdy(stream: trio.abc.Stream, initial: bytes) -> None:
            await _spdy_port_forward(SpdySession(stream, initial), connect)

        return [
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", PORT_FORWARD),
        ], spdy
    raise StreamRefused(400, "upgrade to WebSocket or SPDY/3.1 is required")


Connect = Callable[[int], Awaitable[tuple[trio.abc.HalfCloseableStream, bytes]]]


async def _spdy_port_forward(session: SpdySession, connect: Connect) -> None:
    pending: dict[str, dict[str, SpdyStream]] = {}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            while (s := await session.accept()) is not None:
                pair = pending.setdefault(s.header("requestid"), {})
                pair[s.header("streamtype")] = s
                if "data" in pair and "error" in pair:
                    del pending[s.header("requestid")]
                    nursery.start_soon(_forward_pair, pair["data"], pair["error"], connect)
            nursery.cancel_scope.cancel()
    finally:
        await session.stream.aclose()


async def _forward_pair(data: SpdyStream, error: SpdyStream, connect: Connect) -> None:
    try:
        port = int(data.header("port"))
        agent, rest = await connect(port)
    except (ValueError, AgentRefused, OSError) as exc:
        message = exc.message if isinstance(exc, AgentRefused) else str(exc)
        try:
            await error.send(message.encode(), fin=True)
            await data.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return
    try:
        async with agent:

            async def up() -> None:
                while chunk := await data.receive():
                    await agent.send_all(chunk)
                await agent.send_eof()

            async def down() -> None:
                if rest:
                    await data.send(rest)
                while chunk := await agent.receive_some(65536):
                    await data.send(bytes(chunk))
                await data.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(up)
                nursery.start_soon(down)
        await error.close()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass


async def _ws_port_forward(ws: WebSocket, ports: list[int], connect: Connect) -> None:
    try:
        for i, port in enumerate(ports):
            prefix = bytes([port & 0xFF, port >> 8])
            await ws.send(bytes([2 * i]) + prefix)
            await ws.send(bytes([2 * i + 1]) + prefix)
        agents: dict[int, trio.abc.HalfCloseableStream] = {}
        async with trio.open_nursery() as nursery:

            async def down(i: int) -> None:
                try:
                    agent, rest = await connect(ports[i])
                except (AgentRefused, OSError) as exc:
                    message = exc.message if isinstance(exc, AgentRefused) else str(exc)
                    ready[i].set()
                    await ws.send(bytes([2 * i + 1]) + message.encode())
                    return
                agents[i] = agent
                ready[i].set()
                if rest:
                    await ws.send(bytes([2 * i]) + rest)
                while chunk := await agent.receive_some(65536):
                    await ws.send(bytes([2 * i]) + chunk)

            ready = [trio.Event() for _ in ports]

            async def up() -> None:
                while (message := await ws.receive()) is not None:
                    if not message or message[0] % 2 or message[0] // 2 >= len(ports):
                        continue
                    i = message[0] // 2
                    await ready[i].wait()
                    if i in agents:
                        await agents[i].send_all(message[1:])
                nursery.cancel_scope.cancel()

            nursery.start_soon(up)
            async with trio.open_nursery() as downs:
                for i in range(len(ports)):
                    downs.start_soon(down, i)
            nursery.cancel_scope.cancel()
        for agent in agents.values():
            await agent.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
        pass
    finally:
        await ws.close(1000)
