"""Informers relist when a 410 reaches them inside an ExceptionGroup (a streaming nursery)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from kubetrio.client import ClientError, FunctionHandler, SharedInformers


class _FlakyClient:
    """Lists ``items``; the first watch fails the way the in-process transport does."""

    def __init__(self) -> None:
        self.lists = 0
        self.watches = 0
        self.items = [{"metadata": {"name": "a", "namespace": "d", "resourceVersion": "1"}}]

    async def list(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.lists += 1
        return {"items": list(self.items), "metadata": {"resourceVersion": str(self.lists)}}

    @asynccontextmanager
    async def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[AsyncIterator[Any]]:
        self.watches += 1
        if self.watches == 1:
            self.items.append({"metadata": {"name": "b", "namespace": "d", "resourceVersion": "2"}})
            raise ExceptionGroup("nursery", [ClientError({"code": 410, "reason": "Expired"})])

        async def forever() -> AsyncIterator[Any]:
            await trio.sleep_forever()
            yield None

        yield forever()


async def test_expired_watch_in_exception_group_relists() -> None:
    client = _FlakyClient()
    informers = SharedInformers(client)  # type: ignore[arg-type]
    informer = informers.informer("v1", "configmaps")
    seen: list[str] = []
    informer.add_handler(FunctionHandler(lambda o: seen.append(o["metadata"]["name"])))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(informers.run)
            while client.lists < 2:
                await trio.sleep(0.01)
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert seen == ["a", "b"]
    assert sorted(informer.cache) == ["d/a", "d/b"]
