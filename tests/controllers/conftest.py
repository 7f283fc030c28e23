"""A real API server on SQLite, the controller manager and simulated nodes, in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.simnode import SimulatedNodes
from kubetrio.store import open_store


@dataclasses.dataclass
class Cluster:
    """What a controller test gets: the server, a client, the manager, the nodes."""

    server: RunningApiServer
    client: Client
    manager: ControllerManager
    nodes: SimulatedNodes
    nursery: trio.Nursery


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with open_store(f"sqlite://{tmp_path}/s.db") as store, open_apiserver(store) as running:
        yield running


@asynccontextmanager
async def open_cluster(
    server: RunningApiServer,
    *,
    nodes: int = 3,
    heartbeat: float = 10.0,
    configure: Callable[[ControllerManager], None] | None = None,
) -> AsyncIterator[Cluster]:
    """Simulated nodes and a controller manager (``configure`` runs before it starts)."""
    client = Client.in_process(server.api)
    async with trio.open_nursery() as nursery:
        sim = SimulatedNodes(client, count=nodes, bind_unscheduled=True, heartbeat=heartbeat)
        await nursery.start(sim.run)
        manager = ControllerManager(client, identity="test-manager")
        if configure is not None:
            configure(manager)
        await nursery.start(manager.run)
        with trio.fail_after(10):
            await manager.leading.wait()
        yield Cluster(server, client, manager, sim, nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def cluster(apiserver: RunningApiServer) -> AsyncIterator[Cluster]:
    async with open_cluster(apiserver) as made:
        yield made
