"""The ReplicaSet controller: keep ``spec.replicas`` pods of a template alive.

Each reconcile of a ReplicaSet:

1. **Claims pods.** Pods whose controller reference is this ReplicaSet but whose labels
   no longer match the selector are released (the reference is removed); pods without a
   controller whose labels match are adopted (a controller reference is added). Both
   writes are conditional updates, so two controllers cannot adopt one pod.
2. **Manages replicas** — only when the :class:`~._expectations.Expectations` of earlier
   writes are met, so a lagging cache never causes duplicate creates or deletes.
   Missing pods are created in *slow-start* batches (1, 2, 4, …; the first failure stops
   the rest, as in Kubernetes, so a quota or admission error costs one request, not
   five hundred); surplus pods are deleted preferring unscheduled, then pending, then
   not-ready, then recently-ready, then newest pods.
3. **Writes status** (replicas, fullyLabeled, ready, available after ``minReadySeconds``,
   observedGeneration, the ReplicaFailure condition) when it changed.

A reconcile reads every pod of its ReplicaSet, so with thousands of pods reacting to
each pod's status change on its own would cost O(pods²). Events that only change a pod's
status therefore enqueue the ReplicaSet :attr:`ReplicaSetController.status_batch` seconds
later (the queue keeps the earliest deadline, so a stream of them yields one reconcile
per batch); creations, deletions and label or owner changes still enqueue at once when
they complete the expectations, which is what the next step waits for.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject, now_rfc3339

from ._brakes import CreateBrake, announce_pause, slow_start, template_mismatch
from ._expectations import Expectations
from ._objects import (
    controller_ref,
    is_active_pod,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    owner_reference,
    parse_time,
    ready_for,
    selector_of,
    wall_now,
)
from ._reconcile import (
    ControllerContext,
    PermanentError,
    QueueController,
    Result,
    object_key,
    split_key,
)

log = logging.getLogger("kubetrio.controllers.replicaset")

BURST_REPLICAS = 500
"""Most pods created or deleted by one reconcile (then the next one continues)."""


class ReplicaSetController(QueueController):
    """Creates and deletes pods so each ReplicaSet has ``spec.replicas`` of them."""

    name = "replicaset"
    api_version = "apps/v1"
    resource = "replicasets"
    kind = "ReplicaSet"
    workers = 5
    status_batch = 0.1
    """Seconds by which reconciles for pod status changes are batched."""

    def __init__(self) -> None:
        super().__init__()
        self.expectations = Expectations()
        self.brake = CreateBrake()
        # Pods by controller uid, and controller-less pods by namespace: a reconcile then
        # looks at its own pods and the adoption candidates, not at every pod.
        self.pods_by_owner: dict[str, dict[str, KubeObject]] = {}
        self.orphans: dict[str, dict[str, KubeObject]] = {}
        self._indexed: dict[str, tuple[str, str]] = {}  # pod key -> (owner uid | "", ns)
        # pod key -> (the labels dict seen, selector text, matched): pods that did not
        # change since the last reconcile are not matched again. Keeping the dict keeps
        # its id from being reused, so ``is`` identifies the very same labels.
        self._matched: dict[str, tuple[object, str, bool]] = {}

    def setup(self, ctx: ControllerContext) -> None:
        """Watch ReplicaSets and pods."""
        super().setup(ctx)
        self.owners: Informer = ctx.informers.informer(self.api_version, self.resource)
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.owners.add_handler(FunctionHandler(lambda obj: self.queue.add(object_key(obj))))
        self.pods.add_handler(_PodHandler(self))

    def primary(self) -> Informer | None:
        """ReplicaSets."""
        return self.owners

    def started_leading(self) -> None:
        """Expectations from an earlier term are meaningless now."""
        self.expectations.clear()
        self.brake.clear()
        super().started_leading()

    # --- the pod index and mapping pod events to owners ----------------------------------

    def index_pod(self, pod: KubeObject, *, gone: bool = False) -> None:
        """Keep :attr:`pods_by_owner` and :attr:`orphans` current."""
        key = object_key(pod)
        previous = self._indexed.pop(key, None)
        if previous is not None:
            owner_uid, namespace = previous
            bucket = self.pods_by_owner if owner_uid else self.orphans
            entries = bucket.get(owner_uid or namespace, {})
            entries.pop(key, None)
            if not entries:
                bucket.pop(owner_uid or namespace, None)
        if gone:
            self._matched.pop(key, None)
            return
        ref = controller_ref(pod)
        namespace = pod["metadata"].get("namespace", "")
        owner_uid = str(ref.get("uid", "")) if ref is not None else ""
        if ref is not None and not owner_uid:
            return
        bucket = self.pods_by_owner if owner_uid else self.orphans
        bucket.setdefault(owner_uid or namespace, {})[key] = pod
        self._indexed[key] = (owner_uid, namespace)

    def candidate_pods(self, owner: KubeObject) -> list[KubeObject]:
        """Pods this owner controls, and pods without a controller in its namespace."""
        metadata = owner["metadata"]
        return [
            *self.pods_by_owner.get(metadata["uid"], {}).values(),
            *self.orphans.get(metadata.get("namespace", ""), {}).values(),
        ]

    def owner_key(self, pod: KubeObject) -> str | None:
        """The key of the pod's controlling object of our kind, if any."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != self.kind:
            return None
        owner = self.owners.get(ref["name"], pod["metadata"].get("namespace", ""))
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return object_key(owner)

    def enqueue_matching(self, pod: KubeObject) -> None:
        """An orphan pod: every owner whose selector matches may adopt it."""
        labels = labels_of(pod)
        for owner in self.owners.list(pod["metadata"].get("namespace", "")):
            if selector_of(owner).matches(labels):
                self.queue.add(object_key(owner))

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Claim pods, create or delete to match replicas, write status."""
        namespace, name = split_key(key)
        owner = self.owners.get(name, namespace)
        if owner is None:
            self.expectations.forget(key)
            self.brake.forget(key)
            return None
        pods = await self.claim_pods(owner, self.candidate_pods(owner))
        active = [p for p in pods if is_active_pod(p)]
        failure: Exception | None = None
        if self.expectations.satisfied(key) and not is_deleting(owner):
            try:
                await self.manage_replicas(key, owner, active)
            except (ClientError, trio.TooSlowError, PermanentError) as exc:
                failure = exc
        result = await self.update_status(owner, active, failure)
        if failure is not None:
            raise failure
        paused = self.brake.paused_for(key)
        if paused and result is None:
            result = Result(requeue_after=paused)
        if result is None and not self.expectations.satisfied(key):
            # Look again when the expectations would time out (a lost event).
            result = Result(requeue_after=self.expectations.timeout)
        return result

    async def claim_pods(self, owner: KubeObject, pods: list[KubeObject]) -> list[KubeObject]:
        """The pods this owner controls after adopting matching orphans, releasing others."""
        uid = owner["metadata"]["uid"]
        selector = selector_of(owner)
        selector_text = str(selector)
        owned: list[KubeObject] = []
        for pod in pods:
            ref = controller_ref(pod)
            labels = labels_of(pod)
            key = object_key(pod)
            memo = self._matched.get(key)
            if memo is not None and memo[0] is labels and memo[1] == selector_text:
                matches = memo[2]
            else:
                matches = selector.matches(labels)
                self._matched[key] = (labels, selector_text, matches)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    owned.append(pod)
                elif not is_deleting(owner):
                    await self._set_owner_refs(
                        pod,
                        [
                            r
                            for r in pod["metadata"].get("ownerReferences") or []
                            if r.get("uid") != uid
                        ],
                    )
                continue
            if matches and not is_deleting(pod) and not is_deleting(owner):
                refs = [*(pod["metadata"].get("ownerReferences") or []), owner_reference(owner)]
                adopted = await self._set_owner_refs(pod, refs)
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _set_owner_refs(self, pod: KubeObject, refs: list[Any]) -> KubeObject | None:
        changed = dict(pod)
        changed["metadata"] = {**pod["metadata"], "ownerReferences": refs}
        try:
            return await self.client.update(
                "v1", "pods", changed, namespace=pod["metadata"]["namespace"]
            )
        except ClientError as exc:
            if exc.not_found:
                return None
            raise

    async def manage_replicas(self, key: str, owner: KubeObject, active: list[KubeObject]) -> None:
        """Create or delete pods so that ``len(active) == spec.replicas``."""
        wanted = int((owner.get("spec") or {}).get("replicas", 1))
        diff = len(active) - wanted
        if diff < 0:
            mismatch = template_mismatch(owner)
            if mismatch is not None:
                # Every pod created would be released at once and replaced, forever.
                self.ctx.events.warning(owner, "FailedCreate", f"Error creating: {mismatch}")
                raise PermanentError(mismatch)
            count = min(-diff, BURST_REPLICAS, self.brake.allowance(key))
            if count > 0:
                await self.create_pods(key, owner, count)
        elif diff > 0:
            await self.delete_pods(key, owner, active, min(diff, BURST_REPLICAS))

    def pod_from_template(self, owner: KubeObject) -> KubeObject:
        """A new pod of ``owner``'s template, controlled by ``owner``."""
        template = (owner.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        metadata: KubeObject = {
            "generateName": f"{owner['metadata']['name']}-",
            "namespace": owner["metadata"]["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "ownerReferences": [owner_reference(owner)],
        }
        if template_meta.get("annotations"):
            metadata["annotations"] = dict(template_meta["annotations"])
        if template_meta.get("finalizers"):
            metadata["finalizers"] = list(template_meta["finalizers"])
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": dict(template.get("spec") or {}),
        }

    async def create_pods(self, key: str, owner: KubeObject, count: int) -> None:
        """Create ``count`` pods in slow-start batches; the first failure stops the rest.

        Every attempt counts toward the owner's :attr:`brake`; going over its rate pauses
        the owner's creates and records a ``TooManyCreates`` Warning.
        """
        self.expectations.expect(key, adds=count)
        namespace = owner["metadata"]["namespace"]

        async def create_one(_: int) -> None:
            try:
                pod = await self.client.create(
                    "v1", "pods", self.pod_from_template(owner), namespace=namespace
                )
            except ClientError:
                self.expectations.creation_observed(key)  # it will never show up
                raise
            self.ctx.events.normal(
                owner, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
            )

        done = await slow_start(count, create_one)
        for _ in range(count - done.attempted):
            self.expectations.creation_observed(key)  # never attempted
        paused = self.brake.record(key, done.attempted)
        if paused is not None:
            await announce_pause(self.ctx.events, owner, paused)
        if done.error is not None:
            error = done.error
            self.ctx.events.warning(owner, "FailedCreate", f"Error creating: {error.message}")
            raise error

    async def delete_pods(
        self, key: str, owner: KubeObject, active: list[KubeObject], count: int
    ) -> None:
        """Delete the ``count`` pods least worth keeping."""
        victims = sorted(active, key=deletion_rank)[:count]
        self.expectations.expect(key, deletes={p["metadata"]["uid"] for p in victims})
        failures: list[ClientError] = []

        async def delete_one(pod: KubeObject) -> None:
            metadata = pod["metadata"]
            try:
                await self.client.delete(
                    "v1",
                    "pods",
                    metadata["name"],
                    namespace=metadata["namespace"],
                    preconditions={"uid": metadata["uid"]},
                )
            except ClientError as exc:
                self.expectations.deletion_observed(key, metadata["uid"])
                if not exc.not_found:
                    failures.append(exc)
                return
            self.ctx.events.normal(owner, "SuccessfulDelete", f"Deleted pod: {metadata['name']}")

        async with trio.open_nursery() as nursery:
            for pod in victims:
                nursery.start_soon(delete_one, pod)
        if failures:
            raise failures[0]

    async def update_status(
        self, owner: KubeObject, active: list[KubeObject], failure: Exception | None
    ) -> Result | None:
        """Write replicas/ready/available counts and the ReplicaFailure condition."""
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = wall_now()
        ready = [p for p in active if is_pod_ready(p)]
        available = [p for p in ready if is_pod_available(p, min_ready, now)]
        old = owner.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if failure is not None:
            same = [
                c
                for c in old.get("conditions") or []
                if c.get("type") == "ReplicaFailure" and c.get("message") == str(failure)
            ]
            # The same failure again keeps its condition as it is: a new timestamp would be
            # a status write, an update event and another reconcile, round and round.
            conditions.append(
                same[0]
                if same
                else {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": str(failure),
                    "lastTransitionTime": now_rfc3339(),
                }
            )
        status: KubeObject = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active if template_labels.items() <= labels_of(p).items()
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": owner["metadata"].get("generation", 1),
        }
        if conditions:
            status["conditions"] = conditions
        comparable = {k: old.get(k, 0) for k in status if k != "conditions"}
        if old.get("conditions"):
            comparable["conditions"] = old["conditions"]
        if comparable != status:
            if not conditions and old.get("conditions"):
                status["conditions"] = None  # merge patch: remove
            await self.client.patch(
                self.api_version,
                self.resource,
                owner["metadata"]["name"],
                {"status": status},
                namespace=owner["metadata"]["namespace"],
                subresource="status",
            )
        if min_ready > 0 and len(available) < len(ready):
            waits = [min_ready - ready_for(p, now) for p in ready if p not in available]
            return Result(requeue_after=max(0.1, min(waits)))
        return None


