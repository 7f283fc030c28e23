"""Node loss: Unknown → unreachable taint → eviction → replacement pods elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager, NodeLifecycleController
from tests.kit import deployment, wait_for

from .conftest import Cluster, open_cluster


def _fast(manager: ControllerManager) -> None:
    lifecycle = manager.controller("nodelifecycle")
    assert isinstance(lifecycle, NodeLifecycleController)
    lifecycle.grace_period = 1.5
    lifecycle.eviction_rate = 100
    lifecycle.monitor_period = 0.5


@pytest.fixture
async def cluster(apiserver: RunningApiServer) -> AsyncIterator[Cluster]:
    """Heartbeats every 0.3 s, a 1.5 s grace period."""
    async with open_cluster(apiserver, heartbeat=0.3, configure=_fast) as made:
        yield made


async def _node(client: Client, name: str) -> dict[str, Any]:
    return await client.get("v1", "nodes", name)


async def test_node_loss_evicts_and_replaces(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(60):
        app = deployment("app", 3)
        # The API server gives every pod 300 s of tolerance for an unreachable node
        # (DefaultTolerationSeconds); these pods ask for one second instead.
        app["spec"]["template"]["spec"]["tolerations"] = [
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 1,
            },
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 1,
            },
        ]
        await client.create("apps/v1", "deployments", app, namespace="default")
        tolerant = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "tolerant"},
            "spec": {
                "nodeName": "sim-node-0",
                "containers": [{"name": "c", "image": "x"}],
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                    }
                ],
            },
        }
        await client.create("v1", "pods", tolerant, namespace="default")

        async def spread() -> bool:
            pods = (await client.list("v1", "pods", namespace="default", label_selector="app=app"))[
                "items"
            ]
            running = [p for p in pods if p["status"].get("phase") == "Running"]
            return len(running) == 3 and any(p["spec"]["nodeName"] == "sim-node-0" for p in running)

        await wait_for(spread)
        await trio.sleep(2)  # a few heartbeats: the node is healthy
        assert _ready(await _node(client, "sim-node-0")) == "True"
        cluster.nodes.stop_heartbeat("sim-node-0")

        async def tainted() -> bool:
            node = await _node(client, "sim-node-0")
            keys = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
            return (
                _ready(node) == "Unknown"
                and ("node.kubernetes.io/unreachable", "NoExecute") in keys
            )

        await wait_for(tainted)

        async def replaced() -> bool:
            pods = (await client.list("v1", "pods", namespace="default", label_selector="app=app"))[
                "items"
            ]
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            evicted = [p for p in pods if p["metadata"].get("deletionTimestamp")]
            return (
                len(live) == 3
                and all(p["status"].get("phase") == "Running" for p in live)
                and all(p["spec"]["nodeName"] != "sim-node-0" for p in live)
                and len(evicted) == 1
            )

        await wait_for(replaced)
        kept = await client.get("v1", "pods", "tolerant", namespace="default")
        assert not kept["metadata"].get("deletionTimestamp")  # tolerates forever

        cluster.nodes.resume_heartbeat("sim-node-0")

        async def healthy() -> bool:
            node = await _node(client, "sim-node-0")
            return _ready(node) == "True" and not node["spec"].get("taints")

        await wait_for(healthy)


async def test_no_eviction_when_every_node_is_down(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create("apps/v1", "deployments", deployment("calm", 3), namespace="default")

        async def running() -> bool:
            pods = (
                await client.list("v1", "pods", namespace="default", label_selector="app=calm")
            )["items"]
            return len([p for p in pods if p["status"].get("phase") == "Running"]) == 3

        await wait_for(running)
        await trio.sleep(1.5)
        for name in list(cluster.nodes.nodes):
            cluster.nodes.stop_heartbeat(name)

        async def all_unknown() -> bool:
            states = [_ready(await _node(client, n)) for n in cluster.nodes.nodes]
            return states == ["Unknown"] * len(states)

        await wait_for(all_unknown)
        await trio.sleep(2)
        pods = (await client.list("v1", "pods", namespace="default", label_selector="app=calm"))[
            "items"
        ]
        assert not any(p["metadata"].get("deletionTimestamp") for p in pods)


def _ready(node: dict[str, Any]) -> str:
    for condition in node["status"].get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition["status"])
    return ""
