"""Container logs in the CRI format that kubelet and ``kubectl logs`` read.

Each line is ``<RFC3339Nano timestamp> <stream> <tag> <content>``: the stream is
``stdout`` or ``stderr``, the tag ``F`` for a full line and ``P`` for a part of a line
longer than the 16 KiB buffer (the rest follows on the next record). The agent copies a
container's pipes into the file as data arrives, so ``kubectl logs -f`` sees lines at once.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import trio

MAX_LINE = 16 * 1024


def timestamp(ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds in UTC, as containerd writes it."""
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def format_records(stream: str, data: bytes, *, final: bool) -> tuple[bytes, bytes]:
    """Turn buffered output into log records; return (records, unfinished rest).

    ``final`` flushes an unterminated last line as a full line (the stream ended).
    """
    out = bytearray()
    now = timestamp().encode()
    prefix_full = now + b" " + stream.encode() + b" F "
    prefix_part = now + b" " + stream.encode() + b" P "
    while True:
        newline = data.find(b"\n")
        if newline < 0:
            break
        line, data = data[:newline], data[newline + 1 :]
        while len(line) > MAX_LINE:
            out += prefix_part + line[:MAX_LINE] + b"\n"
            line = line[MAX_LINE:]
        out += prefix_full + line + b"\n"
    while len(data) > MAX_LINE:
        out += prefix_part + data[:MAX_LINE] + b"\n"
        data = data[MAX_LINE:]
    if final and data:
        out += prefix_full + data + b"\n"
        data = b""
    return bytes(out), data


class LogSink(Protocol):
    """Where log records go (a binary file or a :class:`RotatingLog`)."""

    def write(self, data: bytes, /) -> int:
        """Append records."""
        ...

    def flush(self) -> None:
        """Make written records visible to readers."""
        ...


class RotatingLog:
    """A CRI log file rotated by size, keeping at most ``max_files`` files in all.

    Rotation renames ``N.log`` to ``N.log.<UTC timestamp>`` and starts a new file, as
    kubelet's ``containerLogMaxSize``/``containerLogMaxFiles`` do; followers notice the
    file shrank and start from its beginning.
    """

    def __init__(self, path: str | Path, *, max_bytes: int, max_files: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_files = max(1, max_files)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115  # closed by close()
        self._size = self._file.tell()

    def write(self, data: bytes, /) -> int:
        """Append records, rotating first when they would pass the size limit."""
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        written = self._file.write(data)
        self._size += written
        return written

    def flush(self) -> None:
        """Flush to the file."""
        self._file.flush()

    def close(self) -> None:
        """Close the current file."""
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S.%f")
        os.rename(self.path, f"{self.path}.{stamp}")
        rotated = sorted(self.path.parent.glob(self.path.name + ".*"))
        for old in rotated[: max(0, len(rotated) - (self.max_files - 1))]:
            old.unlink(missing_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0


async def copy_to_log(
    source: trio.abc.ReceiveStream,
    stream: str,
    log: LogSink,
    tee: Callable[[str, bytes], None] | None = None,
) -> None:
    """Copy a pipe into the log file until the writer closes it; ``tee`` sees each chunk."""
    rest = b""
    async with source:
        while True:
            try:
                chunk = await source.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                chunk = b""  # OSError: a pty master reads EIO once the terminal closed
            if chunk and tee is not None:
                tee(stream, bytes(chunk))
            records, rest = format_records(stream, rest + chunk, final=not chunk)
            if records:
                log.write(records)
                log.flush()
            if not chunk:
                return


def parse_record(line: bytes) -> tuple[str, str, bool, bytes] | None:
    """Split a log record into (timestamp, stream, full?, content); None when malformed."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(), parts[1].decode(), parts[2] == b"F", content
