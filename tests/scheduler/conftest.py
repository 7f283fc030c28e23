"""Fixtures of the scheduler tests: a real in-process API server and a cluster helper.

Nodes are plain Node objects created through the client (status.allocatable, a Ready
condition); no kubelet runs, so pods only get bound, never started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.client import Client
from kubetrio.plugins import PluginManager
from kubetrio.providers import CycleState, NodeInfo, PodInfo
from kubetrio.scheduler import Scheduler, SchedulerCache, SchedulerConfig, pod_info
from kubetrio.store import open_store


def make_node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "32Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    images: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Node object as a kubelet would report it (Ready, with allocatable)."""
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    status: dict[str, Any] = {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    if images:
        status["images"] = images
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "spec": spec,
        "status": status,
    }


def make_pod(
    name: str,
    *,
    namespace: str = "default",
    cpu: str | None = None,
    memory: str | None = None,
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Pod with one container (optionally with requests) and extra ``spec`` fields."""
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: dict[str, Any] = {"name": "c", "image": "registry.local/app:1"}
    if requests:
        container["resources"] = {"requests": requests}
    body: dict[str, Any] = {"containers": [container], **spec}
    if node_name:
        body["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": body,
    }


class Snapshot(SchedulerCache):
    """A scheduler cache filled directly, for plugin unit tests."""

    def __init__(
        self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__()
        for node in nodes:
            self.set_node(node)
        for pod in pods or ():
            self.set_pod(pod)

    def state(self, pod: dict[str, Any]) -> CycleState:
        """A cycle state for scheduling ``pod`` over this snapshot."""
        return CycleState(pod_info(pod), self, "default-scheduler")

    def node(self, name: str) -> NodeInfo:
        found = self.get(name)
        assert found is not None
        return found


@pytest.fixture
def snapshot() -> Callable[..., Snapshot]:
    """``snapshot(nodes, pods)``: a cache filled directly, for plugin unit tests."""
    return Snapshot


@pytest.fixture
def node() -> Callable[..., dict[str, Any]]:
    """``node(name, cpu=..., labels=..., taints=...)``: a Node object."""
    return make_node


@pytest.fixture
def pod() -> Callable[..., dict[str, Any]]:
    """``pod(name, cpu=..., labels=..., **spec)``: a Pod object."""
    return make_pod


class Cluster:
    """A running API server with a scheduler, and helpers to drive them."""

    def __init__(self, client: Client, scheduler: Scheduler) -> None:
        self.client = client
        self.scheduler = scheduler

    async def add_node(self, name: str, **kwargs: Any) -> dict[str, Any]:
        return await self.client.create("v1", "nodes", make_node(name, **kwargs))

    async def add_pod(self, name: str, **kwargs: Any) -> dict[str, Any]:
        pod = make_pod(name, **kwargs)
        return await self.client.create("v1", "pods", pod, namespace=pod["metadata"]["namespace"])

    async def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return await self.client.get("v1", "pods", name, namespace=namespace)

    async def wait_bound(self, name: str, namespace: str = "default") -> str:
        """Wait until the pod has a node; return the node's name."""
        with trio.fail_after(10):
            while True:
                node: str | None = (await self.pod(name, namespace))["spec"].get("nodeName")
                if node:
                    return node
                await trio.sleep(0.02)

    async def events(self, name: str, reason: str, namespace: str = "default") -> list[str]:
        listed = await self.client.list("v1", "events", namespace=namespace)
        return [
            e["message"]
            for e in listed["items"]
            if e["involvedObject"]["name"] == name and e["reason"] == reason
        ]

    async def wait_event(self, name: str, reason: str, namespace: str = "default") -> str:
        """Wait for an event about a pod; return its latest message."""
        with trio.fail_after(10):
            while True:
                messages = await self.events(name, reason, namespace)
                if messages:
                    return messages[-1]
                await trio.sleep(0.02)

    async def settle(self) -> None:
        """Let the scheduler work through what it can now (cycles, binds, events)."""
        for _ in range(50):
            await trio.sleep(0.01)


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with open_store(f"sqlite://{tmp_path}/s.db") as store, open_apiserver(store) as running:
        yield running


@pytest.fixture
def manager() -> PluginManager:
    """The installed plugins (the built-in scheduler plugins among them)."""
    from kubetrio import plugins

    return plugins.load(only=["scheduler"])


@pytest.fixture
def scheduler_config() -> SchedulerConfig:
    return SchedulerConfig(pod_initial_backoff_seconds=0.05, pod_max_backoff_seconds=0.2)


@pytest.fixture
async def cluster(
    apiserver: RunningApiServer, manager: PluginManager, scheduler_config: SchedulerConfig
) -> AsyncIterator[Cluster]:
    async with Client.in_process(apiserver.api) as client, trio.open_nursery() as nursery:
        scheduler = Scheduler(client, plugins=manager, config=scheduler_config)
        await nursery.start(scheduler.run)
        yield Cluster(client, scheduler)
        nursery.cancel_scope.cancel()


__all__ = ["Cluster", "PodInfo", "Snapshot", "make_node", "make_pod"]
