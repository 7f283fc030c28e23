"""Reading CRI log files for ``pods/log``: tail, since, timestamps, follow, byte limit."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from kubetrio.runtime import parse_log_record


def _since_cutoff(since_seconds: int | None, since_time: str = "") -> str:
    """The earliest record timestamp to show, in the records' own (sortable) format."""
    moment: datetime.datetime | None = None
    if since_seconds is not None:
        moment = datetime.datetime.fromtimestamp(time.time() - since_seconds, tz=datetime.UTC)
    elif since_time:
        moment = datetime.datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        moment = moment.astimezone(datetime.UTC)
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _render(line: bytes, *, timestamps: bool, cutoff: str) -> bytes:
    record = parse_log_record(line)
    if record is None:
        return b""
    stamp, _, full, content = record
    if cutoff and stamp < cutoff:
        return b""
    out = content + (b"\n" if full else b"")
    return (stamp.encode() + b" " + out) if timestamps else out


async def read_log(
    path: Path,
    *,
    follow: bool = False,
    still_running: Callable[[], bool] = lambda: False,
    tail_lines: int | None = None,
    since_seconds: int | None = None,
    since_time: str = "",
    timestamps: bool = False,
    limit_bytes: int | None = None,
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """Yield a container log's content; with ``follow``, keep going while it runs."""
    cutoff = _since_cutoff(since_seconds, since_time)
    sent = 0
    try:
        data = await trio.to_thread.run_sync(path.read_bytes)
    except FileNotFoundError:
        data = b""
    lines = data.splitlines(keepends=True)
    rest = b""
    if lines and not lines[-1].endswith(b"\n"):
        rest = lines.pop()
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    position = len(data) - len(rest)
    out = b"".join(_render(line, timestamps=timestamps, cutoff=cutoff) for line in lines)
    if limit_bytes is not None:
        out = out[:limit_bytes]
    if out:
        sent += len(out)
        yield out
    if not follow:
        return
    while True:
        size = os.path.getsize(path) if path.exists() else 0
        if size < position:
            position, rest = 0, b""  # rotated: the new file starts from empty
        if size > position:
            with open(path, "rb") as f:
                f.seek(position)
                chunk = f.read(size - position)
            position = size
            rest += chunk
            complete, _, rest = rest.rpartition(b"\n")
            if complete:
                out = b"".join(
                    _render(line + b"\n", timestamps=timestamps, cutoff=cutoff)
                    for line in complete.split(b"\n")
                )
                if limit_bytes is not None:
                    out = out[: max(limit_bytes - sent, 0)]
                if out:
                    sent += len(out)
                    yield out
                if limit_bytes is not None and sent >= limit_bytes:
                    return
        elif not still_running():
            return
        await trio.sleep(poll_interval)
