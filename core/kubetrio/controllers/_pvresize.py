"""Volume expansion: the controller half of upstream's external-resizer.

A Bound claim whose ``spec.resources.requests.storage`` is larger than its
``status.capacity`` (validation already refused shrinking, admission a class without
``allowVolumeExpansion``) is expanded through its driver's ``expand_volume`` when the
driver has the ``EXPAND_VOLUME`` controller capability:

* the claim gets ``status.allocatedResources`` and the condition ``Resizing``, and the
  event ``Resizing`` ("External resizer is resizing volume …");
* success updates the PV's ``spec.capacity``; when the driver needs node expansion the
  claim's condition becomes ``FileSystemResizePending`` (event
  ``FileSystemResizeRequired``) and the node agent finishes (it sets ``status.capacity``),
  otherwise ``status.capacity`` is the new size at once (event ``VolumeResizeSuccessful``);
* failure is a ``VolumeResizeFailed`` event and a retry with back-off.

A volume no registered driver can expand gets ``ExternalExpanding`` ("waiting for an
external controller to expand this PVC") and is left to someone else, as upstream.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import trio

from kubetrio.api.storage import storage_bytes
from kubetrio.client import EventRecorder, FunctionHandler, Informer, KubeObject
from kubetrio.providers import (
    ACCESS_MODES_TO_CSI,
    StorageDriver,
    StorageDriverError,
    VolumeCapability,
)

from ._objects import is_deleting
from ._persistentvolume import _grpc_code, format_bytes
from ._reconcile import (
    ControllerContext,
    QueueController,
    Result,
    TemporaryError,
    object_key,
    split_key,
)

RESIZING = "Resizing"
FS_RESIZE_PENDING = "FileSystemResizePending"
FS_RESIZE_MESSAGE = (
    "Waiting for user to (re-)start a pod to finish file system resize of volume on node."
)
RESIZE_TIMEOUT = 60.0
"""Seconds one ``ControllerExpandVolume`` may take before it is retried."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, message: str = "") -> KubeObject:
    condition: KubeObject = {
        "type": type_,
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": _now(),
    }
    if message:
        condition["message"] = message
    return condition


class VolumeResizeController(QueueController):
    """Expands volumes of claims that asked for more (module docstring).

    :param drivers: storage drivers by name; None takes them from the plugins.
    """

    name = "persistentvolume-expander"
    workers = 2

    def __init__(self, drivers: dict[str, StorageDriver] | None = None) -> None:
        super().__init__()
        self.drivers: dict[str, StorageDriver] = dict(drivers or {})
        self._drivers_given = drivers is not None

    def setup(self, ctx: ControllerContext) -> None:
        """Watch claims and volumes."""
        super().setup(ctx)
        if not self._drivers_given and ctx.plugins is not None:
            for registered in ctx.plugins.storage_drivers():
                self.drivers[registered.provider.name] = registered.provider
        self.events = EventRecorder(ctx.client, "external-resizer")
        self.claims: Informer = ctx.informers.informer("v1", "persistentvolumeclaims")
        self.volumes: Informer = ctx.informers.informer("v1", "persistentvolumes")
        self.claims.add_handler(FunctionHandler(lambda c: self.queue.add(object_key(c))))

    def primary(self) -> Informer | None:
        """Claims."""
        return self.claims

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The workers and this controller's event recorder."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.events.run)
            await nursery.start(super().run)
            task_status.started()

    async def reconcile(self, key: str) -> Result | None:
        """Expand the claim's volume if it asks for more than it has."""
        namespace, name = split_key(key)
        claim = self.claims.get(name, namespace)
        if claim is None or is_deleting(claim):
            return None
        spec = claim.get("spec") or {}
        status = claim.get("status") or {}
        if status.get("phase") != "Bound" or not spec.get("volumeName"):
            return None
        requested = storage_bytes((spec.get("resources") or {}).get("requests"))
        if requested <= storage_bytes(status.get("capacity")):
            return None
        conditions = status.get("conditions") or []
        if any(c.get("type") == FS_RESIZE_PENDING for c in conditions):
            volume = self.volumes.get(spec["volumeName"])
            pv_size = storage_bytes(((volume or {}).get("spec") or {}).get("capacity"))
            if pv_size >= requested:
                return None  # the node agent finishes it
        volume = self.volumes.get(spec["volumeName"])
        if volume is None:
            return None
        csi = (volume.get("spec") or {}).get("csi") or {}
        driver = self.drivers.get(str(csi.get("driver") or ""))
        capable = False
        if driver is not None:
            info = await driver.get_info()
            capable = "EXPAND_VOLUME" in info.controller_capabilities
        if driver is None or not capable:
            self.events.normal(
                claim, "ExternalExpanding", "waiting for an external controller to expand this PVC"
            )
            return None
        volume_name = volume["metadata"]["name"]
        new_size = format_bytes(requested)
        await self._claim_status(
            claim,
            {
                "allocatedResources": {"storage": new_size},
                "conditions": [_condition(RESIZING)],
            },
        )
        self.events.normal(claim, "Resizing", f"External resizer is resizing volume {volume_name}")
        modes = (volume.get("spec") or {}).get("accessModes") or ["ReadWriteOnce"]
        capability = VolumeCapability(
            access_mode=ACCESS_MODES_TO_CSI.get(modes[0], "SINGLE_NODE_WRITER"),
            block=(volume.get("spec") or {}).get("volumeMode") == "Block",
            fs_type=str(csi.get("fsType") or ""),
        )
        try:
            with trio.fail_after(RESIZE_TIMEOUT):
                expanded = await driver.expand_volume(
                    volume_id=str(csi.get("volumeHandle") or ""),
                    capacity_bytes=requested,
                    capability=capability,
                )
        except (StorageDriverError, trio.TooSlowError) as exc:
            reason = (
                f"rpc error: code = {_grpc_code(exc.code)} desc = {exc.message}"
                if isinstance(exc, StorageDriverError)
                else "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
            )
            self.events.warning(
                claim,
                "VolumeResizeFailed",
                f'resize volume "{volume_name}" by resizer "{driver.name}" failed: {reason}',
            )
            raise TemporaryError(f"ControllerExpandVolume {volume_name}: {reason}") from exc
        size = format_bytes(max(expanded.capacity_bytes, requested))
        updated = copy.deepcopy(volume)
        updated["spec"]["capacity"] = {**(updated["spec"].get("capacity") or {}), "storage": size}
        await self.client.update("v1", "persistentvolumes", updated)
        if expanded.node_expansion_required:
            await self._claim_status(
                claim, {"conditions": [_condition(FS_RESIZE_PENDING, FS_RESIZE_MESSAGE)]}
            )
            self.events.normal(
                claim, "FileSystemResizeRequired", "Require file system resize of volume on node"
            )
            return None
        await self._claim_status(claim, {"capacity": {"storage": size}, "conditions": None})
        self.events.normal(claim, "VolumeResizeSuccessful", "Resize volume succeeded")
        return None

    async def _claim_status(self, claim: KubeObject, status: dict[str, Any]) -> None:
        meta = claim["metadata"]
        await self.client.patch(
            "v1",
            "persistentvolumeclaims",
            meta["name"],
            {"status": status},
            namespace=meta["namespace"],
            subresource="status",
        )