def deletion_rank(pod: KubeObject) -> tuple[int, int, int, float, float]:
    """Sort key: pods worth the least come first (as Kubernetes' ActivePodsWithRanks)."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    ready = ready_for(pod, wall_now())
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        phase_rank,
        1 if ready >= 0 else 0,
        ready,  # ready for less time goes first
        -created,  # newer goes first
    )


class _PodHandler:
    """Maps pod events to the ReplicaSet (or candidate adopters) to look at."""

    def __init__(self, controller: ReplicaSetController) -> None:
        self.controller = controller

    def _enqueue(self, key: str) -> None:
        controller = self.controller
        if controller.expectations.satisfied(key):
            controller.queue.add(key)
        else:  # the reconcile could not act yet anyway: batch
            controller.queue.add_after(key, controller.status_batch)

    def on_add(self, pod: KubeObject) -> None:
        controller = self.controller
        controller.index_pod(pod)
        key = controller.owner_key(pod)
        if key is None:
            if controller_ref(pod) is None:
                controller.enqueue_matching(pod)
            return
        if is_deleting(pod):
            controller.expectations.deletion_observed(key, pod["metadata"]["uid"])
        else:
            controller.expectations.creation_observed(key)
        self._enqueue(key)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        controller = self.controller
        controller.index_pod(new)
        old_key = controller.owner_key(old)
        key = controller.owner_key(new)
        newly_deleting = is_deleting(new) and not is_deleting(old)
        if newly_deleting and key is not None:
            controller.expectations.deletion_observed(key, new["metadata"]["uid"])
        if old_key is not None and old_key != key:
            controller.queue.add(old_key)
        if key is not None:
            if old_key != key or labels_of(old) != labels_of(new) or newly_deleting:
                self._enqueue(key)
            else:
                controller.queue.add_after(key, controller.status_batch)
        elif controller_ref(new) is None and (
            labels_of(old) != labels_of(new) or controller_ref(old) is not None
        ):
            controller.enqueue_matching(new)

    def on_delete(self, pod: KubeObject) -> None:
        controller = self.controller
        controller.index_pod(pod, gone=True)
        key = controller.owner_key(pod)
        if key is not None:
            controller.expectations.deletion_observed(key, pod["metadata"]["uid"])
            self._enqueue(key)
