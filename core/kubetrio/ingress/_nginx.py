"""nginx as the node agent runs it: one master process, in the foreground, in a folder
of its own.

Everything lives in the state folder (``-p``): ``nginx.conf``, the pid file, the error log,
the temp folders and ``certs/`` (certificate and key per TLS Secret, mode 0600). A new
configuration is written beside the live one and checked with ``nginx -t`` first; only a
configuration that passes replaces the live one, and the master is told to reload with
SIGHUP — so a bad render never takes down what is being served. The master runs with
``daemon off`` as the agent's child (its exit is seen at once) and is stopped by its
PID: SIGQUIT (finish the requests in flight), SIGKILL after a grace period. A master
left by an agent that was killed is found by the pid file and stopped before a new one
starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import trio

log = logging.getLogger("kubetrio.ingress.nginx")

NGINX = "/usr/sbin/nginx"


class NginxError(RuntimeError):
    """nginx refused a configuration or would not start."""


class Nginx:
    """One nginx master under ``state_dir`` (module doc).

    :param state_dir: the folder nginx's files live in (created, mode 0700).
    :param binary: the nginx executable.
    """

    def __init__(self, state_dir: Path, *, binary: str = NGINX) -> None:
        self.state_dir = state_dir.absolute()
        self.binary = binary
        self.process: trio.Process | None = None

    @property
    def conf(self) -> Path:
        """The live configuration."""
        return self.state_dir / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        """Where nginx writes its master's PID (named in the configuration)."""
        return self.state_dir / "nginx.pid"

    @property
    def pid(self) -> int | None:
        """The running master's PID (None when not running)."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    def prepare(self) -> None:
        """Create the folders nginx needs."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.state_dir, 0o700)
        (self.state_dir / "certs").mkdir(exist_ok=True, mode=0o700)
        (self.state_dir / "tmp").mkdir(exist_ok=True, mode=0o755)

    def _command(self, conf: Path, *extra: str) -> list[str]:
        error_log = str(self.state_dir / "error.log")
        return [self.binary, "-p", f"{self.state_dir}/", "-c", str(conf), "-e", error_log, *extra]

    async def check(self, text: str) -> None:
        """Raise :class:`NginxError` (with nginx's words) unless ``text`` passes ``nginx -t``."""
        candidate = self.state_dir / "nginx.conf.new"
        candidate.write_text(text)
        result = await trio.run_process(
            self._command(candidate, "-t", "-q"),
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
        if result.returncode != 0:
            raise NginxError((result.stderr or result.stdout).decode(errors="replace").strip())

    async def apply(self, text: str) -> bool:
        """Make ``text`` the live configuration: checked, then swapped in and loaded
        (started if not running). False when nginx refused it (the old one still serves)."""
        try:
            await self.check(text)
        except NginxError as exc:
            log.warning("nginx refused the new configuration, keeping the old one: %s", exc)
            return False
        os.replace(self.state_dir / "nginx.conf.new", self.conf)
        if self.pid is None:
            await self.start()
        else:
            os.kill(self.pid, signal.SIGHUP)
        return True

    async def start(self) -> None:
        """Start the master on the live configuration (stopping one a killed agent left)."""
        self.stop_stale()
        self.process = await trio.lowlevel.open_process(
            self._command(self.conf),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The pid file appears once the master has bound its ports; an early exit is a
        # failure to start (a port in use, say), told by the error log.
        with trio.move_on_after(10):
            while self.process.returncode is None and not self._pid_file_names(self.process.pid):
                await trio.sleep(0.02)
        if self.process.returncode is not None:
            self.process = None
            raise NginxError(f"nginx exited at start: {self.error_tail()}")

    def _pid_file_names(self, pid: int) -> bool:
        try:
            return int(self.pid_file.read_text().strip() or 0) == pid
        except (OSError, ValueError):
            return False

    def error_tail(self, lines: int = 5) -> str:
        """The last lines of nginx's error log."""
        try:
            return " | ".join((self.state_dir / "error.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop_stale(self) -> None:
        """Stop a master a previous agent left running (found by the pid file, and only
        if its command line names our folder)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.state_dir).encode() not in cmdline or b"nginx" not in cmdline:
            return  # the PID was reused by something else
        log.info("stopping nginx %d left by an earlier agent", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(250):
            if not Path(f"/proc/{pid}").exists():
                break
            # Not our child: its parent (or init) reaps it; wait for it to be gone.
            time.sleep(0.02)

    async def stop(self, *, grace_period: float = 5.0) -> None:
        """Stop the master by its PID: SIGQUIT, then SIGKILL after ``grace_period``."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGQUIT)
        with trio.move_on_after(grace_period):
            await process.wait()
        if process.returncode is None:
            # Workers outlive a killed master: kill them too, by the PIDs it lists.
            for pid in [process.pid, *_children(process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
