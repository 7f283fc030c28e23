"""An NFS server for tests: nfs-ganesha (VFS FSAL) serving a temporary directory over
NFSv4 on a loopback address of its own (127.0.x.y: port 2049 is free there whatever else
runs), with its config, log, pid file and recovery directory in the test's tmp, stopped
by pid. ``ganesha_or_skip()`` says why a machine cannot run it (packages, /dev/fuse)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

GANESHA_CONFIG = """
NFS_CORE_PARAM {{
  Protocols = 4;
  Bind_Addr = {address};
  NFS_Port = 2049;
  Enable_RQUOTA = false;
  Enable_NLM = false;
  Enable_UDP = false;
}}
NFSV4 {{
  Graceless = true;
  Only_Numeric_Owners = true;
  RecoveryBackend = fs;
  RecoveryRoot = {recovery};
}}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = /export;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 4;
  Transports = TCP;
  SecType = sys;
  FSAL {{ Name = VFS; }}
}}
"""
VFS_FSAL = "/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"


def ganesha_missing() -> str | None:
    """Why nfs volumes cannot be tested here (None: they can)."""
    if shutil.which("ganesha.nfsd") is None or not os.path.exists(VFS_FSAL):
        return "nfs-ganesha and nfs-ganesha-vfs are not installed (make system)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # noqa: F401  (loads libfuse3)
    except (ImportError, OSError) as exc:
        return f"no mfusepy/libfuse3: {exc}"
    return None


def free_loopback() -> str:
    """A 127.0.0.0/8 address with nothing listening on the NFS port."""
    for _ in range(50):
        address = f"127.0.{random.randint(100, 250)}.{random.randint(2, 250)}"
        with socket.socket() as probe:
            if probe.connect_ex((address, 2049)) != 0:
                return address
    raise RuntimeError("no free loopback address for the NFS server")


@contextlib.contextmanager
def ganesha(base: Path) -> Iterator[tuple[str, Path]]:
    """Run nfs-ganesha exporting ``base/export`` as ``/export``: (address, directory)."""
    address = free_loopback()
    export = base / "export"
    export.mkdir(parents=True)
    state = base / "ganesha"
    (state / "recovery").mkdir(parents=True)
    config = state / "ganesha.conf"
    config.write_text(
        GANESHA_CONFIG.format(address=address, export=export, recovery=state / "recovery")
    )
    log = state / "log"
    server = subprocess.Popen(
        ["ganesha.nfsd", "-F", "-f", str(config), "-L", str(log), "-p", str(state / "pid")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex((address, 2049)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise AssertionError(f"nfs-ganesha did not start:\n{tail}")
            time.sleep(0.1)
        yield address, export
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
