"""Informers: a local, always-current cache of one resource, with change notifications.

An informer lists the resource, then watches from the list's resourceVersion; every
event updates the cache and then calls the handlers. When the server says the version
is too old (410 Expired) it lists again and tells the handlers what changed in between
(adds, updates, deletes), so a handler never misses a state — it may only see fewer
intermediate ones, which is what level-based controllers expect. A watch that ends
(server timeout) resumes from the last version seen; errors back off and retry.

:class:`SharedInformers` hands out one informer per (resource, namespace, selectors),
so many controllers share one watch and one cache.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import trio

from ._client import Client, KubeObject
from ._errors import ClientError, leaf_errors

log = logging.getLogger("kubetrio.client.informer")

WATCH_TIMEOUT = (300, 600)
"""Seconds a watch asks the server to keep it open, picked at random (spreads relists)."""
BACKOFF = (0.2, 5.0)


_CONNECTION_ERRORS = (httpx.HTTPError, OSError, trio.BrokenResourceError)


class EventHandler(Protocol):
    """What an informer calls on changes. Handlers must return quickly (enqueue work)."""

    def on_add(self, obj: KubeObject) -> None:
        """A new object appeared (also for every object of the first list)."""

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        """An object changed."""

    def on_delete(self, obj: KubeObject) -> None:
        """An object is gone; ``obj`` is its last known state."""


class FunctionHandler:
    """An :class:`EventHandler` made of one function called with every changed object."""

    def __init__(self, changed: Callable[[KubeObject], None]) -> None:
        self.changed = changed

    def on_add(self, obj: KubeObject) -> None:
        self.changed(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.changed(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.changed(obj)


def object_key(obj: KubeObject) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


class Informer:
    """The cache and notifications of one resource (optionally one namespace, selectors)."""

    def __init__(
        self,
        client: Client,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        self.client = client
        self.api_version = api_version
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, KubeObject] = {}
        self.handlers: list[EventHandler] = []
        self.synced = trio.Event()
        """Set once the first list is in the cache."""
        self.resource_version = ""
        self._scope = trio.CancelScope()
        self.stopped = False
        """Set by :meth:`stop`: the informer no longer runs and its cache is frozen."""

    def stop(self) -> None:
        """Stop listing and watching for good (the resource is no longer served)."""
        self.stopped = True
        self._scope.cancel()

    def remove_handler(self, handler: EventHandler) -> None:
        """Stop calling ``handler``."""
        if handler in self.handlers:
            self.handlers.remove(handler)

    def add_handler(self, handler: EventHandler) -> None:
        """Register a handler; if the cache is filled already it first gets every object."""
        self.handlers.append(handler)
        if self.synced.is_set():
            for obj in list(self.cache.values()):
                handler.on_add(obj)

    def get(self, name: str, namespace: str = "") -> KubeObject | None:
        """The cached object, or None."""
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[KubeObject]:
        """Cached objects, optionally of one namespace."""
        if namespace is None:
            return list(self.cache.values())
        return [o for o in self.cache.values() if o["metadata"].get("namespace") == namespace]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """List and watch until cancelled or stopped; ``started`` once the cache is filled."""
        with self._scope:
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        started = False
        failures = 0
        while True:
            try:
                await self._relist()
                if not started:
                    task_status.started()
                    started = True
                failures = 0
                while True:
                    await self._watch_once()
            except ClientError as exc:
                if not exc.expired:
                    log.warning("%s %s: %s", self.api_version, self.resource, exc)
                    failures += 1
            except _CONNECTION_ERRORS as exc:
                log.warning("%s %s: connection problem: %s", self.api_version, self.resource, exc)
                failures += 1
            except BaseExceptionGroup as group:
                # A transport or client that streams through a nursery may hand these
                # same errors over grouped; they mean the same thing. Anything else
                # still propagates.
                expected, rest = group.split((ClientError, *_CONNECTION_ERRORS))
                if rest is not None:
                    raise rest from None
                assert expected is not None
                leaves = leaf_errors(expected)
                if not all(isinstance(e, ClientError) and e.expired for e in leaves):
                    log.warning(
                        "%s %s: watch failed: %s", self.api_version, self.resource, leaves[0]
                    )
                    failures += 1
            if failures:
                delay = min(BACKOFF[1], BACKOFF[0] * 2 ** min(failures, 10))
                await trio.sleep(delay * random.uniform(0.5, 1.0))

    async def _relist(self) -> None:
        items: dict[str, KubeObject] = {}
        token = ""
        while True:
            page = await self.client.list(
                self.api_version,
                self.resource,
                namespace=self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=500,
                continue_token=token,
            )
            for item in page.get("items") or []:
                items[object_key(item)] = item
            token = (page.get("metadata") or {}).get("continue", "")
            if not token:
                break
        self.resource_version = page["metadata"]["resourceVersion"]
        old = self.cache
        self.cache = items
        for key, obj in items.items():
            before = old.get(key)
            if before is None:
                self._notify("on_add", obj)
            elif before["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._notify("on_update", before, obj)
        for key, obj in old.items():
            if key not in items:
                self._notify("on_delete", obj)
        self.synced.set()

    async def _watch_once(self) -> None:
        async with self.client.watch(
            self.api_version,
            self.resource,
            namespace=self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=random.randint(*WATCH_TIMEOUT),
        ) as events:
            async for event in events:
                obj = event.object
                self.resource_version = obj["metadata"].get(
                    "resourceVersion", self.resource_version
                )
                if event.type == "BOOKMARK":
                    continue
                key = object_key(obj)
                if event.type == "DELETED":
                    last = self.cache.pop(key, obj)
                    self._notify("on_delete", obj if obj else last)
                elif key in self.cache:
                    old = self.cache[key]
                    self.cache[key] = obj
                    self._notify("on_update", old, obj)
                else:
                    self.cache[key] = obj
                    self._notify("on_add", obj)

    def _notify(self, method: str, *args: Any) -> None:
        for handler in self.handlers:
            try:
                getattr(handler, method)(*args)
            except Exception:  # one faulty handler must not starve the others
                log.exception("informer handler %r failed", handler)


class SharedInformers:
    """One informer per (resource, namespace, selectors), shared by every user.

    Informers asked for before :meth:`run` starts are started by it; ones asked for
    later start at once in its nursery. ``await informer.synced.wait()`` before relying
    on a cache.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, ...], Informer] = {}
        self._nursery: trio.Nursery | None = None

    def informer(
        self,
        api_version: str,
        resource: str,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Informer:
        """The shared informer of a resource (created and started on first use)."""
        key = (api_version, resource, namespace, label_selector, field_selector)
        found = self._informers.get(key)
        if found is None:
            found = Informer(
                self.client,
                api_version,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
            )
            self._informers[key] = found
            if self._nursery is not None:
                self._nursery.start_soon(found.run)
        return found

    def stop(self, informer: Informer) -> None:
        """Stop ``informer`` and forget it (its resource is gone; asking again makes a new one)."""
        for key, found in list(self._informers.items()):
            if found is informer:
                del self._informers[key]
        informer.stop()

    async def wait_synced(self) -> None:
        """Wait until every informer created so far has filled its cache."""
        for informer in list(self._informers.values()):
            if not informer.stopped:
                await informer.synced.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every informer until cancelled; ``started`` once the existing ones synced."""
        async with trio.open_nursery() as nursery:
            for informer in list(self._informers.values()):
                nursery.start_soon(informer.run)
            self._nursery = nursery
            await self.wait_synced()
            task_status.started()
            await trio.sleep_forever()
