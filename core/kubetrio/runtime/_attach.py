"""A container's main process as ``pods/attach`` reaches it: its stdin, terminal and output.

A container with ``stdin: true`` reads a FIFO in its bundle; the runtime holds the FIFO's
write end, so what attach sessions send reaches the process. Without ``stdinOnce`` the
container also holds the FIFO open for writing itself and never sees end of input (as
upstream: stdin stays open across attach sessions); with ``stdinOnce`` the runtime's end
is the only writer and closing it, when the first session that wrote stdin ends, is the
process's EOF. A container with ``tty: true`` gets a pseudo-terminal from runc (its
master comes back over runc's console socket): input is written to the master, a resize
sets the master's window size (the kernel signals SIGWINCH to the foreground process
group), and the output is read from it.

Output is fanned out as it is copied into the CRI log: each session subscribes from the
moment it attaches (earlier output is in the log) until the container's output ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import termios
from collections.abc import AsyncIterator

import trio

OUTPUT_BUFFER = 512
"""Chunks (up to 64 KiB each) a session may fall behind before it is cut off."""


class ContainerIO:
    """The stdin writer, terminal and output subscribers of one container."""

    def __init__(self, *, tty: bool, stdin: bool, stdin_once: bool, writer: int = -1) -> None:
        self.tty = tty
        self._stdin = stdin
        self.stdin_once = stdin_once
        self._writer = trio.lowlevel.FdStream(writer) if writer >= 0 else None
        self._write_lock = trio.Lock()
        self._listeners: set[trio.MemorySendChannel[tuple[str, bytes]]] = set()
        self.output_ended = False
        self.stdin_closed = False

    @property
    def stdin(self) -> bool:
        """Whether the process has an input this runtime can write."""
        return self._stdin and self._writer is not None

    def publish(self, stream: str, data: bytes) -> None:
        """Hand a chunk of the container's output to every session attached now."""
        for listener in list(self._listeners):
            try:
                listener.send_nowait((stream, data))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                # A session that stopped reading must not hold the container back.
                self._listeners.discard(listener)
                listener.close()

    def end_output(self) -> None:
        """The container's output ended (it exited): every session's output ends."""
        self.output_ended = True
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def subscribe(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        """Output from now on, as ``(stream, bytes)``; closed when the output ends."""
        send, receive = trio.open_memory_channel[tuple[str, bytes]](OUTPUT_BUFFER)
        if self.output_ended:
            send.close()
        else:
            self._listeners.add(send)
        return receive

    def unsubscribe(self, receive: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        """Stop a session's output (its channel is closed)."""
        receive.close()

    async def write(self, data: bytes) -> None:
        """Write to the process's stdin (or terminal); dropped once stdin is closed."""
        async with self._write_lock:
            if not self.stdin or self.stdin_closed:
                return
            assert self._writer is not None
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self._writer.send_all(data)

    async def close_stdin(self) -> None:
        """End the process's input: EOF on the FIFO, or an end-of-file character on a tty."""
        async with self._write_lock:
            if not self.stdin or self.stdin_closed:
                return
            assert self._writer is not None
            self.stdin_closed = True
            if self.tty:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._writer.send_all(b"\x04")
            else:
                await self._writer.aclose()

    def resize(self, width: int, height: int) -> bool:
        """Set the terminal's size (tty containers); False when there is none."""
        if not self.tty or self._writer is None or width <= 0 or height <= 0:
            return False
        with contextlib.suppress(OSError, trio.ClosedResourceError):
            fd = self._writer.fileno()
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            return True
        return False

    async def aclose(self) -> None:
        """Release the writer (the container is being removed)."""
        self.end_output()
        if self._writer is not None:
            with contextlib.suppress(OSError):
                await self._writer.aclose()


class Attachment:
    """One ``pods/attach`` session: output from the moment of attaching, stdin, resize."""

    def __init__(self, io: ContainerIO, *, stdin: bool) -> None:
        self.io = io
        self.uses_stdin = stdin and io.stdin
        self.output = io.subscribe()

    @property
    def tty(self) -> bool:
        """Whether the container runs with a terminal (stdout and stderr are one)."""
        return self.io.tty

    async def write(self, data: bytes) -> None:
        """Send input to the process (only when the session asked for stdin)."""
        if self.uses_stdin:
            await self.io.write(data)

    async def end_input(self) -> None:
        """The client closed its stdin: with ``stdinOnce`` the process gets EOF."""
        if self.uses_stdin and self.io.stdin_once:
            await self.io.close_stdin()

    def resize(self, width: int, height: int) -> bool:
        """Resize the container's terminal."""
        return self.io.resize(width, height)


@contextlib.asynccontextmanager
async def attach_session(io: ContainerIO, *, stdin: bool) -> AsyncIterator[Attachment]:
    """Attach for the ``async with`` block; the end of a stdin session honours ``stdinOnce``."""
    session = Attachment(io, stdin=stdin)
    try:
        yield session
    finally:
        io.unsubscribe(session.output)
        with trio.CancelScope(shield=True):
            await session.end_input()


class TerminalOutput(trio.abc.ReceiveStream):
    """A pty master's output until the container exits.

    A master reads EIO whenever no process holds the terminal, which also happens for a
    moment while runc sets the container up: only after ``exited`` is EIO the end.
    """

    def __init__(self, fd: int, exited: trio.Event) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._exited = exited

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next output; ``b""`` once the container exited and the terminal is idle."""
        delay = 0.01
        while True:
            try:
                return bytes(await self._stream.receive_some(max_bytes))
            except trio.BrokenResourceError as exc:  # trio's wrapping of the EIO
                cause = exc.__cause__
                if not isinstance(cause, OSError) or cause.errno != errno.EIO:
                    return b""
                if self._exited.is_set():
                    return b""
            with trio.move_on_after(delay):
                await self._exited.wait()
            delay = min(delay * 2, 1.0)

    async def aclose(self) -> None:
        """Close the master."""
        await self._stream.aclose()


def open_stdin_fifo(path: str, *, stdin_once: bool) -> tuple[int, int]:
    """Make the stdin FIFO; return (the container's read end, the runtime's write end).

    The read end is blocking (the process shares it); without ``stdin_once`` it is opened
    read-write so the process never sees EOF, even while no agent holds the writer.
    """
    if not os.path.exists(path):
        os.mkfifo(path, 0o600)
    probe = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if stdin_once:
            reader = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a writer exists: no block
        else:
            reader = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    finally:
        os.close(probe)
    return reader, writer


def reopen_stdin_writer(path: str) -> int:
    """The runtime's write end again after an agent restart; -1 when nobody reads."""
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1


async def receive_console(listener: trio.socket.SocketType) -> int:
    """Accept runc's connection on the console socket; return the pty master it sends."""
    conn, _ = await listener.accept()
    with conn:
        fds: list[int] = []
        _, ancdata, _, _ = await conn.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("i")))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(data) // struct.calcsize("i")
                fds.extend(struct.unpack(f"{count}i", data[: count * struct.calcsize("i")]))
    if not fds:
        raise OSError("runc sent no terminal over the console socket")
    for extra in fds[1:]:
        os.close(extra)
    os.set_inheritable(fds[0], False)
    return fds[0]
