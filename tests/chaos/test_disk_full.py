"""Disk full under the SQLite store: refused writes, readable data, recovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.kit import report
from tests.chaos.scenarios import disk_full


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")
async def test_a_full_disk_refuses_writes_with_a_5xx_and_nothing_breaks(tmp_path: Path) -> None:
    figures = report("disk_full", **await disk_full(tmp_path))
    # Writes that cannot be stored are answered (no hang) with a 5xx saying why.
    assert figures["refused_statuses"] and all(int(c) >= 500 for c in figures["refused_statuses"])
    assert "full" in figures["refused_message"], figures["refused_message"]
    # The server stays up and keeps serving reads; the database is intact.
    assert figures["server_alive_when_full"]
    assert figures["reads_work_when_full"]
    assert figures["integrity_when_full"] == "ok"
    assert figures["integrity_after"] == "ok"
    # Once there is space, writes work again (the loop in the scenario got one through),
    # and every write acknowledged before the disk filled is there.
    assert figures["acked_writes_lost"] == 0
