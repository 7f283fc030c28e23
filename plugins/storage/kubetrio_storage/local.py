"""Local volumes: one directory per volume under a root, bind-mounted into pods.

The same shape as k3s' local-path provisioner: provisioning makes a directory named after
the claim's uid (unique, so a re-created claim never sees old data), publishing
bind-mounts it at the target path (read-only via a remount, since a bind mount ignores
``ro`` on the first call), deleting removes the directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

PROVISIONER = "kubetrio.io/local"


class LocalVolumes:
    """A storage driver whose volumes are directories on this node."""

    name = PROVISIONER

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path_of(self, volume: Mapping[str, Any]) -> Path:
        handle = str(((volume.get("spec") or {}).get("csi") or {}).get("volumeHandle", ""))
        if not handle or "/" in handle or handle in (".", ".."):
            raise ValueError(f"volume has no usable spec.csi.volumeHandle: {handle!r}")
        return self.root / handle

    async def provision(
        self, *, claim: dict[str, Any], parameters: Mapping[str, str]
    ) -> dict[str, Any]:
        """Create the claim's directory; return the volume source to put in the PV."""
        uid = claim["metadata"]["uid"]
        handle = f"pvc-{uid}"
        path = self.root / handle
        await trio.to_thread.run_sync(lambda: path.mkdir(parents=True, exist_ok=True))
        return {"driver": PROVISIONER, "volumeHandle": handle}

    async def delete(self, *, volume: dict[str, Any]) -> None:
        """Remove the volume's directory and its content."""
        path = self._path_of(volume)
        await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    async def publish(self, *, volume: dict[str, Any], target_path: str, read_only: bool) -> None:
        """Bind-mount the volume's directory at ``target_path`` (needs root)."""
        source = self._path_of(volume)
        os.makedirs(target_path, exist_ok=True)
        if is_mount_point(target_path):
            return
        await trio.run_process(["mount", "--bind", str(source), target_path])
        if read_only:
            await trio.run_process(["mount", "-o", "remount,bind,ro", target_path])

    async def unpublish(self, *, volume: dict[str, Any], target_path: str) -> None:
        """Unmount ``target_path`` if the volume is mounted there."""
        if is_mount_point(target_path):
            await trio.run_process(["umount", target_path])


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
