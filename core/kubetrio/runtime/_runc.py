"""The runc container runtime: pod sandboxes as network namespaces, containers under runc.

A **pod sandbox** is a network namespace bound at ``/var/run/netns/kubetrio-<pod uid>``
plus an IPC and a UTS namespace bound into the sandbox directory, made in-process
(:func:`make_namespaces`, what ``unshare --net=F --ipc=F --uts=F hostname <pod>`` does):
namespaces held by bind mounts, not by a pause process, so a sandbox costs no process at
all. The network plugin wires the netns.

A **container** is a runc bundle: an overlayfs root (image layers as lower dirs, a
private upper dir) and a generated ``config.json`` that joins the sandbox's namespaces.
It is made with ``runc create`` and started with ``runc start``; its stdout and stderr are
pipes the runtime copies into the CRI log file. A container with ``stdin`` reads a FIFO
the runtime writes, one with ``tty`` gets a terminal whose master runc sends back over a
console socket (see :mod:`._attach`, which ``pods/attach`` goes through).

Exit codes: this process makes itself a *child subreaper*, so when ``runc create``
exits the container's init process becomes our child. A pidfd per container tells
trio when it exits, and ``waitpid`` on that one pid gives the status without stealing
any other child's. OOM kills are read from the container's ``memory.oom_control``
before ``runc delete`` removes the cgroup.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from kubetrio.images import Image, ImageStore, RegistryError
from kubetrio.netns import ip_commands, link_up
from kubetrio.providers import (
    ContainerConfig,
    ContainerConfigError,
    ContainerState,
    ImagePullError,
    KubeObject,
    NetworkPlugin,
    PodSandboxStatus,
    VolumeMount,
)

from . import _cgroups
from ._attach import (
    Attachment,
    ContainerIO,
    TerminalOutput,
    attach_session,
    open_stdin_fifo,
    receive_console,
    reopen_stdin_writer,
)
from ._logs import RotatingLog, copy_to_log
from ._spec import build_spec, read_group, read_passwd, resolve_user

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")
PR_SET_CHILD_SUBREAPER = 36
MS_RDONLY = 1
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _mount_overlay(lower: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    options = f"lowerdir={':'.join(str(p) for p in lower)},upperdir={upper},workdir={work}"
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mounting overlay on {target}: {os.strerror(errno)}")


def _umount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        if errno not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(errno, f"unmounting {target}: {os.strerror(errno)}")


NAMESPACE_FLAGS = {"net": 0x40000000, "ipc": 0x08000000, "uts": 0x04000000}
"""``CLONE_NEWNET``, ``CLONE_NEWIPC``, ``CLONE_NEWUTS`` by their /proc/*/ns/ names."""


def make_namespaces(files: Mapping[str, Path], hostname: str) -> None:
    """New namespaces (``net``, ``ipc``, ``uts`` → the file each is bound at), with
    ``hostname`` set in the UTS one: what ``unshare --net=F --ipc=F --uts=F hostname H``
    does, without its two processes.

    ``unshare(2)`` moves only the calling thread, so this runs in a thread of its own that
    ends right after: no pooled thread is ever left in a pod's namespaces, and nothing
    needs to be switched back.
    """
    failures: list[BaseException] = []

    def make() -> None:
        try:
            flags = 0
            for kind in files:
                flags |= NAMESPACE_FLAGS[kind]
            if _libc.unshare(flags) != 0:
                raise _libc_error("unshare")
            if "uts" in files:
                name = hostname.encode()
                if _libc.sethostname(name, len(name)) != 0:
                    raise _libc_error("sethostname")
            for kind, target in files.items():
                source = f"/proc/thread-self/ns/{kind}".encode()
                if _libc.mount(source, str(target).encode(), None, MS_BIND, None) != 0:
                    raise _libc_error(f"binding the {kind} namespace at {target}")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=make, name="kubetrio-namespaces")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def _libc_error(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")


def make_subreaper() -> None:
    """Make this process adopt orphaned descendants (the containers' init processes)."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


class RuntimeFailure(RuntimeError):
    """runc or a namespace command failed; the message has its error output."""


@dataclasses.dataclass
class _Sandbox:
    id: str
    pod: KubeObject
    netns_path: str
    dir: Path
    ips: list[str] = dataclasses.field(default_factory=list)
    containers: set[str] = dataclasses.field(default_factory=set)
    ipc_path: str = ""
    """The IPC namespace bind mount; empty: the host's (``hostIPC``)."""
    uts_path: str = ""
    """The UTS namespace bind mount; empty: the host's (``hostNetwork``)."""


@dataclasses.dataclass
class _Container:
    id: str
    sandbox_id: str
    bundle: Path
    cgroups_path: str
    image_id: str
    pid: int = 0
    pidfd: int = -1
    state: str = "created"
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    exited: trio.Event = dataclasses.field(default_factory=trio.Event)
    name: str = ""
    attempt: int = 0
    log_path: str = ""
    log_file: RotatingLog | None = None
    logs_done: trio.Event = dataclasses.field(default_factory=trio.Event)
    io: ContainerIO = dataclasses.field(
        default_factory=lambda: ContainerIO(tty=False, stdin=False, stdin_once=False)
    )
    """The main process's stdin, terminal and output subscribers (``pods/attach``)."""
    terminal: int = -1
    """The pty master of a ``tty`` container (read for its output); -1 without one."""

    def snapshot(self) -> ContainerState:
        state: Any = self.state
        return ContainerState(
            id=self.id,
            state=state,
            exit_code=self.exit_code,
            reason=self.reason,
            message=self.message,
            started_at=self.started_at,
            finished_at=self.finished_at,
            image_id=self.image_id,
            pid=self.pid,
            name=self.name,
            attempt=self.attempt,
        )


class RuncRuntime:
    """A :class:`~kubetrio.providers.ContainerRuntime` running containers with runc.

    :param root_dir: state of sandboxes and container bundles (``/var/lib/kubetrio``).
    :param images: the node's image store (pulls go through it).
    :param network: the network plugin that wires sandboxes; None leaves pods with
        loopback only.
    :param cgroup_parent: absolute cgroup directory that holds ``<pod uid>/<container>``.
    :param runc_root: runc's state directory (``runc --root``).
    :param pids_limit: the pids cgroup limit of each container (0: none).
    :param log_max_bytes, log_max_files: CRI log rotation (kubelet: 10 MiB, 5 files).
    """

    name = "runc"

    def __init__(
        self,
        *,
        root_dir: str | Path,
        images: ImageStore,
        network: NetworkPlugin | None = None,
        cgroup_parent: str = "/kubetrio",
        runc_root: str | Path | None = None,
        runc: str = "runc",
        pids_limit: int = 4096,
        netns_prefix: str = "kubetrio-",
        log_max_bytes: int = 10 * 1024 * 1024,
        log_max_files: int = 5,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.log_max_bytes = log_max_bytes
        self.log_max_files = log_max_files
        self.images = images
        self.network = network
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.runc_root = Path(runc_root) if runc_root else self.root_dir / "runc"
        self.runc = runc
        self.pids_limit = pids_limit
        self.netns_prefix = netns_prefix
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._nursery: trio.Nursery | None = None
        self._sandbox_locks: dict[str, trio.Lock] = {}

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the log copiers and exit watchers; ``started`` once ready.

        Sandboxes and containers left by an earlier agent process are found again first
        (see :meth:`_recover`), so a restarted agent adopts running pods.
        """
        make_subreaper()
        # Each container holds a pidfd, two FIFO ends and a log file in this process.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        for path in (self.root_dir / "sandboxes", self.root_dir / "containers", self.runc_root):
            path.mkdir(parents=True, exist_ok=True)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._recover()
                nursery.start_soon(self._reap_orphans)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _reap_orphans(self, interval: float = 30.0) -> None:
        """Reap zombies this subreaper adopted that nobody waits for.

        Being a subreaper, the agent also inherits strays, such as the process a timed-out
        ``runc exec`` left behind. A zombie child that is not a container this runtime
        watches and was already a zombie one interval ago is such a stray (trio reaps its
        own subprocesses within milliseconds), so it is reaped here.
        """
        previous: set[int] = set()
        while True:
            await trio.sleep(interval)
            watched = {c.pid for c in self._containers.values()}
            zombies = await trio.to_thread.run_sync(_zombie_children)
            for pid in (zombies & previous) - watched:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            previous = zombies

    async def _recover(self) -> None:
        """Rebuild the in-memory state from sandbox and container records on disk."""
        for directory in sorted((self.root_dir / "sandboxes").iterdir()):
            try:
                record = json.loads((directory / "sandbox.json").read_text())
            except (OSError, ValueError):
                continue  # never finished: the pod's worker recreates or removes it
            if record["netnsPath"] and not os.path.exists(record["netnsPath"]):
                # The namespaces died with the host (a reboot): the pod gets a new sandbox.
                await self._teardown_sandbox(record["id"], {})
                continue
            self._sandboxes[record["id"]] = _Sandbox(
                id=record["id"],
                pod={},
                netns_path=record["netnsPath"],
                dir=directory,
                ips=list(record.get("ips") or []),
                ipc_path=record.get("ipcPath", str(directory / "ipc")),
                uts_path=record.get("utsPath", str(directory / "uts")),
            )
        for bundle in sorted((self.root_dir / "containers").iterdir()):
            try:
                record = json.loads((bundle / "kubetrio.json").read_text())
            except (OSError, ValueError):
                await self.remove_container(bundle.name)
                continue
            result = await self._runc("state", record["id"], check=False)
            if result.returncode != 0 or record["sandboxId"] not in self._sandboxes:
                await self.remove_container(record["id"])
                continue
            state = json.loads(result.stdout)
            entry = _Container(
                id=record["id"],
                sandbox_id=record["sandboxId"],
                bundle=bundle,
                cgroups_path=record["cgroupsPath"],
                image_id=record.get("imageId", ""),
                name=record.get("name", ""),
                attempt=int(record.get("attempt", 0)),
                log_path=record.get("logPath", ""),
                started_at=float(record.get("startedAt", 0.0)),
            )
            # stdin survives an agent restart (the FIFO is reopened); a terminal does not:
            # its master went with the old agent process.
            stdin_open = bool(record.get("stdin")) and not record.get("tty")
            entry.io = ContainerIO(
                tty=bool(record.get("tty")),
                stdin=stdin_open,
                stdin_once=bool(record.get("stdinOnce")),
                writer=reopen_stdin_writer(str(bundle / "stdin.fifo")) if stdin_open else -1,
            )
            entry.pid = int(state.get("pid") or 0)
            status = state.get("status")
            self._containers[entry.id] = entry
            self._sandboxes[entry.sandbox_id].containers.add(entry.id)
            try:
                entry.pidfd = os.pidfd_open(entry.pid) if status != "stopped" else -1
            except (ProcessLookupError, OSError):
                entry.pidfd = -1
            if entry.pidfd < 0:
                entry.state = "exited"
                entry.finished_at = time.time()
                oom = _cgroups.oom_killed(entry.cgroups_path)
                entry.exit_code = 137 if oom else 255
                entry.reason = "OOMKilled" if oom else "Error"
                entry.message = "exit status unavailable: the container exited while no agent ran"
                entry.exited.set()
                entry.logs_done.set()
                continue
            entry.state = "running" if status == "running" else "created"
            readers, writers = _open_stdio_fifos(bundle)
            for fd in writers:
                os.close(fd)
            self._watch(entry, readers)

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("RuncRuntime.run() is not running")
        return self._nursery

    async def _runc(
        self, *args: str, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        command = [self.runc, "--root", str(self.runc_root), *args]
        options: dict[str, Any] = {"capture_stdout": True, "capture_stderr": True, "stdin": b""}
        options.update(kwargs)
        result = await trio.run_process(command, check=False, **options)
        if check and result.returncode != 0:
            raise RuntimeFailure(
                f"runc {' '.join(args[:3])} failed: "
                + (result.stderr or b"").decode(errors="replace").strip()
            )
        return result

    # --- images -------------------------------------------------------------------------

    async def pull_image(
        self, image: str, *, credentials: Mapping[str, tuple[str, str]] | None = None
    ) -> str:
        """Pull into the image store; return the image's config digest."""
        try:
            pulled = await self.images.pull(image, credentials=credentials)
        except (RegistryError, ValueError, OSError) as exc:
            raise ImagePullError(str(exc)) from exc
        return pulled.image_id

    def image_present(self, image: str) -> bool:
        """Whether the image store has the image."""
        try:
            return self.images.get(image) is not None
        except ValueError:
            return False

    # --- sandboxes ----------------------------------------------------------------------

    def netns_path(self, sandbox_id: str) -> str:
        """Where the sandbox's network namespace is bound."""
        return str(NETNS_DIR / f"{self.netns_prefix}{sandbox_id}")

    def _sandbox_dir(self, sandbox_id: str) -> Path:
        return self.root_dir / "sandboxes" / sandbox_id

    async def run_pod_sandbox(self, pod: KubeObject) -> PodSandboxStatus:
        """Create the namespaces, wire the network, write hosts/hostname/resolv.conf."""
        meta = pod["metadata"]
        sandbox_id = str(meta["uid"])
        async with self._sandbox_locks.setdefault(sandbox_id, trio.Lock()):
            known = self._sandboxes.get(sandbox_id)
            if known is not None:
                return PodSandboxStatus(id=known.id, netns_path=known.netns_path, ips=known.ips)
            spec = pod.get("spec") or {}
            host_network = bool(spec.get("hostNetwork"))
            host_ipc = bool(spec.get("hostIPC"))
            # hostNetwork pods share the node's network and UTS namespaces, as in Kubernetes.
            netns = "" if host_network else self.netns_path(sandbox_id)
            directory = self._sandbox_dir(sandbox_id)
            sandbox = _Sandbox(
                id=sandbox_id,
                pod=pod,
                netns_path=netns,
                dir=directory,
                ipc_path="" if host_ipc else str(directory / "ipc"),
                uts_path="" if host_network else str(directory / "uts"),
            )
            hostname = (spec.get("hostname") or meta["name"])[:63]
            if host_network:
                hostname = os.uname().nodename
            try:
                directory.mkdir(parents=True, exist_ok=True)
                files: dict[str, Path] = {}
                if netns and not os.path.exists(netns):
                    if _netns_dir_ready():
                        # One step makes all three namespaces (a process less per pod).
                        files["net"] = Path(netns)
                    else:  # ip sets up /var/run/netns as a shared mount the first time
                        await _command("ip", "netns", "add", os.path.basename(netns))
                for kind, bound in (("ipc", sandbox.ipc_path), ("uts", sandbox.uts_path)):
                    if bound:
                        files[kind] = Path(bound)
                for file in files.values():
                    file.touch()
                if files and ip_commands():  # the code before, for benchmarks' baseline
                    flags = [f"--{kind}={file}" for kind, file in files.items()]
                    await _command("unshare", *flags, "hostname", hostname)
                elif files:
                    await trio.to_thread.run_sync(make_namespaces, files, hostname)
                if netns and self.network is not None:
                    result = await self.network.add(
                        pod=pod, netns_path=netns, container_id=sandbox_id
                    )
                    sandbox.ips = list(result.ips)
                elif netns and ip_commands():
                    await _command("ip", "-n", os.path.basename(netns), "link", "set", "lo", "up")
                elif netns:
                    await trio.to_thread.run_sync(link_up, netns, "lo")
                await trio.to_thread.run_sync(
                    _write_pod_files, directory, hostname, sandbox.ips, host_network
                )
                (directory / "sandbox.json").write_text(
                    json.dumps(
                        {
                            "id": sandbox_id,
                            "netnsPath": netns,
                            "ipcPath": sandbox.ipc_path,
                            "utsPath": sandbox.uts_path,
                            "ips": sandbox.ips,
                        }
                    )
                )
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._teardown_sandbox(sandbox_id, pod)
                raise
            self._sandboxes[sandbox_id] = sandbox
            return PodSandboxStatus(id=sandbox_id, netns_path=netns, ips=sandbox.ips)

    async def stop_pod_sandbox(self, sandbox_id: str, *, grace_period: float) -> None:
        """Stop and remove the sandbox's containers, then release every sandbox resource."""
        sandbox = self._sandboxes.get(sandbox_id)
        ids = sorted(sandbox.containers) if sandbox else []
        ids += [c.id for c in self._containers.values() if c.sandbox_id == sandbox_id]
        async with trio.open_nursery() as nursery:
            for cid in set(ids):
                nursery.start_soon(self._stop_and_remove, cid, grace_period)
        async with self._sandbox_locks.setdefault(sandbox_id, trio.Lock()):
            await self._teardown_sandbox(sandbox_id, sandbox.pod if sandbox else {})
            self._sandboxes.pop(sandbox_id, None)
        self._sandbox_locks.pop(sandbox_id, None)

    async def _stop_and_remove(self, container_id: str, grace_period: float) -> None:
        await self.stop_container(container_id, grace_period=grace_period)
        await self.remove_container(container_id)

    async def _teardown_sandbox(self, sandbox_id: str, pod: KubeObject) -> None:
        netns = self.netns_path(sandbox_id)
        directory = self._sandbox_dir(sandbox_id)
        if self.network is not None:
            try:
                await self.network.delete(pod=pod, netns_path=netns, container_id=sandbox_id)
            except Exception as exc:
                log.warning("network delete of sandbox %s: %s", sandbox_id, exc)
        for name in ("ipc", "uts"):
            await trio.to_thread.run_sync(_umount, directory / name)
        if os.path.exists(netns) and ip_commands():
            await _command("ip", "netns", "del", os.path.basename(netns), check=False)
        if os.path.exists(netns):  # what ``ip netns del`` does, without its process
            await trio.to_thread.run_sync(_umount, Path(netns))
            with contextlib.suppress(OSError):
                os.unlink(netns)
        await trio.to_thread.run_sync(_cgroups.remove_tree, f"{self.cgroup_parent}/{sandbox_id}")
        await trio.to_thread.run_sync(lambda: shutil.rmtree(directory, ignore_errors=True))

    def list_sandboxes(self) -> list[str]:
        """Ids of the sandboxes this runtime holds."""
        return list(self._sandboxes)

    def list_containers(self, sandbox_id: str) -> list[ContainerState]:
        """The containers of a sandbox, oldest attempt first."""
        found = [c.snapshot() for c in self._containers.values() if c.sandbox_id == sandbox_id]
        return sorted(found, key=lambda c: (c.name, c.attempt))

    def sandbox_ips(self, sandbox_id: str) -> list[str]:
        """The sandbox's pod IPs (empty when unknown)."""
        sandbox = self._sandboxes.get(sandbox_id)
        return list(sandbox.ips) if sandbox else []

    # --- containers ---------------------------------------------------------------------

    def _image(self, name: str) -> Image:
        image = self.images.get(name)
        if image is None:
            raise ContainerConfigError(f"image {name!r} is not present on the node")
        return image

    async def create_container(
        self, sandbox_id: str, pod: KubeObject, container: KubeObject, config: ContainerConfig
    ) -> str:
        """Mount the root, write the spec, ``runc create``; return the container id."""
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise RuntimeFailure(f"sandbox {sandbox_id} does not exist")
        name = container["name"]
        container_id = f"{sandbox_id}-{name}-{config.attempt}"
        if container_id in self._containers:
            await self._stop_and_remove(container_id, 0)
        image = self._image(container["image"])
        pid_path = ""
        if config.share_pid_with:
            # An ephemeral container's target: its init process's PID namespace.
            shared = self._containers.get(config.share_pid_with)
            if shared is None or not shared.pid or shared.exited.is_set():
                raise ContainerConfigError(
                    f"target container {config.share_pid_with} is not running"
                )
            pid_path = f"/proc/{shared.pid}/ns/pid"
        bundle = self.root_dir / "containers" / container_id
        rootfs = bundle / "rootfs"
        cgroups_path = f"{self.cgroup_parent}/{sandbox_id}/{name}"
        entry = _Container(
            id=container_id,
            sandbox_id=sandbox_id,
            bundle=bundle,
            cgroups_path=cgroups_path,
            image_id=image.image_id,
        )
        self._containers[container_id] = entry
        sandbox.containers.add(container_id)
        self._require_nursery()  # fail before touching anything if not running
        try:
            await trio.to_thread.run_sync(_prepare_bundle, bundle, image)
            passwd, groups = await trio.to_thread.run_sync(_image_users, rootfs)
            user = resolve_user(pod, container, image.config.get("config") or {}, passwd, groups)
            mounts = list(config.mounts)
            # terminationMessagePath: a file of this run the process may write its last
            # words into; read back when it exits.
            termination = bundle / "termination-log"
            termination.touch()
            os.chmod(termination, 0o666)
            mounts.append(
                VolumeMount(
                    container_path=container.get("terminationMessagePath")
                    or "/dev/termination-log",
                    host_path=str(termination),
                )
            )
            for file_name, target in (
                ("hosts", "/etc/hosts"),
                ("hostname", "/etc/hostname"),
                ("resolv.conf", "/etc/resolv.conf"),
            ):
                if not any(m.container_path == target for m in mounts):
                    mounts.append(
                        VolumeMount(
                            container_path=target,
                            host_path=str(sandbox.dir / file_name),
                            read_only=False,
                        )
                    )
            spec = build_spec(
                pod=pod,
                container=container,
                image_config=image.config,
                env=config.env,
                rootfs=str(rootfs),
                netns_path=sandbox.netns_path,
                ipc_path=sandbox.ipc_path,
                uts_path=sandbox.uts_path,
                pid_path=pid_path,
                cgroups_path=cgroups_path,
                user=user,
                mounts=mounts,
                pids_limit=self.pids_limit,
            )
            (bundle / "config.json").write_text(json.dumps(spec))
            # FIFOs rather than pipes: the container holds its end open read-write, so
            # it never gets SIGPIPE while no agent reads (an agent restart); output then
            # waits in the FIFO until the next agent adopts the container.
            readers, writers = _open_stdio_fifos(bundle)
            try:
                await self._create(entry, container, writers)
            except BaseException:
                for fd in readers:
                    os.close(fd)
                raise
            finally:
                for fd in writers:
                    os.close(fd)
            entry.pid = int((bundle / "pid").read_text())
            entry.pidfd = os.pidfd_open(entry.pid)
            entry.name = name
            entry.attempt = config.attempt
            entry.log_path = config.log_path
            _save_container(entry)
        except RuntimeFailure as exc:
            detail = _runc_log_error(bundle / "runc.log") or str(exc)
            if os.environ.get("KUBETRIO_KEEP_FAILED"):
                raise
            await self.remove_container(container_id)
            raise RuntimeFailure(detail) from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.remove_container(container_id)
            raise
        self._watch(entry, readers)
        return container_id

    async def _create(
        self, entry: _Container, container: KubeObject, writers: tuple[int, int]
    ) -> None:
        """``runc create`` with the container's stdio: FIFOs, a stdin FIFO, or a terminal."""
        tty, stdin_open = bool(container.get("tty")), bool(container.get("stdin"))
        stdin_once = bool(container.get("stdinOnce"))
        args = [
            "--log",
            str(entry.bundle / "runc.log"),
            "--log-format",
            "json",
            "create",
            "--bundle",
            str(entry.bundle),
            "--pid-file",
            str(entry.bundle / "pid"),
        ]
        options: dict[str, Any] = {
            "stdout": writers[0],
            "stderr": writers[1],
            "capture_stdout": False,
            "capture_stderr": False,
        }
        if tty:
            # runc hands the pty master over a unix socket (whose path must be short).
            with tempfile.TemporaryDirectory(prefix="kubetrio-console-") as directory:
                path = os.path.join(directory, "console.sock")
                listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                with listener:
                    await listener.bind(path)
                    listener.listen(1)
                    masters: list[int] = []

                    async def receive() -> None:
                        masters.append(await receive_console(listener))

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(receive)
                        try:
                            await self._runc(*args, "--console-socket", path, entry.id, **options)
                        except BaseException:
                            nursery.cancel_scope.cancel()
                            raise
                        with trio.move_on_after(10) as waited:
                            while not masters:
                                await trio.sleep(0.01)
                        if waited.cancelled_caught:
                            nursery.cancel_scope.cancel()
                            raise RuntimeFailure("runc sent no terminal for the container")
            entry.terminal = masters[0]
            entry.io = ContainerIO(
                tty=True, stdin=stdin_open, stdin_once=stdin_once, writer=os.dup(masters[0])
            )
            return
        if not stdin_open:
            await self._runc(*args, entry.id, **options)
            return
        reader, writer = open_stdin_fifo(str(entry.bundle / "stdin.fifo"), stdin_once=stdin_once)
        try:
            await self._runc(*args, entry.id, stdin=reader, **options)
        except BaseException:
            os.close(writer)
            raise
        finally:
            os.close(reader)
        entry.io = ContainerIO(tty=False, stdin=True, stdin_once=stdin_once, writer=writer)

    @contextlib.asynccontextmanager
    async def attach(self, container_id: str, *, stdin: bool) -> AsyncIterator[Attachment]:
        """A ``pods/attach`` session to the container's main process (see :mod:`._attach`).

        Raises ``LookupError`` for a container this runtime does not run.
        """
        entry = self._containers.get(container_id)
        if entry is None:
            raise LookupError(f"container {container_id} is not known to the runtime")
        async with attach_session(entry.io, stdin=stdin) as session:
            yield session

    def _watch(self, entry: _Container, readers: tuple[int, int]) -> None:
        """Start copying the container's output and watching for its exit."""
        nursery = self._require_nursery()
        if entry.log_path:
            entry.log_file = RotatingLog(
                entry.log_path, max_bytes=self.log_max_bytes, max_files=self.log_max_files
            )
        nursery.start_soon(self._copy_logs, entry, readers[0], readers[1])
        nursery.start_soon(self._watch_exit, entry)

    async def _copy_logs(self, entry: _Container, out_r: int, err_r: int) -> None:
        # Always drain the FIFOs, even without a log file: a full FIFO blocks the writer.
        sink = entry.log_file or RotatingLog(os.devnull, max_bytes=0, max_files=1)
        tee = entry.io.publish
        try:
            async with trio.open_nursery() as nursery:
                sources: list[tuple[trio.abc.ReceiveStream, str]] = [
                    (trio.lowlevel.FdStream(out_r), "stdout"),
                    (trio.lowlevel.FdStream(err_r), "stderr"),
                ]
                if entry.terminal >= 0:  # a terminal's output is stdout
                    sources.append((TerminalOutput(entry.terminal, entry.exited), "stdout"))
                    entry.terminal = -1  # owned by its stream from here
                for source, name in sources:
                    nursery.start_soon(copy_to_log, source, name, sink, tee)
        finally:
            sink.close()
            entry.io.end_output()
            entry.logs_done.set()

    async def _watch_exit(self, entry: _Container) -> None:
        try:
            await trio.lowlevel.wait_readable(entry.pidfd)
        except trio.ClosedResourceError:
            # remove_container gave up waiting for the exit and closed the pidfd: the
            # container is gone from this runtime; that must not end the runtime too.
            entry.state, entry.exit_code, entry.reason = "exited", 137, "Error"
            entry.exited.set()
            return
        exit_code = 255
        try:
            _, status = os.waitpid(entry.pid, 0)
            exit_code = os.waitstatus_to_exitcode(status)
            if exit_code < 0:
                exit_code = 128 - exit_code  # killed by a signal: the shell's convention
        except ChildProcessError:
            # Adopted after an agent restart: the process is not our child, its status
            # went to whoever inherited it. Only an OOM kill can still be told.
            entry.message = "exit status unavailable: the container exited after an agent restart"
            exit_code = 137 if _cgroups.oom_killed(entry.cgroups_path) else 255
        entry.finished_at = time.time()
        entry.exit_code = exit_code
        with contextlib.suppress(OSError):
            with open(entry.bundle / "termination-log", "rb") as f:
                written = f.read(4096).decode(errors="replace")
            if written:
                entry.message = written
        if exit_code == 137 and _cgroups.oom_killed(entry.cgroups_path):
            entry.reason = "OOMKilled"
        elif exit_code == 0:
            entry.reason = "Completed"
        else:
            entry.reason = "Error"
        entry.state = "exited"
        entry.exited.set()

    async def start_container(self, container_id: str) -> None:
        """``runc start``: the process runs from here."""
        entry = self._containers[container_id]
        entry.started_at = time.time()
        await self._runc("start", container_id)
        if entry.state == "created":
            entry.state = "running"
        await trio.to_thread.run_sync(_save_container, entry)

    async def wait_container(self, container_id: str) -> ContainerState:
        """Wait for the container's exit; return its final state."""
        entry = self._containers[container_id]
        await entry.exited.wait()
        await entry.logs_done.wait()
        return entry.snapshot()

    async def container_status(self, container_id: str) -> ContainerState:
        """The container's current state (``unknown`` for an id this runtime never ran)."""
        entry = self._containers.get(container_id)
        if entry is None:
            return ContainerState(id=container_id, state="unknown")
        return entry.snapshot()

    async def exec_sync(
        self, container_id: str, command: Sequence[str], *, timeout: float
    ) -> tuple[int, bytes]:
        """``runc exec`` with a deadline; a timeout gives exit code -1."""
        with trio.move_on_after(timeout):
            result = await self._runc(
                "exec",
                container_id,
                *command,
                check=False,
                stderr=subprocess.STDOUT,
                capture_stderr=False,
            )
            output: bytes = result.stdout or b""
            return result.returncode, output
        return -1, b"command timed out"

    def exec_command(self, container_id: str, command: Sequence[str], *, tty: bool) -> list[str]:
        """The ``runc exec`` argv of an interactive exec (``pods/exec``).

        With ``tty`` runc must get a terminal as its stdio: it makes it raw, copies it to
        the container's console and, on SIGWINCH, copies its size in.
        """
        return [
            self.runc,
            "--root",
            str(self.runc_root),
            "exec",
            *(["--tty"] if tty else []),
            container_id,
            *command,
        ]

    async def stop_container(self, container_id: str, *, grace_period: float) -> None:
        """SIGTERM, wait ``grace_period`` seconds, then SIGKILL and wait for the exit."""
        entry = self._containers.get(container_id)
        if entry is None or entry.exited.is_set():
            return
        if entry.pid == 0:
            return
        if entry.state == "running" and grace_period > 0:
            await self._runc("kill", container_id, "TERM", check=False)
            with trio.move_on_after(grace_period):
                await entry.exited.wait()
        if not entry.exited.is_set():
            # A created-but-never-started container's init waits on runc's exec fifo:
            # SIGKILL ends it just the same.
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry.pid, signal.SIGKILL)
            with trio.move_on_after(10):
                await entry.exited.wait()

    async def remove_container(self, container_id: str) -> None:
        """``runc delete -f``, unmount the root, remove the bundle; idempotent."""
        entry = self._containers.get(container_id)
        await self._runc("delete", "-f", container_id, check=False)
        if entry is not None:
            if not entry.exited.is_set() and entry.pidfd >= 0:
                with trio.move_on_after(5):
                    await entry.exited.wait()
            if entry.pidfd >= 0:
                trio.lowlevel.notify_closing(entry.pidfd)  # wakes a watcher still waiting
                os.close(entry.pidfd)
                entry.pidfd = -1
            if entry.terminal >= 0:
                os.close(entry.terminal)
                entry.terminal = -1
            await entry.io.aclose()
            bundle = entry.bundle
            sandbox = self._sandboxes.get(entry.sandbox_id)
            if sandbox is not None:
                sandbox.containers.discard(container_id)
            self._containers.pop(container_id, None)
            await trio.to_thread.run_sync(_cgroups.remove_tree, entry.cgroups_path)
        else:
            bundle = self.root_dir / "containers" / container_id
        await trio.to_thread.run_sync(_remove_bundle, bundle)

    async def cleanup(self) -> None:
        """Stop everything this runtime knows of and remove its cgroup parent (tests, shutdown)."""
        for sandbox_id in list(self._sandboxes):
            await self.stop_pod_sandbox(sandbox_id, grace_period=0)
        for container_id in list(self._containers):
            await self._stop_and_remove(container_id, 0)
        await trio.to_thread.run_sync(_cgroups.remove_if_empty, self.cgroup_parent)


async def _command(*args: str, check: bool = True) -> None:
    result = await trio.run_process(
        list(args), check=False, capture_stdout=True, capture_stderr=True, stdin=b""
    )
    if check and result.returncode != 0:
        raise RuntimeFailure(f"{' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")


def _zombie_children() -> set[int]:
    """Pids of this process's children that are zombies."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command may contain spaces and parentheses: parse after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[0] == "Z" and int(fields[1]) == me:
            found.add(int(entry))
    return found


_NETNS_DIR_READY = False


def _netns_dir_ready() -> bool:
    """Whether /var/run/netns is the shared bind mount ``ip netns add`` makes.

    Once it is, it stays so: the answer is remembered (the mount table grows with pods).
    """
    global _NETNS_DIR_READY
    if _NETNS_DIR_READY:
        return True
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] in ("/run/netns", "/var/run/netns") and "shared:" in line:
                    _NETNS_DIR_READY = True
                    return True
    except OSError:
        pass
    return False


def _prepare_bundle(bundle: Path, image: Image) -> None:
    for sub in ("upper", "work", "rootfs"):
        (bundle / sub).mkdir(parents=True, exist_ok=True)
    _mount_overlay(
        list(reversed(image.layers)), bundle / "upper", bundle / "work", bundle / "rootfs"
    )


def _remove_bundle(bundle: Path) -> None:
    if not bundle.exists():
        return
    _umount(bundle / "rootfs")
    shutil.rmtree(bundle, ignore_errors=True)


def _image_users(rootfs: Path) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    def read(name: str) -> str:
        path = rootfs / "etc" / name
        try:
            # The image's /etc/passwd may be a symlink: never follow it out of the rootfs.
            if path.is_symlink():
                return ""
            return path.read_text(errors="replace")
        except OSError:
            return ""

    return read_passwd(read("passwd")), read_group(read("group"))


def _write_pod_files(
    directory: Path, hostname: str, ips: Sequence[str], host_network: bool = False
) -> None:
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    for ip in ips:
        hosts += f"{ip}\t{hostname}\n"
    if host_network:
        with contextlib.suppress(OSError):
            hosts = Path("/etc/hosts").read_text()
    (directory / "hosts").write_text(hosts)
    (directory / "hostname").write_text(hostname + "\n")
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    (directory / "resolv.conf").write_text(resolv)


def _runc_log_error(path: Path) -> str:
    """The last error runc wrote into its JSON log, if any."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("level") in ("error", "fatal"):
                return str(record.get("msg", ""))
    return " | ".join(lines[-3:])


def _open_stdio_fifos(bundle: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Make stdout/stderr FIFOs; return (agent read ends, container read-write ends)."""
    readers: list[int] = []
    writers: list[int] = []
    for name in ("stdout", "stderr"):
        path = bundle / f"{name}.fifo"
        if not path.exists():
            os.mkfifo(path, 0o600)
        writers.append(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    return (readers[0], readers[1]), (writers[0], writers[1])


def _save_container(entry: _Container) -> None:
    record = {
        "id": entry.id,
        "sandboxId": entry.sandbox_id,
        "name": entry.name,
        "attempt": entry.attempt,
        "cgroupsPath": entry.cgroups_path,
        "imageId": entry.image_id,
        "logPath": entry.log_path,
        "startedAt": entry.started_at,
        "stdin": entry.io.stdin,
        "stdinOnce": entry.io.stdin_once,
        "tty": entry.io.tty,
    }
    tmp = entry.bundle / "kubetrio.json.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, entry.bundle / "kubetrio.json")
