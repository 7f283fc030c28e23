"""The garbage collector: ownerReferences to any kind, cascading deletion and orphaning.

Built as upstream's (``pkg/controller/garbagecollector``), in three parts:

**Monitors.** The collector watches every resource the server serves that can be
listed, watched and deleted — built-in kinds, plugins' kinds and every CRD's kinds — in
each group's preferred version (events excepted, as upstream). The set comes from
discovery (:func:`kubetrio.client.discover`), read again every :data:`RESYNC_PERIOD`
seconds and at once when a CustomResourceDefinition changes, so kinds created after the
controller manager started are followed within moments; monitors of resources no
longer served are stopped. The built-in kinds of :data:`DEFAULT_MONITORED` are watched
from :meth:`GarbageCollector.setup` on, so a standby's graph is warm before it leads.

**The graph.** Every monitored object is a node keyed by uid: where it lives, its
ownerReferences, whether it is being deleted and whether it waits for its dependents
(``foregroundDeletion``); ``dependents`` maps an owner's uid to its dependents' uids,
also for owners never seen (they may be of a kind not monitored, or gone). Informer
events update the graph and enqueue the uids whose decision may have changed: a
dependent naming an owner the graph lacks (possibly dangling), the dependents of a
deleted object, owners waiting in the foreground for a dependent that went away or
stopped blocking, objects entering deletion with ``orphan``/``foregroundDeletion``.
Deletions seen by a monitor are remembered (uids are never reused), so a dependent of a
deleted owner is collected without asking the server about the owner again.

**Workers.** One reconcile per uid, level-based:

* ``orphan`` finalizer — remove the owner from every dependent's ownerReferences, then
  remove the finalizer (Orphan propagation).
* ``foregroundDeletion`` finalizer — enqueue the dependents (they see an owner waiting
  for them and delete themselves) and remove the finalizer once no dependent with
  ``blockOwnerDeletion: true`` is left (Foreground propagation).
* ownerReferences — read the object live, classify each owner: *solid* (exists, not
  waiting), *waiting* (in foreground deletion) or *dangling* (absent: the live GET by
  the reference's apiVersion/kind/name answers 404 or a different uid). With a solid
  owner, only the dangling and waiting references are removed; with none, the object is
  deleted — in the foreground if an owner waits and it has dependents of its own, else
  by its own finalizers' policy or in the background — with uid and resourceVersion
  preconditions, so nothing that changed meanwhile is deleted on stale grounds.

A reference's kind is mapped to a resource through discovery (a kind of a CRD too);
an unknown kind triggers a discovery resync and a retry, never a deletion on a guess.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

from kubetrio.client import (
    ApiResource,
    ClientError,
    Discovery,
    FunctionHandler,
    Informer,
    KubeObject,
    discover,
    group_of,
)

from ._reconcile import ControllerContext, PermanentError, QueueController, Result, TemporaryError

log = logging.getLogger("kubetrio.controllers.gc")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
RESYNC_PERIOD = 30.0
"""Seconds between discovery reads (upstream's default resync period is 30 s too)."""
RESYNC_MIN_INTERVAL = 0.5
"""Seconds between a CRD change and the discovery read it calls for (changes come in bursts)."""
SYNC_TIMEOUT = 10.0
"""Seconds a resync waits for the caches of new monitors before going on without them."""
ABSENT_CACHE_SIZE = 2000
"""How many owners known to be absent are remembered."""
IGNORED_RESOURCES = frozenset({("", "events"), ("events.k8s.io", "events")})
"""Resources never monitored (upstream's ``DefaultIgnoredResources``)."""
_MONITOR_VERBS = ("delete", "list", "watch")
_WRITE_RETRIES = 5


@dataclasses.dataclass(frozen=True)
class MonitoredResource:
    """A resource the collector watches: how to reach it and the kind its objects have."""

    api_version: str
    resource: str
    kind: str
    namespaced: bool = True

    @property
    def key(self) -> tuple[str, str]:
        """``(api_version, resource)``: what identifies a monitor."""
        return (self.api_version, self.resource)


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
"""Built-in resources watched from the start, before discovery adds every other one."""


@dataclasses.dataclass
class _Node:
    """What the graph knows of one observed object."""

    uid: str
    monitor: MonitoredResource
    namespace: str
    name: str
    owners: list[KubeObject]
    deleting: bool = False
    deleting_dependents: bool = False


@dataclasses.dataclass
class _Monitor:
    resource: MonitoredResource
    informer: Informer
    handler: _GraphHandler


def _finalizers(obj: KubeObject) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _deleting(obj: KubeObject) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _blocks(ref: KubeObject) -> bool:
    return bool(ref.get("blockOwnerDeletion"))


class GarbageCollector(QueueController):
    """Deletes dependents of deleted owners; implements Foreground and Orphan propagation."""

    name = "garbagecollector"
    workers = 4

    def __init__(self, monitored: tuple[MonitoredResource, ...] = DEFAULT_MONITORED) -> None:
        super().__init__()
        self.initial = monitored
        self.monitors: dict[tuple[str, str], _Monitor] = {}
        self.nodes: dict[str, _Node] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self.discovery: Discovery | None = None
        self._absent: collections.OrderedDict[tuple[str, ...], None] = collections.OrderedDict()
        self._resync_wanted = trio.Event()
        self.synced = trio.Event()
        """Set once discovery was first read (and the monitors it called for synced)."""

    def setup(self, ctx: ControllerContext) -> None:
        """Watch the built-in resources, and CRDs to learn of new kinds at once."""
        super().setup(ctx)
        for monitored in self.initial:
            self._monitor(monitored)
        crds = ctx.informers.informer("apiextensions.k8s.io/v1", "customresourcedefinitions")
        crds.add_handler(FunctionHandler(lambda _: self.request_resync()))

    def request_resync(self) -> None:
        """Read discovery again soon (a kind may have appeared or gone)."""
        self._resync_wanted.set()

    def started_leading(self) -> None:
        """Look at every object that has owners or waits on a finalizer of ours."""
        for node in list(self.nodes.values()):
            if node.owners or node.deleting:
                self.queue.add(node.uid)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow discovery and run the workers until cancelled."""
        # Workers start at once: until discovery is read, references to kinds not yet
        # monitored are retried (never taken for dangling).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_discovery)
            await nursery.start(super().run)
            task_status.started()

    # --- monitors -----------------------------------------------------------------------

    async def _follow_discovery(self) -> None:
        while True:
            self._resync_wanted = trio.Event()
            try:
                await self.resync()
            except Exception as exc:  # the server may be busy or restarting: next period
                log.warning("garbage collector: discovery failed: %s", exc)
            self.synced.set()
            with trio.move_on_after(RESYNC_PERIOD):
                await self._resync_wanted.wait()
            # Let a burst of CRD changes, and the API server's own following of them
            # (serving or unserving the kind), settle before reading discovery.
            await trio.sleep(RESYNC_MIN_INTERVAL)

    async def resync(self) -> None:
        """Read discovery; monitor what became deletable, stop monitoring what went away."""
        found = await discover(self.client)
        self.discovery = found
        wanted: dict[tuple[str, str], MonitoredResource] = {}
        for r in found.preferred_resources(_MONITOR_VERBS):
            if (r.group, r.resource) in IGNORED_RESOURCES:
                continue
            wanted[(r.api_version, r.resource)] = MonitoredResource(
                r.api_version, r.resource, r.kind, r.namespaced
            )
        for key, monitor in self.monitors.items():
            if key[0] in found.failed:
                wanted.setdefault(key, monitor.resource)  # unknown for now, not gone
        added = [self._monitor(m) for key, m in wanted.items() if key not in self.monitors]
        if added:
            log.info("garbage collector: monitoring %s", ", ".join(m.resource for m in added))
            with trio.move_on_after(SYNC_TIMEOUT):
                for informer in added:
                    await informer.synced.wait()
        served = {(r.api_version, r.resource) for r in found.resources}
        for key in [k for k in self.monitors if k not in wanted]:
            self._unmonitor(key, served=key in served)

    def _monitor(self, monitored: MonitoredResource) -> Informer:
        informer = self.ctx.informers.informer(monitored.api_version, monitored.resource)
        handler = _GraphHandler(self, monitored)
        self.monitors[monitored.key] = _Monitor(monitored, informer, handler)
        informer.add_handler(handler)
        return informer

    def _unmonitor(self, key: tuple[str, str], *, served: bool) -> None:
        """Stop a monitor whose resource is no longer served (or no longer deletable).

        Its objects leave the graph without being taken for deleted (a CRD's preferred
        version may just have changed: the new monitor has them already); their owners
        and dependents are looked at again, with live reads. The informer itself is
        stopped only if its resource is gone: other controllers may share it.
        """
        monitor = self.monitors.pop(key)
        log.info("garbage collector: no longer monitoring %s", monitor.resource.resource)
        monitor.informer.remove_handler(monitor.handler)
        for obj in monitor.informer.list():
            self.forget(monitor.resource, obj, absent=False)
        if not served:
            self.ctx.informers.stop(monitor.informer)

    # --- the graph ----------------------------------------------------------------------

    def observe(
        self, monitored: MonitoredResource, obj: KubeObject, old: KubeObject | None
    ) -> None:
        """Index an added or changed object and enqueue what it affects."""
        metadata = obj["metadata"]
        uid = metadata.get("uid", "")
        if not uid:
            return
        before = self.nodes.get(uid)
        finalizers = _finalizers(obj)
        node = _Node(
            uid=uid,
            monitor=monitored,
            namespace=metadata.get("namespace", ""),
            name=metadata.get("name", ""),
            owners=list(metadata.get("ownerReferences") or []),
            deleting=_deleting(obj),
            deleting_dependents=_deleting(obj) and FOREGROUND in finalizers,
        )
        self.nodes[uid] = node
        if before is None:
            # Dependents seen first may name this owner with other coordinates (a bad
            # reference): let them be checked.
            for dependent_uid in self.dependents.get(uid, ()):
                dependent = self.nodes.get(dependent_uid)
                if dependent is not None and any(
                    r.get("uid") == uid and not self._matches(r, node, dependent.namespace)
                    for r in dependent.owners
                ):
                    self.queue.add(dependent_uid)
        old_refs = {r.get("uid", ""): r for r in (before.owners if before else [])}
        new_refs = {r.get("uid", ""): r for r in node.owners}
        for owner_uid, ref in old_refs.items():
            changed = new_refs.get(owner_uid)
            if changed is None:
                self._discard_dependent(owner_uid, uid)
            if _blocks(ref) and (changed is None or not _blocks(changed)):
                self.queue.add(owner_uid)  # an owner may be waiting for this one
        for owner_uid, ref in new_refs.items():
            self.dependents.setdefault(owner_uid, set()).add(uid)
            owner = self.nodes.get(owner_uid)
            if owner is None or not self._matches(ref, owner, node.namespace):
                self.queue.add(uid)  # possibly dangling: confirm live
            elif owner.deleting_dependents:
                self.queue.add(uid)
        if node.deleting and (ORPHAN in finalizers or FOREGROUND in finalizers):
            self.queue.add(uid)
        if node.deleting_dependents and not (before and before.deleting_dependents):
            for dependent_uid in self.dependents.get(uid, ()):
                self.queue.add(dependent_uid)

    def forget(self, monitored: MonitoredResource, obj: KubeObject, *, absent: bool = True) -> None:
        """An object is gone (``absent``) or no longer watched: re-examine its neighbours."""
        uid = (obj.get("metadata") or {}).get("uid", "")
        node = self.nodes.get(uid)
        if node is None or node.monitor != monitored:
            return  # not ours (another monitor of the same kind holds it now)
        del self.nodes[uid]
        if absent:
            self._remember_absent(("uid", uid))
        for ref in node.owners:
            owner_uid = ref.get("uid", "")
            self._discard_dependent(owner_uid, uid)
            if owner_uid in self.nodes:
                self.queue.add(owner_uid)  # it may be waiting for this dependent
        for dependent_uid in self.dependents.get(uid, ()):
            self.queue.add(dependent_uid)

    def _discard_dependent(self, owner_uid: str, uid: str) -> None:
        dependents = self.dependents.get(owner_uid)
        if dependents is not None:
            dependents.discard(uid)
            if not dependents:
                del self.dependents[owner_uid]

    def _matches(self, ref: KubeObject, owner: _Node, dependent_namespace: str) -> bool:
        """Whether ``ref`` names ``owner`` by its coordinates, not just its uid."""
        return (
            group_of(ref.get("apiVersion", "")) == group_of(owner.monitor.api_version)
            and ref.get("kind") == owner.monitor.kind
            and ref.get("name") == owner.name
            and (not owner.namespace or owner.namespace == dependent_namespace)
        )

    def _remember_absent(self, key: tuple[str, ...]) -> None:
        self._absent[key] = None
        self._absent.move_to_end(key)
        while len(self._absent) > ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    def _is_absent_uid(self, uid: str) -> bool:
        return ("uid", uid) in self._absent

    def dependents_of(self, uid: str) -> list[_Node]:
        """The observed objects that name ``uid`` among their owners."""
        found = []
        for dependent_uid in sorted(self.dependents.get(uid, ())):
            node = self.nodes.get(dependent_uid)
            if node is not None and any(r.get("uid") == uid for r in node.owners):
                found.append(node)
        return found

    def _cached(self, node: _Node) -> KubeObject | None:
        monitor = self.monitors.get(node.monitor.key)
        if monitor is None:
            return None
        return monitor.informer.get(node.name, node.namespace)

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Orphan, finish a foreground deletion, or collect an object whose owners are gone."""
        node = self.nodes.get(key)
        if node is None:
            return None
        obj = self._cached(node)
        if obj is None:
            return None
        finalizers = _finalizers(obj)
        if _deleting(obj) and ORPHAN in finalizers:
            await self.orphan_dependents(node)
            return None
        if _deleting(obj) and FOREGROUND in finalizers:
            await self.process_deleting_dependents(node)
            return None
        if _deleting(obj):
            return None  # a one-way trip: its dependents are looked at once it is gone
        if node.owners:
            await self.attempt_to_delete(node)
        return None

    async def orphan_dependents(self, owner: _Node) -> None:
        """Strip the owner from its dependents, then drop the ``orphan`` finalizer."""
        for dependent in self.dependents_of(owner.uid):
            await self._edit_owner_refs(dependent, remove={owner.uid})
        await self._remove_finalizer(owner, ORPHAN)

    async def process_deleting_dependents(self, owner: _Node) -> None:
        """Have the dependents deleted; drop ``foregroundDeletion`` once none blocks."""
        blocking = False
        for dependent in self.dependents_of(owner.uid):
            ref = next(r for r in dependent.owners if r.get("uid") == owner.uid)
            blocking = blocking or _blocks(ref)
            if not dependent.deleting_dependents:
                self.queue.add(dependent.uid)
        if not blocking:
            await self._remove_finalizer(owner, FOREGROUND)
        # else: each blocking dependent's deletion (or unblocking) enqueues the owner again

    async def attempt_to_delete(self, node: _Node) -> None:
        """Delete ``node``'s object if all its owners are gone or waiting for it."""
        latest = await self._get_live(node)
        if latest is None:
            return
        refs = list(latest["metadata"].get("ownerReferences") or [])
        if not refs:
            return
        solid: list[KubeObject] = []
        dangling: list[KubeObject] = []
        waiting: list[KubeObject] = []
        for ref in refs:
            state = await self._classify(node, ref)
            {"solid": solid, "dangling": dangling, "waiting": waiting}[state].append(ref)
        if solid:
            if dangling or waiting:
                gone = {r.get("uid", "") for r in dangling + waiting}
                log.info(
                    "garbage collector: %s %s: removing references to %s",
                    node.monitor.kind,
                    _name(node),
                    ", ".join(f"{r.get('kind')} {r.get('name')}" for r in dangling + waiting),
                )
                await self._edit_owner_refs(node, remove=gone)
            return
        if waiting and self.dependents_of(node.uid):
            if any(d.deleting_dependents for d in self.dependents_of(node.uid)):
                # A dependent waits for its own dependents while an owner waits for this
                # one: unblock this object's references so a cycle cannot hang both.
                await self._edit_owner_refs(node, unblock=True)
            await self._delete(node, latest, "Foreground")
            return
        finalizers = _finalizers(latest)
        policy = (
            "Orphan"
            if ORPHAN in finalizers
            else "Foreground"
            if FOREGROUND in finalizers
            else "Background"
        )
        log.info(
            "garbage collector: deleting %s %s (owners gone: %s), propagation %s",
            node.monitor.kind,
            _name(node),
            ", ".join(f"{r.get('kind')} {r.get('name')}" for r in dangling + waiting),
            policy,
        )
        await self._delete(node, latest, policy)

    async def _classify(self, node: _Node, ref: KubeObject) -> str:
        """``solid``, ``waiting`` (in foreground deletion) or ``dangling``."""
        uid = ref.get("uid", "")
        if self._is_absent_uid(uid):
            return "dangling"
        owner = self.nodes.get(uid)
        if owner is not None and self._matches(ref, owner, node.namespace):
            # Seen by a monitor: exists (a deletion would have been seen as well).
            return "waiting" if owner.deleting_dependents else "solid"
        resource = await self._resolve(ref)
        if resource.namespaced and not node.namespace:
            raise PermanentError(
                f"{node.monitor.kind} {node.name} is cluster-scoped but names the namespaced "
                f"owner {ref.get('kind')} {ref.get('name')}: never collected"
            )
        namespace = node.namespace if resource.namespaced else ""
        coordinates = (
            "ref",
            resource.api_version,
            ref.get("kind", ""),
            namespace,
            ref.get("name", ""),
            uid,
        )
        if coordinates in self._absent:
            return "dangling"
        try:
            live = await self.client.get(
                resource.api_version, resource.resource, ref.get("name", ""), namespace=namespace
            )
        except ClientError as exc:
            if not exc.not_found:
                raise
            self._remember_absent(coordinates)
            return "dangling"
        if live["metadata"].get("uid") != uid:
            self._remember_absent(coordinates)
            return "dangling"
        if _deleting(live) and FOREGROUND in _finalizers(live):
            return "waiting"
        return "solid"

    async def _resolve(self, ref: KubeObject) -> ApiResource:
        """The resource of an ownerReference's apiVersion and kind, through discovery."""
        api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
        found = self.discovery.kind(api_version, kind) if self.discovery else None
        if found is None:
            self.request_resync()
            raise TemporaryError(f"owner kind {kind} of {api_version} is not served (yet)")
        return found

    # --- writes -------------------------------------------------------------------------

    async def _get_live(self, node: _Node) -> KubeObject | None:
        try:
            live = await self.client.get(
                node.monitor.api_version, node.monitor.resource, node.name, namespace=node.namespace
            )
        except ClientError as exc:
            if exc.not_found:
                return None
            raise
        return live if live["metadata"].get("uid") == node.uid else None

    async def _patch(self, node: _Node, metadata: KubeObject) -> None:
        await self.client.patch(
            node.monitor.api_version,
            node.monitor.resource,
            node.name,
            {"metadata": metadata},
            namespace=node.namespace,
        )

    async def _edit_owner_refs(
        self, node: _Node, *, remove: Iterable[str] = (), unblock: bool = False
    ) -> None:
        """Remove owner uids from (or unblock) an object's ownerReferences, read live."""
        removed = set(remove)

        def change(latest: KubeObject) -> KubeObject | None:
            refs: list[Any] = list(latest["metadata"].get("ownerReferences") or [])
            kept = [r for r in refs if r.get("uid") not in removed]
            if unblock:
                kept = [{**r, "blockOwnerDeletion": False} for r in kept]
            return None if kept == refs else {"ownerReferences": kept or None}

        await self._patch_live(node, change)

    async def _remove_finalizer(self, node: _Node, finalizer: str) -> None:
        def change(latest: KubeObject) -> KubeObject | None:
            finalizers = _finalizers(latest)
            if finalizer not in finalizers:
                return None
            return {"finalizers": [f for f in finalizers if f != finalizer] or None}

        await self._patch_live(node, change)

    async def _patch_live(
        self, node: _Node, change: Callable[[KubeObject], KubeObject | None]
    ) -> None:
        """Patch the metadata ``change`` derives from the object as it is now, with its
        resourceVersion as precondition, reading again on a conflict; None: nothing to do.
        An object that is gone needs nothing."""
        for _ in range(_WRITE_RETRIES):
            latest = await self._get_live(node)
            if latest is None:
                return
            metadata = change(latest)
            if metadata is None:
                return
            try:
                await self._patch(
                    node, {"resourceVersion": latest["metadata"]["resourceVersion"], **metadata}
                )
                return
            except ClientError as exc:
                if exc.not_found:
                    return
                if not exc.conflict:
                    raise
        raise TemporaryError(f"{node.monitor.kind} {_name(node)} keeps changing")

    async def _delete(self, node: _Node, latest: KubeObject, policy: str) -> None:
        """Delete what was read as ``latest``; if it changed since, only if its owners did not."""
        metadata = latest["metadata"]
        preconditions = {"uid": node.uid, "resourceVersion": metadata["resourceVersion"]}
        for attempt in range(2):
            try:
                await self.client.delete(
                    node.monitor.api_version,
                    node.monitor.resource,
                    node.name,
                    namespace=node.namespace,
                    propagation_policy=policy,
                    preconditions=preconditions,
                )
                return
            except ClientError as exc:
                if exc.not_found:
                    return
                if not exc.conflict or attempt:
                    raise
            # Changed since read (a status write, say): still delete if its owners did not.
            again = await self._get_live(node)
            if again is None:
                return
            if again["metadata"].get("ownerReferences") != metadata.get("ownerReferences"):
                raise TemporaryError(f"the owners of {node.monitor.kind} {_name(node)} changed")
            preconditions = {"uid": node.uid}


def _name(node: _Node) -> str:
    return f"{node.namespace}/{node.name}" if node.namespace else node.name


class _GraphHandler:
    """Feeds one monitored informer's events into the collector's graph."""

    def __init__(self, collector: GarbageCollector, monitored: MonitoredResource) -> None:
        self.collector = collector
        self.monitored = monitored

    def on_add(self, obj: KubeObject) -> None:
        self.collector.observe(self.monitored, obj, None)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.collector.observe(self.monitored, new, old)

    def on_delete(self, obj: KubeObject) -> None:
        self.collector.forget(self.monitored, obj)
