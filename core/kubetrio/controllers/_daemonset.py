"""The DaemonSet controller: one pod on every node that should run it.

A node should run a DaemonSet's pod when the template's ``nodeSelector`` and required
node affinity match the node's labels (affinity on ``metadata.name`` fields too) and
the pod tolerates the node's NoSchedule/NoExecute taints — counting the tolerations
every daemon pod gets automatically (not-ready, unreachable, disk/memory/pid pressure,
unschedulable), so daemons survive cordons and node trouble as in Kubernetes.

Pods are placed by setting ``spec.nodeName`` directly (the pre-1.12 way): a daemon pod
needs no scheduling decision, and the controller then works with or without a
scheduler. Each reconcile, per node: create the missing pod, delete extra or
misplaced ones (including pods on nodes that are gone), and — for RollingUpdate — delete
pods of an older template (``controller-revision-hash`` label) while at most
``maxUnavailable`` daemon pods are unavailable; OnDelete leaves old pods alone. The
status fields are those ``kubectl rollout status daemonset`` reads.
"""

from __future__ import annotations

import copy
import json
import zlib
from typing import Any

import trio

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._brakes import CreateBrake, announce_pause, slow_start
from ._expectations import Expectations, OwnedPodHandler
from ._index import OwnerIndex
from ._objects import (
    is_active_pod,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    owner_reference,
    scaled_value,
    wall_now,
)
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"

DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
"""Tolerations Kubernetes adds to every daemon pod."""


