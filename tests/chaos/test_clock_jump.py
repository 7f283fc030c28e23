"""The server's wall clock jumps a day forward, then back (libfaketime, the host's
clock untouched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.kit import report
from tests.chaos.scenarios import LIBFAKETIME, clock_jump


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (Debian: libfaketime)")
async def test_a_clock_jump_of_the_server_loses_nothing_and_stalls_nothing(
    tmp_path: Path,
) -> None:
    figures = report("clock_jump", **await clock_jump(tmp_path))
    # The jump really happened inside the server (and only there).
    assert figures["server_clock_moved_s"] >= 86_000
    assert figures["server_clock_back_s"] <= -86_000
    # Revisions, not clocks, order writes: nothing lost, the history linearizable.
    assert figures["acked_writes"] > 0
    assert figures["acked_writes_lost"] == 0
    assert figures["non_linearizable_keys"] == []
    # Leader election and the controllers go on after each jump.
    assert set(figures["controllers_act_s"]) == {"before", "forward", "back"}
    # A node whose clock disagrees with the server's by a day is still heard.
    assert figures["node_ready"] and figures["node_taints"] == []
    assert figures["server_alive"]
