"""Namespace lifecycle: a deleted namespace is Terminating until everything in it is gone.

This finalizer lives beside the API server so that deleting a namespace works on a bare
control plane; it works through the registry the same way the namespace controller of
the controller manager would through the client.
"""

from __future__ import annotations

import logging

import trio

from kubetrio import store as kv
from kubetrio.api.scheme import Scheme

from . import _objects as objects
from ._registry import Registry
from ._status import ApiError

log = logging.getLogger("kubetrio.apiserver.namespaces")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
POLL_INTERVAL = 1.0


async def ensure_system_namespaces(registry: Registry, scheme: Scheme) -> None:
    """Create the namespaces every cluster has, if missing."""
    info = scheme.resource("", "v1", "namespaces")
    assert info is not None
    for name in SYSTEM_NAMESPACES:
        try:
            await registry.create(
                info,
                "",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                },
            )
        except ApiError as exc:
            if exc.code != 409:
                raise


class NamespaceFinalizer:
    """Empties Terminating namespaces, then removes them."""

    def __init__(self, registry: Registry, scheme: Scheme) -> None:
        self.registry = registry
        self.scheme = scheme
        self.wakeup = trio.Event()

    def poke(self) -> None:
        """A namespace was marked for deletion: look now rather than at the next poll."""
        self.wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Finalize namespaces until cancelled."""
        task_status.started()
        while True:
            busy = False
            try:
                busy = await self.finalize_once()
            except Exception:
                log.exception("namespace finalization failed; retrying")
                busy = True
            with trio.move_on_after(POLL_INTERVAL if busy else 30):
                await self.wakeup.wait()
            self.wakeup = trio.Event()

    async def finalize_once(self) -> bool:
        """One pass; return whether some namespace is still terminating."""
        info = self.scheme.resource("", "v1", "namespaces")
        assert info is not None
        page = await self.registry.list(info, "")
        pending = False
        for raw in page.items:
            ns = objects.decode(raw)
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            if await self._drain(name):
                await self._remove(name)
            else:
                pending = True
        return pending

    async def _drain(self, namespace: str) -> bool:
        """Delete everything in the namespace; return whether it is empty."""
        empty = True
        for resource in self.scheme:
            if not resource.namespaced or not resource.has_verb("delete"):
                continue
            page = await self.registry.list(resource, namespace)
            for raw in page.items:
                empty = False
                obj = objects.decode(raw)
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.registry.delete(
                        resource,
                        namespace,
                        obj["metadata"]["name"],
                        options={"propagationPolicy": "Background"},
                    )
                except ApiError as exc:
                    if exc.code not in (404, 409):
                        raise
        return empty

    async def _remove(self, name: str) -> None:
        """Remove a drained namespace, looking again if it was written meanwhile."""
        info = self.scheme.resource("", "v1", "namespaces")
        assert info is not None
        while True:
            try:
                current = await self.registry.get(info, "", name)
                await self.registry.store.delete(
                    self.registry.key(info, "", name), expected_revision=current.mod_revision
                )
                return
            except kv.Conflict:
                continue  # a write landed between our read and the delete
            except (ApiError, kv.StoreError) as exc:  # gone meanwhile: nothing left to do
                log.debug("namespace %s not removed: %s", name, exc)
                return
