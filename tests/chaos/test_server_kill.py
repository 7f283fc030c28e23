"""kill -9 of the server under a 200 writes/s load with 100 watches open."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.kit import report
from tests.chaos.scenarios import server_kill


async def test_kill_9_loses_no_acknowledged_write_and_watches_resume(tmp_path: Path) -> None:
    figures = report("server_kill", **await server_kill(tmp_path))
    # Every write answered 2xx is in the store after the restart, and the history of
    # compare-and-swaps and reads (final reads after recovery included) is linearizable.
    # (The rate reached is a figure, not a condition: the machine may be loaded.)
    assert (
        figures["acked_before_kill"] > 0 and figures["acked_writes"] > figures["acked_before_kill"]
    )
    assert figures["lost_creates"] == []
    assert figures["non_linearizable_keys"] == []
    # Every watch resumed from its last resourceVersion: each saw every acknowledged
    # write exactly once, in order, and they all saw the same events.
    assert figures["watchers_expired"] == 0
    assert figures["watchers_behind"] == 0
    assert figures["watch_duplicate_events"] == 0
    assert figures["watch_missing_events"] == 0
    assert figures["watch_unexplained_events"] == 0
    assert figures["watch_out_of_order"] == 0
    assert figures["watchers_agree"] and figures["watch_events_per_watcher"] > 0
    assert figures["watch_reconnects"] >= figures["watchers"]  # the kill did break them
