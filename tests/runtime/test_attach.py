"""A container's stdin FIFO and output fan-out (``pods/attach``), without a container."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from kubetrio.runtime._attach import ContainerIO, attach_session, open_stdin_fifo


async def _read_all(fd: int) -> bytes:
    stream = trio.lowlevel.FdStream(fd)
    data = b""
    async with stream:
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_stdin_once_ends_input_when_the_first_session_ends(tmp_path: Path) -> None:
    reader, writer = open_stdin_fifo(str(tmp_path / "stdin.fifo"), stdin_once=True)
    io = ContainerIO(tty=False, stdin=True, stdin_once=True, writer=writer)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def process() -> None:  # the container's side: read to EOF
                received.append(await _read_all(reader))

            nursery.start_soon(process)
            async with attach_session(io, stdin=True) as session:
                await session.write(b"hello\n")
            # The session ended: the process sees EOF; later writes go nowhere.
        assert received == [b"hello\n"]
        await io.write(b"dropped")
    await io.aclose()


async def test_stdin_stays_open_without_stdin_once(tmp_path: Path) -> None:
    reader, writer = open_stdin_fifo(str(tmp_path / "stdin.fifo"), stdin_once=False)
    io = ContainerIO(tty=False, stdin=True, stdin_once=False, writer=writer)
    async with attach_session(io, stdin=True) as first:
        await first.write(b"one\n")
        await first.end_input()  # the client closed its stdin: not the process's
    async with attach_session(io, stdin=True) as second:
        await second.write(b"two\n")
    assert os.read(reader, 100) == b"one\ntwo\n"
    await io.aclose()
    os.set_blocking(reader, False)
    # The container holds the FIFO read-write itself: no EOF even with our end closed.
    try:
        os.read(reader, 100)
        raise AssertionError("read should block, not see EOF")
    except BlockingIOError:
        pass
    os.close(reader)


async def test_output_reaches_sessions_attached_from_then_on() -> None:
    io = ContainerIO(tty=False, stdin=False, stdin_once=False)
    io.publish("stdout", b"before anyone attached\n")
    async with attach_session(io, stdin=True) as session:
        assert not session.uses_stdin  # the container has no stdin
        io.publish("stdout", b"out\n")
        io.publish("stderr", b"err\n")
        io.end_output()
        got = [item async for item in session.output]
    assert got == [("stdout", b"out\n"), ("stderr", b"err\n")]
    async with attach_session(io, stdin=False) as late:
        assert [item async for item in late.output] == []  # output already ended
