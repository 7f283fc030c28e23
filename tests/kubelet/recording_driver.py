"""A storage driver for the node tests: real bind mounts, every CSI node call recorded.

Volumes are directories under ``root``; ``stage_volume`` bind-mounts one at the staging
path, ``publish_volume`` bind-mounts the staging path (read-only by a remount when asked)
at the target. It advertises ``STAGE_UNSTAGE_VOLUME``, ``GET_VOLUME_STATS`` and
``EXPAND_VOLUME``, so the agent goes through every node call. Handles starting with
``broken`` fail to publish, as a driver whose backend is away.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from kubetrio.plugins import hookimpl
from kubetrio.providers import (
    CreatedVolume,
    CreateVolumeRequest,
    ExpandedVolume,
    StorageDriver,
    StorageDriverError,
    StorageDriverInfo,
    StorageNodeInfo,
    VolumeCapability,
    VolumeStats,
)

NAME = "recording.csi.kubetrio.io"


def mounted(path: str | Path) -> bool:
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == wanted for line in mountinfo)


class RecordingDriver:
    """See the module docstring. ``calls`` lists (method, keyword arguments)."""

    name = NAME

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def named(self, method: str) -> list[dict[str, Any]]:
        """The keyword arguments of every call of ``method``."""
        return [kwargs for name, kwargs in self.calls if name == method]

    async def get_info(self) -> StorageDriverInfo:
        return StorageDriverInfo(
            name=NAME,
            node_capabilities=frozenset(
                {"STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME"}
            ),
        )

    async def probe(self) -> bool:
        return True

    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        raise StorageDriverError("UNIMPLEMENTED", "node tests make their volumes by hand")

    async def delete_volume(
        self, *, volume_id: str, secrets: Mapping[str, str] | None = None
    ) -> None:
        raise StorageDriverError("UNIMPLEMENTED", "node tests make their volumes by hand")

    async def expand_volume(
        self, *, volume_id: str, capacity_bytes: int, capability: VolumeCapability
    ) -> ExpandedVolume:
        raise StorageDriverError("UNIMPLEMENTED", "no controller side")

    async def get_capacity(
        self, *, parameters: Mapping[str, str], topology: Mapping[str, str] | None = None
    ) -> int | None:
        return None

    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
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
        self.calls.append(("stage", {"volume_id": volume_id, "staging_path": staging_path}))
        source = self.root / volume_id
        source.mkdir(parents=True, exist_ok=True)
        os.makedirs(staging_path, exist_ok=True)
        if not mounted(staging_path):
            await trio.run_process(["mount", "--bind", str(source), staging_path])

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        self.calls.append(("unstage", {"volume_id": volume_id, "staging_path": staging_path}))
        if mounted(staging_path):
            await trio.run_process(["umount", staging_path])

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
        self.calls.append(
            (
                "publish",
                {
                    "volume_id": volume_id,
                    "target_path": target_path,
                    "staging_path": staging_path,
                    "read_only": read_only,
                },
            )
        )
        if volume_id.startswith("broken"):
            raise StorageDriverError("UNAVAILABLE", f"backend of {volume_id} is unreachable")
        if not staging_path or not mounted(staging_path):
            raise StorageDriverError("FAILED_PRECONDITION", f"{volume_id} is not staged")
        os.makedirs(target_path, exist_ok=True)
        if mounted(target_path):
            return
        await trio.run_process(["mount", "--bind", staging_path, target_path])
        if read_only:
            await trio.run_process(["mount", "-o", "remount,bind,ro", target_path])

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        self.calls.append(("unpublish", {"volume_id": volume_id, "target_path": target_path}))
        if mounted(target_path):
            await trio.run_process(["umount", target_path])

    async def expand_node_volume(
        self, *, volume_id: str, volume_path: str, capacity_bytes: int, staging_path: str = ""
    ) -> int:
        self.calls.append(
            (
                "expand",
                {"volume_id": volume_id, "volume_path": volume_path, "bytes": capacity_bytes},
            )
        )
        return capacity_bytes

    async def volume_stats(self, *, volume_id: str, volume_path: str) -> VolumeStats:
        used = 0
        files = 0
        for directory, _dirs, names in os.walk(volume_path):
            for name in names:
                files += 1
                used += os.lstat(os.path.join(directory, name)).st_blocks * 512
        fs = os.statvfs(volume_path)
        return VolumeStats(
            total_bytes=fs.f_blocks * fs.f_frsize,
            used_bytes=used,
            available_bytes=fs.f_bavail * fs.f_frsize,
            total_inodes=fs.f_files,
            used_inodes=files,
            available_inodes=fs.f_favail,
        )


class RecordingPlugin:
    """A plugin registering one :class:`RecordingDriver` (shared by every agent made)."""

    def __init__(self, driver: RecordingDriver) -> None:
        self.driver = driver

    @hookimpl
    def kubetrio_register_storage_drivers(self, register: Callable[[StorageDriver], None]) -> None:
        register(self.driver)
