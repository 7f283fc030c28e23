"""The agent's end of ``pods/exec`` (``runc exec``) and ``pods/attach`` (the runtime's
attach sessions), relayed over the agent stream protocol.

The API server speaks the client's protocol (WebSocket channels or SPDY) and relays to
this endpoint in the framing of :mod:`kubetrio.streams._agentwire`. Without a TTY the
process gets pipes (stdin EOF closes its pipe); with one, runc gets a pty pair of ours
as its terminal: runc puts it in raw mode and copies it to the container's console, and
a resize sets our pty's size and sends runc SIGWINCH, on which runc copies the size in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from ..streams._agentwire import CLOSE, RESIZE, STATUS, STDERR, STDIN, STDOUT, FrameReader, frame

if TYPE_CHECKING:
    from ._agent import NodeAgent

SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: kubetrio-stream\r\n\r\n"
)


def http_error(status: int, message: str) -> bytes:
    """A whole plain-text HTTP error answer that ends the connection."""
    body = message.encode()
    return (
        f"HTTP/1.1 {status} Error\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def find_pod(agent: NodeAgent, namespace: str, name: str) -> Any:
    """The pod worker of ``namespace/name``; LookupError when this node has none."""
    for worker in agent.workers.values():
        if worker.name == name and worker.namespace == namespace:
            return worker
    raise LookupError(f'pod "{name}" not found on this node')


def running_container(agent: NodeAgent, namespace: str, name: str, container: str) -> str:
    """The runtime id of a running container; LookupError or ValueError explain why not."""
    worker = find_pod(agent, namespace, name)
    records = worker.records + worker.init_records + worker.ephemeral_records
    if not container and len(worker.records) == 1:
        container = worker.records[0].name
    record = next((r for r in records if r.name == container), None)
    if record is None:
        raise LookupError(f"container {container} is not valid for pod {name}")
    if not record.container_id or "running" not in record.state:
        raise ValueError(f"container {container} is not running")
    return str(record.container_id)


def _set_size(fd: int, payload: bytes) -> bool:
    try:
        size = json.loads(payload)
        width, height = int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, TypeError, AttributeError):
        return False
    if width <= 0 or height <= 0:
        return False
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    return True


async def serve_exec(
    agent: NodeAgent,
    stream: trio.abc.Stream,
    initial: bytes,
    namespace: str,
    pod: str,
    container: str,
    query: dict[str, list[str]],
) -> None:
    """Answer one exec upgrade: run the command, relay its stdio, end with the exit code."""
    command = query.get("command") or []
    tty, stdin = _wire_flag(query, "tty"), _wire_flag(query, "stdin")
    try:
        container_id = running_container(agent, namespace, pod, container)
        if not command:
            raise ValueError("you must specify at least one command for the container")
    except LookupError as exc:
        await stream.send_all(http_error(404, str(exc.args[0])))
        return
    except ValueError as exc:
        await stream.send_all(http_error(400, str(exc)))
        return
    runtime: Any = agent.runtime
    argv = runtime.exec_command(container_id, command, tty=tty)
    await stream.send_all(SWITCHING)
    lock = trio.Lock()

    async def send(channel: int, payload: bytes) -> None:
        async with lock:
            await stream.send_all(frame(channel, payload))

    reader = FrameReader(stream, initial)
    early: list[tuple[int, bytes]] = []
    if tty:
        master, slave = os.openpty()
        # kubectl sends the terminal size right after the upgrade; starting the process
        # with it (rather than 0x0 and a resize a moment later) matters to full-screen
        # programs. Anything else arriving meanwhile is replayed afterwards. The wait is
        # generous because a loaded machine delays kubectl (1 s was seen to be too short).
        with trio.move_on_after(3):
            while (item := await reader.next()) is not None:
                if item[0] == RESIZE and _set_size(master, item[1]):
                    break
                early.append(item)
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=slave, stdout=slave, stderr=slave
            )
        finally:
            os.close(slave)
        outputs: list[tuple[trio.abc.ReceiveStream, int]] = []
        pty_master = trio.lowlevel.FdStream(master)
        terminal: trio.lowlevel.FdStream | None = pty_master
        outputs.append((pty_master, STDOUT))
    else:
        terminal = None
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        outputs = [(process.stdout, STDOUT), (process.stderr, STDERR)]

    async def pump(source: trio.abc.ReceiveStream, channel: int) -> None:
        try:
            while data := await source.receive_some(65536):
                await send(channel, bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # a pty master reads EIO once the last slave holder exited

    async def incoming() -> AsyncIterator[tuple[int, bytes]]:
        for buffered in early:
            yield buffered
        while (item := await reader.next()) is not None:
            yield item

    async def from_api() -> None:
        async for channel, payload in incoming():
            try:
                if channel == STDIN:
                    if terminal is not None:
                        await terminal.send_all(payload)
                    elif process.stdin is not None:
                        await process.stdin.send_all(payload)
                elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                    if terminal is not None:
                        await terminal.send_all(b"\x04")  # end of input on a terminal
                    elif process.stdin is not None:
                        await process.stdin.aclose()
                elif (
                    channel == RESIZE
                    and terminal is not None
                    and _set_size(terminal.fileno(), payload)
                ):
                    process.send_signal(signal.SIGWINCH)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the process stopped reading; its exit code still comes
        process.kill()  # the API server went away: nobody is left to talk to

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(from_api)
            async with trio.open_nursery() as pumps:
                for source, channel in outputs:
                    pumps.start_soon(pump, source, channel)
                code = await process.wait()
                # Output still in flight drains; a background child holding the pipes
                # open must not hold the exit back forever.
                pumps.cancel_scope.deadline = trio.current_time() + 2
            await send(STATUS, json.dumps({"exitCode": code}).encode())
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            if terminal is not None:
                await terminal.aclose()


async def serve_attach(
    agent: NodeAgent,
    stream: trio.abc.Stream,
    initial: bytes,
    namespace: str,
    pod: str,
    container: str,
    query: dict[str, list[str]],
) -> None:
    """Answer one attach upgrade: the main process's output from now on, and its stdin.

    Input reaches the process when the container has ``stdin: true`` and the client asked
    for stdin; the client closing its stdin (or leaving) ends the process's input when the
    container has ``stdinOnce``. A resize sets a ``tty`` container's terminal size. The
    session ends, with success, when the container's output ends (it exited).
    """
    stdin = _wire_flag(query, "stdin")
    async with contextlib.AsyncExitStack() as stack:
        try:
            container_id = running_container(agent, namespace, pod, container)
            runtime: Any = agent.runtime
            session = await stack.enter_async_context(runtime.attach(container_id, stdin=stdin))
        except LookupError as exc:
            await stream.send_all(http_error(404, str(exc.args[0])))
            return
        except ValueError as exc:
            await stream.send_all(http_error(400, str(exc)))
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.send_all(SWITCHING)
            await _relay_attach(session, stream, initial)


async def _relay_attach(session: Any, stream: trio.abc.Stream, initial: bytes) -> None:
    lock = trio.Lock()

    async def send(channel: int, payload: bytes) -> None:
        async with lock:
            await stream.send_all(frame(channel, payload))

    async with trio.open_nursery() as nursery:

        async def from_api() -> None:
            reader = FrameReader(stream, initial)
            while (item := await reader.next()) is not None:
                channel, payload = item
                if channel == STDIN:
                    await session.write(payload)
                elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                    await session.end_input()
                elif channel == RESIZE:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        size = json.loads(payload)
                        session.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
            nursery.cancel_scope.cancel()  # the API server went away

        nursery.start_soon(from_api)
        async for name, chunk in session.output:
            await send(STDERR if name == "stderr" and not session.tty else STDOUT, chunk)
        if session.io.output_ended:
            await send(STATUS, json.dumps({"exitCode": 0}).encode())
        else:  # the runtime cut this session off: it fell too far behind the output
            error = "the attach session fell behind the container's output"
            await send(STATUS, json.dumps({"error": error}).encode())
        nursery.cancel_scope.cancel()


def _wire_flag(query: dict[str, list[str]], name: str) -> bool:
    """A flag as the API server's bridge spells it to the agent (``1``/``0``); the
    client's own spelling was checked by the API server."""
    return (query.get(name) or ["0"])[-1] in ("1", "true")
