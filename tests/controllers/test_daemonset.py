"""DaemonSets: one pod per matching node, following nodes, tolerations, rolling update."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client
from tests.kit import wait_for

from .conftest import Cluster


def daemonset(name: str, **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}], **pod_spec},
            },
        },
    }


async def _nodes_running(client: Client, app: str) -> dict[str, str]:
    pods = (await client.list("v1", "pods", namespace="default", label_selector=f"app={app}"))[
        "items"
    ]
    return {
        p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"]
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


async def _ds_ready(client: Client, name: str) -> bool:
    ds = await client.get("apps/v1", "daemonsets", name, namespace="default")
    status = ds.get("status") or {}
    desired = status.get("desiredNumberScheduled")
    return (
        status.get("observedGeneration") == ds["metadata"]["generation"]
        and desired is not None
        and status.get("updatedNumberScheduled") == desired
        and status.get("numberAvailable") == desired
    )


async def test_daemonset_follows_nodes(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create("apps/v1", "daemonsets", daemonset("agent"), namespace="default")

        async def on(names: set[str]) -> bool:
            return set(await _nodes_running(client, "agent")) == names

        await wait_for(lambda: on(set(cluster.nodes.nodes)))
        await cluster.nodes.add_node("sim-node-extra")
        await wait_for(lambda: on({*cluster.nodes.nodes}))
        assert "sim-node-extra" in await _nodes_running(client, "agent")
        await cluster.nodes.remove_node("sim-node-0")
        await wait_for(lambda: on({n for n in cluster.nodes.nodes if n != "sim-node-0"}))
        await wait_for(lambda: _ds_ready(client, "agent"))


async def test_daemonset_node_selector_and_taints(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.patch("v1", "nodes", "sim-node-1", {"metadata": {"labels": {"disk": "ssd"}}})
        await client.patch("v1", "nodes", "sim-node-2", {"metadata": {"labels": {"disk": "ssd"}}})
        await client.patch(
            "v1",
            "nodes",
            "sim-node-2",
            {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}},
        )
        await client.create(
            "apps/v1",
            "daemonsets",
            daemonset("ssd", nodeSelector={"disk": "ssd"}),
            namespace="default",
        )

        async def only(names: set[str]) -> bool:
            return set(await _nodes_running(client, "ssd")) == names

        await wait_for(lambda: only({"sim-node-1"}))
        await client.patch(
            "apps/v1",
            "daemonsets",
            "ssd",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "tolerations": [
                                {
                                    "key": "dedicated",
                                    "operator": "Equal",
                                    "value": "db",
                                    "effect": "NoSchedule",
                                }
                            ]
                        }
                    }
                }
            },
            namespace="default",
        )
        await wait_for(lambda: only({"sim-node-1", "sim-node-2"}))


async def test_daemonset_rolling_update(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create("apps/v1", "daemonsets", daemonset("roll"), namespace="default")
        await wait_for(lambda: _ds_ready(client, "roll"))
        await client.patch(
            "apps/v1",
            "daemonsets",
            "roll",
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}
                }
            },
            namespace="default",
        )
        fewest = 3

        async def updated() -> bool:
            nonlocal fewest
            running = await _nodes_running(client, "roll")
            fewest = min(fewest, len(running))
            return set(running.values()) == {"agent:2"} and len(running) == 3

        await wait_for(updated, interval=0.01)
        await wait_for(lambda: _ds_ready(client, "roll"))
        assert fewest >= 2  # maxUnavailable 1
