"""Cross-node pod routes over BGP: bird2 per node, configured from API objects.

This is Calico's BGP mode in one class. The confd role: the peer table of
:mod:`.peers` (Nodes and IPAMBlocks), and after every change the node's ``bird.conf``
rendered again (:func:`.bird.render_config`: a full iBGP mesh to every other node that
holds a block, at its underlay address; this node's blocks announced). The BIRD role:
``bird -f`` as a child process in the node's network namespace, restarted with back-off
if it dies, told about a new file with ``birdc configure`` (sessions whose peer did not
change stay up). bird installs what it learns into the kernel's main table: a route
per other node's block via that node's underlay address.

Cancelled, the service stops bird for a graceful restart (see :mod:`.bird`): routes stay
in this node's table and in its peers', so pods keep talking while the agent restarts.
:meth:`BgpRoutes.remove` is for good: bird says goodbye (peers withdraw at once) and
the routes it installed here are flushed.

Files live in a runtime directory per node (``/run/kubetrio/bird/<node>/``):
``bird.conf``, the control socket ``bird.ctl`` and the pid file ``bird.pid``, which is
how a bird left behind by an agent that was killed is found and stopped.

The state is level-based: the file is derived from the caches alone, rendered
deterministically, and written (and bird reloaded) only when it differs from what bird
runs. A node's underlay address (its router id, where peers connect) is published as
``bgp.kubetrio.io/underlay-ip`` on its Node; peers fall back to the InternalIP.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import trio

from kubetrio.client import Client

from .bird import DEFAULT_ASN, render_config
from .peers import UNDERLAY_IP, PeerTable, internal_ip, publish

log = logging.getLogger("kubetrio.cni_calico.bgp")

PREFIX = "bgp.kubetrio.io/"

RUN_DIR = Path("/run/kubetrio/bird")
DEBOUNCE = 0.05
"""Seconds to let a burst of events settle before rendering."""
RESTART_BACKOFF = (0.5, 30.0)
"""First and longest wait before bird is started again after it died."""
HEALTHY_AFTER = 30.0
"""A bird that ran this long resets the back-off."""
READY_TIMEOUT = 10.0
STOP_GRACE = 5.0
"""Seconds bird gets to say goodbye to its peers before it is killed."""


_IMPORTANT = re.compile(r"<(WARN|ERR|BUG)>|<FATAL> (?!Shutdown completed)")
"""bird's log lines worth a warning (every stop ends with "<FATAL> Shutdown completed")."""


class BirdFailed(RuntimeError):
    """bird exited before it was ready, or refused a command."""


def runtime_dir(node_name: str) -> Path:
    """``/run/kubetrio/bird/<node>``; a hash of long names keeps the socket path short
    enough for a unix socket (108 bytes)."""
    if len(node_name) > 48:
        node_name = hashlib.sha1(node_name.encode()).hexdigest()[:16]
    return RUN_DIR / node_name


