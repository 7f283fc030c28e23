"""Node lifecycle: heartbeats → Ready/Unknown → NoExecute taints → eviction.

Kubelets (and simulated nodes) renew a Lease in ``kube-node-lease`` every few seconds.
This controller notes, *on its own clock*, when each Lease last changed (comparing
``renewTime`` across machines would trust their clocks). A node silent for longer than
:attr:`NodeLifecycleController.grace_period` gets its conditions set to ``Unknown``
(``NodeStatusUnknown``); then, as Kubernetes' taint-based eviction does:

* Ready Unknown → taints ``node.kubernetes.io/unreachable`` (NoSchedule and NoExecute);
  Ready False → ``node.kubernetes.io/not-ready``; a healthy node loses both again;
* pods on a node with NoExecute taints they don't tolerate are evicted (deleted) at
  once; pods that tolerate with ``tolerationSeconds`` are evicted that long after the
  taint's ``timeAdded``; pods that tolerate without a limit stay;
* evictions are rate-limited per node (:attr:`eviction_rate` nodes per second start
  evicting), begin only after a node has been down for :attr:`monitor_period` (so nodes
  lost together are judged together, as Kubernetes' periodic health pass does), and stop
  entirely when no node is Ready, or — in clusters of at most 50 nodes — when at least
  55 % are not (a disruption that wide is more likely the network than the nodes:
  evicting would only make it worse).

It also does the pod garbage collection that belongs to nodes: pods bound to a Node
object that was deleted are deleted at once (nothing will ever stop them).
"""

from __future__ import annotations

import copy
from typing import Any

import trio

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject, now_rfc3339

from ._index import NodeIndex
from ._objects import delete_exact, is_deleting, parse_time, wall_now
from ._reconcile import ControllerContext, QueueController, Result

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
_OURS = (UNREACHABLE, NOT_READY)


