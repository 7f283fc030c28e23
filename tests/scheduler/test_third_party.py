"""A third-party scheduler plugin, registered through ``PluginManager.register`` exactly
as an installed plugin's entry point would be, takes part in scheduling."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrio.plugins import PluginManager, hookimpl


class OddNodesOnly:
    """A third-party filter: only nodes whose name ends in an odd digit."""

    name = "OddNodesOnly"

    def filter(self, pod: dict[str, Any], node: dict[str, Any]) -> str | None:
        return None if int(node["metadata"]["name"][-1]) % 2 else "node(s) were even"


class OddNodesPlugin:
    @hookimpl
    def kubetrio_register_scheduler_plugins(self, register: Any) -> None:
        register(OddNodesOnly())


@pytest.fixture
def manager() -> PluginManager:
    from kubetrio import plugins

    loaded = plugins.load(only=["scheduler"])
    loaded.register(OddNodesPlugin(), name="odd_nodes")
    return loaded


async def test_a_third_party_filter_is_honoured(cluster: Any) -> None:
    for i in range(4):
        await cluster.add_node(f"n{i}")
    placed = set()
    for i in range(6):
        await cluster.add_pod(f"p{i}")
    for i in range(6):
        placed.add(await cluster.wait_bound(f"p{i}"))
    assert placed == {"n1", "n3"}
    framework = cluster.scheduler.frameworks["default-scheduler"]
    assert "OddNodesOnly" in {stage.name for stage in framework.stages["filter"]}
    # A pod that may only go to an even node: the plugin's reason shows in the event.
    await cluster.add_pod("even", nodeSelector={"kubernetes.io/hostname": "n2"})
    message = await cluster.wait_event("even", "FailedScheduling")
    assert message.startswith(
        "0/4 nodes are available: 1 node(s) were even, "
        "3 node(s) didn't match Pod's node affinity/selector."
    ), message
