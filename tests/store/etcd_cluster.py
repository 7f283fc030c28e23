"""Start real etcd members on loopback for tests and benchmarks, and stop them by PID.

Each member gets free ports (bound to port 0 and released), a data dir under the given
directory, and a log file beside it. ``EtcdCluster.stop()`` ends exactly the processes it
started (SIGTERM, then SIGKILL), so a failed test leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def post(self, path: str, body: dict[str, object], timeout: float = 2.0) -> dict[str, object]:
        req = urllib.request.Request(
            f"http://{self.endpoint}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            result: dict[str, object] = json.loads(resp.read())
            return result


@dataclass
class EtcdCluster:
    """``size`` etcd members on loopback, started by :meth:`start`."""

    base_dir: Path
    size: int = 1
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.size):
            self.members.append(
                Member(
                    name=f"m{i}",
                    client_port=free_port(),
                    peer_port=free_port(),
                    data_dir=self.base_dir / f"m{i}",
                    log=self.base_dir / f"m{i}.log",
                )
            )

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def start_member(self, m: Member) -> None:
        initial = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self.members)
        args = [
            ETCD,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", f"http://{m.endpoint}",
            "--advertise-client-urls", f"http://{m.endpoint}",
            "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-cluster", initial,
            "--initial-cluster-token", f"kubetrio-test-{os.getpid()}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "warn",
        ]  # fmt: skip
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def start(self, timeout: float = 20.0) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for m in self.members:
            self.start_member(m)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 20.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for m in members or self.members:
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited: {m.log.read_text()[-2000:]}")
                try:
                    # A range only succeeds once the cluster has a leader.
                    m.post("/v3/kv/range", {"key": "AA=="}, timeout=1.0)
                    break
                except (OSError, urllib.error.URLError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"etcd {m.name} not ready") from None
                    time.sleep(0.05)

    def leader(self) -> Member:
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            try:
                st = m.post("/v3/maintenance/status", {})
            except OSError:
                continue
            header = st["header"]
            assert isinstance(header, dict)
            if st.get("leader") == header.get("member_id"):
                return m
        raise RuntimeError("no leader")

    def make_leader(self, target: Member, timeout: float = 10.0) -> None:
        """Move raft leadership to ``target`` (etcd's transfer-leadership call)."""
        header = target.post("/v3/maintenance/status", {})["header"]
        assert isinstance(header, dict)
        deadline = time.monotonic() + timeout
        while (leader := self.leader()) is not target:
            leader.post("/v3/maintenance/transfer-leadership", {"targetID": header["member_id"]})
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target.name} did not become leader")
            time.sleep(0.1)

    def kill(self, m: Member, sig: int = signal.SIGKILL) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            m.proc.wait(10)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.wait(8)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait(5)
