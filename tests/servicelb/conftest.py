"""An in-process API server on SQLite and helpers to run the ServiceLB allocator on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager, QueueController
from kubetrio.servicelb import ServiceLBController
from kubetrio.store import open_store


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with open_store(f"sqlite://{tmp_path}/s.db") as store, open_apiserver(store) as running:
        yield running


@pytest.fixture
def client(apiserver: RunningApiServer) -> Client:
    return Client.in_process(apiserver.api)


@asynccontextmanager
async def running_manager(
    client: Client,
    lb_pool: str | None,
    *,
    controllers: tuple[str, ...] = (),
    extra: tuple[QueueController, ...] = (),
) -> AsyncIterator[ControllerManager]:
    """A controller manager with the allocator (and ``controllers``, ``extra``), leading."""
    async with trio.open_nursery() as nursery:
        manager = ControllerManager(
            client,
            identity="servicelb-test",
            controllers=controllers,
            extra=[*([ServiceLBController(lb_pool)] if lb_pool is not None else []), *extra],
        )
        await nursery.start(manager.run)
        with trio.fail_after(10):
            await manager.leading.wait()
        yield manager
        nursery.cancel_scope.cancel()


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    """A selector-less ``type: LoadBalancer`` Service on port 80."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}], **spec},
    }