def _ready_status(node: KubeObject) -> str:
    """The Ready condition's status; "" when the node never posted one."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return ""


class NodeLifecycleController(QueueController):
    """Marks silent nodes Unknown, taints them, evicts their pods (module docstring)."""

    name = "nodelifecycle"
    workers = 2
    grace_period = 40.0
    """Seconds without a Lease renewal before a node is Unknown."""
    eviction_rate = 0.1
    """Nodes per second that may start evicting pods."""
    monitor_period = 5.0
    """Seconds a node is down before its pods may be evicted."""
    unhealthy_threshold = 0.55
    """Fraction of nodes down at which small clusters stop evicting."""
    large_cluster = 50
    """Clusters bigger than this keep evicting in a partial disruption."""

    def __init__(self) -> None:
        super().__init__()
        self.node_pods = NodeIndex()
        self._heard: dict[str, tuple[str, float]] = {}  # node -> (lease rv, local time)
        self._evicting: set[str] = set()
        self._down_since: dict[str, float] = {}
        self._next_slot = 0.0

    def setup(self, ctx: ControllerContext) -> None:
        """Watch nodes, node Leases and pods."""
        super().setup(ctx)
        self.nodes: Informer = ctx.informers.informer("v1", "nodes")
        self.leases: Informer = ctx.informers.informer(
            "coordination.k8s.io/v1", "leases", namespace="kube-node-lease"
        )
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.nodes.add_handler(_NodeHandler(self))
        self.leases.add_handler(FunctionHandler(self._lease_changed))
        self.pods.add_handler(self.node_pods)

    def primary(self) -> Informer | None:
        """Nodes."""
        return self.nodes

    def started_leading(self) -> None:
        """Every node gets a fresh grace period from now: we heard nothing yet."""
        now = trio.current_time()
        self._heard = {name: (rv, now) for name, (rv, _) in self._heard.items()}
        self._evicting.clear()
        super().started_leading()

    def _lease_changed(self, lease: KubeObject) -> None:
        name = lease["metadata"]["name"]
        rv = str(lease["metadata"].get("resourceVersion", ""))
        known = self._heard.get(name)
        if known is None or known[0] != rv:
            self._heard[name] = (rv, trio.current_time())
            if known is not None:
                self.queue.add(name)

    async def node_deleted(self, name: str) -> None:
        """Delete the pods of a node that no longer exists (pod GC)."""
        for pod in self.node_pods.get(name):
            try:
                await self.client.delete(
                    "v1",
                    "pods",
                    pod["metadata"]["name"],
                    namespace=pod["metadata"]["namespace"],
                    grace_period_seconds=0,
                    preconditions={"uid": pod["metadata"]["uid"]},
                )
            except ClientError as exc:
                if not (exc.not_found or exc.conflict):
                    raise

    async def reconcile(self, key: str) -> Result | None:
        """Check one node's heartbeat, taints and pods."""
        node = self.nodes.get(key)
        if node is None:
            self._heard.pop(key, None)
            self._evicting.discard(key)
            self._down_since.pop(key, None)
            await self.node_deleted(key)
            return None
        now = trio.current_time()
        heard = self._heard.setdefault(key, ("", now))[1]
        silent = now - heard
        if silent > self.grace_period and _ready_status(node) != "Unknown":
            node = await self._mark_unknown(node)
        ready = _ready_status(node)
        # A node that has not posted a status yet is starting up, not unreachable.
        wanted = UNREACHABLE if ready == "Unknown" else NOT_READY if ready == "False" else None
        node = await self._set_taints(node, wanted)
        if wanted is None:
            self._evicting.discard(key)
            self._down_since.pop(key, None)
            return Result(requeue_after=max(heard + self.grace_period - now, 0) + 0.1)
        return await self._evict(node)

    async def _mark_unknown(self, node: KubeObject) -> KubeObject:
        stamp = now_rfc3339()
        conditions = []
        for condition in (node.get("status") or {}).get("conditions") or []:
            condition = dict(condition)
            if condition.get("status") != "Unknown":
                condition.update(
                    status="Unknown",
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                    lastTransitionTime=stamp,
                )
            conditions.append(condition)
        if not any(c.get("type") == "Ready" for c in conditions):
            conditions.append(
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastTransitionTime": stamp,
                }
            )
        self.ctx.events.normal(
            node, "NodeNotReady", f"Node {node['metadata']['name']} status is now: NodeNotReady"
        )
        return await self.client.patch(
            "v1",
            "nodes",
            node["metadata"]["name"],
            {"status": {"conditions": conditions}},
            subresource="status",
        )

    async def _set_taints(self, node: KubeObject, wanted: str | None) -> KubeObject:
        taints = list((node.get("spec") or {}).get("taints") or [])
        keep = [t for t in taints if t.get("key") not in _OURS or t.get("key") == wanted]
        if wanted is not None:
            for effect in ("NoSchedule", "NoExecute"):
                if not any(t.get("key") == wanted and t.get("effect") == effect for t in keep):
                    taint: dict[str, Any] = {"key": wanted, "effect": effect}
                    if effect == "NoExecute":
                        taint["timeAdded"] = now_rfc3339()
                    keep.append(taint)
        if keep == taints:
            return node
        changed = copy.deepcopy(node)
        changed.setdefault("spec", {})["taints"] = keep
        if not keep:
            changed["spec"].pop("taints")
        return await self.client.update("v1", "nodes", changed)

    def _disrupted(self) -> bool:
        nodes = self.nodes.list()
        down = sum(1 for n in nodes if _ready_status(n) != "True")
        if not nodes or down == len(nodes):
            return True  # full disruption
        return len(nodes) <= self.large_cluster and down / len(nodes) >= self.unhealthy_threshold

    async def _evict(self, node: KubeObject) -> Result | None:
        name = node["metadata"]["name"]
        all_taints = (node.get("spec") or {}).get("taints") or []
        taints = [t for t in all_taints if t.get("effect") == "NoExecute"]
        if not taints:
            return Result(requeue_after=1.0)
        now = trio.current_time()
        down_for = now - self._down_since.setdefault(name, now)
        if down_for < self.monitor_period:
            return Result(requeue_after=self.monitor_period - down_for + 0.01)
        if self._disrupted():
            return Result(requeue_after=self.monitor_period)
        if name not in self._evicting:
            if now < self._next_slot:
                return Result(requeue_after=self._next_slot - now)
            self._evicting.add(name)
            self._next_slot = now + 1.0 / self.eviction_rate
        wall = wall_now()
        next_check: float | None = None
        for pod in self.node_pods.get(name):
            if is_deleting(pod):
                continue
            evict_at = self._evict_at(pod, taints, wall)
            if evict_at is None:
                continue
            if evict_at > wall:
                left = evict_at - wall
                next_check = left if next_check is None else min(next_check, left)
                continue
            await delete_exact(self.client, "v1", "pods", pod)
            self.ctx.events.normal(
                pod,
                "TaintManagerEviction",
                f"Marking for deletion Pod {pod['metadata']['namespace']}/"
                f"{pod['metadata']['name']}",
            )
        return Result(requeue_after=max(next_check, 0.05) if next_check is not None else 5.0)

    def _evict_at(self, pod: KubeObject, taints: list[KubeObject], wall: float) -> float | None:
        """When the pod must go (wall clock seconds), or None if it tolerates forever."""
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        deadline: float | None = None
        for taint in taints:
            matching = [t for t in tolerations if _tolerates(t, taint)]
            if not matching:
                return wall
            limits = [t["tolerationSeconds"] for t in matching if "tolerationSeconds" in t]
            if len(limits) < len(matching):
                continue  # tolerated without a time limit
            added = parse_time(taint.get("timeAdded")) or wall
            at = added + max(min(int(x) for x in limits), 0)
            deadline = at if deadline is None else min(deadline, at)
        return deadline


def _tolerates(toleration: KubeObject, taint: KubeObject) -> bool:
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    if toleration.get("operator") == "Exists":
        return not key or key == taint.get("key")
    return bool(key == taint.get("key") and toleration.get("value", "") == taint.get("value", ""))


class _NodeHandler:
    """Node events enqueue the node (deletions too: its pods must go)."""

    def __init__(self, controller: NodeLifecycleController) -> None:
        self.controller = controller

    def on_add(self, node: KubeObject) -> None:
        self.controller.queue.add(node["metadata"]["name"])

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.controller.queue.add(new["metadata"]["name"])

    def on_delete(self, node: KubeObject) -> None:
        self.controller.queue.add(node["metadata"]["name"])
