"""The Deployment controller: roll a pod template out through ReplicaSets.

A Deployment owns one ReplicaSet per distinct pod template it has had, named
``<deployment>-<pod-template-hash>``; the hash (FNV-1a of the template and the
deployment's ``collisionCount``, spelled in Kubernetes' "safe" alphabet) is also a label
on the ReplicaSet, its selector and its pods, so ReplicaSets of one Deployment never
fight over pods. The ReplicaSet whose template equals the Deployment's (ignoring that
label) is the *new* one; all others are *old*. Each ReplicaSet carries
``deployment.kubernetes.io/revision``; the new one always gets the highest, which is
what ``kubectl rollout history`` lists and ``kubectl rollout undo`` goes back to (undo
just writes an old template into the Deployment: the old ReplicaSet becomes the new one
again and gets a fresh revision).

Each reconcile follows Kubernetes' ``syncDeployment``:

* claim ReplicaSets (adopt matching orphans, release non-matching);
* being deleted → only status; paused or a pure scale change → ``sync``: scale the
  active ReplicaSets (proportionally when several are active during a rollout);
* ``Recreate`` → scale every old ReplicaSet to 0, wait until their pods are gone, then
  scale the new one up;
* ``RollingUpdate`` → scale the new ReplicaSet up while the sum of replicas stays within
  ``replicas + maxSurge``; scale old ones down (unhealthy replicas first) while the
  available pods stay at least ``replicas - maxUnavailable``;
* once complete, delete old, empty ReplicaSets beyond ``revisionHistoryLimit``;
* write status and the ``Progressing``/``Available`` conditions (``kubectl rollout
  status`` reads these), and requeue for the ``progressDeadlineSeconds`` check.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject, now_rfc3339

from ._objects import (
    controller_ref,
    delete_exact,
    is_deleting,
    labels_of,
    owner_reference,
    parse_time,
    scaled_value,
    selector_of,
    wall_now,
)
from ._reconcile import (
    ControllerContext,
    PermanentError,
    QueueController,
    Result,
    TemporaryError,
    object_key,
    split_key,
)

log = logging.getLogger("kubetrio.controllers.deployment")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
_NOT_COPIED = {
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deprecated.deployment.rollback.to",
}
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --- templates and hashes -------------------------------------------------------------------


def _pruned(value: Any) -> Any:
    """Drop empty maps, lists and nulls, recursively: Go's typed objects cannot tell
    ``resources: {}`` from no resources (kubectl's ``rollout undo`` sends the former)."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _without_hash(template: KubeObject) -> KubeObject:
    template = _pruned(copy.deepcopy(template or {}))
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            template["metadata"].pop("labels")
    if isinstance(template.get("metadata"), dict) and not template["metadata"]:
        template.pop("metadata")
    return template


def templates_equal(a: KubeObject, b: KubeObject) -> bool:
    """Whether two pod templates are the same, ignoring the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


def template_hash(template: KubeObject, collision_count: int = 0) -> str:
    """The pod-template-hash: FNV-1a 32 of the template (+ collision count), safe-encoded."""
    data = json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def revision_of(rs: KubeObject) -> int:
    """The ReplicaSet's ``deployment.kubernetes.io/revision`` (0 if unset)."""
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _replicas(obj: KubeObject) -> int:
    return int((obj.get("spec") or {}).get("replicas") or 0)


def _status(obj: KubeObject, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def surge_and_unavailable(deployment: KubeObject) -> tuple[int, int]:
    """maxSurge and maxUnavailable as pod counts (never both zero), as ResolveFenceposts."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    replicas = _replicas(deployment)
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _condition(status: KubeObject, type_: str) -> KubeObject | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return dict(condition)
    return None


def _set_condition(
    status: KubeObject, type_: str, value: str, reason: str, message: str, *, now: str
) -> None:
    """Set a condition, keeping lastTransitionTime when the status does not change."""
    conditions = [dict(c) for c in status.get("conditions") or []]
    current = next((c for c in conditions if c.get("type") == type_), None)
    if (
        current is not None
        and current.get("status") == value
        and current.get("reason") == reason
        and current.get("message") == message
    ):
        return
    new = {
        "type": type_,
        "status": value,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
    if current is not None and current.get("status") == value:
        new["lastTransitionTime"] = current.get("lastTransitionTime", now)
    status["conditions"] = [c for c in conditions if c.get("type") != type_] + [new]


# --- the controller ---------------------------------------------------------------------------


class DeploymentController(QueueController):
    """Rolls Deployments out through ReplicaSets (see the module docstring)."""

    name = "deployment"
    workers = 5

    def setup(self, ctx: ControllerContext) -> None:
        """Watch Deployments, ReplicaSets and pods."""
        super().setup(ctx)
        self.deployments: Informer = ctx.informers.informer("apps/v1", "deployments")
        self.replica_sets: Informer = ctx.informers.informer("apps/v1", "replicasets")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.deployments.add_handler(FunctionHandler(lambda o: self.queue.add(object_key(o))))
        self.replica_sets.add_handler(FunctionHandler(self._replica_set_changed))
        self.pods.add_handler(_PodDeletions(self))

    def primary(self) -> Informer | None:
        """Deployments."""
        return self.deployments

    def _replica_set_changed(self, rs: KubeObject) -> None:
        namespace = rs["metadata"].get("namespace", "")
        ref = controller_ref(rs)
        if ref is not None:
            if ref.get("kind") == "Deployment":
                self.queue.add(f"{namespace}/{ref['name']}")
            return
        labels = labels_of(rs)
        for deployment in self.deployments.list(namespace):
            if selector_of(deployment).matches(labels):
                self.queue.add(object_key(deployment))

    def pod_deleted(self, pod: KubeObject) -> None:
        """Only Recreate cares about pods: it waits for the old ones to be gone."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        namespace = pod["metadata"].get("namespace", "")
        rs = self.replica_sets.get(ref["name"], namespace)
        rs_ref = controller_ref(rs) if rs is not None else None
        if rs_ref is not None and rs_ref.get("kind") == "Deployment":
            deployment = self.deployments.get(rs_ref["name"], namespace)
            strategy = ((deployment or {}).get("spec") or {}).get("strategy") or {}
            if strategy.get("type") == "Recreate":
                self.queue.add(f"{namespace}/{rs_ref['name']}")

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """One pass of syncDeployment."""
        namespace, name = split_key(key)
        deployment = self.deployments.get(name, namespace)
        if deployment is None:
            return None
        deployment = copy.deepcopy(deployment)
        spec = deployment.get("spec") or {}
        if selector_of(deployment).is_empty():
            self.ctx.events.warning(
                deployment, "SelectingAll", "This deployment is selecting all pods."
            )
            raise PermanentError("empty selector")
        rs_list = await self.claim_replica_sets(deployment)
        if is_deleting(deployment):
            return await self.sync_status(deployment, rs_list, None)
        await self.check_paused_conditions(deployment)
        if spec.get("paused") or self.is_scaling_event(deployment, rs_list):
            return await self.sync(deployment, rs_list)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return await self.rollout_recreate(deployment, rs_list)
        return await self.rollout_rolling(deployment, rs_list)

    async def claim_replica_sets(self, deployment: KubeObject) -> list[KubeObject]:
        """The ReplicaSets this Deployment controls (adopting and releasing as needed)."""
        uid = deployment["metadata"]["uid"]
        selector = selector_of(deployment)
        owned: list[KubeObject] = []
        for rs in self.replica_sets.list(deployment["metadata"]["namespace"]):
            ref = controller_ref(rs)
            matches = selector.matches(labels_of(rs))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    owned.append(rs)
                elif not is_deleting(deployment):
                    refs = [
                        r
                        for r in rs["metadata"].get("ownerReferences") or []
                        if r.get("uid") != uid
                    ]
                    await self._update_rs(rs, owner_refs=refs)
                continue
            if matches and not is_deleting(rs) and not is_deleting(deployment):
                refs = [*(rs["metadata"].get("ownerReferences") or []), owner_reference(deployment)]
                adopted = await self._update_rs(rs, owner_refs=refs)
                if adopted is not None:
                    owned.append(adopted)
        return owned

    async def _update_rs(
        self,
        rs: KubeObject,
        *,
        owner_refs: list[Any] | None = None,
        replicas: int | None = None,
        annotations: dict[str, str] | None = None,
        min_ready_seconds: int | None = None,
    ) -> KubeObject | None:
        changed = copy.deepcopy(rs)
        changed.pop("status", None)
        if owner_refs is not None:
            changed["metadata"]["ownerReferences"] = owner_refs
        if replicas is not None:
            changed["spec"]["replicas"] = replicas
        if annotations is not None:
            changed["metadata"]["annotations"] = annotations
        if min_ready_seconds is not None:
            changed["spec"]["minReadySeconds"] = min_ready_seconds
        try:
            return await self.client.update(
                "apps/v1", "replicasets", changed, namespace=rs["metadata"]["namespace"]
            )
        except ClientError as exc:
            if exc.not_found:
                return None
            raise

    # --- new and old ReplicaSets ----------------------------------------------------------

    def split_new_old(
        self, deployment: KubeObject, rs_list: list[KubeObject]
    ) -> tuple[KubeObject | None, list[KubeObject]]:
        """(the ReplicaSet with the Deployment's template, every other one)."""
        template = (deployment.get("spec") or {}).get("template") or {}
        new: KubeObject | None = None
        old: list[KubeObject] = []
        for rs in sorted(rs_list, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if new is None and templates_equal(
                (rs.get("spec") or {}).get("template") or {}, template
            ):
                new = rs
            else:
                old.append(rs)
        return new, old

    def _rs_annotations(
        self, deployment: KubeObject, rs: KubeObject | None, revision: int
    ) -> dict[str, str]:
        annotations = dict(((rs or {}).get("metadata") or {}).get("annotations") or {})
        for key, value in (deployment["metadata"].get("annotations") or {}).items():
            if key not in _NOT_COPIED:
                annotations[key] = value
        if revision_of(rs or {}) < revision:
            annotations[REVISION] = str(revision)
        surge, _ = surge_and_unavailable(deployment)
        annotations[DESIRED_REPLICAS] = str(_replicas(deployment))
        annotations[MAX_REPLICAS] = str(_replicas(deployment) + surge)
        return annotations

    async def get_all_replica_sets(
        self, deployment: KubeObject, rs_list: list[KubeObject], *, create: bool
    ) -> tuple[KubeObject | None, list[KubeObject]]:
        """The new ReplicaSet (created if asked and missing) and the old ones; revisions synced."""
        new, old = self.split_new_old(deployment, rs_list)
        max_old = max((revision_of(rs) for rs in old), default=0)
        revision = max_old + 1
        if new is not None:
            annotations = self._rs_annotations(deployment, new, revision)
            min_ready = int((deployment.get("spec") or {}).get("minReadySeconds") or 0)
            if annotations != (new["metadata"].get("annotations") or {}) or min_ready != int(
                (new.get("spec") or {}).get("minReadySeconds") or 0
            ):
                updated = await self._update_rs(
                    new, annotations=annotations, min_ready_seconds=min_ready
                )
                new = updated or new
            await self._sync_deployment_revision(deployment, revision_of(new))
            return new, old
        if not create:
            return None, old
        new = await self._create_new_replica_set(deployment, rs_list, old, revision)
        await self._sync_deployment_revision(deployment, revision_of(new))
        return new, old

    async def _create_new_replica_set(
        self,
        deployment: KubeObject,
        rs_list: list[KubeObject],
        old: list[KubeObject],
        revision: int,
    ) -> KubeObject:
        spec = deployment.get("spec") or {}
        namespace = deployment["metadata"]["namespace"]
        status = deployment.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        template = copy.deepcopy(spec.get("template") or {})
        hash_ = template_hash(template, collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
        name = f"{deployment['metadata']['name']}-{hash_}"
        replicas = self.new_rs_replicas(deployment, [*old], None)
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": self._rs_annotations(deployment, None, revision),
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            created = await self.client.create("apps/v1", "replicasets", rs, namespace=namespace)
        except ClientError as exc:
            if exc.code != 409:
                raise
            existing = await self.client.get("apps/v1", "replicasets", name, namespace=namespace)
            ref = controller_ref(existing)
            if (
                ref is not None
                and ref.get("uid") == deployment["metadata"]["uid"]
                and templates_equal(existing["spec"].get("template"), template)
            ):
                return existing  # our own, not yet in the cache
            # A genuine hash collision: bump collisionCount, next reconcile picks a new name.
            status["collisionCount"] = collisions + 1
            await self._write_status(deployment, status)
            raise TemporaryError(f"replica set {name} exists with another template", 0) from exc
        self.ctx.events.normal(
            deployment, "ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {replicas}"
        )
        status = copy.deepcopy(status)
        _set_condition(
            status,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            f'Created new replica set "{name}"',
            now=now_rfc3339(),
        )
        deployment["status"] = status
        return created

    async def _sync_deployment_revision(self, deployment: KubeObject, revision: int) -> None:
        annotations = deployment["metadata"].get("annotations") or {}
        if annotations.get(REVISION) == str(revision):
            return
        changed = copy.deepcopy(deployment)
        changed.pop("status", None)
        changed["metadata"]["annotations"] = {**annotations, REVISION: str(revision)}
        updated = await self.client.update(
            "apps/v1", "deployments", changed, namespace=deployment["metadata"]["namespace"]
        )
        deployment["metadata"] = updated["metadata"]

    # --- scaling ------------------------------------------------------------------------

    def new_rs_replicas(
        self, deployment: KubeObject, all_rs: list[KubeObject], new: KubeObject | None
    ) -> int:
        """How big the new ReplicaSet may be now (NewRSNewReplicas)."""
        wanted = _replicas(deployment)
        new_size = _replicas(new) if new is not None else 0
        if ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate":
            return wanted
        surge, _ = surge_and_unavailable(deployment)
        current = sum(_replicas(rs) for rs in all_rs)
        max_total = wanted + surge
        if current >= max_total:
            return new_size
        return new_size + min(max_total - current, max(wanted - new_size, 0))

    def is_scaling_event(self, deployment: KubeObject, rs_list: list[KubeObject]) -> bool:
        """Whether an active ReplicaSet was made for another ``replicas`` than now."""
        for rs in rs_list:
            if _replicas(rs) <= 0:
                continue
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if desired is not None and desired != str(_replicas(deployment)):
                return True
        return False

    async def scale_rs(self, deployment: KubeObject, rs: KubeObject, replicas: int) -> bool:
        """Set a ReplicaSet's replicas (and the desired/max annotations); True if changed."""
        annotations = dict(rs["metadata"].get("annotations") or {})
        surge, _ = surge_and_unavailable(deployment)
        annotations[DESIRED_REPLICAS] = str(_replicas(deployment))
        annotations[MAX_REPLICAS] = str(_replicas(deployment) + surge)
        before = _replicas(rs)
        if before == replicas and annotations == (rs["metadata"].get("annotations") or {}):
            return False
        updated = await self._update_rs(rs, replicas=replicas, annotations=annotations)
        if updated is not None:
            rs.update(updated)
        if before != replicas:
            direction = "up" if replicas > before else "down"
            self.ctx.events.normal(
                deployment,
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {rs['metadata']['name']} "
                f"from {before} to {replicas}",
            )
        return before != replicas

    async def sync(self, deployment: KubeObject, rs_list: list[KubeObject]) -> Result | None:
        """Paused or scaled: resize the active ReplicaSets; clean up; write status."""
        new, old = await self.get_all_replica_sets(deployment, rs_list, create=False)
        await self.scale(deployment, new, old)
        spec = deployment.get("spec") or {}
        if spec.get("paused"):
            await self.cleanup(deployment, old)
        return await self.sync_status(deployment, [*old, *([new] if new else [])], new)

    async def scale(
        self, deployment: KubeObject, new: KubeObject | None, old: list[KubeObject]
    ) -> None:
        """Scale for a changed ``replicas`` (proportionally across active ReplicaSets)."""
        wanted = _replicas(deployment)
        active = [rs for rs in [*([new] if new else []), *old] if _replicas(rs) > 0]
        single: KubeObject | None = None
        if len(active) == 1:
            single = active[0]
        elif not active:
            single = new if new is not None else (max(old, key=revision_of) if old else None)
        if single is not None or not active:
            if single is not None:
                await self.scale_rs(deployment, single, wanted)
            return
        if (
            new is not None
            and _replicas(new) == wanted
            and _status(new, "availableReplicas") == wanted
        ):
            for rs in old:
                await self.scale_rs(deployment, rs, 0)
            return
        surge, _ = surge_and_unavailable(deployment)
        allowed = wanted + surge if wanted > 0 else 0
        current = sum(_replicas(rs) for rs in active)
        to_add = allowed - current
        if to_add == 0:
            return
        # Newest first when growing, oldest first when shrinking (as Kubernetes).
        ordered = sorted(
            active,
            key=lambda rs: (_replicas(rs), rs["metadata"].get("creationTimestamp", "")),
            reverse=to_add > 0,
        )
        sizes: dict[str, int] = {}
        added = 0
        for rs in ordered:
            annotated = (rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS)
            base = int(annotated) if annotated and annotated.isdigit() else current
            target = round(_replicas(rs) * allowed / base) if base else 0
            fraction = target - _replicas(rs)
            left = to_add - added
            proportion = min(fraction, left) if to_add > 0 else max(fraction, left)
            sizes[rs["metadata"]["uid"]] = _replicas(rs) + proportion
            added += proportion
        if ordered and added != to_add:
            first = ordered[0]["metadata"]["uid"]
            sizes[first] = max(sizes[first] + to_add - added, 0)
        for rs in ordered:
            await self.scale_rs(deployment, rs, max(sizes[rs["metadata"]["uid"]], 0))

    # --- strategies ---------------------------------------------------------------------

    async def rollout_rolling(
        self, deployment: KubeObject, rs_list: list[KubeObject]
    ) -> Result | None:
        """One step of a rolling update."""
        new, old = await self.get_all_replica_sets(deployment, rs_list, create=True)
        assert new is not None
        all_rs = [*old, new]
        wanted = _replicas(deployment)
        if _replicas(new) != wanted:
            target = (
                wanted if _replicas(new) > wanted else self.new_rs_replicas(deployment, all_rs, new)
            )
            if await self.scale_rs(deployment, new, target):
                return await self.sync_status(deployment, all_rs, new)
        if await self.scale_down_old(deployment, new, old):
            return await self.sync_status(deployment, all_rs, new)
        if self.complete(deployment, all_rs, new):
            await self.cleanup(deployment, old)
        return await self.sync_status(deployment, all_rs, new)

    async def scale_down_old(
        self, deployment: KubeObject, new: KubeObject, old: list[KubeObject]
    ) -> bool:
        """Scale old ReplicaSets down as far as maxUnavailable allows; True if any changed."""
        if sum(_replicas(rs) for rs in old) == 0:
            return False
        all_rs = [*old, new]
        _, max_unavailable = surge_and_unavailable(deployment)
        min_available = _replicas(deployment) - max_unavailable
        new_unavailable = _replicas(new) - _status(new, "availableReplicas")
        all_pods = sum(_replicas(rs) for rs in all_rs)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        changed = False
        by_age = sorted(old, key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        # First the old replicas that are not available anyway: losing them costs nothing.
        cleaned = 0
        for rs in by_age:
            if cleaned >= max_scaled_down:
                break
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            if _replicas(rs) == 0 or unhealthy <= 0:
                continue
            down = min(max_scaled_down - cleaned, unhealthy)
            changed |= await self.scale_rs(deployment, rs, _replicas(rs) - down)
            cleaned += down
        available = sum(_status(rs, "availableReplicas") for rs in all_rs)
        if available <= min_available:
            return changed or cleaned > 0
        remaining = available - min_available
        for rs in by_age:
            if remaining <= 0:
                break
            if _replicas(rs) == 0:
                continue
            down = min(_replicas(rs), remaining)
            changed |= await self.scale_rs(deployment, rs, _replicas(rs) - down)
            remaining -= down
        return changed

    async def rollout_recreate(
        self, deployment: KubeObject, rs_list: list[KubeObject]
    ) -> Result | None:
        """Kill every old pod, then start the new ones."""
        new, old = await self.get_all_replica_sets(deployment, rs_list, create=False)
        all_rs = [*old, *([new] if new else [])]
        scaled = False
        for rs in old:
            if _replicas(rs) > 0:
                scaled |= await self.scale_rs(deployment, rs, 0)
        if scaled:
            return await self.sync_status(deployment, all_rs, new)
        old_uids = {rs["metadata"]["uid"] for rs in old}
        for pod in self.pods.list(deployment["metadata"]["namespace"]):
            ref = controller_ref(pod)
            phase = (pod.get("status") or {}).get("phase")
            if (
                ref is not None
                and ref.get("uid") in old_uids
                and phase not in ("Succeeded", "Failed")
            ):
                return await self.sync_status(deployment, all_rs, new)
        if new is None:
            new, old = await self.get_all_replica_sets(deployment, rs_list, create=True)
            assert new is not None
            all_rs = [*old, new]
        await self.scale_rs(deployment, new, _replicas(deployment))
        if self.complete(deployment, all_rs, new):
            await self.cleanup(deployment, old)
        return await self.sync_status(deployment, all_rs, new)

    def complete(self, deployment: KubeObject, all_rs: list[KubeObject], new: KubeObject) -> bool:
        """Every replica updated and available, and no old ones left."""
        status = self.calculate_status(deployment, all_rs, new)
        wanted = _replicas(deployment)
        return bool(
            status["updatedReplicas"] == wanted
            and status["replicas"] == wanted
            and status["availableReplicas"] == wanted
        )

    async def cleanup(self, deployment: KubeObject, old: list[KubeObject]) -> None:
        """Delete old, empty ReplicaSets beyond ``revisionHistoryLimit`` (oldest first)."""
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = [
            rs
            for rs in old
            if not is_deleting(rs)
            and _replicas(rs) == 0
            and _status(rs, "replicas") == 0
            and _status(rs, "observedGeneration") >= int(rs["metadata"].get("generation", 0))
        ]
        excess = len(cleanable) - int(limit)
        for rs in sorted(cleanable, key=revision_of)[: max(excess, 0)]:
            await delete_exact(self.client, "apps/v1", "replicasets", rs)

    # --- status -------------------------------------------------------------------------

    async def check_paused_conditions(self, deployment: KubeObject) -> None:
        """Progressing=Unknown with DeploymentPaused / DeploymentResumed on pause changes."""
        status = copy.deepcopy(deployment.get("status") or {})
        progressing = _condition(status, "Progressing")
        if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
            return
        paused = bool((deployment.get("spec") or {}).get("paused"))
        was_paused = progressing is not None and progressing.get("reason") == "DeploymentPaused"
        now = now_rfc3339()
        if paused and not was_paused:
            _set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now=now,
            )
        elif not paused and was_paused:
            _set_condition(
                status,
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                now=now,
            )
        else:
            return
        await self._write_status(deployment, status)

    def calculate_status(
        self, deployment: KubeObject, all_rs: list[KubeObject], new: KubeObject | None
    ) -> KubeObject:
        """The counts of the status (conditions come from the old status)."""
        available = sum(_status(rs, "availableReplicas") for rs in all_rs)
        total = sum(_status(rs, "replicas") for rs in all_rs)
        old = deployment.get("status") or {}
        status: KubeObject = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": total,
            "updatedReplicas": _status(new, "replicas") if new is not None else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(total - available, 0),
        }
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if old.get("conditions"):
            status["conditions"] = copy.deepcopy(old["conditions"])
        _, max_unavailable = surge_and_unavailable(deployment)
        now = now_rfc3339()
        if available >= _replicas(deployment) - max_unavailable:
            _set_condition(
                status,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now=now,
            )
        else:
            _set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now=now,
            )
        return status

    async def sync_status(
        self, deployment: KubeObject, all_rs: list[KubeObject], new: KubeObject | None
    ) -> Result | None:
        """Write the status with the Progressing condition; requeue for the deadline."""
        status = self.calculate_status(deployment, all_rs, new)
        old = deployment.get("status") or {}
        spec = deployment.get("spec") or {}
        deadline = spec.get("progressDeadlineSeconds")
        result: Result | None = None
        progressing = _condition(status, "Progressing")
        paused = bool(spec.get("paused"))
        if deadline is not None and new is not None and not paused and not is_deleting(deployment):
            now = now_rfc3339()
            rs_name = new["metadata"]["name"]
            wanted = _replicas(deployment)
            complete = (
                status["updatedReplicas"] == wanted
                and status["replicas"] == wanted
                and status["availableReplicas"] == wanted
            )
            moving = (
                status["updatedReplicas"] > int(old.get("updatedReplicas") or 0)
                or status["replicas"] - status["updatedReplicas"]
                < int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
                or status["readyReplicas"] > int(old.get("readyReplicas") or 0)
                or status["availableReplicas"] > int(old.get("availableReplicas") or 0)
            )
            if complete:
                _set_condition(
                    status,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    now=now,
                )
            elif moving or progressing is None or progressing.get("status") == "Unknown":
                _set_condition(
                    status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    now=now,
                )
                # A real step of progress moves lastUpdateTime even with the same message.
                for condition in status["conditions"]:
                    if condition["type"] == "Progressing" and moving:
                        condition["lastUpdateTime"] = now
            else:
                since = parse_time(progressing.get("lastUpdateTime"))
                if progressing.get("reason") != "ProgressDeadlineExceeded" and since is not None:
                    left = since + int(deadline) - wall_now()
                    if left <= 0:
                        _set_condition(
                            status,
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            f'ReplicaSet "{rs_name}" has timed out progressing.',
                            now=now,
                        )
                        self.ctx.events.warning(
                            deployment,
                            "ProgressDeadlineExceeded",
                            f'ReplicaSet "{rs_name}" has timed out progressing.',
                        )
                    else:
                        result = Result(requeue_after=left + 0.5)
            if not complete and result is None:
                current = _condition(status, "Progressing")
                if current is not None and current.get("reason") == "ReplicaSetUpdated":
                    since = parse_time(current.get("lastUpdateTime")) or wall_now()
                    result = Result(requeue_after=max(since + int(deadline) - wall_now(), 0) + 0.5)
        if status != old:
            await self._write_status(deployment, status)
        return result

    async def _write_status(self, deployment: KubeObject, status: KubeObject) -> None:
        changed = copy.deepcopy(deployment)
        changed["status"] = status
        updated = await self.client.update(
            "apps/v1",
            "deployments",
            changed,
            namespace=deployment["metadata"]["namespace"],
            subresource="status",
        )
        deployment["metadata"] = updated["metadata"]
        deployment["status"] = updated.get("status") or status


class _PodDeletions:
    """Passes pod deletions to :meth:`DeploymentController.pod_deleted`."""

    def __init__(self, controller: DeploymentController) -> None:
        self.controller = controller

    def on_add(self, pod: KubeObject) -> None:
        pass

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        pass

    def on_delete(self, pod: KubeObject) -> None:
        self.controller.pod_deleted(pod)
