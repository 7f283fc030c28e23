"""The controllers with the real scheduler (kubetrio.scheduler) instead of the simnode binder."""

from __future__ import annotations

import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.simnode import SimulatedNodes
from tests.kit import deployment, wait_for

scheduler_module = pytest.importorskip("kubetrio.scheduler")


async def test_deployment_scheduled_by_the_scheduler(apiserver: RunningApiServer) -> None:
    client = Client.in_process(apiserver.api)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(SimulatedNodes(client, count=4).run)  # no binding of its own
            await nursery.start(scheduler_module.Scheduler(client).run)
            manager = ControllerManager(client, identity="with-scheduler")
            await nursery.start(manager.run)
            await client.create("apps/v1", "deployments", deployment("s", 8), namespace="default")

            async def available() -> bool:
                d = await client.get("apps/v1", "deployments", "s", namespace="default")
                return (d.get("status") or {}).get("availableReplicas") == 8

            await wait_for(available, timeout=40)
            pods = (await client.list("v1", "pods", namespace="default"))["items"]
            assert len({p["spec"]["nodeName"] for p in pods}) > 1  # spread by scoring
            nursery.cancel_scope.cancel()
