"""SQLite durability: acknowledged writes survive SIGKILL at random points, 50 times over."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from kubetrio.store import open_sqlite_store

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = 50


def _run_and_kill(db: Path, seed: int, delay: float) -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    chunks: list[bytes] = []
    try:
        assert proc.stdout is not None
        stdout = proc.stdout
        ready = stdout.readline()
        assert ready == b"R\n", proc.stderr.read() if proc.stderr else ready
        # Wait for the first acknowledgement, so the random delay counts from writes that
        # really happen (on a loaded machine the child may take a while to get going).
        chunks.append(stdout.readline())
        # Drain stdout while the child runs, so it never blocks on a full pipe and the
        # kill lands while it is really writing.
        reader = threading.Thread(target=lambda: chunks.append(stdout.read()))
        reader.start()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        reader.join(10)
        out = b"".join(chunks)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    # A line cut by the kill was not acknowledged (os.write of a short line is atomic,
    # but be strict anyway): only complete lines count.
    return [line.split(" ") for line in out.decode().split("\n")[:-1]]


Row = tuple[int, int, bytes] | None


def _latest(conn: sqlite3.Connection, key: str) -> Row:
    row: Row = conn.execute(
        "SELECT id, deleted, value FROM log WHERE name = ? ORDER BY id DESC LIMIT 1",
        (key.encode(),),
    ).fetchone()
    return row


def _check(db: Path, acks: list[list[str]], observed: dict[str, Row]) -> int:
    """Check one round's acknowledgements right after its kill; record what was seen."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (revision,) = conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
        last: dict[str, list[str]] = {}
        for ack in acks:
            last[ack[1]] = ack
            assert int(ack[2]) <= revision, f"acknowledged revision {ack} beyond {revision}"
        for key, ack in last.items():
            row = observed[key] = _latest(conn, key)
            rev = int(ack[2])
            if ack[0] == "D":
                # Gone, or its tombstone is still there (keys are never re-created).
                assert row is None or (row[1] == 1 and row[0] >= rev), (ack, row)
                continue
            assert row is not None, f"acknowledged {ack} lost"
            # Either exactly the acknowledged version, or a later write of the same writer
            # that committed but was not acknowledged before the kill.
            assert row[0] >= rev, (ack, row)
            if row[0] == rev:
                assert (row[1], row[2]) == (0, ack[3].encode()), (ack, row)
        return int(revision)
    finally:
        conn.close()


def _check_unchanged(db: Path, observed: dict[str, Row]) -> None:
    """Later rounds never touch earlier keys: live ones must be exactly as seen."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for key, seen in observed.items():
            now = _latest(conn, key)
            if seen is not None and seen[1] == 0:
                assert now == seen, (key, seen, now)
            else:  # deleted: the tombstone may since have been compacted away
                assert now is None or now == seen, (key, seen, now)
    finally:
        conn.close()


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random(42)
    observed: dict[str, Row] = {}
    n_acks = 0
    previous = 0
    for round_ in range(ROUNDS):
        acks = _run_and_kill(db, round_, rng.uniform(0.02, 0.3))
        assert acks, "the child acknowledged nothing before the kill"
        # Revisions keep increasing across crashes: recovery never reuses one.
        assert min(int(a[2]) for a in acks) > previous
        previous = _check(db, acks, observed)
        n_acks += len(acks)
    _check_unchanged(db, observed)
    assert n_acks > ROUNDS * 20

    async def reopen() -> None:
        with trio.fail_after(20):
            async with open_sqlite_store(db) as store:
                assert await store.current_revision() == previous
                kv = await store.create("/after/crashes", b"ok")
                assert kv.mod_revision == previous + 1

    trio.run(reopen)
    assert not any(p.name.endswith("-journal") for p in tmp_path.iterdir())
    os.sync()
