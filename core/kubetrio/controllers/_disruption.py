"""The disruption controller: the status of every PodDisruptionBudget.

As upstream's ``pkg/controller/disruption``: for a budget it counts the pods its selector
matches, how many are healthy (Ready, not being deleted, not just evicted), how many should
be (``minAvailable`` as a number: that number; ``maxUnavailable`` or a percentage: against
the scale of the pods' controllers — Deployments, ReplicaSets, StatefulSets,
ReplicationControllers, or anything with a ``scale`` subresource), and so how many
disruptions are allowed now. The ``pods/eviction`` subresource reads that figure and
records each eviction it allows in ``status.disruptedPods``; this controller forgets an
entry once its pod is being deleted, or after two minutes if the pod never was (with a
``NotDeleted`` event).
"""

from __future__ import annotations

from kubetrio.api import selectors
from kubetrio.api.conditions import set_status_condition, update_disruption_allowed
from kubetrio.client import ClientError, EventHandler, FunctionHandler, Informer, KubeObject

from ._objects import (
    controller_ref,
    is_deleting,
    is_pod_ready,
    parse_time,
    scaled_value,
    wall_now,
)
from ._reconcile import ControllerContext, QueueController, Result, object_key

DELETION_TIMEOUT = 120.0
"""Seconds an evicted pod may take to be marked deleted before the budget counts it again."""

SCALED_KINDS = {
    ("apps", "Deployment"): ("apps/v1", "deployments"),
    ("apps", "ReplicaSet"): ("apps/v1", "replicasets"),
    ("apps", "StatefulSet"): ("apps/v1", "statefulsets"),
    ("", "ReplicationController"): ("v1", "replicationcontrollers"),
}
"""Controllers whose ``scale`` subresource gives the expected pod count."""


class ExpectedCountError(Exception):
    """The expected number of pods cannot be found (a pod without a scalable controller)."""


