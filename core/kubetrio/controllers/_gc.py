"""The garbage collector: ownerReferences, cascading deletion and orphaning.

The collector watches every *monitored* resource and keeps two indexes over the
informer caches: ``uid → object`` and ``owner uid → dependents``. Work items are
objects (``<resource index>|<namespace/name>``) to examine; one reconcile decides by
the object's state, level-based as everywhere:

* **Orphan** — the object is being deleted and carries the ``orphan`` finalizer: remove
  its uid from every dependent's ownerReferences, then remove the finalizer.
* **Foreground** — it carries ``foregroundDeletion``: delete its dependents (those with
  dependents of their own also in the foreground, so the cascade stays ordered) and
  remove the finalizer once no dependent with ``blockOwnerDeletion`` exists any more.
* **Background / dangling** — it has ownerReferences and some owner is missing from the
  caches: confirm with a live GET (caches lag; an owner may be newer than its cache),
  then delete the object if every owner is gone, or drop just the dangling references
  if some owner lives.

Events that can change a decision enqueue the objects concerned: a deletion enqueues
the dependents of the deleted object and any owner waiting in the foreground for it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

from kubetrio.client import ClientError, Informer, KubeObject

from ._objects import is_deleting
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

log = logging.getLogger("kubetrio.controllers.gc")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@dataclasses.dataclass(frozen=True)
class MonitoredResource:
    """A resource the collector watches: how to reach it and the kind its objects have."""

    api_version: str
    resource: str
    kind: str
    namespaced: bool = True


DEFAULT_MONITORED = (
    MonitoredResource("v1", "pods", "Pod"),
    MonitoredResource("apps/v1", "replicasets", "ReplicaSet"),
    MonitoredResource("apps/v1", "deployments", "Deployment"),
    MonitoredResource("apps/v1", "statefulsets", "StatefulSet"),
    MonitoredResource("apps/v1", "daemonsets", "DaemonSet"),
    MonitoredResource("apps/v1", "controllerrevisions", "ControllerRevision"),
    MonitoredResource("batch/v1", "jobs", "Job"),
    MonitoredResource("batch/v1", "cronjobs", "CronJob"),
    MonitoredResource("v1", "services", "Service"),
    MonitoredResource("v1", "endpoints", "Endpoints"),
    MonitoredResource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    MonitoredResource("v1", "configmaps", "ConfigMap"),
    MonitoredResource("v1", "secrets", "Secret"),
    MonitoredResource("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    MonitoredResource("v1", "replicationcontrollers", "ReplicationController"),
    MonitoredResource("v1", "nodes", "Node", namespaced=False),
    MonitoredResource("coordination.k8s.io/v1", "leases", "Lease"),
)
"""What the collector watches by default (plugins' kinds can be added)."""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class GarbageCollector(QueueController):
    """Deletes dependents of deleted owners; implements Foreground and Orphan propagation."""

    name = "garbagecollector"
    workers = 4

    def __init__(self, monitored: tuple[MonitoredResource, ...] = DEFAULT_MONITORED) -> None:
        super().__init__()
        self.monitored = monitored
        self._by_kind = {(_group(m.api_version), m.kind): i for i, m in enumerate(monitored)}
        self.informers: list[Informer] = []
        self.objects: dict[str, tuple[int, str]] = {}  # uid -> (resource index, key)
        self.dependents: dict[str, set[tuple[int, str]]] = {}  # owner uid -> dependents

    def setup(self, ctx: ControllerContext) -> None:
        """Watch every monitored resource."""
        super().setup(ctx)
        for index, monitored in enumerate(self.monitored):
            informer = ctx.informers.informer(monitored.api_version, monitored.resource)
            self.informers.append(informer)
            informer.add_handler(_GraphHandler(self, index))

    def started_leading(self) -> None:
        """Look at every object that has owners or waits on a finalizer of ours."""
        for index, informer in enumerate(self.informers):
            for obj in informer.list():
                metadata = obj.get("metadata") or {}
                finalizers = metadata.get("finalizers") or []
                if metadata.get("ownerReferences") or (
                    is_deleting(obj) and (ORPHAN in finalizers or FOREGROUND in finalizers)
                ):
                    self.queue.add(f"{index}|{object_key(obj)}")

    # --- the graph ----------------------------------------------------------------------

    def observe(self, index: int, obj: KubeObject, old: KubeObject | None) -> None:
        """Index an added or changed object and enqueue what it affects."""
        key = object_key(obj)
        metadata = obj["metadata"]
        uid = metadata.get("uid", "")
        self.objects[uid] = (index, key)
        refs = metadata.get("ownerReferences") or []
        old_refs = ((old or {}).get("metadata") or {}).get("ownerReferences") or []
        for ref in old_refs:
            if ref not in refs:
                self.dependents.get(ref.get("uid", ""), set()).discard((index, key))
                self._enqueue_uid(ref.get("uid", ""))  # an owner may be waiting on it
        item = f"{index}|{key}"
        for ref in refs:
            self.dependents.setdefault(ref.get("uid", ""), set()).add((index, key))
            if ref.get("uid") not in self.objects:
                self.queue.add(item)  # possibly dangling: confirm live
        finalizers = metadata.get("finalizers") or []
        if is_deleting(obj) and (ORPHAN in finalizers or FOREGROUND in finalizers):
            self.queue.add(item)
        if is_deleting(obj) and not is_deleting(old or {}):
            for ref in refs:
                self._enqueue_uid(ref.get("uid", ""))

    def forget(self, index: int, obj: KubeObject) -> None:
        """An object is gone: its dependents may dangle, owners may stop waiting."""
        key = object_key(obj)
        metadata = obj["metadata"]
        uid = metadata.get("uid", "")
        if self.objects.get(uid) == (index, key):
            del self.objects[uid]
        for ref in metadata.get("ownerReferences") or []:
            owner_uid = ref.get("uid", "")
            self.dependents.get(owner_uid, set()).discard((index, key))
            if not self.dependents.get(owner_uid):
                self.dependents.pop(owner_uid, None)
            self._enqueue_uid(owner_uid)
        for dependent_index, dependent_key in self.dependents.get(uid, set()):
            self.queue.add(f"{dependent_index}|{dependent_key}")

    def _enqueue_uid(self, uid: str) -> None:
        found = self.objects.get(uid)
        if found is not None:
            self.queue.add(f"{found[0]}|{found[1]}")

    def _lookup(self, index: int, key: str) -> KubeObject | None:
        namespace, name = split_key(key)
        return self.informers[index].get(name, namespace)

    def dependents_of(self, uid: str) -> list[tuple[int, KubeObject]]:
        """The cached objects that name ``uid`` among their owners."""
        found = []
        for index, key in sorted(self.dependents.get(uid, set())):
            obj = self._lookup(index, key)
            if obj is not None and any(
                r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or []
            ):
                found.append((index, obj))
        return found

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Orphan, finish a foreground deletion, or collect a dangling dependent."""
        index_text, _, object_name = key.partition("|")
        index = int(index_text)
        obj = self._lookup(index, object_name)
        if obj is None:
            return None
        metadata = obj["metadata"]
        finalizers = metadata.get("finalizers") or []
        if is_deleting(obj) and ORPHAN in finalizers:
            await self.orphan_dependents(index, obj)
            return None
        if is_deleting(obj) and FOREGROUND in finalizers:
            return await self.delete_dependents(index, obj)
        if metadata.get("ownerReferences"):
            await self.collect_if_dangling(index, obj)
        return None

    async def orphan_dependents(self, index: int, owner: KubeObject) -> None:
        """Strip the owner from its dependents, then drop the ``orphan`` finalizer."""
        uid = owner["metadata"]["uid"]
        for dependent_index, dependent in self.dependents_of(uid):
            refs = [
                r for r in dependent["metadata"].get("ownerReferences") or [] if r["uid"] != uid
            ]
            await self._update(dependent_index, dependent, owner_refs=refs)
        await self._remove_finalizer(index, owner, ORPHAN)

    async def delete_dependents(self, index: int, owner: KubeObject) -> Result | None:
        """Delete dependents; drop ``foregroundDeletion`` once none blocks the owner."""
        uid = owner["metadata"]["uid"]
        blocking = 0
        for dependent_index, dependent in self.dependents_of(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            mine = next(r for r in refs if r.get("uid") == uid)
            if mine.get("blockOwnerDeletion"):
                blocking += 1
            if is_deleting(dependent):
                continue
            policy = "Foreground" if self.dependents.get(dependent["metadata"]["uid"]) else ""
            await self._delete(dependent_index, dependent, policy or "Background")
        if blocking:
            return None  # the dependents' deletions enqueue the owner again
        await self._remove_finalizer(index, owner, FOREGROUND)
        return None

    async def _owner_exists(self, namespace: str, ref: KubeObject) -> bool:
        uid = ref.get("uid", "")
        if uid in self.objects:
            return True
        index = self._by_kind.get((_group(ref.get("apiVersion", "")), ref.get("kind", "")))
        if index is None:
            return True  # a kind we cannot look up: never collect on a guess
        monitored = self.monitored[index]
        try:
            live = await self.client.get(
                monitored.api_version,
                monitored.resource,
                ref.get("name", ""),
                namespace=namespace if monitored.namespaced else "",
            )
        except ClientError as exc:
            if exc.not_found:
                return False
            raise
        return bool(live["metadata"].get("uid") == uid)

    async def collect_if_dangling(self, index: int, obj: KubeObject) -> None:
        """Delete ``obj`` if all its owners are gone; drop references to gone owners."""
        metadata = obj["metadata"]
        refs = metadata.get("ownerReferences") or []
        namespace = metadata.get("namespace", "")
        dangling = [ref for ref in refs if not await self._owner_exists(namespace, ref)]
        if not dangling:
            return
        if len(dangling) == len(refs):
            if not is_deleting(obj):
                await self._delete(index, obj, "Background")
            return
        gone = {ref["uid"] for ref in dangling}
        await self._update(index, obj, owner_refs=[r for r in refs if r["uid"] not in gone])

    # --- writes -------------------------------------------------------------------------

    async def _delete(self, index: int, obj: KubeObject, policy: str) -> None:
        monitored = self.monitored[index]
        metadata = obj["metadata"]
        try:
            await self.client.delete(
                monitored.api_version,
                monitored.resource,
                metadata["name"],
                namespace=metadata.get("namespace", ""),
                propagation_policy=policy,
                preconditions={"uid": metadata["uid"]},
            )
        except ClientError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    async def _update(
        self, index: int, obj: KubeObject, *, owner_refs: list[Any] | None = None
    ) -> None:
        monitored = self.monitored[index]
        changed = copy.deepcopy(obj)
        if owner_refs is not None:
            if owner_refs:
                changed["metadata"]["ownerReferences"] = owner_refs
            else:
                changed["metadata"].pop("ownerReferences", None)
        try:
            await self.client.update(
                monitored.api_version,
                monitored.resource,
                changed,
                namespace=obj["metadata"].get("namespace", ""),
            )
        except ClientError as exc:
            if not exc.not_found:
                raise

    async def _remove_finalizer(self, index: int, obj: KubeObject, finalizer: str) -> None:
        changed = copy.deepcopy(obj)
        changed["metadata"]["finalizers"] = [
            f for f in obj["metadata"].get("finalizers") or [] if f != finalizer
        ]
        await self._update(index, changed)


class _GraphHandler:
    """Feeds one monitored informer's events into the collector's graph."""

    def __init__(self, collector: GarbageCollector, index: int) -> None:
        self.collector = collector
        self.index = index

    def on_add(self, obj: KubeObject) -> None:
        self.collector.observe(self.index, obj, None)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.collector.observe(self.index, new, old)

    def on_delete(self, obj: KubeObject) -> None:
        self.collector.forget(self.index, obj)
