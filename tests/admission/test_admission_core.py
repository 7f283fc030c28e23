"""The core's side of admission: a crashing plugin is a 500 naming it (the same over HTTP
and in process) and the server goes on; warnings plugins give reach the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio import plugins
from kubetrio.client import Client, ClientError
from kubetrio.cluster import open_cluster
from kubetrio.plugins import hookimpl
from kubetrio.providers import AdmissionRequest
from kubetrio.store import open_store


class Crashing:
    """Crashes on ConfigMaps named ``boom``; warns about those named ``careful``."""

    @hookimpl
    def kubetrio_admission_validate(self, request: AdmissionRequest) -> list[str] | None:
        name = request.name
        if name == "boom":
            raise KeyError("spec")
        if name == "careful":
            request.warnings.append('configmap "careful" is "risky"')
        return None


def configmap(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "data": {"k": "v"}}


async def test_a_crashing_admission_plugin_is_a_500_naming_it(tmp_path: Path) -> None:
    manager = plugins.load(only=["auth"])
    manager.register(Crashing(), name="crashy")
    with trio.fail_after(60):
        async with (
            open_store(f"sqlite://{tmp_path}/s.db") as store,
            open_cluster(
                store, plugins=manager, token="t", controllers=False, scheduler=False
            ) as cluster,
        ):
            client = Client.in_process(cluster.api, token="t")
            with pytest.raises(ClientError) as failed:
                await client.create("v1", "configmaps", configmap("boom"), namespace="default")
            assert failed.value.code == 500
            assert failed.value.reason == "InternalError"
            assert failed.value.message == "admission plugin \"crashy\" failed: KeyError: 'spec'"

            async with httpx.AsyncClient(
                base_url=cluster.url, headers={"authorization": "Bearer t"}, timeout=10
            ) as http:
                answer = await http.post(
                    "/api/v1/namespaces/default/configmaps", json=configmap("boom")
                )
                assert answer.status_code == 500
                assert answer.json() == failed.value.status

                # The server keeps serving, and a plugin's warning reaches the client.
                answer = await http.post(
                    "/api/v1/namespaces/default/configmaps", json=configmap("careful")
                )
                assert answer.status_code == 201
                assert answer.headers.get_list("warning") == [
                    '299 - "configmap \\"careful\\" is \\"risky\\""'
                ]
            assert (await client.get("v1", "configmaps", "careful", namespace="default"))[
                "data"
            ] == {"k": "v"}
