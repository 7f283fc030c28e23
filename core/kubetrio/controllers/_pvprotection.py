"""Storage object in-use protection: the ``pvc-protection`` and ``pv-protection`` controllers.

A claim carries the finalizer ``kubernetes.io/pvc-protection`` and a volume
``kubernetes.io/pv-protection`` (added at creation by admission, and here for objects
made without them). Deleting a claim that a scheduled, not yet finished pod uses leaves
it ``Terminating`` until no such pod is left; deleting a volume that is still ``Bound``
leaves it so until it is released. Then the controller removes the finalizer and the API
server finishes the deletion. As upstream, "not in use" read from the cache is confirmed
with a live list before the finalizer goes.
"""

from __future__ import annotations

import copy

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._objects import is_deleting
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def pod_uses_claim(pod: KubeObject, claim_name: str) -> bool:
    """Whether a scheduled pod that has not finished mounts the claim (upstream's
    ``podUsesPVC``: an unscheduled pod never mounts it, a node refuses a deleting claim)."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    pod_name = pod["metadata"]["name"]
    for volume in spec.get("volumes") or []:
        source = volume.get("persistentVolumeClaim") or {}
        if source.get("claimName") == claim_name:
            return True
        # A generic ephemeral volume's claim is named <pod>-<volume>.
        if "ephemeral" in volume and f"{pod_name}-{volume.get('name')}" == claim_name:
            return True
    return False


class _FinalizerController(QueueController):
    """Adds a finalizer to live objects and removes it from deleting unused ones."""

    finalizer = ""

    async def _set_finalizer(self, obj: KubeObject, resource: str, *, present: bool) -> None:
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if (self.finalizer in finalizers) == present:
            return
        namespace = obj["metadata"].get("namespace", "")
        if present:
            # finalizers merge by value in a strategic merge patch: no conflict with
            # other writers of the object, and nobody else's finalizer is lost.
            try:
                await self.client.patch(
                    "v1",
                    resource,
                    obj["metadata"]["name"],
                    {"metadata": {"finalizers": [self.finalizer]}},
                    namespace=namespace,
                    patch_type="strategic",
                )
            except ClientError as exc:
                if not exc.not_found:
                    raise
            return
        updated = copy.deepcopy(obj)
        # Removal is an update: its resourceVersion makes sure nothing changed since.
        updated["metadata"]["finalizers"] = [f for f in finalizers if f != self.finalizer]
        try:
            await self.client.update("v1", resource, updated, namespace=namespace)
        except ClientError as exc:
            if not exc.not_found:
                raise


class PVCProtectionController(_FinalizerController):
    """``kubernetes.io/pvc-protection``: a claim in use by a pod outlives its deletion
    until the pod is gone or finished."""

    name = "pvc-protection"
    finalizer = PVC_FINALIZER
    workers = 8

    def setup(self, ctx: ControllerContext) -> None:
        """Watch claims and pods."""
        super().setup(ctx)
        self.claims: Informer = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.claims.add_handler(FunctionHandler(lambda c: self.queue.add(object_key(c))))
        self.pods.add_handler(FunctionHandler(self._pod_changed))

    def primary(self) -> Informer | None:
        """Claims."""
        return self.claims

    def _pod_changed(self, pod: KubeObject) -> None:
        namespace = pod["metadata"].get("namespace", "")
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            source = volume.get("persistentVolumeClaim") or {}
            if source.get("claimName"):
                self.queue.add(f"{namespace}/{source['claimName']}")
            if "ephemeral" in volume:
                self.queue.add(f"{namespace}/{pod['metadata']['name']}-{volume.get('name')}")

    async def reconcile(self, key: str) -> Result | None:
        """Add the finalizer, or remove it from a deleting claim no pod uses."""
        namespace, name = split_key(key)
        claim = self.claims.get(name, namespace)
        if claim is None:
            return None
        if not is_deleting(claim):
            await self._set_finalizer(claim, "persistentvolumeclaims", present=True)
            return None
        if PVC_FINALIZER not in (claim["metadata"].get("finalizers") or []):
            return None
        if any(pod_uses_claim(p, name) for p in self.pods.list(namespace)):
            return None  # a pod's change brings the claim back
        live = await self.client.list("v1", "pods", namespace=namespace)
        if any(pod_uses_claim(p, name) for p in live.get("items") or []):
            return None
        await self._set_finalizer(claim, "persistentvolumeclaims", present=False)
        return None


class PVProtectionController(_FinalizerController):
    """``kubernetes.io/pv-protection``: a Bound volume outlives its deletion until it is
    released."""

    name = "pv-protection"
    finalizer = PV_FINALIZER

    def setup(self, ctx: ControllerContext) -> None:
        """Watch volumes."""
        super().setup(ctx)
        self.volumes: Informer = ctx.informers.informer("v1", "persistentvolumes")
        self.volumes.add_handler(FunctionHandler(lambda v: self.queue.add(object_key(v))))

    def primary(self) -> Informer | None:
        """Volumes."""
        return self.volumes

    async def reconcile(self, key: str) -> Result | None:
        """Add the finalizer, or remove it from a deleting volume that is not Bound."""
        volume = self.volumes.get(key)
        if volume is None:
            return None
        if not is_deleting(volume):
            await self._set_finalizer(volume, "persistentvolumes", present=True)
            return None
        if (volume.get("status") or {}).get("phase") == "Bound":
            return None
        await self._set_finalizer(volume, "persistentvolumes", present=False)
        return None