class _BudgetsOfPods(EventHandler):
    """Enqueues the budgets that select a changed pod (before and after the change)."""

    def __init__(self, controller: DisruptionController) -> None:
        self.controller = controller

    def on_add(self, obj: KubeObject) -> None:
        self.controller.enqueue_budgets_of(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.controller.enqueue_budgets_of(old)
        self.controller.enqueue_budgets_of(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.controller.enqueue_budgets_of(obj)


class DisruptionController(QueueController):
    """Keeps ``status`` of PodDisruptionBudgets (``policy/v1``) up to date."""

    name = "disruption"
    workers = 1

    def setup(self, ctx: ControllerContext) -> None:
        """Watch budgets and pods."""
        super().setup(ctx)
        self.budgets: Informer = ctx.informers.informer("policy/v1", "poddisruptionbudgets")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.pods.add_handler(_BudgetsOfPods(self))
        self.budgets.add_handler(FunctionHandler(lambda b: self.queue.add(object_key(b))))

    def primary(self) -> Informer | None:
        """PodDisruptionBudgets."""
        return self.budgets

    def enqueue_budgets_of(self, pod: KubeObject) -> None:
        """Queue every budget in the pod's namespace whose selector matches it."""
        metadata = pod.get("metadata") or {}
        namespace = metadata.get("namespace", "")
        labels = metadata.get("labels") or {}
        for budget in self.budgets.list(namespace):
            if _selector(budget).matches(labels):
                self.queue.add(f"{namespace}/{budget['metadata']['name']}")

    async def reconcile(self, key: str) -> Result | None:
        """Recompute one budget's status and write it if it changed."""
        namespace, _, name = key.partition("/")
        budget = self.budgets.get(name, namespace)
        if budget is None or is_deleting(budget):
            return None
        pods = [
            p
            for p in self.pods.list(namespace)
            if _selector(budget).matches(p["metadata"].get("labels") or {})
        ]
        if not pods:
            self.ctx.events.record(budget, "Normal", "NoPods", "No matching pods found")
        now = wall_now()
        disrupted, recheck = self._disrupted_pods(budget, pods, now)
        try:
            expected, desired = await self._expected_and_desired(budget, pods)
        except (ExpectedCountError, ClientError) as exc:
            self.ctx.events.record(
                budget,
                "Warning",
                "CalculateExpectedPodCountFailed",
                f"Failed to calculate the number of expected pods: {exc}",
            )
            await self._write_status(budget, _failsafe_status(budget, str(exc)))
            return Result(requeue=True)
        healthy = sum(
            1
            for p in pods
            if not is_deleting(p) and p["metadata"]["name"] not in disrupted and is_pod_ready(p)
        )
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            # A budget that matches no pods yet stays safe until its pods are counted.
            allowed = 0
        status: KubeObject = {
            "observedGeneration": budget["metadata"].get("generation", 1),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": list((budget.get("status") or {}).get("conditions") or []),
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        update_disruption_allowed(status, budget["metadata"].get("generation", 1))
        await self._write_status(budget, status)
        return Result(requeue_after=recheck) if recheck is not None else None

    def _disrupted_pods(
        self, budget: KubeObject, pods: list[KubeObject], now: float
    ) -> tuple[dict[str, str], float | None]:
        """The still-pending evictions, and when the oldest of them expires."""
        recorded = (budget.get("status") or {}).get("disruptedPods") or {}
        kept: dict[str, str] = {}
        recheck: float | None = None
        for pod in pods:
            name = pod["metadata"]["name"]
            if is_deleting(pod) or name not in recorded:
                continue
            since = parse_time(recorded[name])
            if since is None:
                continue
            expires = since + DELETION_TIMEOUT
            if expires < now:
                budget_name = f"{budget['metadata'].get('namespace')}/{budget['metadata']['name']}"
                self.ctx.events.record(
                    pod,
                    "Warning",
                    "NotDeleted",
                    f"Pod was expected by PDB {budget_name} to be deleted but it wasn't",
                )
                continue
            kept[name] = recorded[name]
            left = expires - now
            recheck = left if recheck is None else min(recheck, left)
        return kept, recheck

    async def _expected_and_desired(
        self, budget: KubeObject, pods: list[KubeObject]
    ) -> tuple[int, int]:
        """(expected pods, desired healthy pods), as upstream's getExpectedPodCount."""
        spec = budget.get("spec") or {}
        if spec.get("maxUnavailable") is not None:
            expected = await self._expected_scale(pods)
            unavailable = scaled_value(spec["maxUnavailable"], expected, round_up=True)
            return expected, max(expected - unavailable, 0)
        minimum = spec.get("minAvailable")
        if isinstance(minimum, int):
            return len(pods), minimum
        if isinstance(minimum, str):
            expected = await self._expected_scale(pods)
            return expected, scaled_value(minimum, expected, round_up=True)
        return 0, 0

    async def _expected_scale(self, pods: list[KubeObject]) -> int:
        """The sum of the replicas of the pods' controllers (each counted once)."""
        scales: dict[str, int] = {}
        for pod in pods:
            owner = controller_ref(pod)
            if owner is None:
                raise ExpectedCountError(
                    f'found no controller ref for pod "{pod["metadata"]["name"]}"'
                )
            uid, replicas = await self._scale_of(pod["metadata"].get("namespace", ""), owner)
            scales[uid] = replicas
        return sum(scales.values())

    async def _scale_of(self, namespace: str, owner: KubeObject) -> tuple[str, int]:
        """(controller uid, its spec.replicas); a Deployment's ReplicaSet counts as it."""
        group = owner.get("apiVersion", "").rpartition("/")[0]
        where = SCALED_KINDS.get((group, owner.get("kind", "")))
        if where is None:
            raise ExpectedCountError(
                f"found no controllers for pod's owner {owner.get('kind')} {owner.get('name')!r}"
            )
        api_version, resource = where
        found = await self.client.get(api_version, resource, owner["name"], namespace=namespace)
        if found["metadata"].get("uid") != owner.get("uid"):
            raise ExpectedCountError(f"{owner.get('kind')} {owner['name']!r} was replaced")
        if resource == "replicasets":
            parent = controller_ref(found)
            if parent is not None and parent.get("kind") == "Deployment":
                return await self._scale_of(namespace, parent)
        return found["metadata"]["uid"], int((found.get("spec") or {}).get("replicas", 1))

    async def _write_status(self, budget: KubeObject, status: KubeObject) -> None:
        if (budget.get("status") or {}) == status:
            return
        updated = dict(budget)
        updated["status"] = status
        try:
            await self.client.update(
                "policy/v1",
                "poddisruptionbudgets",
                updated,
                namespace=budget["metadata"].get("namespace", ""),
                subresource="status",
            )
        except ClientError as exc:
            if exc.not_found:
                return
            raise


def _selector(budget: KubeObject) -> selectors.Selector:
    """A budget's selector (``policy/v1``: empty selects every pod, null none)."""
    try:
        return selectors.label_selector_from_struct((budget.get("spec") or {}).get("selector"))
    except selectors.LabelSelectorError:
        return selectors.NOTHING


def _failsafe_status(budget: KubeObject, reason: str) -> KubeObject:
    """No disruptions allowed while the counts are unknown (upstream's failSafe)."""
    status = dict(budget.get("status") or {})
    status["disruptionsAllowed"] = 0
    status["observedGeneration"] = budget["metadata"].get("generation", 1)
    status["conditions"] = list(status.get("conditions") or [])
    set_status_condition(
        status,
        {"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed", "message": reason},
        budget["metadata"].get("generation", 1),
    )
    return status
