"""The StatefulSet controller: pods with stable names, storage and order.

Pod ``<set>-<ordinal>`` (hostname the pod name, subdomain ``serviceName``) gets, for
each ``volumeClaimTemplates`` entry, the PersistentVolumeClaim
``<template>-<set>-<ordinal>`` — created before the pod and kept when the pod goes, so a
recreated pod finds its data again. ``persistentVolumeClaimRetentionPolicy`` Delete makes
the set (``whenDeleted``) or a condemned pod (``whenScaled``) the claims' owner, so the
garbage collector deletes them with it.

Templates are versioned as ControllerRevisions named ``<set>-<hash>`` (what
``kubectl rollout history statefulset`` reads); pods carry the
``controller-revision-hash`` label. ``status.updateRevision`` is the current template's
revision, ``status.currentRevision`` the one a rolling update moves away from.

One reconcile follows Kubernetes' ``updateStatefulSet``:

* **OrderedReady**: walk ordinals upward; create a missing pod only when every lower
  one is Running and Ready, and stop there (one step per reconcile; the pod's events
  bring the next). Scale down removes the *highest* ordinal first, one at a time, and
  only while all others are Running and Ready. **Parallel** does all of it at once.
* Failed pods are deleted and recreated under the same name.
* **RollingUpdate**: when every pod is Running and Ready, delete the highest-ordinal
  pod (≥ ``partition``) of an older revision; it comes back with the new template. Pods
  below the partition keep (and are recreated with) the current revision.
  **OnDelete** only uses the new template when a pod is deleted by someone else.
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from typing import Any

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._brakes import CreateBrake, announce_pause
from ._index import OwnerIndex
from ._objects import (
    delete_exact,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    labels_of,
    owner_reference,
    wall_now,
)
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def _hash(template: KubeObject) -> str:
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return f"{zlib.crc32(data):08x}"[:8]


def _running_ready(pod: KubeObject) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def _failed(pod: KubeObject) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


class StatefulSetController(QueueController):
    """Creates, deletes and updates pods of StatefulSets in order (module docstring)."""

    name = "statefulset"
    workers = 2

    def __init__(self) -> None:
        super().__init__()
        self.pod_index = OwnerIndex()
        self.revision_index = OwnerIndex()
        self.brake = CreateBrake()

    def setup(self, ctx: ControllerContext) -> None:
        """Watch StatefulSets, their pods and ControllerRevisions."""
        super().setup(ctx)
        self.sets: Informer = ctx.informers.informer("apps/v1", "statefulsets")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.revisions: Informer = ctx.informers.informer("apps/v1", "controllerrevisions")
        self.pvcs: Informer = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.sets.add_handler(FunctionHandler(lambda s: self.queue.add(object_key(s))))
        self.pods.add_handler(self.pod_index)
        self.pods.add_handler(FunctionHandler(self._owned_changed))
        self.revisions.add_handler(self.revision_index)

    def primary(self) -> Informer | None:
        """StatefulSets."""
        return self.sets

    def started_leading(self) -> None:
        """Forget create counts of an earlier term."""
        self.brake.clear()
        super().started_leading()

    def _owned_changed(self, obj: KubeObject) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "StatefulSet":
                self.queue.add(f"{obj['metadata'].get('namespace', '')}/{ref['name']}")

    # --- revisions ----------------------------------------------------------------------

    async def _revisions(self, sts: KubeObject) -> tuple[str, dict[str, KubeObject]]:
        """The update revision's name (created if new) and all revisions by name."""
        namespace = sts["metadata"]["namespace"]
        template = (sts.get("spec") or {}).get("template") or {}
        name = f"{sts['metadata']['name']}-{_hash(template)}"
        revisions = {
            r["metadata"]["name"]: r for r in self.revision_index.get(sts["metadata"]["uid"])
        }
        if name not in revisions:
            number = max((int(r.get("revision") or 0) for r in revisions.values()), default=0) + 1
            body = {
                "apiVersion": "apps/v1",
                "kind": "ControllerRevision",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": dict(
                        ((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                    ),
                    "ownerReferences": [owner_reference(sts)],
                },
                "data": {"spec": {"template": {**template, "$patch": "replace"}}},
                "revision": number,
            }
            try:
                revisions[name] = await self.client.create(
                    "apps/v1", "controllerrevisions", body, namespace=namespace
                )
            except ClientError as exc:
                if exc.code != 409:
                    raise
                revisions[name] = await self.client.get(
                    "apps/v1", "controllerrevisions", name, namespace=namespace
                )
        else:
            # Rolling back to an old template makes its revision the newest again.
            newest = max(int(r.get("revision") or 0) for r in revisions.values())
            current = revisions[name]
            if int(current.get("revision") or 0) < newest:
                bumped = copy.deepcopy(current)
                bumped["revision"] = newest + 1
                revisions[name] = await self.client.update(
                    "apps/v1", "controllerrevisions", bumped, namespace=namespace
                )
        return name, revisions

    # --- pods ---------------------------------------------------------------------------

    def pod_for(
        self, sts: KubeObject, ordinal: int, revision: str, template: KubeObject
    ) -> KubeObject:
        """Pod ``<set>-<ordinal>`` of ``template`` with its claims mounted."""
        spec = sts.get("spec") or {}
        template = copy.deepcopy(template)
        template.pop("$patch", None)
        metadata = template.get("metadata") or {}
        pod_spec = template.get("spec") or {}
        set_name = sts["metadata"]["name"]
        name = f"{set_name}-{ordinal}"
        claim_names = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
        volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claim_names]
        for claim in spec.get("volumeClaimTemplates") or []:
            claim_name = claim["metadata"]["name"]
            volumes.append(
                {
                    "name": claim_name,
                    "persistentVolumeClaim": {"claimName": f"{claim_name}-{set_name}-{ordinal}"},
                }
            )
        if volumes:
            pod_spec["volumes"] = volumes
        pod_spec["hostname"] = name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        pod_meta: KubeObject = {
            "name": name,
            "namespace": sts["metadata"]["namespace"],
            "labels": {
                **(metadata.get("labels") or {}),
                REVISION_LABEL: revision,
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(ordinal),
            },
            "ownerReferences": [owner_reference(sts)],
        }
        if metadata.get("annotations"):
            pod_meta["annotations"] = dict(metadata["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}

    async def _ensure_claims(self, sts: KubeObject, ordinal: int) -> None:
        spec = sts.get("spec") or {}
        namespace = sts["metadata"]["namespace"]
        set_name = sts["metadata"]["name"]
        for claim in spec.get("volumeClaimTemplates") or []:
            name = f"{claim['metadata']['name']}-{set_name}-{ordinal}"
            if self.pvcs.get(name, namespace) is not None:
                continue
            body: KubeObject = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {
                        **((claim.get("metadata") or {}).get("labels") or {}),
                        **((spec.get("selector") or {}).get("matchLabels") or {}),
                    },
                },
                "spec": copy.deepcopy(claim.get("spec") or {}),
            }
            if (claim.get("metadata") or {}).get("annotations"):
                body["metadata"]["annotations"] = dict(claim["metadata"]["annotations"])
            try:
                await self.client.create("v1", "persistentvolumeclaims", body, namespace=namespace)
            except ClientError as exc:
                if exc.code != 409:
                    raise

    async def _create(
        self, sts: KubeObject, ordinal: int, revision: str, template: KubeObject
    ) -> None:
        await self._ensure_claims(sts, ordinal)
        pod = self.pod_for(sts, ordinal, revision, template)
        try:
            await self.client.create("v1", "pods", pod, namespace=sts["metadata"]["namespace"])
        except ClientError as exc:
            if exc.code == 409:
                return  # the cache lags behind our own create
            self.ctx.events.warning(
                sts, "FailedCreate", f"create Pod {pod['metadata']['name']} failed: {exc.message}"
            )
            raise
        self.ctx.events.normal(
            sts,
            "SuccessfulCreate",
            f"create Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} "
            "successful",
        )

    async def _delete(self, sts: KubeObject, pod: KubeObject) -> None:
        await delete_exact(self.client, "v1", "pods", pod)
        self.ctx.events.normal(
            sts,
            "SuccessfulDelete",
            f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} "
            "successful",
        )

    async def _claim_retention(
        self, sts: KubeObject, replicas: int, pods: dict[int, KubeObject]
    ) -> None:
        """``persistentVolumeClaimRetentionPolicy`` as owner references on the claims,
        as upstream's ``updateClaimOwnerRefForSetAndPod``: ``whenDeleted: Delete`` makes
        the set an owner (the garbage collector deletes the claims with it);
        ``whenScaled: Delete`` makes a condemned pod (ordinal ≥ replicas) the owner, set
        before the pod is deleted, so its claims go with it. Retain removes the refs."""
        spec = sts.get("spec") or {}
        templates = spec.get("volumeClaimTemplates") or []
        if not templates:
            return
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        when_deleted = policy.get("whenDeleted", "Retain") == "Delete"
        when_scaled = policy.get("whenScaled", "Retain") == "Delete"
        namespace = sts["metadata"]["namespace"]
        set_name = sts["metadata"]["name"]
        for ordinal, pod in pods.items():
            condemned = ordinal >= replicas
            owners: list[KubeObject] = []
            if when_scaled and condemned:
                owners.append(pod)
            elif when_deleted:
                owners.append(sts)
            for template in templates:
                name = f"{template['metadata']['name']}-{set_name}-{ordinal}"
                claim = self.pvcs.get(name, namespace)
                if claim is None or is_deleting(claim):
                    continue
                await self._claim_owners(claim, sts, pod, owners)

    async def _claim_owners(
        self, claim: KubeObject, sts: KubeObject, pod: KubeObject, owners: list[KubeObject]
    ) -> None:
        ours = {sts["metadata"]["uid"], pod["metadata"]["uid"]}
        # An earlier pod of this name (recreated since) is no owner either.
        refs = [
            r
            for r in claim["metadata"].get("ownerReferences") or []
            if r.get("uid") not in ours
            and not (r.get("kind") == "Pod" and r.get("name") == pod["metadata"]["name"])
        ]
        for owner in owners:
            refs.append(
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "blockOwnerDeletion": True,
                }
            )
        if refs == (claim["metadata"].get("ownerReferences") or []):
            return
        updated = copy.deepcopy(claim)
        updated["metadata"]["ownerReferences"] = refs
        await self.client.update(
            "v1", "persistentvolumeclaims", updated, namespace=claim["metadata"]["namespace"]
        )

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """One ordered step toward ``replicas`` pods of the right revisions."""
        namespace, name = split_key(key)
        sts = self.sets.get(name, namespace)
        if sts is None or is_deleting(sts):
            if sts is None:
                self.brake.forget(key)
            return None
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        update_revision, revisions = await self._revisions(sts)
        old_status = sts.get("status") or {}
        current_revision = old_status.get("currentRevision") or update_revision
        if current_revision not in revisions:
            current_revision = update_revision
        pattern = re.compile(rf"^{re.escape(name)}-(\d+)$")
        pods: dict[int, KubeObject] = {}
        strays: list[KubeObject] = []
        for pod in self.pod_index.get(sts["metadata"]["uid"]):
            match = pattern.match(pod["metadata"]["name"])
            if match is None:
                strays.append(pod)
            else:
                pods[int(match.group(1))] = pod

        def template_for(ordinal: int) -> tuple[str, KubeObject]:
            revision = update_revision
            if rolling and ordinal < partition and current_revision != update_revision:
                revision = current_revision
            data = revisions[revision].get("data") or {}
            template = (data.get("spec") or {}).get("template") or spec.get("template") or {}
            return revision, template

        await self._claim_retention(sts, replicas, pods)
        await self._step(sts, replicas, parallel, pods, template_for)
        # Loops over the pods, not over range(replicas): replicas may be 2^31.
        wanted = [i for i in pods if i < replicas]
        if (
            rolling
            and all(_running_ready(pods[i]) and not is_deleting(pods[i]) for i in wanted)
            and len(wanted) == replicas
        ):
            for ordinal in range(replicas - 1, partition - 1, -1):
                pod = pods[ordinal]
                if labels_of(pod).get(REVISION_LABEL) != update_revision:
                    await self._delete(sts, pod)
                    break
        await self._status(sts, replicas, pods, current_revision, update_revision, rolling)
        paused = self.brake.paused_for(key)
        return Result(requeue_after=paused) if paused else None

    async def _step(
        self,
        sts: KubeObject,
        replicas: int,
        parallel: bool,
        pods: dict[int, KubeObject],
        template_for: Any,
    ) -> None:
        key = object_key(sts)
        budget = self.brake.allowance(key)
        for ordinal in range(replicas):
            pod = pods.get(ordinal)
            if pod is not None and _failed(pod) and not is_deleting(pod):
                await self._delete(sts, pod)
                if not parallel:
                    return
                continue
            if pod is None:
                if budget <= 0:
                    return  # braked: the pause ends with a requeue
                budget -= 1
                revision, template = template_for(ordinal)
                try:
                    await self._create(sts, ordinal, revision, template)
                finally:
                    paused = self.brake.record(key, 1)
                    if paused is not None:
                        await announce_pause(self.ctx.events, sts, paused)
                if not parallel:
                    return
                continue
            if not parallel and (is_deleting(pod) or not _running_ready(pod)):
                return  # OrderedReady: wait for this one before touching the next
        condemned = sorted((o for o in pods if o >= replicas), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if is_deleting(pod):
                if not parallel:
                    return
                continue
            if not parallel and not all(
                _running_ready(p) for o, p in pods.items() if o != ordinal and o < ordinal
            ):
                return
            await self._delete(sts, pod)
            if not parallel:
                return

    async def _status(
        self,
        sts: KubeObject,
        replicas: int,
        pods: dict[int, KubeObject],
        current_revision: str,
        update_revision: str,
        rolling: bool,
    ) -> None:
        live = [p for p in pods.values() if not is_deleting(p)]
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        now = wall_now()
        status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if is_pod_ready(p)),
            "availableReplicas": sum(1 for p in live if is_pod_available(p, min_ready, now)),
            "currentReplicas": sum(
                1 for p in live if labels_of(p).get(REVISION_LABEL) == current_revision
            ),
            "updatedReplicas": sum(
                1 for p in live if labels_of(p).get(REVISION_LABEL) == update_revision
            ),
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        }
        if (
            rolling
            and status["updatedReplicas"] == replicas
            and status["readyReplicas"] == replicas
            and status["replicas"] == replicas
        ):
            status["currentRevision"] = update_revision
            status["currentReplicas"] = status["updatedReplicas"]
        old = sts.get("status") or {}
        if any(old.get(k) != v for k, v in status.items()):
            await self.client.patch(
                "apps/v1",
                "statefulsets",
                sts["metadata"]["name"],
                {"status": status},
                namespace=sts["metadata"]["namespace"],
                subresource="status",
            )
