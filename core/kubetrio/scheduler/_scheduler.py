"""The scheduler service: informers → cache and queue → cycles → bindings and events.

One trio task pops pods and runs the synchronous cycle of the pod's profile
(:class:`~kubetrio.scheduler.Framework`); the chosen node is *assumed* in the cache at
once and the binding (a ``pods/binding`` POST, or a plugin's ``bind``) runs in its own
task, so the next cycle does not wait for the API round trip — kube-scheduler's
scheduling cycle / binding cycle split. A failed binding forgets the assumption and
puts the pod back with backoff.

A pod no node fits gets a ``FailedScheduling`` event and the ``PodScheduled=False``
condition (reason ``Unschedulable``) and waits in the queue's unschedulable pool until
the cluster changes: a node added or updated, a pod deleted or bound elsewhere.

Pods whose ``spec.schedulerName`` names none of the profiles are someone else's: ignored.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import trio

from kubetrio.client import Client, ClientError, Informer, KubeObject, SharedInformers
from kubetrio.plugins import PluginManager, check_scheduler_plugin
from kubetrio.providers import PostFilterResult, SchedulerPlugin, UserInfo

from . import _prom
from ._cache import SchedulerCache
from ._config import SchedulerConfig
from ._events import EventQueue
from ._framework import FitError, Framework
from ._queue import QueuedPod, SchedulingQueue
from ._resources import pod_info

log = logging.getLogger("kubetrio.scheduler")

COMPONENT = "default-scheduler"
"""The ``source.component`` of the scheduler's events, as kube-scheduler's."""
USER = UserInfo(name="system:kube-scheduler")
"""kube-scheduler's identity, bound to the ``system:kube-scheduler`` and
``system:volume-scheduler`` ClusterRoles: what the composition root runs it as."""


_stamp: tuple[int, str] = (0, "")


def _now() -> str:
    """RFC 3339 at second precision; formatted once per second (events come in bursts)."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _stamp[1]


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Scheduler:
    """Assigns pending pods to nodes. Start with ``await nursery.start(scheduler.run)``.

    :param client: the cluster client (in-process or HTTP); the only way to the cluster.
    :param plugins: where the scheduler plugins come from (``PluginManager.scheduler_plugins``);
        None loads the installed plugins (``kubetrio.plugins.load()``).
    :param config: profiles, plugin weights, backoff (:class:`SchedulerConfig`); a path to a
        ``KubeSchedulerConfiguration`` YAML file also works.
    :param extra_plugins: plugin objects to use beside the registered ones (tests, embedding).
    """

    def __init__(
        self,
        client: Client,
        *,
        plugins: PluginManager | None = None,
        config: SchedulerConfig | str | os.PathLike[str] | None = None,
        extra_plugins: Sequence[SchedulerPlugin] = (),
    ) -> None:
        self.client = client
        if config is None:
            config = SchedulerConfig()
        elif not isinstance(config, SchedulerConfig):
            config = SchedulerConfig.load(os.fspath(config))
        self.config = config
        if plugins is None:
            from kubetrio import plugins as plugin_loader

            plugins = plugin_loader.load()
        for extra in extra_plugins:  # registered ones were checked by the plugin manager
            check_scheduler_plugin("(extra_plugins)", extra)
        providers = [r.provider for r in plugins.scheduler_plugins()] + list(extra_plugins)
        self.frameworks = {
            profile.scheduler_name: Framework(
                providers,
                profile,
                percentage_of_nodes_to_score=config.percentage_of_nodes_to_score,
            )
            for profile in config.profiles
        }
        self._requeue_on: dict[str, frozenset[str] | None] = {}
        for framework in self.frameworks.values():
            for name, plugin in framework.plugins.items():
                wanted = getattr(plugin, "requeue_on", None)
                self._requeue_on[name] = None if wanted is None else frozenset(wanted)
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(
            initial_backoff=config.pod_initial_backoff_seconds,
            max_backoff=config.pod_max_backoff_seconds,
            max_unschedulable=config.pod_max_in_unschedulable_seconds,
        )
        _prom.watch_queue(self.queue)
        self.caches = _PluginCaches(self)
        """Caches of other API objects that plugins asked for (``ask_for_caches``)."""
        asked: set[int] = set()
        for framework in self.frameworks.values():
            for plugin in framework.plugins.values():
                ask = getattr(plugin, "ask_for_caches", None)
                if ask is not None and id(plugin) not in asked:
                    asked.add(id(plugin))
                    ask(self.caches)
        self.nodes = Informer(client, "v1", "nodes")
        self.pods = Informer(client, "v1", "pods")
        self.namespaces = Informer(client, "v1", "namespaces")
        self.scheduled = 0
        """Pods bound so far (for benchmarks and metrics)."""
        self.failed_attempts = 0
        """Cycles that found no node."""
        self.preemptions = 0
        """Preemptions started (a node chosen, its victims being deleted)."""
        self._binds = trio.CapacityLimiter(config.parallel_binds)
        self.events = EventQueue()
        """Events on their way to the API server (bounded; ``events.dropped`` counts losses)."""
        self._nursery: trio.Nursery | None = None
        self.nodes.add_handler(_NodeHandler(self))
        self.pods.add_handler(_PodHandler(self))
        self.namespaces.add_handler(_NamespaceHandler(self))

    # --- service ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch the cluster and schedule pods until cancelled; ``started`` once synced."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.caches.shared.run)
            await nursery.start(self.namespaces.run)
            await nursery.start(self.nodes.run)
            await nursery.start(self.pods.run)
            nursery.start_soon(self._send_events)
            task_status.started()
            while True:
                entry: QueuedPod | None = await self.queue.pop()
                # Run cycles for up to a time slice before yielding: trio gives each
                # runnable task one step per round, and with dozens of API writers
                # runnable, one cycle per round would starve the scheduler (kube-scheduler
                # has its own goroutine and cores; here it shares one thread).
                deadline = time.perf_counter() + self.config.cycle_slice_seconds
                while entry is not None:
                    self.schedule_one(entry)
                    if time.perf_counter() >= deadline:
                        break
                    entry = self.queue.pop_nowait()
                await trio.lowlevel.checkpoint()

    def responsible_for(self, pod: KubeObject) -> bool:
        """Whether one of our profiles schedules this pod."""
        name = (pod.get("spec") or {}).get("schedulerName") or "default-scheduler"
        return name in self.frameworks

    # --- one cycle -------------------------------------------------------------------------

    def schedule_one(self, entry: QueuedPod) -> None:
        """Run the scheduling cycle of one popped pod; start its binding if it fits."""
        info = entry.info
        pod = info.pod
        framework = self.frameworks[(pod.get("spec") or {}).get("schedulerName") or COMPONENT]
        if self.cache.pod_node(info.key) is not None:
            self.queue.done(info.key)  # bound meanwhile (informer saw it): nothing to do
            return
        entry.attempt_started = time.perf_counter()
        try:
            node, state = framework.schedule(info, self.cache)
        except FitError as error:
            self._attempted(entry, framework, _prom.UNSCHEDULABLE)
            self.failed_attempts += 1
            nominated = self._after_post_filter(info, error.post_filter)
            self.queue.add_unschedulable(entry, plugins=error.plugins)
            self._record_failure(pod, str(error), nominated_node=nominated)
            return
        except Exception as exc:  # a faulty plugin must not stop the scheduler
            self._attempted(entry, framework, _prom.ERROR)
            log.exception("scheduling %s failed", info.key)
            self.queue.add_unschedulable(entry, plugins=None)
            self._record_failure(pod, f"running the scheduling cycle: {exc}", reason="Error")
            return
        self.cache.assume(info, node.name)
        self.cache.clear_nomination(info.key)
        assert self._nursery is not None
        self._nursery.start_soon(self._bind, entry, framework, node, state)

    # --- preemption --------------------------------------------------------------------------

    def _after_post_filter(self, info: Any, result: PostFilterResult | None) -> str | None:
        """Act on what the post filter decided: nominate the pod and start deleting the
        victims, or clear a nomination that no longer helps. Returns the nomination to
        record in ``status.nominatedNodeName`` (``""`` clears it, None leaves it)."""
        if result is None or result.nominated_node is None:
            return None
        if not result.nominated_node:
            had = self.cache.nominated_node(info.key) or (info.pod.get("status") or {}).get(
                "nominatedNodeName"
            )
            self.cache.clear_nomination(info.key)
            return "" if had else None
        self.cache.nominate(info, result.nominated_node)
        self.preemptions += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._preempt, info, result.nominated_node, list(result.victims))
        return result.nominated_node

    async def _preempt(self, preemptor: Any, node_name: str, victims: list[Any]) -> None:
        """Delete the victims (kube-scheduler's ``prepareCandidate``), then take the
        nominations of lower-priority pods on that node away: they may not fit there
        any more and should look elsewhere."""
        async with trio.open_nursery() as nursery:
            for victim in victims:
                if not victim.pod["metadata"].get("deletionTimestamp"):
                    nursery.start_soon(self._preempt_one, preemptor.pod, node_name, victim.pod)
        for other in self.cache.nominated_pods(node_name):
            if other.priority < preemptor.priority:
                self.cache.clear_nomination(other.key)
                await self._patch_status(other.pod, {"nominatedNodeName": None})

    async def _preempt_one(self, preemptor: KubeObject, node_name: str, victim: KubeObject) -> None:
        """Mark a victim ``DisruptionTarget`` (reason ``PreemptionByScheduler``), delete it
        with its grace period and record the ``Preempted`` event, as kube-scheduler does."""
        metadata = victim["metadata"]
        scheduler_name = (preemptor.get("spec") or {}).get("schedulerName") or COMPONENT
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": f"{scheduler_name}: preempting to accommodate a higher priority pod",
            "lastProbeTime": None,
            "lastTransitionTime": _now(),
        }
        # Strategic merge: conditions merge by type, the kubelet's stay as they are.
        if not await self._patch_status(victim, {"conditions": [condition]}, "strategic"):
            return
        try:
            await self.client.delete(
                "v1",
                "pods",
                metadata["name"],
                namespace=metadata.get("namespace", ""),
                preconditions={"uid": metadata["uid"]} if metadata.get("uid") else None,
            )
        except ClientError as exc:
            if not exc.not_found and not exc.conflict:
                log.warning("preempting %s: %s", metadata["name"], exc)
            return
        self._event(
            victim,
            "Normal",
            "Preempted",
            f"Preempted by pod {preemptor['metadata'].get('uid', '')} on node {node_name}",
            action="Preempting",
            related=preemptor,
        )

    async def _patch_status(
        self, pod: KubeObject, status: KubeObject, patch_type: str = "merge"
    ) -> bool:
        """Patch ``status`` into a pod's status; False when the pod is gone or it failed."""
        metadata = pod["metadata"]
        try:
            await self.client.patch(
                "v1",
                "pods",
                metadata["name"],
                {"status": status},
                namespace=metadata.get("namespace", ""),
                subresource="status",
                patch_type=patch_type,
            )
        except ClientError as exc:
            if not exc.not_found:
                log.warning("patching the status of %s: %s", metadata["name"], exc)
            return False
        return True

    async def _bind(self, entry: QueuedPod, framework: Framework, node: Any, state: Any) -> None:
        info = entry.info
        pod = info.pod
        metadata = pod["metadata"]
        try:
            async with self._binds:
                for stage in framework.stages["preBind"]:
                    refused = await stage.call(self.client, state, info, node.name)
                    if refused is not None:
                        raise _PreBindRefused(f'running PreBind plugin "{stage.name}": {refused}')
                for stage in framework.stages["bind"]:
                    if await stage.call(self.client, pod, node.name):
                        break
                else:
                    await self.client.create(
                        "v1",
                        "pods",
                        {
                            "apiVersion": "v1",
                            "kind": "Binding",
                            "metadata": {"name": metadata["name"], "uid": metadata.get("uid")},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": node.name},
                        },
                        namespace=info.namespace,
                        subresource="binding",
                        name=metadata["name"],
                    )
        except Exception as exc:
            self._attempted(entry, framework, _prom.ERROR)
            self.cache.forget(info.key)
            framework.unreserve(state, info, node)
            if isinstance(exc, ClientError) and (exc.not_found or exc.conflict):
                # Deleted, or bound by someone else: the informer will tell; drop it.
                self.queue.delete(info.key)
                return
            log.warning("binding %s to %s failed: %s", info.key, node.name, exc)
            self.queue.add_unschedulable(entry, plugins=None)
            if isinstance(exc, _PreBindRefused):
                self._record_failure(pod, str(exc), reason="SchedulerError")
            else:
                self._record_failure(pod, f"binding rejected: {exc}", reason="FailedScheduling")
            return
        self._attempted(entry, framework, _prom.SCHEDULED)
        _prom.scheduled(entry.attempts + 1, trio.current_time() - entry.timestamp)
        self.scheduled += 1
        self.queue.done(info.key)
        self._event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {info.namespace}/{info.name} to {node.name}",
        )

    @staticmethod
    def _attempted(entry: QueuedPod, framework: Framework, result: str) -> None:
        elapsed = time.perf_counter() - entry.attempt_started
        _prom.attempt(result, framework.scheduler_name, elapsed)

    # --- failures and events -----------------------------------------------------------------

    def _record_failure(
        self,
        pod: KubeObject,
        message: str,
        *,
        reason: str = "",
        nominated_node: str | None = None,
    ) -> None:
        self._event(pod, "Warning", "FailedScheduling", message)
        assert self._nursery is not None
        self._nursery.start_soon(
            self._set_unschedulable, pod, message, reason or "Unschedulable", nominated_node
        )

    async def _set_unschedulable(
        self, pod: KubeObject, message: str, reason: str, nominated_node: str | None = None
    ) -> None:
        """Set ``PodScheduled=False`` with the reason, as kube-scheduler does, and the
        nomination preemption made (``status.nominatedNodeName``; ``""`` clears it)."""
        conditions = [
            c
            for c in (pod.get("status") or {}).get("conditions") or []
            if c.get("type") != "PodScheduled"
        ]
        old = next(
            (
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ),
            None,
        )
        status: KubeObject = {}
        if nominated_node is not None and nominated_node != (
            (pod.get("status") or {}).get("nominatedNodeName") or ""
        ):
            status["nominatedNodeName"] = nominated_node or None
        if not status and old and old.get("reason") == reason and old.get("message") == message:
            return  # nothing new to say
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": _now(),
            }
        )
        status["conditions"] = conditions
        await self._patch_status(pod, status)

    def _event(
        self,
        pod: KubeObject,
        kind: str,
        reason: str,
        message: str,
        *,
        action: str = "",
        related: KubeObject | None = None,
    ) -> None:
        """Queue an event about a pod (``related``: a second pod it concerns); Normal
        events are best effort and dropped under overload (:class:`EventQueue`)."""
        metadata = pod["metadata"]
        namespace = metadata.get("namespace") or "default"
        if kind != "Warning" and self.events.full():  # not even built
            self.events.drop(kind, reason, f"{namespace}/{metadata['name']}")
            return
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named as client-go's recorder names events: <object>.<unix nanos in hex>.
            "metadata": {"name": f"{metadata['name']}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": metadata["name"],
                "namespace": namespace,
                "uid": metadata.get("uid", ""),
                "resourceVersion": metadata.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "action": action or ("Binding" if reason == "Scheduled" else "Scheduling"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": _now_micro(),
            "count": 1,
        }
        if related is not None:
            other = related["metadata"]
            event["related"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": other["name"],
                "namespace": other.get("namespace") or "default",
                "uid": other.get("uid", ""),
            }
        self.events.put(event)

    async def _send_events(self) -> None:
        """Write the queued events, one at a time (behind the bindings' many tasks)."""
        while True:
            event = await self.events.get()
            try:
                await self.client.create(
                    "v1", "events", event, namespace=event["metadata"]["namespace"]
                )
            except ClientError as exc:
                log.warning("event not recorded: %s", exc)

    # --- informer callbacks --------------------------------------------------------------------

    def cluster_changed(self, event: str) -> None:
        """Give the unschedulable pods that ``event`` may help another chance."""
        self.queue.move_all_to_active_or_backoff(event, self._interested)

    def _interested(self, plugins: set[str], event: str) -> bool:
        """Whether a pod rejected by ``plugins`` may fit after ``event``: a plugin that
        declares ``requeue_on`` is asked; one that does not (or a pod rejected before
        any plugin was named) is assumed to care about every change."""
        if not plugins:
            return True
        for name in plugins:
            wanted = self._requeue_on.get(name)
            if wanted is None or event in wanted:
                return True
        return False


class _PreBindRefused(Exception):
    """A pre_bind stage refused the binding; the message is the event's."""


_KINDS = {
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "persistentvolumes": "PersistentVolume",
    "storageclasses": "StorageClass",
    "csinodes": "CSINode",
    "csidrivers": "CSIDriver",
    "csistoragecapacities": "CSIStorageCapacity",
}


class _PluginCaches:
    """The :class:`~kubetrio.providers.ApiCaches` handed to plugins' ``ask_for_caches``:
    shared informers on the scheduler's client whose changes retry unschedulable pods
    (events named as kube-scheduler's cluster events: ``PersistentVolumeClaimAdd``, …)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.shared = SharedInformers(scheduler.client)
        self._watched: set[int] = set()

    def informer(self, api_version: str, resource: str) -> Informer:
        """The shared cache of ``resource``; its changes requeue unschedulable pods."""
        found = self.shared.informer(api_version, resource)
        if id(found) not in self._watched:
            self._watched.add(id(found))
            found.add_handler(_ChangeHandler(self.scheduler, _KINDS.get(resource, resource)))
        return found


class _ChangeHandler:
    def __init__(self, scheduler: Scheduler, kind: str) -> None:
        self.scheduler = scheduler
        self.kind = kind

    def on_add(self, obj: KubeObject) -> None:
        self.scheduler.cluster_changed(f"{self.kind}Add")

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.scheduler.cluster_changed(f"{self.kind}Update")

    def on_delete(self, obj: KubeObject) -> None:
        self.scheduler.cluster_changed(f"{self.kind}Delete")


class _NamespaceHandler:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def on_add(self, obj: KubeObject) -> None:
        self.scheduler.cache.set_namespace_labels(
            obj["metadata"]["name"], dict(obj["metadata"].get("labels") or {})
        )

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.on_add(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self.scheduler.cluster_changed("NamespaceUpdate")  # namespaceSelector terms

    def on_delete(self, obj: KubeObject) -> None:
        self.scheduler.cache.set_namespace_labels(obj["metadata"]["name"], None)


class _NodeHandler:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def on_add(self, obj: KubeObject) -> None:
        self.scheduler.cache.set_node(obj)
        self.scheduler.cluster_changed("NodeAdd")

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.scheduler.cache.set_node(new)
        # Status heartbeats change nothing the filters read: don't wake every pod for them.
        if (
            old.get("spec") != new.get("spec")
            or old["metadata"].get("labels") != new["metadata"].get("labels")
            or (old.get("status") or {}).get("allocatable")
            != (new.get("status") or {}).get("allocatable")
        ):
            self.scheduler.cluster_changed("NodeUpdate")

    def on_delete(self, obj: KubeObject) -> None:
        self.scheduler.cache.remove_node(obj["metadata"]["name"])


def _key(pod: KubeObject) -> str:
    metadata = pod["metadata"]
    return f"{metadata.get('namespace') or ''}/{metadata['name']}"


class _PodHandler:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def _pending(self, pod: KubeObject) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            # Gated pods wait outside the queue until their last gate is removed.
            and not spec.get("schedulingGates")
            and not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and self.scheduler.responsible_for(pod)
        )

    def _queue(self, pod: KubeObject) -> None:
        """Queue a pending pod; a nomination in its status holds its node's room."""
        info = pod_info(pod)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            self.scheduler.cache.nominate(info, nominated)
        self.scheduler.queue.add(info)

    def on_add(self, obj: KubeObject) -> None:
        if (obj.get("spec") or {}).get("nodeName"):
            self.scheduler.cache.set_pod(obj)
            self.scheduler.cluster_changed("PodAdd")
        elif self._pending(obj):
            self._queue(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        scheduler = self.scheduler
        if (new.get("spec") or {}).get("nodeName"):
            key = _key(new)
            newly_bound = not (old.get("spec") or {}).get("nodeName")
            was_ours = scheduler.cache.is_assumed(key)
            if not was_ours:
                scheduler.queue.delete(key)  # bound by someone else while it waited
            scheduler.cache.clear_nomination(key)
            scheduler.cache.set_pod(new)
            if (new.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                scheduler.cluster_changed("PodDelete")  # a finished pod frees its node
            elif newly_bound:
                # Also for our own bindings: pods waiting for affinity with this one.
                scheduler.cluster_changed("PodAdd")
            elif old["metadata"].get("labels") != new["metadata"].get("labels"):
                scheduler.cluster_changed("PodUpdate")
        elif self._pending(new):
            self._queue(new)
        else:
            scheduler.queue.delete(_key(new))
            scheduler.cache.clear_nomination(_key(new))

    def on_delete(self, obj: KubeObject) -> None:
        key = _key(obj)
        self.scheduler.queue.delete(key)
        self.scheduler.cache.clear_nomination(key)
        if self.scheduler.cache.pod_node(key) is not None:
            self.scheduler.cache.remove_pod(key)
            self.scheduler.cluster_changed("PodDelete")
