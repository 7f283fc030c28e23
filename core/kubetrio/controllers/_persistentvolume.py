"""The PersistentVolume controller: binding, dynamic provisioning and reclaim.

Upstream splits this between kube-controller-manager's ``persistentvolume-controller``
(binding, phases, reclaim) and each CSI driver's external-provisioner sidecar
(``CreateVolume``/``DeleteVolume``); here one controller does both, calling the storage
drivers the plugins register (:class:`~kubetrio.providers.StorageDriver`). The API
objects, annotations, phases and events are upstream's:

* **Static binding** — an unbound claim binds to the smallest Available volume that
  satisfies it: enough capacity, a superset of its access modes, the same
  ``storageClassName`` and ``volumeMode``, labels matching its ``selector``. A claim
  naming ``spec.volumeName`` binds to that volume; a volume whose ``claimRef`` names a
  claim is kept for it. Binding writes the volume's ``claimRef`` (with
  ``pv.kubernetes.io/bound-by-controller`` when the controller chose it), then the
  claim's ``volumeName`` and ``pv.kubernetes.io/bind-completed``, then both statuses
  (claim: ``Bound``, ``capacity``, ``accessModes``).
* **Binding modes** — ``Immediate`` classes bind or provision at once;
  ``WaitForFirstConsumer`` claims wait (event ``WaitForFirstConsumer``) until the
  scheduler writes ``volume.kubernetes.io/selected-node``, then provision with that node
  as requisite topology (``kubernetes.io/hostname``).
* **Provisioning** — as external-provisioner: claim annotations
  ``volume.kubernetes.io/storage-provisioner`` (and the beta one), ``CreateVolume`` named
  ``pvc-<claim uid>`` (idempotent: retried after failures with back-off, never a second
  volume), a PV with ``spec.csi``, capacity, the class' reclaim policy and mount options,
  node affinity from the accessible topology and ``pv.kubernetes.io/provisioned-by``.
* **Reclaim** — a volume whose claim is gone is ``Released``; ``Retain`` keeps it so,
  ``Delete`` calls ``DeleteVolume`` and deletes the PV (``VolumeFailedDelete`` on error,
  retried). A bound claim whose volume vanished is ``Lost``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import trio

from kubetrio.api.quantity import Quantity, QuantityFormat
from kubetrio.api.storage import (
    find_matching_volume,
    is_bound_to,
    storage_bytes,
)
from kubetrio.api.storage import storage_class as class_of
from kubetrio.client import ClientError, EventRecorder, FunctionHandler, Informer, KubeObject
from kubetrio.providers import (
    ACCESS_MODES_TO_CSI,
    CreatedVolume,
    CreateVolumeRequest,
    StorageDriver,
    StorageDriverError,
    VolumeCapability,
)

from ._daemonset import node_matches
from ._objects import is_deleting
from ._reconcile import ControllerContext, QueueController, Result, TemporaryError, object_key

log = logging.getLogger("kubetrio.controllers.persistentvolume")

COMPONENT = "persistentvolume-controller"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
PVC_NAME = "csi.storage.k8s.io/pvc/name"
PVC_NAMESPACE = "csi.storage.k8s.io/pvc/namespace"
PV_NAME = "csi.storage.k8s.io/pv/name"

CREATE_TIMEOUT = 60.0
"""Seconds one ``CreateVolume``/``DeleteVolume`` may take before it counts as failed
(and is retried: drivers are idempotent)."""
CLASS_RECHECK = 15.0
"""Seconds before a claim naming a missing class is looked at again (a new class
also wakes it at once)."""

_ABBREVIATIONS = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def format_bytes(count: int) -> str:
    """Bytes as a binary-SI quantity (``1Gi``), as external-provisioner writes capacities."""
    return str(Quantity.from_nanos(count * 10**9, QuantityFormat.BINARY_SI))


def _annotations(obj: KubeObject) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _claim_key(namespace: str, name: str) -> str:
    return f"claim:{namespace}/{name}"


def _volume_key(name: str) -> str:
    return f"volume:{name}"


def volume_mismatch(volume: KubeObject, claim: KubeObject) -> str | None:
    """Why ``volume`` cannot serve ``claim`` (upstream's ``checkVolumeSatisfyClaim``), or None."""
    vspec = volume.get("spec") or {}
    cspec = claim.get("spec") or {}
    requested = storage_bytes((cspec.get("resources") or {}).get("requests"))
    if storage_bytes(vspec.get("capacity")) < requested:
        return "requested PV is too small"
    if class_of(volume) != class_of(claim):
        return "storageClassName does not match"
    if (vspec.get("volumeMode") or "Filesystem") != (cspec.get("volumeMode") or "Filesystem"):
        return "incompatible volumeMode"
    if not set(cspec.get("accessModes") or []) <= set(vspec.get("accessModes") or []):
        return "incompatible accessMode"
    return None


def node_allows(volume: KubeObject, node: KubeObject) -> bool:
    """Whether the volume's ``spec.nodeAffinity`` admits the node."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    pod_spec = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    }
    return node_matches(pod_spec, node)


def _revision(obj: KubeObject) -> int:
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


class _Written:
    """Objects this controller wrote, kept until its informer has caught up.

    Upstream's controller updates its own cache after each write for the same reason: a
    sync started by the event of its own write must not act on the state before it (a
    stale claim would be annotated, provisioned or bound again).
    """

    def __init__(self) -> None:
        self.objects: dict[str, KubeObject] = {}

    def remember(self, obj: KubeObject) -> KubeObject:
        """Keep ``obj`` (a write's answer); returns it."""
        self.objects[object_key(obj)] = obj
        return obj

    def forget(self, key: str) -> None:
        """Drop what was kept of an object that is gone."""
        self.objects.pop(key, None)

    def pending(self, key: str, seen_revision: str) -> KubeObject | None:
        """The object written under ``key`` that an informer at ``seen_revision`` has not
        shown yet (created here a moment ago), or None: one the informer saw and lost is
        gone, and what was kept of it is dropped."""
        written = self.objects.get(key)
        if written is None:
            return None
        if _revision(written) > (int(seen_revision) if seen_revision.isdigit() else 0):
            return written
        del self.objects[key]
        return None

    def newest(self, cached: KubeObject | None) -> KubeObject | None:
        """The newer of the informer's copy and the one written (None stays None: the
        object is gone, or not seen yet)."""
        if cached is None:
            return None
        key = object_key(cached)
        written = self.objects.get(key)
        if written is None:
            return cached
        if written["metadata"].get("uid") == cached["metadata"].get("uid") and _revision(
            written
        ) > _revision(cached):
            return written
        del self.objects[key]
        return cached


class _VolumeIndex:
    """The informer's volumes by the claim their ``claimRef`` names, and those naming none.

    A claim's sync looks only at these candidates, and a claim's change wakes only its
    own volumes, instead of walking every volume each time (which made each of N claims
    cost O(N) and a burst of claims O(N²)).
    """

    def __init__(self) -> None:
        self.claim_of: dict[str, str] = {}
        self.by_claim: dict[str, set[str]] = {}
        self.unclaimed: set[str] = set()

    def put(self, volume: KubeObject) -> None:
        """Index (or re-index) a volume."""
        name = volume["metadata"]["name"]
        self.drop(name)
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            key = f"{ref.get('namespace', '')}/{ref['name']}"
            self.claim_of[name] = key
            self.by_claim.setdefault(key, set()).add(name)
        else:
            self.claim_of[name] = ""
            self.unclaimed.add(name)

    def drop(self, name: str) -> None:
        """Forget a volume."""
        key = self.claim_of.pop(name, None)
        if key:
            names = self.by_claim.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.by_claim[key]
        elif key is not None:
            self.unclaimed.discard(name)

    def candidates(self, namespace: str, name: str) -> set[str]:
        """Volumes a claim may bind to: its own (pre-bound or bound) and unclaimed ones."""
        return self.unclaimed | self.by_claim.get(f"{namespace}/{name}", set())


class _VolumeHandler:
    """Keeps the controller's volume index and wakes the keys a volume change concerns."""

    def __init__(self, controller: PersistentVolumeController) -> None:
        self.controller = controller

    def on_add(self, obj: KubeObject) -> None:
        self.controller.volume_index.put(obj)
        self.controller._volume_changed(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.controller.volume_index.put(new)
        self.controller._volume_changed(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.controller.volume_index.drop(obj["metadata"]["name"])
        self.controller._volume_changed(obj)


def access_modes_text(modes: list[str]) -> str:
    """``RWO,RWX``: access modes as kubectl prints them."""
    return ",".join(_ABBREVIATIONS.get(m, m) for m in modes)


class PersistentVolumeController(QueueController):
    """Binds claims and volumes, provisions and reclaims volumes (module docstring).

    :param drivers: storage drivers by name; None takes them from the plugins (the
        controller manager's ``plugins``) when the controller is set up.
    """

    name = "persistentvolume-binder"
    workers = 16

    def __init__(self, drivers: Mapping[str, StorageDriver] | None = None) -> None:
        super().__init__()
        self.drivers: dict[str, StorageDriver] = dict(drivers or {})
        self._drivers_given = drivers is not None
        self.written = _Written()
        self.volume_index = _VolumeIndex()

    def setup(self, ctx: ControllerContext) -> None:
        """Watch claims, volumes, classes and nodes."""
        super().setup(ctx)
        if not self._drivers_given and ctx.plugins is not None:
            for registered in ctx.plugins.storage_drivers():
                self.drivers[registered.provider.name] = registered.provider
        self.events = EventRecorder(ctx.client, COMPONENT)
        self.claims: Informer = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.volumes: Informer = ctx.informers.informer("v1", "persistentvolumes")
        self.classes: Informer = ctx.informers.informer("storage.k8s.io/v1", "storageclasses")
        self.nodes: Informer = ctx.informers.informer("v1", "nodes")
        self.claims.add_handler(FunctionHandler(self._claim_changed))
        self.volumes.add_handler(_VolumeHandler(self))
        self.classes.add_handler(FunctionHandler(self._class_changed))

    def started_leading(self) -> None:
        """Look at every claim and volume again."""
        for claim in self.claims.list():
            self._claim_changed(claim)
        for volume in self.volumes.list():
            self._volume_changed(volume)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The workers and this controller's own event recorder (its events name
        ``persistentvolume-controller`` as their source, as upstream's do)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.events.run)
            await nursery.start(super().run)
            task_status.started()

    # --- handlers -----------------------------------------------------------------------

    def _claim_changed(self, claim: KubeObject) -> None:
        meta = claim["metadata"]
        self.queue.add(_claim_key(meta.get("namespace", ""), meta["name"]))
        if (claim.get("spec") or {}).get("volumeName"):
            self.queue.add(_volume_key(claim["spec"]["volumeName"]))
        # A deleted claim releases its volume.
        own = self.volume_index.by_claim.get(f"{meta.get('namespace', '')}/{meta['name']}", ())
        for name in own:
            self.queue.add(_volume_key(name))

    def _volume_changed(self, volume: KubeObject) -> None:
        self.queue.add(_volume_key(volume["metadata"]["name"]))
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.queue.add(_claim_key(ref.get("namespace", ""), ref["name"]))
        else:
            # A new Available volume may satisfy a waiting claim.
            for claim in self.claims.list():
                if (claim.get("status") or {}).get("phase", "Pending") == "Pending":
                    self._claim_changed(claim)

    def _class_changed(self, storage_class: KubeObject) -> None:
        name = storage_class["metadata"]["name"]
        for claim in self.claims.list():
            if class_of(claim) == name and not (claim.get("spec") or {}).get("volumeName"):
                meta = claim["metadata"]
                self.queue.add(_claim_key(meta.get("namespace", ""), meta["name"]))

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Sync one claim (``claim:<ns>/<name>``) or volume (``volume:<name>``)."""
        kind, _, rest = key.partition(":")
        if kind == "claim":
            namespace, _, name = rest.rpartition("/")
            claim = self.written.newest(self.claims.get(name, namespace))
            if claim is None:
                self.written.forget(f"{namespace}/{name}")
                return None
            return await self.sync_claim(claim)
        volume = self._volume(rest)
        if volume is None:
            self.written.forget(rest)
            return None
        return await self.sync_volume(volume)

    # --- claims -------------------------------------------------------------------------

    async def sync_claim(self, claim: KubeObject) -> Result | None:
        """Upstream's ``syncClaim``: bound claims are checked, unbound ones bound."""
        if is_deleting(claim):
            return None
        if _annotations(claim).get(BIND_COMPLETED):
            return await self._sync_bound_claim(claim)
        return await self._sync_unbound_claim(claim)

    async def _sync_bound_claim(self, claim: KubeObject) -> Result | None:
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            await self._claim_phase(claim, "Lost")
            self.events.warning(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            return None
        volume = self._volume(volume_name) or await self._live_volume(volume_name)
        if volume is None:
            await self._claim_phase(claim, "Lost")
            self.events.warning(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            return None
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref:
            await self._bind(volume, claim)  # finish a binding cut short
            return None
        if is_bound_to(volume, claim) and ref.get("uid"):
            await self._claim_bound_status(claim, volume)
            return None
        await self._claim_phase(claim, "Lost")
        self.events.warning(
            claim,
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )
        return None

    async def _sync_unbound_claim(self, claim: KubeObject) -> Result | None:
        spec = claim.get("spec") or {}
        if spec.get("volumeName"):
            return await self._sync_prebound_claim(claim, str(spec["volumeName"]))
        class_name = class_of(claim)
        storage_class = self.classes.get(class_name) if class_name else None
        delayed = (
            storage_class is not None
            and storage_class.get("volumeBindingMode") == "WaitForFirstConsumer"
        )
        selected = _annotations(claim).get(SELECTED_NODE, "")
        if delayed and not selected:
            self.events.normal(
                claim,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            return None
        node = self.nodes.get(selected) if selected else None
        meta = claim["metadata"]
        volumes = [
            volume
            for name in sorted(
                self.volume_index.candidates(meta.get("namespace", ""), meta["name"])
            )
            if (volume := self._volume(name)) is not None
        ]
        volume = find_matching_volume(
            claim,
            volumes,
            reachable=(lambda v: node_allows(v, node)) if delayed and node is not None else None,
            # Also a volume this controller has not marked Available yet (just created).
            phases=(None, "Available", "Pending"),
        )
        if volume is not None:
            await self._bind(volume, claim)
            return None
        if not class_name:
            await self._claim_phase(claim, "Pending")
            self.events.normal(
                claim,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            return None
        if storage_class is None:
            await self._claim_phase(claim, "Pending")
            self.events.warning(
                claim,
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{class_name}" not found',
            )
            return Result(requeue_after=CLASS_RECHECK)
        return await self._provision(claim, storage_class, selected)

    async def _sync_prebound_claim(self, claim: KubeObject, volume_name: str) -> Result | None:
        volume = self._volume(volume_name)
        if volume is None:
            await self._claim_phase(claim, "Pending")  # the volume may still come
            return None
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref and not is_bound_to(volume, claim):
            await self._claim_phase(claim, "Pending")
            self.events.normal(
                claim,
                "FailedBinding",
                f'volume "{volume_name}" already bound to a different claim.',
            )
            return None
        if not ref:
            problem = volume_mismatch(volume, claim)
            if problem:
                await self._claim_phase(claim, "Pending")
                self.events.warning(
                    claim,
                    "VolumeMismatch",
                    f'Cannot bind to requested volume "{volume_name}": {problem}',
                )
                return None
        await self._bind(volume, claim)
        return None

    # --- binding ------------------------------------------------------------------------

    async def _bind(self, volume: KubeObject, claim: KubeObject) -> None:
        """Upstream's ``bind``: the volume to the claim, the claim to the volume, statuses."""
        volume = await self._bind_volume_to_claim(volume, claim)
        await self._volume_phase(volume, "Bound")
        claim = await self._bind_claim_to_volume(claim, volume)
        await self._claim_bound_status(claim, volume)

    async def _bind_volume_to_claim(self, volume: KubeObject, claim: KubeObject) -> KubeObject:
        meta = claim["metadata"]
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") == meta.get("uid") and is_bound_to(volume, claim):
            return volume
        updated = copy.deepcopy(volume)
        if not ref:
            updated["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
        updated["spec"]["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "namespace": meta.get("namespace", ""),
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        result: KubeObject = await self.client.update("v1", "persistentvolumes", updated)
        return self.written.remember(result)

    async def _bind_claim_to_volume(self, claim: KubeObject, volume: KubeObject) -> KubeObject:
        spec = claim.get("spec") or {}
        name = volume["metadata"]["name"]
        annotations = _annotations(claim)
        if spec.get("volumeName") == name and annotations.get(BIND_COMPLETED):
            return claim
        meta = claim["metadata"]
        notes = {BIND_COMPLETED: "yes"}
        if spec.get("volumeName") != name:
            notes[BOUND_BY_CONTROLLER] = "yes"
        if meta.get("annotations") is None:
            updated = copy.deepcopy(claim)
            updated["spec"]["volumeName"] = name
            updated["metadata"]["annotations"] = notes
            result: KubeObject = await self.client.update(
                "v1", "persistentvolumeclaims", updated, namespace=meta["namespace"]
            )
            return self.written.remember(result)
        # A JSON patch whose tests hold the claim to what this sync decided on (the same
        # object, the same spec) rather than to its resourceVersion: another controller's
        # write meanwhile (pvc-protection adding its finalizer, as it does to every new
        # claim) must not turn the binding into a 409 and a retry from the start.
        operations: list[KubeObject] = [
            {"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
            {"op": "test", "path": "/spec", "value": spec},
            {"op": "add", "path": "/spec/volumeName", "value": name},
        ]
        operations += [
            {"op": "add", "path": f"/metadata/annotations/{_pointer(key)}", "value": value}
            for key, value in notes.items()
        ]
        try:
            result = await self.client.patch(
                "v1",
                "persistentvolumeclaims",
                meta["name"],
                operations,
                namespace=meta["namespace"],
                patch_type="json",
            )
        except ClientError as exc:
            if exc.code != 422:
                raise
            # A test failed: the claim was re-created or its spec changed; the informer
            # brings the new state and the sync decides again.
            raise TemporaryError(f"claim changed while binding it: {exc}") from exc
        return self.written.remember(result)

    async def _claim_bound_status(self, claim: KubeObject, volume: KubeObject) -> None:
        vspec = volume.get("spec") or {}
        status = claim.get("status") or {}
        wanted: dict[str, Any] = {"phase": "Bound"}
        if status.get("phase") != "Bound" or not status.get("capacity"):
            # Capacity is set when binding; later the resize controller owns it.
            wanted["capacity"] = dict(vspec.get("capacity") or {})
            wanted["accessModes"] = list(vspec.get("accessModes") or [])
        if all(status.get(k) == v for k, v in wanted.items()):
            return
        await self._patch_status("persistentvolumeclaims", claim, wanted)

    async def _claim_phase(self, claim: KubeObject, phase: str) -> None:
        if (claim.get("status") or {}).get("phase") != phase:
            await self._patch_status("persistentvolumeclaims", claim, {"phase": phase})

    async def _volume_phase(self, volume: KubeObject, phase: str, message: str = "") -> None:
        status = volume.get("status") or {}
        if status.get("phase") == phase and status.get("message", "") == message:
            return
        await self._patch_status(
            "persistentvolumes", volume, {"phase": phase, "message": message or None}
        )

    async def _patch_status(self, resource: str, obj: KubeObject, status: KubeObject) -> None:
        meta = obj["metadata"]
        result: KubeObject = await self.client.patch(
            "v1",
            resource,
            meta["name"],
            {"status": status},
            namespace=meta.get("namespace", ""),
            subresource="status",
        )
        self.written.remember(result)

    def _volume(self, name: str) -> KubeObject | None:
        """The volume from the informer, or the newer copy this controller wrote (also one
        it created that the informer has not shown yet)."""
        cached = self.volumes.get(name)
        if cached is None:
            return self.written.pending(name, self.volumes.resource_version)
        return self.written.newest(cached)

    async def _live_volume(self, name: str) -> KubeObject | None:
        try:
            volume: KubeObject = await self.client.get("v1", "persistentvolumes", name)
        except ClientError as exc:
            if exc.not_found:
                return None
            raise
        return volume

    # --- provisioning -------------------------------------------------------------------

    async def _provision(
        self, claim: KubeObject, storage_class: KubeObject, selected_node: str
    ) -> Result | None:
        provisioner = str(storage_class.get("provisioner") or "")
        claim = await self._annotate_provisioner(claim, provisioner)
        await self._claim_phase(claim, "Pending")
        self.events.normal(
            claim,
            "ExternalProvisioning",
            f"Waiting for a volume to be created either by the external provisioner "
            f"'{provisioner}' or manually by the system administrator. If volume creation is "
            "delayed, please verify that the provisioner is running and correctly registered.",
        )
        driver = self.drivers.get(provisioner)
        if driver is None:
            return None  # an external provisioner, or an administrator, may still act
        meta = claim["metadata"]
        pv_name = f"pvc-{meta['uid']}"
        # The informer and what this controller wrote know every volume it made; one made
        # elsewhere (or before a restart, unseen yet) makes the create below answer 409.
        existing = self._volume(pv_name)
        if existing is not None:
            await self._bind(existing, claim)  # created before a crash or a lost race
            return None
        class_name = storage_class["metadata"]["name"]
        self.events.normal(
            claim,
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{meta["namespace"]}/'
            f'{meta["name"]}"',
        )
        request = self._create_request(claim, storage_class, pv_name, selected_node)
        try:
            with trio.fail_after(CREATE_TIMEOUT):
                created = await driver.create_volume(request)
        except (StorageDriverError, trio.TooSlowError) as exc:
            code, message = (
                (exc.code, exc.message)
                if isinstance(exc, StorageDriverError)
                else ("DEADLINE_EXCEEDED", "context deadline exceeded")
            )
            self.events.warning(
                claim,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{class_name}": '
                f"rpc error: code = {_grpc_code(code)} desc = {message}",
            )
            raise TemporaryError(f"CreateVolume {pv_name}: {code}: {message}") from exc
        volume = self._volume_for(claim, storage_class, pv_name, request, created)
        try:
            volume = self.written.remember(
                await self.client.create("v1", "persistentvolumes", volume)
            )
        except ClientError as exc:
            if exc.code != 409:
                raise
            volume = await self.client.get("v1", "persistentvolumes", pv_name)
        self.events.normal(
            claim, "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}"
        )
        await self._bind(volume, claim)
        return None

    async def _annotate_provisioner(self, claim: KubeObject, provisioner: str) -> KubeObject:
        annotations = _annotations(claim)
        if (
            annotations.get(STORAGE_PROVISIONER) == provisioner
            and annotations.get(BETA_STORAGE_PROVISIONER) == provisioner
        ):
            return claim
        notes = {STORAGE_PROVISIONER: provisioner, BETA_STORAGE_PROVISIONER: provisioner}
        result: KubeObject = await self.client.patch(
            "v1",
            "persistentvolumeclaims",
            claim["metadata"]["name"],
            {"metadata": {"annotations": notes}},
            namespace=claim["metadata"]["namespace"],
        )
        return self.written.remember(result)

    def _create_request(
        self, claim: KubeObject, storage_class: KubeObject, pv_name: str, selected_node: str
    ) -> CreateVolumeRequest:
        spec = claim.get("spec") or {}
        meta = claim["metadata"]
        # As external-provisioner, the csi.storage.k8s.io/ keys (secrets, fsType) are
        # for the provisioner, not the driver.
        parameters = {
            str(k): str(v)
            for k, v in (storage_class.get("parameters") or {}).items()
            if not str(k).startswith("csi.storage.k8s.io/")
        }
        parameters.update(
            {PVC_NAME: meta["name"], PVC_NAMESPACE: meta["namespace"], PV_NAME: pv_name}
        )
        block = spec.get("volumeMode") == "Block"
        capabilities = tuple(
            VolumeCapability(
                access_mode=ACCESS_MODES_TO_CSI.get(mode, "SINGLE_NODE_WRITER"),
                block=block,
                mount_flags=tuple(storage_class.get("mountOptions") or ()),
            )
            for mode in spec.get("accessModes") or ["ReadWriteOnce"]
        )
        topology: tuple[Mapping[str, str], ...] = ()
        if selected_node:
            node = self.nodes.get(selected_node)
            hostname = (((node or {}).get("metadata") or {}).get("labels") or {}).get(
                HOSTNAME_LABEL, selected_node
            )
            topology = ({HOSTNAME_LABEL: str(hostname)},)
        return CreateVolumeRequest(
            name=pv_name,
            capacity_bytes=storage_bytes((spec.get("resources") or {}).get("requests")),
            limit_bytes=storage_bytes((spec.get("resources") or {}).get("limits")),
            parameters=parameters,
            capabilities=capabilities,
            requisite_topology=topology,
            preferred_topology=topology,
        )

    def _volume_for(
        self,
        claim: KubeObject,
        storage_class: KubeObject,
        pv_name: str,
        request: CreateVolumeRequest,
        created: CreatedVolume,
    ) -> KubeObject:
        spec = claim.get("spec") or {}
        meta = claim["metadata"]
        provisioner = str(storage_class.get("provisioner") or "")
        size = created.capacity_bytes or request.capacity_bytes
        csi: KubeObject = {"driver": provisioner, "volumeHandle": created.volume_id}
        attributes = dict(created.volume_context)
        if attributes:
            csi["volumeAttributes"] = attributes
        if storage_class.get("parameters", {}).get("csi.storage.k8s.io/fstype"):
            csi["fsType"] = storage_class["parameters"]["csi.storage.k8s.io/fstype"]
        volume_spec: KubeObject = {
            "capacity": {"storage": format_bytes(size)},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "csi": csi,
        }
        if storage_class.get("mountOptions"):
            volume_spec["mountOptions"] = list(storage_class["mountOptions"])
        if created.accessible_topology:
            volume_spec["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": key, "operator": "In", "values": [value]}
                                for key, value in sorted(segment.items())
                            ]
                        }
                        for segment in created.accessible_topology
                    ]
                }
            }
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {PROVISIONED_BY: provisioner},
                "finalizers": ["kubernetes.io/pv-protection"],
            },
            "spec": volume_spec,
        }

    # --- volumes ------------------------------------------------------------------------

    async def sync_volume(self, volume: KubeObject) -> Result | None:
        """Upstream's ``syncVolume``: phases, releasing and reclaiming."""
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef") or {}
        phase = (volume.get("status") or {}).get("phase")
        if not ref:
            if phase not in ("Available", "Failed") and not is_deleting(volume):
                await self._volume_phase(volume, "Available")
            return None
        if not ref.get("uid"):
            # Pre-bound by its author; the claim's sync binds it.
            if phase != "Available" and not is_deleting(volume):
                await self._volume_phase(volume, "Available")
            return None
        claim = self.written.newest(self.claims.get(ref.get("name", ""), ref.get("namespace", "")))
        if claim is None or claim["metadata"].get("uid") != ref["uid"]:
            claim = await self._live_claim(ref)
        if claim is not None and claim["metadata"].get("uid") == ref["uid"]:
            claim_volume = (claim.get("spec") or {}).get("volumeName")
            if claim_volume == volume["metadata"]["name"]:
                if phase != "Bound":
                    await self._volume_phase(volume, "Bound")
                return None
            if not claim_volume:
                return None  # the claim's half of the binding is on its way
            # The claim is bound to another volume: undo what the controller did.
            if _annotations(volume).get(BOUND_BY_CONTROLLER):
                await self._unbind(volume)
            return None
        # The claim is gone: the volume is released.
        if phase not in ("Released", "Failed"):
            await self._volume_phase(volume, "Released")
            return None
        if phase == "Failed":
            return None
        return await self._reclaim(volume)

    async def _live_claim(self, ref: KubeObject) -> KubeObject | None:
        try:
            claim: KubeObject = await self.client.get(
                "v1",
                "persistentvolumeclaims",
                ref.get("name", ""),
                namespace=ref.get("namespace", ""),
            )
        except ClientError as exc:
            if exc.not_found:
                return None
            raise
        return claim

    async def _unbind(self, volume: KubeObject) -> None:
        updated = copy.deepcopy(volume)
        updated["metadata"].get("annotations", {}).pop(BOUND_BY_CONTROLLER, None)
        updated["spec"].pop("claimRef", None)
        volume = self.written.remember(await self.client.update("v1", "persistentvolumes", updated))
        await self._volume_phase(volume, "Available")

    async def _reclaim(self, volume: KubeObject) -> Result | None:
        spec = volume.get("spec") or {}
        policy = spec.get("persistentVolumeReclaimPolicy") or "Retain"
        name = volume["metadata"]["name"]
        if policy == "Retain":
            return None
        if policy != "Delete":
            await self._volume_phase(volume, "Failed", "no volume plugin matched")
            self.events.warning(
                volume, "VolumeFailedRecycle", "No recycler plugin found for the volume!"
            )
            return None
        if is_deleting(volume):
            return None
        provisioner = _annotations(volume).get(PROVISIONED_BY, "")
        driver = self.drivers.get(provisioner) if provisioner else None
        if driver is None:
            if provisioner:
                return None  # an external provisioner deletes it
            message = (
                f'error getting deleter volume plugin for volume "{name}": '
                "no deletable volume plugin matched"
            )
            await self._volume_phase(volume, "Failed", message)
            self.events.warning(volume, "VolumeFailedDelete", message)
            return None
        handle = str((spec.get("csi") or {}).get("volumeHandle") or "")
        try:
            with trio.fail_after(CREATE_TIMEOUT):
                await driver.delete_volume(volume_id=handle)
        except (StorageDriverError, trio.TooSlowError) as exc:
            message = (
                f"rpc error: code = {_grpc_code(exc.code)} desc = {exc.message}"
                if isinstance(exc, StorageDriverError)
                else "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
            )
            self.events.warning(volume, "VolumeFailedDelete", message)
            raise TemporaryError(f"DeleteVolume {handle}: {message}") from exc
        try:
            await self.client.delete(
                "v1", "persistentvolumes", name, preconditions={"uid": volume["metadata"]["uid"]}
            )
        except ClientError as exc:
            if not exc.not_found:
                raise
        return None


def _pointer(key: str) -> str:
    """A map key as one JSON pointer token (RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``)."""
    return key.replace("~", "~0").replace("/", "~1")


def _grpc_code(code: str) -> str:
    """``RESOURCE_EXHAUSTED`` → ``ResourceExhausted``: a CSI code as Go's gRPC prints it."""
    return "".join(part.capitalize() for part in code.split("_"))
