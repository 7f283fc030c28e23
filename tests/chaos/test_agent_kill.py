"""kill -9 of a node agent while its pod runs, and its restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrio.cluster import agent_can_run
from tests.chaos.kit import report
from tests.chaos.scenarios import agent_kill


@pytest.mark.root
@pytest.mark.runc
@pytest.mark.skipif(agent_can_run() is not None, reason=str(agent_can_run()))
async def test_killed_agent_comes_back_to_its_running_pod(tmp_path: Path) -> None:
    figures = report("agent_kill", **await agent_kill(tmp_path))
    # The container outlived the agent and was adopted, not replaced.
    assert figures["container_alive_while_agent_down"]
    assert figures["same_container"] and figures["same_pid"]
    assert figures["container_status"] == "running"
    assert figures["restart_count"] == 0
    # Nothing duplicated: one pod, one container.
    assert figures["pods"] == 1 and figures["runc_containers"] == 1
    # The pod stayed Ready throughout.
    assert figures["not_ready_observations"] == 0
    assert figures["ready_at_end"]
