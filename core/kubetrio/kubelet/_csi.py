"""The node side of PersistentVolumes: staging, publishing and their undoing, in CSI order.

Paths are kubelet's::

    <agent dir>/plugins/kubernetes.io/csi/<driver>/<sha256(volume handle)>/globalmount
        staged once per volume per node (drivers with ``STAGE_UNSTAGE_VOLUME``)
    <agent dir>/pods/<pod uid>/volumes/kubernetes.io~csi/<pv name>/mount
        published per pod

Beside each ``globalmount`` and each ``mount`` a ``vol_data.json`` records the driver, the
volume handle and the staging path, as kubelet's CSI plugin does. The disk, not memory, is
the record of what is published and staged: a volume is unstaged when no pod directory
still holds a ``vol_data.json`` naming it, and an agent that restarts finds the targets of
pods that no longer exist (:meth:`NodeVolumes.release_pod`) and unpublishes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from kubetrio.providers import (
    ACCESS_MODES_TO_CSI,
    KubeObject,
    StorageDriver,
    StorageDriverInfo,
    VolumeCapability,
    VolumeStats,
)

log = logging.getLogger(__name__)

CSI_DIR = "kubernetes.io~csi"
"""The per-pod folder of CSI volumes (kubelet's plugin name with ``/`` escaped)."""
VOL_DATA = "vol_data.json"


class PublishError(Exception):
    """A volume could not be staged or published; the message is for ``FailedMount``."""


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return {line.split()[4].encode().decode("unicode_escape") for line in mountinfo}


def remove_unmounted(path: Path) -> bool:
    """``rm -r path`` unless something is still mounted inside it (then a volume's data
    would go with it): returns whether it was removed."""
    if not path.exists():
        return True
    prefix = os.path.realpath(path)
    busy = [m for m in _mount_points() if m == prefix or m.startswith(prefix + "/")]
    if busy:
        log.warning("not removing %s: still mounted there: %s", path, ", ".join(sorted(busy)))
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def capability_of(pv: KubeObject) -> VolumeCapability:
    """The CSI volume capability of a PersistentVolume (its first access mode)."""
    spec = pv.get("spec") or {}
    csi = spec.get("csi") or {}
    modes = spec.get("accessModes") or ["ReadWriteOnce"]
    return VolumeCapability(
        access_mode=ACCESS_MODES_TO_CSI.get(modes[0], "SINGLE_NODE_WRITER"),
        block=spec.get("volumeMode") == "Block",
        fs_type=str(csi.get("fsType") or ""),
        mount_flags=tuple(spec.get("mountOptions") or ()),
    )


class NodeVolumes:
    """The CSI node service calls of one node agent, with the bookkeeping between them.

    :param drivers: storage drivers by name (PersistentVolumes' ``spec.csi.driver``).
    :param root_dir: the agent's directory (staging paths live under ``plugins/``).
    :param pods_dir: where the pods' directories are (``<root_dir>/pods``).
    """

    def __init__(
        self, drivers: Mapping[str, StorageDriver], *, root_dir: Path, pods_dir: Path
    ) -> None:
        self.drivers = dict(drivers)
        self.root_dir = root_dir
        self.pods_dir = pods_dir
        self._infos: dict[str, StorageDriverInfo] = {}
        self._locks: dict[tuple[str, str], trio.Lock] = {}

    # --- paths ----------------------------------------------------------------------------

    def staging_path(self, driver: str, volume_id: str) -> Path:
        """``<agent>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount``."""
        digest = hashlib.sha256(volume_id.encode()).hexdigest()
        return self.root_dir / "plugins" / "kubernetes.io" / "csi" / driver / digest / "globalmount"

    def target_path(self, pod_uid: str, pv_name: str) -> Path:
        """``<pods>/<uid>/volumes/kubernetes.io~csi/<pv>/mount``."""
        return self.pods_dir / pod_uid / "volumes" / CSI_DIR / pv_name / "mount"

    def _lock(self, driver: str, volume_id: str) -> trio.Lock:
        return self._locks.setdefault((driver, volume_id), trio.Lock())

    async def info(self, name: str) -> StorageDriverInfo:
        """A driver's identity and capabilities (asked once)."""
        found = self._infos.get(name)
        if found is None:
            found = self._infos[name] = await self.drivers[name].get_info()
        return found

    def driver(self, pv: KubeObject) -> tuple[str, StorageDriver]:
        """The driver named by the PV's ``spec.csi.driver``; PublishError when absent."""
        name = str(((pv.get("spec") or {}).get("csi") or {}).get("driver", ""))
        driver = self.drivers.get(name)
        if driver is None:
            raise PublishError(
                f"kubernetes.io/csi: attacher.MountDevice failed to create newCsiDriverClient: "
                f"driver name {name} not found in the list of registered CSI drivers"
            )
        return name, driver

    # --- publish --------------------------------------------------------------------------

    async def publish(self, pod_uid: str, pv: KubeObject, *, read_only: bool) -> Path:
        """Stage the PV's volume on this node if the driver stages and nobody did yet,
        then publish it for the pod; returns the target path."""
        pv_name = str(pv["metadata"]["name"])
        try:
            name, driver = self.driver(pv)
        except PublishError as exc:
            raise PublishError(
                f'MountVolume.MountDevice failed for volume "{pv_name}" : {exc}'
            ) from None
        spec = pv.get("spec") or {}
        csi = spec.get("csi") or {}
        volume_id = str(csi.get("volumeHandle", ""))
        capability = capability_of(pv)
        context = dict(csi.get("volumeAttributes") or {})
        info = await self.info(name)
        target = self.target_path(pod_uid, pv_name)
        async with self._lock(name, volume_id):
            staging = ""
            if "STAGE_UNSTAGE_VOLUME" in info.node_capabilities:
                path = self.staging_path(name, volume_id)
                staging = str(path)
                record = path.parent / VOL_DATA
                if not record.exists():
                    path.mkdir(parents=True, exist_ok=True)
                    try:
                        await driver.stage_volume(
                            volume_id=volume_id,
                            staging_path=staging,
                            capability=capability,
                            volume_context=context,
                        )
                    except Exception as exc:
                        raise PublishError(
                            f'MountVolume.MountDevice failed for volume "{pv_name}" : {exc}'
                        ) from exc
                    _write_json(record, {"driverName": name, "volumeHandle": volume_id})
            target.mkdir(parents=True, exist_ok=True)
            data = {
                "driverName": name,
                "volumeHandle": volume_id,
                "specVolID": pv_name,
                "stagingPath": staging,
                "readOnly": read_only,
            }
            # Written first: an agent that dies mid-publish still knows what to undo.
            _write_json(target.parent / VOL_DATA, data)
            try:
                await driver.publish_volume(
                    volume_id=volume_id,
                    target_path=str(target),
                    capability=capability,
                    read_only=read_only,
                    volume_context=context,
                    staging_path=staging,
                )
            except Exception as exc:
                raise PublishError(
                    f'MountVolume.SetUp failed for volume "{pv_name}" : {exc}'
                ) from exc
        return target

    # --- unpublish ------------------------------------------------------------------------

    def published(self, pod_uid: str) -> list[tuple[Path, dict[str, Any]]]:
        """(target path, its ``vol_data.json``) of every CSI volume of a pod's directory."""
        found = []
        for record in sorted((self.pods_dir / pod_uid / "volumes" / CSI_DIR).glob(f"*/{VOL_DATA}")):
            try:
                found.append((record.parent / "mount", json.loads(record.read_text())))
            except (OSError, ValueError):
                continue
        return found

    def _still_used(self, driver: str, volume_id: str) -> bool:
        for record in self.pods_dir.glob(f"*/volumes/{CSI_DIR}/*/{VOL_DATA}"):
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if data.get("driverName") == driver and data.get("volumeHandle") == volume_id:
                return True
        return False

    async def unpublish(self, target: Path, data: Mapping[str, Any]) -> None:
        """Unpublish one target; unstage the volume when no pod on the node uses it."""
        name = str(data.get("driverName", ""))
        volume_id = str(data.get("volumeHandle", ""))
        driver = self.drivers.get(name)
        if driver is None:
            raise PublishError(f"no storage driver {name!r} here to unpublish {target}")
        async with self._lock(name, volume_id):
            await driver.unpublish_volume(volume_id=volume_id, target_path=str(target))
            if not await trio.to_thread.run_sync(remove_unmounted, target.parent):
                raise PublishError(f"{target} is still mounted after NodeUnpublishVolume")
            staging = str(data.get("stagingPath") or "")
            if staging and not self._still_used(name, volume_id):
                await driver.unstage_volume(volume_id=volume_id, staging_path=staging)
                path = Path(staging)
                (path.parent / VOL_DATA).unlink(missing_ok=True)
                await trio.to_thread.run_sync(remove_unmounted, path.parent)

    async def release_pod(self, pod_uid: str) -> None:
        """Unpublish every CSI volume of a pod (stopped, or gone while the agent was down)."""
        for target, data in self.published(pod_uid):
            await self.unpublish(target, data)

    # --- expansion and stats --------------------------------------------------------------

    async def expand(self, pv: KubeObject, target: Path, capacity_bytes: int) -> int | None:
        """NodeExpandVolume when the driver can; the new size, or None if it cannot."""
        name, driver = self.driver(pv)
        if "EXPAND_VOLUME" not in (await self.info(name)).node_capabilities:
            return None
        csi = (pv.get("spec") or {}).get("csi") or {}
        volume_id = str(csi.get("volumeHandle", ""))
        staging = ""
        if "STAGE_UNSTAGE_VOLUME" in (await self.info(name)).node_capabilities:
            staging = str(self.staging_path(name, volume_id))
        return await driver.expand_node_volume(
            volume_id=volume_id,
            volume_path=str(target),
            capacity_bytes=capacity_bytes,
            staging_path=staging,
        )

    async def stats(self, target: Path, data: Mapping[str, Any]) -> VolumeStats | None:
        """NodeGetVolumeStats of a published target, when its driver has it."""
        name = str(data.get("driverName", ""))
        driver = self.drivers.get(name)
        if driver is None or "GET_VOLUME_STATS" not in (await self.info(name)).node_capabilities:
            return None
        return await driver.volume_stats(
            volume_id=str(data.get("volumeHandle", "")), volume_path=str(target)
        )


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def directory_usage(path: Path) -> tuple[int, int]:
    """(bytes, inodes) used under ``path``, as ``du`` counts them (allocated blocks)."""
    used = 0
    inodes = 0
    for directory, _dirs, files in os.walk(path):
        inodes += 1
        for file in files:
            inodes += 1
            with contextlib.suppress(OSError):
                used += os.lstat(os.path.join(directory, file)).st_blocks * 512
    return used, inodes