class BgpRoutes:
    """Runs bird for ``node_name`` and keeps its configuration in step with the cluster.

    :param underlay_ip: router id and BGP source address; None for the Node's
        InternalIP (:meth:`run` then waits until the Node is registered).
    :param netns: run bird in this named network namespace (tests put several nodes
        in one process); None for the caller's own.
    :param asn: the AS of the whole mesh.
    :param run_dir: where the config, socket and pid file go (default per node).
    """

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        underlay_ip: str | None,
        netns: str | None = None,
        asn: int = DEFAULT_ASN,
        run_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.underlay_ip = underlay_ip
        self.netns = netns
        self.asn = asn
        self.dir = run_dir or runtime_dir(node_name)
        self.config_path = self.dir / "bird.conf"
        self.socket = self.dir / "bird.ctl"
        self.pid_file = self.dir / "bird.pid"
        self.table = PeerTable(client, node_name, prefix=PREFIX)
        self.applied: str | None = None
        """The configuration the running bird has loaded; None while none runs."""
        self.reloads = 0
        """How many times a new configuration was loaded into a running bird."""
        self.syncs = 0
        """How many changes of the caches were handled (a reload, or none needed)."""
        self._process: trio.Process | None = None
        self._removing = False
        self._last_words = ""
        """bird's last line of output: why it did not come up."""
        self._log_ended = trio.Event()

    def render(self) -> str | None:
        """The bird.conf the caches call for; None until the router id is known."""
        router_id = self.router_id()
        if router_id is None:
            return None
        peers = {name: peer.underlay for name, peer in self.table.peers().items() if peer.underlay}
        blocks = self.table.own_blocks()
        return render_config(router_id=router_id, blocks=blocks, peers=peers, asn=self.asn)

    def router_id(self) -> str | None:
        """``underlay_ip``, else this Node's InternalIP; None until it is registered."""
        own = self.table.nodes.get(self.node_name)
        return self.underlay_ip or (internal_ip(own) if own is not None else None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start bird, report started, then follow Nodes and IPAMBlocks until cancelled
        (then stop bird for a graceful restart: the routes stay, see :meth:`remove`).

        Raises :class:`BirdFailed` if the first bird exits before it answers.
        """
        self._removing = False
        async with trio.open_nursery() as nursery:
            await nursery.start(self.table.run)
            while (router_id := self.router_id()) is None:  # registered after we start
                self.table.changed = trio.Event()
                if self.router_id() is None:
                    await self.table.changed.wait()
            await nursery.start(self._supervise)
            nursery.start_soon(
                publish, self.client, self.node_name, {PREFIX + UNDERLAY_IP: router_id}
            )
            task_status.started()
            await self._follow()

    async def _follow(self) -> None:
        failures = 0
        while True:
            await self.table.changed.wait()
            await trio.sleep(DEBOUNCE)
            self.table.changed = trio.Event()
            config = self.render()
            # Nothing new, or bird is not up: it reads the file when it starts.
            if config is not None and self.applied is not None and config != self.applied:
                try:
                    await self._reload(config)
                except (BirdFailed, OSError) as exc:
                    failures += 1
                    log.warning("reloading bird of node %s failed: %s", self.node_name, exc)
                    await trio.sleep(min(RESTART_BACKOFF[1], RESTART_BACKOFF[0] * 2**failures))
                    self.table.changed.set()
                    continue
                failures = 0
            self.syncs += 1

    async def _reload(self, config: str) -> None:
        await trio.to_thread.run_sync(_write_atomically, self.config_path, config)
        await self.birdc("configure")
        self.applied = config
        self.reloads += 1
        log.info("bird of node %s reconfigured", self.node_name)

    async def birdc(self, *command: str) -> str:
        """Run a command on this node's bird; its output. Raises :class:`BirdFailed`."""
        result = await trio.run_process(
            ["birdc", "-s", str(self.socket), *command],
            check=False,
            capture_stdout=True,
            stderr=subprocess.STDOUT,
        )
        output = result.stdout.decode(errors="replace")
        if result.returncode != 0:
            raise BirdFailed(f"birdc {' '.join(command)}: {output.strip()}")
        return output

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Keep one bird running: the first must come up, later ones restart with back-off."""
        failures = 0
        ready: Callable[[], None] | None = task_status.started
        while not self._removing:
            began = trio.current_time()
            try:
                await self._run_bird(ready)
                reason = "exited"
            except (BirdFailed, OSError) as exc:
                if ready is not None:
                    raise  # bird cannot start at all: say so to whoever starts us
                reason = str(exc)
            ready = None
            if self._removing:
                return
            failures = 1 if trio.current_time() - began > HEALTHY_AFTER else failures + 1
            delay = min(RESTART_BACKOFF[1], RESTART_BACKOFF[0] * 2 ** (failures - 1))
            log.warning("bird of node %s %s; restarting in %.1f s", self.node_name, reason, delay)
            await trio.sleep(delay)

    async def _run_bird(self, ready: Callable[[], None] | None) -> None:
        """Start bird with the current configuration, wait until it answers, then until
        it exits. Cancelled, it stops bird (and waits for it)."""
        config = self.render()
        assert config is not None  # run() starts bird only once the router id is known
        await trio.to_thread.run_sync(self.dir.mkdir, 0o755, True, True)
        await self._stop_stale()
        await trio.to_thread.run_sync(_write_atomically, self.config_path, config)
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        # -R: recover from a graceful restart, if the last bird stopped that way.
        command = [*prefix, "bird", "-f", "-R", "-c", str(self.config_path), "-s", str(self.socket)]
        process = await trio.lowlevel.open_process(
            [*command, "-P", str(self.pid_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._process = process
        self._log_ended = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                if process.stderr is not None:
                    nursery.start_soon(self._forward_log, process.stderr)
                await self._wait_ready(process)
                self.applied = config
                self.table.changed.set()  # the caches may have moved on while bird started
                if ready is not None:
                    ready()
                await process.wait()
        finally:
            self._process = None
            self.applied = None
            with trio.CancelScope(shield=True):
                if not self._removing:
                    await self._stop_for_restart(process)
                await _stop(process)
                if process.stderr is not None:
                    await process.stderr.aclose()

    async def _stop_for_restart(self, process: trio.Process) -> None:
        """``birdc graceful restart``: bird exits leaving the routes to the next one."""
        if process.returncode is not None:
            return
        with contextlib.suppress(BirdFailed):
            await self.birdc("graceful", "restart")
            with trio.move_on_after(STOP_GRACE):
                await process.wait()

    async def _wait_ready(self, process: trio.Process) -> None:
        with trio.move_on_after(READY_TIMEOUT):
            while process.returncode is None:
                with contextlib.suppress(BirdFailed):
                    await self.birdc("show", "status")
                    return
                await trio.sleep(0.05)
        await _stop(process)
        with trio.move_on_after(1.0):
            await self._log_ended.wait()  # its last words say why
        raise BirdFailed(
            f"bird of node {self.node_name} did not come up (exit {process.returncode}): "
            + self._last_words
        )

    async def _forward_log(self, stream: trio.abc.ReceiveStream) -> None:
        """bird's log lines (``<date> <time> <LEVEL> text``) into ours."""
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                level = logging.WARNING if _IMPORTANT.search(text) else logging.DEBUG
                log.log(level, "bird %s: %s", self.node_name, text)
                self._last_words = text
        self._log_ended.set()

    async def _stop_stale(self) -> None:
        """Stop a bird of this node left running by an earlier agent (found by pid file)."""
        try:
            pid = int(await trio.to_thread.run_sync(self.pid_file.read_text))
        except (OSError, ValueError):
            return
        if not self._is_our_bird(pid):
            return  # gone, or the pid was reused by something else
        log.warning("stopping bird %d of node %s left by an earlier agent", pid, self.node_name)
        for sig, patience in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 1.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            with trio.move_on_after(patience):
                while self._is_our_bird(pid):
                    await trio.sleep(0.05)
                return

    def _is_our_bird(self, pid: int) -> bool:
        """Whether ``pid`` is a live process naming this node's socket (a zombie has no
        command line)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.socket).encode() in cmdline.split(b"\0")

    async def remove(self) -> None:
        """Stop bird and remove the routes it installed here and its runtime directory.

        A running bird says goodbye, so its peers withdraw its routes at once; after a
        graceful stop (a cancelled :meth:`run`) they keep them until the restart time
        runs out or the Node is deleted.
        """
        self._removing = True
        if self._process is not None:
            with trio.CancelScope(shield=True):
                await _stop(self._process)
        await self._stop_stale()
        netns = ["-n", self.netns] if self.netns else []
        await trio.run_process(["ip", *netns, "route", "flush", "proto", "bird"], check=False)
        for path in (self.config_path, self.socket, self.pid_file):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()


async def _stop(process: trio.Process) -> None:
    """SIGTERM (bird tells its peers it is going), SIGKILL after a grace period."""
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(STOP_GRACE):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a complete new file: bird never reads half of one."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    os.replace(partial, path)
