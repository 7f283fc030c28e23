"""Fixtures for node agent tests: API server, local registry with a busybox image, agent."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.client import Client, ClientError
from kubetrio.images import RegistryConfig, build_image, local_registry
from kubetrio.kubelet import NodeAgent
from kubetrio.runtime import cgroup_exists
from kubetrio.store import open_store

TEST_BLOCK = "10.244.251.64/26"  # reserved for the node agent tests
NODE = "node-test"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with local_registry(tmp_path / "registry") as address:
        yield address


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with open_store(f"sqlite://{tmp_path}/s.db") as store, open_apiserver(store) as running:
        running.api.kubelet_token = "secret-token"  # what pods/log presents to the agent
        yield running


@pytest.fixture
async def client(
    request: pytest.FixtureRequest, apiserver: RunningApiServer
) -> AsyncIterator[Client]:
    """In-process by default; ``parametrize("client", ["http"], indirect=True)`` for HTTP."""
    mode = getattr(request, "param", "in-process")
    made = (
        Client.in_process(apiserver.api) if mode == "in-process" else Client.connect(apiserver.url)
    )
    async with made:
        yield made


def leftovers(prefix: str, root: Path, cgroup_parent: str) -> list[str]:
    """Host resources a test could have leaked: netns, mounts, cgroups, runc containers."""
    found = []
    if os.path.isdir("/var/run/netns"):
        found += [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)]
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if str(root) in line.split()[4]]
    if cgroup_exists(cgroup_parent):
        found.append(cgroup_parent)
    runc = subprocess.run(
        ["runc", "--root", str(root / "agent" / "runc"), "list", "-q"],
        capture_output=True,
        text=True,
    )
    found += runc.stdout.split()
    return found


AgentFactory = Callable[[], NodeAgent]


@pytest.fixture
def agent_plugins() -> list[tuple[str, object]]:
    """Extra plugins (name, object) registered in every agent's manager; a test module
    overrides this fixture to add its own (a recording storage driver)."""
    return []


@pytest.fixture
def agent_options() -> dict[str, Any]:
    """Extra ``NodeAgent`` keyword arguments; a test module may override it."""
    return {}


@pytest.fixture
async def agent_factory(
    tmp_path: Path,
    registry: str,
    client: Client,
    agent_plugins: list[tuple[str, object]],
    agent_options: dict[str, Any],
) -> AsyncIterator[AgentFactory]:
    """Makes agents of one node (same state directory); checks host cleanup at the end."""
    tag = uuid.uuid4().hex[:6]
    prefix = f"kt{tag}-"
    cgroup_parent = f"/kubetrio-test-{tag}"
    mirrors = {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    await build_image("busybox:latest", None, registries=RegistryConfig.from_dict(mirrors))
    made: list[NodeAgent] = []

    def factory() -> NodeAgent:
        manager = plugins.load(only=["cni_calico", "storage"])
        for name, plugin in agent_plugins:
            manager.register(plugin, name=name)
        manager.configure(
            config={"network": {"block": TEST_BLOCK}, "storage": {"root": str(tmp_path / "pvs")}}
        )
        agent = NodeAgent(
            client,
            node_name=NODE,
            plugins=manager,
            root_dir=tmp_path / "agent",
            registries=mirrors,
            backoff_base=0.2,
            backoff_max=1.0,
            sync_period=0.3,
            cgroup_parent=cgroup_parent,
            netns_prefix=prefix,
            address="127.0.0.1",
            kubelet_port=0,
            kubelet_token="secret-token",
            **agent_options,
        )
        made.append(agent)
        return agent

    try:
        yield factory
    finally:
        if made:
            # A last agent adopts whatever is left and stops it.
            last = factory()
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                async with trio.open_nursery() as nursery:
                    await nursery.start(last.run)
                    await last.shutdown(grace_period=0)
                    await last.runtime.cleanup()  # type: ignore[attr-defined]
                    nursery.cancel_scope.cancel()
    assert leftovers(prefix, tmp_path, cgroup_parent) == []


@pytest.fixture
async def agent(agent_factory: AgentFactory) -> AsyncIterator[NodeAgent]:
    made = agent_factory()
    async with trio.open_nursery() as nursery:
        await nursery.start(made.run)
        try:
            yield made
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await made.shutdown(grace_period=0)
            nursery.cancel_scope.cancel()


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A pod bound to the test node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": containers, **spec},
    }


async def wait_for(
    client: Client,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 20,
) -> dict[str, Any]:
    """Poll the pod until ``check`` holds; fail with its last state after ``timeout``."""
    last: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            try:
                last = await client.get("v1", "pods", name, namespace="default")
            except ClientError as exc:
                if not exc.not_found:
                    raise
                last = {}
            if check(last):
                return last
            await trio.sleep(0.1)
    raise AssertionError(f"pod {name} never matched; last status: {last.get('status')}")
