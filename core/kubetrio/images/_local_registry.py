"""A local registry on loopback: Debian's ``docker-registry`` started and stopped by PID.

Tests, ``kubetrio up`` and the benchmarks use it to pull images with no network. The
registry is a child process whose PID is recorded; stopping it sends SIGTERM, waits, then
SIGKILL, so nothing outlives the caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._build import build_image


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bcrypt(password: str) -> str:
    """A bcrypt hash for htpasswd, from the system's libcrypt (no Python dependency)."""
    libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    salt = "$2b$05$" + "".join(secrets.choice(alphabet) for _ in range(22))
    hashed = libcrypt.crypt(password.encode(), salt.encode())
    if not hashed or not hashed.startswith(b"$2"):
        raise RuntimeError("libcrypt has no bcrypt support")
    return str(hashed.decode())


def write_registry_config(storage: Path, address: str, *, auth: str = "") -> Path:
    """Write docker-registry's config (filesystem storage under ``storage``, deletes on,
    errors-only log, listening on ``address``); return its path."""
    config = storage / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage / 'data'}}}, "
        "delete: {enabled: true}}\n"
        f"http: {{addr: {address}}}\n" + auth
    )
    return config


@contextlib.contextmanager
def local_registry(
    storage: str | Path, *, port: int = 0, users: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run ``docker-registry serve`` with storage under ``storage``; yield ``127.0.0.1:PORT``.

    ``users`` (name → password) turns on htpasswd Basic authentication.
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        raise FileNotFoundError("docker-registry is not installed (Debian: docker-registry)")
    storage = Path(storage)
    storage.mkdir(parents=True, exist_ok=True)
    port = port or free_loopback_port()
    auth = ""
    if users:
        htpasswd = storage / "htpasswd"
        htpasswd.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in users.items()))
        auth = f"auth: {{htpasswd: {{realm: kubetrio, path: {htpasswd}}}}}\n"
    config = write_registry_config(storage, f"127.0.0.1:{port}", auth=auth)
    log = open(storage / "registry.log", "wb")  # noqa: SIM115  # lives as long as the child
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {(storage / 'registry.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@contextlib.asynccontextmanager
async def busybox_registry(storage: str | Path) -> AsyncIterator[dict[str, Any]]:
    """A :func:`local_registry` holding busybox; yield registry mirrors (k3s
    ``registries.yaml`` shape) sending docker.io to it, so ``image: busybox`` pulls offline.

    What tests and benchmarks of real nodes start with.
    """
    with local_registry(storage) as registry:
        await build_image(f"{registry}/library/busybox:latest")
        yield {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
