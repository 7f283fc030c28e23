"""``nfs:`` volumes (in a pod, or a PersistentVolume's ``spec.nfs``) on a node whose kernel
has no NFS client: each is mounted by a userspace NFS client serving a FUSE mount.

Why this path. The kernel here has FUSE (``/dev/fuse``) but no ``nfs`` file system, so
``mount -t nfs`` cannot work. What exists: Debian has no FUSE NFS client (``fuse-nfs`` is
not packaged); it has libnfs 4.0 (``libnfs13``, maintained upstream, the userspace NFS
client of VLC, ffmpeg and GNOME's gvfs) and libfuse3 (``fuse3``). On PyPI the ``libnfs``
bindings are from 2016 (written for libnfs 1.x), ``fusepy`` is unmaintained since 2018,
``pyfuse3`` needs a C build against libfuse3-dev, and mfusepy (fusepy's maintained fork,
ctypes only) loads the system libfuse3; ``nfs-rs``, a young pure-userspace client, was not
evaluated. So the client is
:mod:`kubetrio.kubelet._nfs_fuse`: libnfs through ctypes + mfusepy, one process per
mount, run as a program so it outlives an agent restart like a kernel mount would.

What it speaks, and what it cannot do. NFSv4.0 over TCP port 2049 only: NFSv3 needs the
server's portmapper and mountd, and libnfs 4.0 has no NFSv4.1. libnfs 4.0's NFSv4 code
has bugs the client works around (writes are sent in 2 KiB pieces; opens and path calls
go through two NFSv4 clients) — and one it does not: ``chmod`` of a directory fails
with EISDIR. Locks (``flock``/``fcntl``) are local to the node, as with ``nolock``.

Paths are kubelet's: the share is mounted at ``<pod>/volumes/kubernetes.io~nfs/<volume>``
(the PV's name for a claim), and ``<pod>/plugins/kubernetes.io~nfs/<volume>.json`` records
the FUSE process (pid, server, path) so an agent that restarts adopts the mount of a pod
that still runs, and unmounts (``fusermount3 -u``) and stops those of pods gone meanwhile.
A mount that fails leaves no directory behind: the pod gets a ``FailedMount`` event worded
like kubelet's (``mount failed: exit status 32 … Output: mount.nfs: …``) and is retried
with back-off, never started on an empty directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

NFS_DIR = "kubernetes.io~nfs"
"""The per-pod folder of NFS volumes (kubelet's plugin name with ``/`` escaped)."""
PROGRAM = Path(__file__).with_name("_nfs_fuse.py")
MOUNT_TIMEOUT = 60.0
"""How long a mount may take before it counts as failed (an unanswering server)."""
STOP_TIMEOUT = 10.0

_children: dict[int, subprocess.Popen[bytes]] = {}
"""The FUSE processes this agent process started, by pid, so their exit is reaped."""


class NfsMountError(Exception):
    """An NFS share could not be mounted; the message is for ``FailedMount``."""


def target_path(pod_dir: Path, name: str) -> Path:
    """``<pod>/volumes/kubernetes.io~nfs/<name>``: where the share is mounted."""
    return pod_dir / "volumes" / NFS_DIR / name


def record_path(pod_dir: Path, name: str) -> Path:
    """``<pod>/plugins/kubernetes.io~nfs/<name>.json``: the FUSE process of a mount."""
    return pod_dir / "plugins" / NFS_DIR / f"{name}.json"


def fuse_mounted(path: Path) -> bool:
    """Whether a FUSE file system is mounted exactly at ``path``."""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            if point == wanted and fields[fields.index("-") + 1].startswith("fuse"):
                return True
    return False


def _alive(pid: int, target: Path) -> bool:
    """Whether ``pid`` is still the FUSE client of ``target`` (not exited, not reused)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return str(target).encode() in cmdline.read().split(b"\0")
    except (OSError, IndexError):
        return False


def _read_record(record: Path) -> dict[str, Any]:
    try:
        data = json.loads(record.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stop(pid: int, target: Path) -> None:
    """Let the FUSE client exit after its unmount; SIGTERM after 2 s, SIGKILL after
    :data:`STOP_TIMEOUT` if it lingers."""
    start = time.monotonic()
    terminated = False
    while _alive(pid, target):
        waited = time.monotonic() - start
        if waited > STOP_TIMEOUT or (waited > 2 and not terminated):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if terminated else signal.SIGTERM)
            if terminated:
                break
            terminated = True
        time.sleep(0.05)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT)


def _fusermount(target: Path) -> None:
    """Unmount a FUSE mount: ``fusermount3 -u -z`` (lazily: a process of a dying pod may
    still hold a file open), ``umount -l`` where fusermount3 is missing."""
    tool = shutil.which("fusermount3")
    argv = [tool, "-u", "-z", str(target)] if tool else ["umount", "-l", str(target)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 and fuse_mounted(target):
        log.warning("unmounting %s: %s", target, result.stderr.strip())


def unmount(pod_dir: Path, name: str) -> None:
    """Unmount one NFS volume of a pod, stop its FUSE client, remove its directory."""
    record = record_path(pod_dir, name)
    target = target_path(pod_dir, name)
    data = _read_record(record)
    if fuse_mounted(target):
        _fusermount(target)
    pid = int(data.get("pid") or 0)
    if pid:
        _stop(pid, target)
    if fuse_mounted(target):
        raise NfsMountError(f"{target} is still mounted after fusermount3 -u")
    with contextlib.suppress(OSError):
        target.rmdir()
    record.unlink(missing_ok=True)
    record.with_suffix(".log").unlink(missing_ok=True)


def unmount_pod(pod_dir: Path) -> None:
    """Unmount every NFS volume of a pod (stopped, or gone while the agent was down),
    also one whose record was never written (the agent died right after starting it)."""
    names = {r.stem for r in (pod_dir / "plugins" / NFS_DIR).glob("*.json")}
    volumes = pod_dir / "volumes" / NFS_DIR
    if volumes.is_dir():
        names.update(p.name for p in volumes.iterdir())
    for name in sorted(names):
        try:
            unmount(pod_dir, name)
        except NfsMountError as exc:
            log.warning("%s", exc)


def _mount_failed(argv: list[str], status: int | str, output: str) -> NfsMountError:
    """kubelet's wording of a failed mount (``mount-utils``' ``MountError``)."""
    return NfsMountError(
        f"mount failed: {status}\n"
        f"Mounting command: {PROGRAM.name}\n"
        f"Mounting arguments: {' '.join(argv[2:])}\n"
        f"Output: {output.strip()}"
    )


def _start(pod_dir: Path, name: str, server: str, path: str, read_only: bool) -> int:
    target = target_path(pod_dir, name)
    record = record_path(pod_dir, name)
    target.mkdir(parents=True, exist_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(PROGRAM), server, path, str(target)]
    if read_only:
        argv.append("--read-only")
    with open(record.with_suffix(".log"), "wb") as output:
        # A session of its own: it outlives the agent (pods keep their mounts across an
        # agent restart) and a Ctrl-C of the agent's terminal.
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
        )
    _children[child.pid] = child
    data = {"pid": child.pid, "server": server, "path": path, "readOnly": read_only}
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({**data, "argv": argv}))
    os.replace(tmp, record)
    return child.pid


async def _wait_mounted(pod_dir: Path, name: str, pid: int) -> None:
    """Until the FUSE mount is up; NfsMountError (and nothing left behind) if the client
    exits first or the mount takes longer than :data:`MOUNT_TIMEOUT`."""
    target = target_path(pod_dir, name)
    record = record_path(pod_dir, name)
    argv = list(_read_record(record).get("argv") or [])
    deadline = time.monotonic() + MOUNT_TIMEOUT
    try:
        while not fuse_mounted(target):
            child = _children.get(pid)
            status = child.poll() if child is not None else None
            if status is not None or time.monotonic() > deadline:
                output = ""
                with contextlib.suppress(OSError):
                    output = record.with_suffix(".log").read_text(errors="replace")
                if status is None:
                    output = f"no mount after {MOUNT_TIMEOUT:.0f}s (server not answering?)"
                raise _mount_failed(
                    argv, f"exit status {status}" if status is not None else "timed out", output
                )
            await trio.sleep(0.05)
    except BaseException:
        # Failed or cancelled (the pod was deleted meanwhile): nothing stays behind.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(unmount, pod_dir, name)
        raise


async def mount(pod_dir: Path, name: str, source: dict[str, Any], *, read_only: bool) -> Path:
    """Mount the NFS share ``source`` (``server``, ``path``) for volume ``name`` of a pod
    and return where; adopts a live mount of the same share left by an earlier agent."""
    server = str(source.get("server") or "")
    path = str(source.get("path") or "")
    if not server or not path.startswith("/"):
        raise NfsMountError(f"nfs: server {server!r} and absolute path {path!r} are required")
    target = target_path(pod_dir, name)
    record = record_path(pod_dir, name)
    data = _read_record(record)
    pid = int(data.get("pid") or 0)
    same = (data.get("server"), data.get("path"), data.get("readOnly")) == (server, path, read_only)
    if same and pid and _alive(pid, target) and fuse_mounted(target):
        return target  # adopted: the FUSE client of an earlier agent still serves it
    if data or fuse_mounted(target):
        await trio.to_thread.run_sync(unmount, pod_dir, name)  # a dead or stale client
    pid = await trio.to_thread.run_sync(_start, pod_dir, name, server, path, read_only)
    await _wait_mounted(pod_dir, name, pid)
    return target
