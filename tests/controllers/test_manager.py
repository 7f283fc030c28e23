"""The manager runs plugins' controllers beside the built-in ones, under its Lease."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, ClientError
from kubetrio.controllers import BUILT_IN, ControllerManager, NotLeaderError
from kubetrio.plugins import Registered


class _EchoController:
    """A plugin controller: copies ConfigMap ``src`` into ``dst``."""

    name = "echo"

    def __init__(self) -> None:
        self.client: Any = None

    async def run(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.client = client
        task_status.started()
        while True:
            try:
                src = await client.get("v1", "configmaps", "src", namespace="default")
                await client.create(
                    "v1",
                    "configmaps",
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "dst"},
                        "data": src.get("data") or {},
                    },
                    namespace="default",
                )
                return
            except ClientError:
                await trio.sleep(0.05)


class _Plugins:
    def __init__(self, controller: _EchoController) -> None:
        self.controller = controller

    def controllers(self) -> list[Registered[Any]]:
        return [Registered("echo-plugin", self.controller)]


async def test_plugin_controller_runs_under_the_lease(apiserver: RunningApiServer) -> None:
    client = Client.in_process(apiserver.api)
    echo = _EchoController()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            manager = ControllerManager(
                client,
                plugins=_Plugins(echo),  # type: ignore[arg-type]
                identity="p",
                controllers=["serviceaccount"],
            )
            await nursery.start(manager.run)
            await manager.leading.wait()
            await client.create(
                "v1",
                "configmaps",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "src"},
                    "data": {"k": "v"},
                },
                namespace="default",
            )
            while True:
                try:
                    dst = await client.get("v1", "configmaps", "dst", namespace="default")
                    break
                except ClientError:
                    await trio.sleep(0.05)
            assert dst["data"] == {"k": "v"}
            # The plugin got the guarded client: without the Lease its writes are refused.
            manager.elector._leading = False
            with pytest.raises(NotLeaderError):
                await echo.client.delete("v1", "configmaps", "dst", namespace="default")
            nursery.cancel_scope.cancel()


def test_unknown_controller_name() -> None:
    with pytest.raises(ValueError):
        ControllerManager(None, controllers=["nope"])  # type: ignore[arg-type]
    assert {"replicaset", "deployment", "garbagecollector", "statefulset"} <= set(BUILT_IN)
