"""cgroup v1 helpers: where a container's cgroup is, what it recorded, and cleanup.

runc creates a container's cgroup in every v1 hierarchy (and, on a hybrid host, in the
v2 ``unified`` tree) from an absolute ``cgroupsPath`` (``/kubetrio/<pod-uid>/<container>``)
and removes only that leaf when the container is deleted; the pod and ``/kubetrio``
parents are ours to remove, in every tree.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """The mounted v1 hierarchies (``memory``, ``cpu,cpuacct``, …), symlinks skipped."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(CGROUP_ROOT.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and entry.name != "unified":
                found.append(entry)
    return found


def _trees() -> list[Path]:
    """Every cgroup tree runc makes a container's directories in: the v1 hierarchies and,
    on a hybrid host, the v2 ``unified`` one (no controllers, but the same paths)."""
    unified = CGROUP_ROOT / "unified"
    return [*hierarchies(), *([unified] if unified.is_dir() else [])]


def oom_killed(cgroup_path: str) -> bool:
    """Whether the kernel OOM-killed a process in the memory cgroup ``cgroup_path``."""
    control = CGROUP_ROOT / "memory" / cgroup_path.lstrip("/") / "memory.oom_control"
    try:
        text = control.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value or 0) > 0
    return False


def remove_tree(cgroup_path: str) -> None:
    """Remove an (empty of processes) cgroup directory and its children, in every hierarchy.

    cgroup directories are removed with ``rmdir`` (their files are virtual), deepest first.
    """
    relative = cgroup_path.strip("/")
    if not relative:
        raise ValueError("refusing to remove the cgroup root")
    for hierarchy in _trees():
        top = hierarchy / relative
        if not top.is_dir():
            continue
        for current, dirs, _ in os.walk(top, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(current, name))
        with contextlib.suppress(OSError):
            os.rmdir(top)


def remove_if_empty(cgroup_path: str) -> None:
    """Remove a parent cgroup directory in every hierarchy when it has no children left."""
    relative = cgroup_path.strip("/")
    for hierarchy in _trees():
        with contextlib.suppress(OSError):
            os.rmdir(hierarchy / relative)


def exists_anywhere(cgroup_path: str) -> bool:
    """Whether the cgroup directory exists in any hierarchy (tests check cleanup with it)."""
    relative = cgroup_path.strip("/")
    return any((h / relative).exists() for h in _trees())