def tolerates(tolerations: list[Any], taint: KubeObject) -> bool:
    """Whether some toleration matches the taint (key, operator, value, effect)."""
    for toleration in tolerations:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key")
        if toleration.get("operator") == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_matches(expr: KubeObject, values: dict[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator")
    present = key in values
    if op == "In":
        return present and values[key] in (expr.get("values") or [])
    if op == "NotIn":
        return not present or values[key] not in (expr.get("values") or [])
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present:
        try:
            have, want = int(values[key]), int((expr.get("values") or ["0"])[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_matches(pod_spec: KubeObject, node: KubeObject) -> bool:
    """nodeSelector and required node affinity against a node."""
    labels = labels_of(node)
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(
        all(_expression_matches(e, labels) for e in term.get("matchExpressions") or [])
        and all(_expression_matches(e, fields) for e in term.get("matchFields") or [])
        for term in terms
    )


def template_hash(template: KubeObject) -> str:
    """A short stable hash of a pod template (the controller-revision-hash label)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return f"{zlib.crc32(data):08x}"[:8]


BURST_REPLICAS = 250
"""Most daemon pods created by one reconcile (as Kubernetes' DaemonSet controller)."""


class DaemonSetController(QueueController):
    """Keeps one pod per eligible node (see the module docstring)."""

    name = "daemonset"
    workers = 2

    def __init__(self) -> None:
        super().__init__()
        self.expectations = Expectations()
        self.brake = CreateBrake()
        self.pod_index = OwnerIndex()

    def setup(self, ctx: ControllerContext) -> None:
        """Watch DaemonSets, nodes and pods."""
        super().setup(ctx)
        self.daemonsets: Informer = ctx.informers.informer("apps/v1", "daemonsets")
        self.nodes: Informer = ctx.informers.informer("v1", "nodes")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.daemonsets.add_handler(FunctionHandler(lambda d: self.queue.add(object_key(d))))
        self.nodes.add_handler(FunctionHandler(lambda _: self._enqueue_all()))
        self.pods.add_handler(self.pod_index)
        self.pods.add_handler(OwnedPodHandler(self.expectations, self.queue, self.owner_key))

    def primary(self) -> Informer | None:
        """DaemonSets."""
        return self.daemonsets

    def started_leading(self) -> None:
        """Forget expectations of an earlier term."""
        self.expectations.clear()
        self.brake.clear()
        super().started_leading()

    def _enqueue_all(self) -> None:
        for daemonset in self.daemonsets.list():
            self.queue.add(object_key(daemonset))

    def owner_key(self, pod: KubeObject) -> str | None:
        """The key of the pod's DaemonSet, if one controls it."""
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "DaemonSet":
                return f"{pod['metadata'].get('namespace', '')}/{ref['name']}"
        return None

    def should_run(self, daemonset: KubeObject, node: KubeObject) -> bool:
        """Whether ``node`` should run a pod of ``daemonset``."""
        pod_spec = ((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}
        if not node_matches(pod_spec, node):
            return False
        tolerations = [*(pod_spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
        return all(
            tolerates(tolerations, taint)
            for taint in (node.get("spec") or {}).get("taints") or []
            if taint.get("effect") in ("NoSchedule", "NoExecute")
        )

    async def reconcile(self, key: str) -> Result | None:
        """Create, delete and roll daemon pods; write status."""
        namespace, name = split_key(key)
        daemonset = self.daemonsets.get(name, namespace)
        if daemonset is None:
            self.expectations.forget(key)
            self.brake.forget(key)
            return None
        if is_deleting(daemonset):
            return None
        spec = daemonset.get("spec") or {}
        template = spec.get("template") or {}
        revision = template_hash(template)
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = wall_now()
        pods = [p for p in self.pod_index.get(daemonset["metadata"]["uid"]) if is_active_pod(p)]
        by_node: dict[str, list[KubeObject]] = {}
        for pod in pods:
            by_node.setdefault((pod.get("spec") or {}).get("nodeName") or "", []).append(pod)
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        wanted_nodes = [n for n, node in nodes.items() if self.should_run(daemonset, node)]
        to_create: list[str] = []
        to_delete: list[KubeObject] = []
        for node_name in wanted_nodes:
            here = sorted(
                by_node.get(node_name, []),
                key=lambda p: p["metadata"].get("creationTimestamp", ""),
            )
            if not here:
                to_create.append(node_name)
            else:
                to_delete.extend(here[1:])
        for node_name, here in by_node.items():
            if node_name not in wanted_nodes:
                to_delete.extend(here)
        strategy = spec.get("updateStrategy") or {}
        desired = len(wanted_nodes)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            rolling = strategy.get("rollingUpdate") or {}
            max_unavailable = max(
                scaled_value(rolling.get("maxUnavailable", 1), desired, round_up=True), 1
            )
            current = [by_node[n][0] for n in wanted_nodes if by_node.get(n)]
            unavailable = len(to_create) + sum(
                1 for p in current if not is_pod_available(p, min_ready, now)
            )
            old = [p for p in current if labels_of(p).get(REVISION_LABEL) != revision]
            # Unavailable old pods first: deleting them costs no availability.
            old.sort(key=lambda p: is_pod_available(p, min_ready, now))
            for pod in old:
                if not is_pod_available(pod, min_ready, now):
                    to_delete.append(pod)
                elif unavailable < max_unavailable:
                    to_delete.append(pod)
                    unavailable += 1
        if self.expectations.satisfied(key):
            to_create = to_create[: min(BURST_REPLICAS, self.brake.allowance(key))]
            await self._apply(key, daemonset, revision, to_create, to_delete)
        await self._status(daemonset, pods, wanted_nodes, revision, min_ready, now)
        paused = self.brake.paused_for(key)
        return Result(requeue_after=paused) if paused else None

    async def _apply(
        self,
        key: str,
        daemonset: KubeObject,
        revision: str,
        to_create: list[str],
        to_delete: list[KubeObject],
    ) -> None:
        namespace = daemonset["metadata"]["namespace"]
        self.expectations.expect(
            key, adds=len(to_create), deletes={p["metadata"]["uid"] for p in to_delete}
        )
        errors: list[ClientError] = []

        async def create(position: int) -> None:
            try:
                await self.client.create(
                    "v1",
                    "pods",
                    self.pod_for(daemonset, to_create[position], revision),
                    namespace=namespace,
                )
            except ClientError:
                self.expectations.creation_observed(key)
                raise

        async def delete(pod: KubeObject) -> None:
            try:
                await self.client.delete(
                    "v1",
                    "pods",
                    pod["metadata"]["name"],
                    namespace=namespace,
                    preconditions={"uid": pod["metadata"]["uid"]},
                )
            except ClientError as exc:
                if not exc.not_found:
                    errors.append(exc)
            self.expectations.deletion_observed(key, pod["metadata"]["uid"])

        async with trio.open_nursery() as nursery:
            for pod in to_delete:
                nursery.start_soon(delete, pod)
        done = await slow_start(len(to_create), create)
        for _ in range(len(to_create) - done.attempted):
            self.expectations.creation_observed(key)  # never attempted
        if done.succeeded:
            self.ctx.events.normal(
                daemonset, "SuccessfulCreate", f"Created {done.succeeded} daemon pod(s)"
            )
        paused = self.brake.record(key, done.attempted)
        if paused is not None:
            await announce_pause(self.ctx.events, daemonset, paused)
        if done.error is not None:
            errors.insert(0, done.error)
        if errors:
            raise errors[0]

    def pod_for(self, daemonset: KubeObject, node_name: str, revision: str) -> KubeObject:
        """A daemon pod for ``node_name`` (nodeName set: no scheduler involved)."""
        template = copy.deepcopy((daemonset.get("spec") or {}).get("template") or {})
        metadata = template.get("metadata") or {}
        pod_spec = template.get("spec") or {}
        tolerations = list(pod_spec.get("tolerations") or [])
        for toleration in DAEMON_TOLERATIONS:
            if toleration not in tolerations:
                tolerations.append(toleration)
        pod_spec["tolerations"] = tolerations
        pod_spec["nodeName"] = node_name
        labels = {
            **(metadata.get("labels") or {}),
            REVISION_LABEL: revision,
            GENERATION_LABEL: str(daemonset["metadata"].get("generation", 1)),
        }
        pod_meta: KubeObject = {
            "generateName": f"{daemonset['metadata']['name']}-",
            "namespace": daemonset["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(daemonset)],
        }
        if metadata.get("annotations"):
            pod_meta["annotations"] = dict(metadata["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}

    async def _status(
        self,
        daemonset: KubeObject,
        pods: list[KubeObject],
        wanted_nodes: list[str],
        revision: str,
        min_ready: int,
        now: float,
    ) -> None:
        wanted = set(wanted_nodes)
        scheduled = {(p.get("spec") or {}).get("nodeName") for p in pods}
        on_wanted = [p for p in pods if (p.get("spec") or {}).get("nodeName") in wanted]
        status = {
            "currentNumberScheduled": len(scheduled & wanted),
            "numberMisscheduled": len({n for n in scheduled if n and n not in wanted}),
            "desiredNumberScheduled": len(wanted),
            "numberReady": sum(1 for p in on_wanted if is_pod_ready(p)),
            "numberAvailable": sum(1 for p in on_wanted if is_pod_available(p, min_ready, now)),
            "updatedNumberScheduled": sum(
                1 for p in on_wanted if labels_of(p).get(REVISION_LABEL) == revision
            ),
            "observedGeneration": daemonset["metadata"].get("generation", 1),
        }
        status["numberUnavailable"] = status["desiredNumberScheduled"] - status["numberAvailable"]
        old = daemonset.get("status") or {}
        if any(old.get(k, 0) != v for k, v in status.items()):
            await self.client.patch(
                "apps/v1",
                "daemonsets",
                daemonset["metadata"]["name"],
                {"status": status},
                namespace=daemonset["metadata"]["namespace"],
                subresource="status",
            )
