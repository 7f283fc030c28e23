"""Local volumes: one directory per volume under a root, bind-mounted into pods.

The same shape as k3s' local-path provisioner: creating a volume makes a directory named after
the PV (``pvc-<claim uid>``: unique, so a re-created claim never sees old data), publishing
bind-mounts it at the target path (read-only via a remount, since a bind mount ignores
``ro`` on the first call), deleting removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import trio

from kubetrio.providers import (
    CreatedVolume,
    CreateVolumeRequest,
    ExpandedVolume,
    StorageDriverError,
    StorageDriverInfo,
    StorageNodeInfo,
    VolumeCapability,
    VolumeStats,
)

PROVISIONER = "kubetrio.io/local"


class LocalVolumes:
    """A storage driver whose volumes are directories on this node."""

    name = PROVISIONER

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path_of(self, volume_id: str) -> Path:
        if not volume_id or "/" in volume_id or volume_id in (".", ".."):
            raise StorageDriverError("INVALID_ARGUMENT", f"unusable volume id {volume_id!r}")
        return self.root / volume_id

    async def get_info(self) -> StorageDriverInfo:
        """Controller (create/delete) and node (publish, stats) services, no staging."""
        return StorageDriverInfo(
            name=self.name,
            vendor_version="kubetrio",
            plugin_capabilities=frozenset({"CONTROLLER_SERVICE"}),
            controller_capabilities=frozenset({"CREATE_DELETE_VOLUME"}),
            node_capabilities=frozenset({"GET_VOLUME_STATS"}),
        )

    async def probe(self) -> bool:
        """Always ready."""
        return True

    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        """Create the volume's directory, named after the PV (``pvc-<claim uid>``)."""
        path = self._path_of(request.name)
        await trio.to_thread.run_sync(lambda: path.mkdir(parents=True, exist_ok=True))
        return CreatedVolume(volume_id=request.name, capacity_bytes=request.capacity_bytes)

    async def delete_volume(
        self, *, volume_id: str, secrets: Mapping[str, str] | None = None
    ) -> None:
        """Remove the volume's directory and its content."""
        path = self._path_of(volume_id)
        await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    async def expand_volume(
        self, *, volume_id: str, capacity_bytes: int, capability: VolumeCapability
    ) -> ExpandedVolume:
        """Not supported: a directory has no size of its own."""
        raise StorageDriverError("UNIMPLEMENTED", "local volumes cannot be expanded")

    async def get_capacity(
        self, *, parameters: Mapping[str, str], topology: Mapping[str, str] | None = None
    ) -> int | None:
        """Unknown (the root's filesystem is shared with everything else)."""
        return None

    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
        """The node's own name is its id."""
        return StorageNodeInfo(node_id=node_name)

    async def stage_volume(
        self,
        *,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability,
        volume_context: Mapping[str, str],
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Not used: the driver has no ``STAGE_UNSTAGE_VOLUME`` capability."""
        raise StorageDriverError("UNIMPLEMENTED", "local volumes are not staged")

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        """Not used: the driver has no ``STAGE_UNSTAGE_VOLUME`` capability."""
        raise StorageDriverError("UNIMPLEMENTED", "local volumes are not staged")

    async def publish_volume(
        self,
        *,
        volume_id: str,
        target_path: str,
        capability: VolumeCapability,
        read_only: bool,
        volume_context: Mapping[str, str],
        staging_path: str = "",
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Bind-mount the volume's directory at ``target_path`` (needs root)."""
        source = self._path_of(volume_id)
        await trio.to_thread.run_sync(lambda: source.mkdir(parents=True, exist_ok=True))
        os.makedirs(target_path, exist_ok=True)
        if is_mount_point(target_path):
            return
        await trio.run_process(["mount", "--bind", str(source), target_path])
        if read_only:
            await trio.run_process(["mount", "-o", "remount,bind,ro", target_path])

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        """Unmount ``target_path`` if the volume is mounted there."""
        if is_mount_point(target_path):
            await trio.run_process(["umount", target_path])

    async def expand_node_volume(
        self, *, volume_id: str, volume_path: str, capacity_bytes: int, staging_path: str = ""
    ) -> int:
        """Not supported (see :meth:`expand_volume`)."""
        raise StorageDriverError("UNIMPLEMENTED", "local volumes cannot be expanded")

    async def volume_stats(self, *, volume_id: str, volume_path: str) -> VolumeStats:
        """The filesystem's figures under the volume (bytes used: the directory's files)."""
        path = self._path_of(volume_id)
        return await trio.to_thread.run_sync(_directory_stats, path)


def _directory_stats(path: Path) -> VolumeStats:
    fs = os.statvfs(path)
    used = 0
    inodes = 0
    for directory, _subdirs, files in os.walk(path):
        inodes += 1 + len(files)
        for file in files:
            with contextlib.suppress(OSError):
                used += os.lstat(os.path.join(directory, file)).st_blocks * 512
    return VolumeStats(
        total_bytes=fs.f_blocks * fs.f_frsize,
        used_bytes=used,
        available_bytes=fs.f_bavail * fs.f_frsize,
        total_inodes=fs.f_files,
        used_inodes=inodes,
        available_inodes=fs.f_favail,
    )


def is_mount_point(path: str) -> bool:
    """True when something is mounted at ``path``.

    ``os.path.ismount`` misses bind mounts within one filesystem (same device), so read
    the mount table instead.
    """
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with spaces and such escaped as octal.
            mount_point = line.split()[4].encode().decode("unicode_escape")
            if mount_point == wanted:
                return True
    return False
