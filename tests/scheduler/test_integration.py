"""The scheduler against a real in-process API server: nodes and pods made through the
client, bindings through ``pods/binding``, events and conditions read back."""

from __future__ import annotations

from typing import Any


async def test_binds_a_pod_and_records_events(cluster: Any) -> None:
    await cluster.add_node("n1")
    await cluster.add_pod("p", cpu="100m")
    assert await cluster.wait_bound("p") == "n1"
    pod = await cluster.pod("p")
    [condition] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert condition["status"] == "True"
    assert await cluster.wait_event("p", "Scheduled") == "Successfully assigned default/p to n1"
