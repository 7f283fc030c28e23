"""The client (in-process and HTTP, one suite) and informers, against a real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.client import Client, ClientError, FunctionHandler, Informer, SharedInformers
from kubetrio.store import open_store


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with open_store(f"sqlite://{tmp_path}/s.db") as store, open_apiserver(store) as running:
        yield running


@pytest.fixture(params=["in-process", "http"])
async def client(
    request: pytest.FixtureRequest, apiserver: RunningApiServer
) -> AsyncIterator[Client]:
    if request.param == "in-process":
        made = Client.in_process(apiserver.api)
    else:
        made = Client.connect(apiserver.url)
    async with made:
        yield made


def cm(name: str, value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"v": value},
    }


async def test_crud_and_errors(client: Client) -> None:
    created = await client.create("v1", "configmaps", cm("a"), namespace="default")
    assert created["metadata"]["uid"]
    got = await client.get("v1", "configmaps", "a", namespace="default")
    assert got["data"] == {"v": "1"}
    got["data"]["v"] = "2"
    updated = await client.update("v1", "configmaps", got, namespace="default")
    with pytest.raises(ClientError) as conflict:
        await client.update("v1", "configmaps", got, namespace="default")  # stale version
    assert conflict.value.conflict and conflict.value.reason == "Conflict"
    patched = await client.patch("v1", "configmaps", "a", {"data": {"w": "x"}}, namespace="default")
    assert patched["data"] == {"v": "2", "w": "x"}
    assert int(patched["metadata"]["resourceVersion"]) > int(updated["metadata"]["resourceVersion"])
    listed = await client.list("v1", "configmaps", namespace="default")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    await client.delete("v1", "configmaps", "a", namespace="default")
    with pytest.raises(ClientError) as missing:
        await client.get("v1", "configmaps", "a", namespace="default")
    assert missing.value.not_found


async def test_watch_and_expired(client: Client) -> None:
    first = await client.create("v1", "configmaps", cm("w"), namespace="default")
    rv = first["metadata"]["resourceVersion"]
    seen = []
    with trio.fail_after(10):
        async with client.watch(
            "v1", "configmaps", namespace="default", resource_version=rv
        ) as events:
            await client.patch("v1", "configmaps", "w", {"data": {"v": "2"}}, namespace="default")
            await client.delete("v1", "configmaps", "w", namespace="default")
            async for event in events:
                seen.append((event.type, event.object["metadata"]["name"]))
                if len(seen) == 2:
                    break
    assert seen == [("MODIFIED", "w"), ("DELETED", "w")]


async def test_informer_follows_changes_and_relists(
    client: Client, apiserver: RunningApiServer
) -> None:
    await client.create("v1", "configmaps", cm("i1"), namespace="default")
    informer = Informer(client, "v1", "configmaps", namespace="default")
    changes: list[str] = []
    informer.add_handler(FunctionHandler(lambda o: changes.append(o["metadata"]["name"])))
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(informer.run)
            assert set(informer.cache) == {"default/i1"}
            await client.create("v1", "configmaps", cm("i2"), namespace="default")
            await client.delete("v1", "configmaps", "i1", namespace="default")
            while informer.get("i2", "default") is None or informer.get("i1", "default"):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert changes == ["i1", "i2", "i1"]


async def test_shared_informers_are_shared(client: Client) -> None:
    shared = SharedInformers(client)
    a = shared.informer("apps/v1", "deployments")
    assert shared.informer("apps/v1", "deployments") is a
    assert shared.informer("v1", "pods") is not a
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(shared.run)
            late = shared.informer("v1", "configmaps")
            await late.synced.wait()
        nursery.cancel_scope.cancel()
    assert a.synced.is_set()


async def test_expired_watch_raises_client_error_on_both_transports(
    client: Client, apiserver: RunningApiServer
) -> None:
    """A 410 mid-watch reaches the caller as ClientError (not wrapped), so informers relist."""
    first = await client.create("v1", "configmaps", cm("x"), namespace="default")
    for i in range(3):
        await client.patch("v1", "configmaps", "x", {"data": {"v": str(i)}}, namespace="default")
    store = apiserver.api.registry.store
    await store.compact(await store.current_revision())
    with trio.fail_after(10), pytest.raises(ClientError) as expired:
        async with client.watch(
            "v1",
            "configmaps",
            namespace="default",
            resource_version=first["metadata"]["resourceVersion"],
        ) as events:
            async for _ in events:
                pass
    assert expired.value.expired
