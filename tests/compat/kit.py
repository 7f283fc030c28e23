"""Helpers of the client compatibility suite: the running cluster, kubectl, polling.

The cluster itself is started by ``conftest.py``.

``kubetrio up`` runs in a temporary folder on free ports (API server, local registry with
busybox) with this host as a runc node; the clients under test — kubectl 1.27 and 1.33, the
official ``kubernetes`` client, lightkube, kr8s, kopf — reach it only through the kubeconfig
it writes, exactly as a user's programs do. One cluster serves the whole folder (starting
one takes seconds, not minutes); each test gets a namespace of its own.

Only one real node can run on a host at a time (the service proxy's nftables table and the
DNS port are host-wide), so the suite needs root and nothing else holding a node.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
KUBETRIO = BIN / "kubetrio"
KUBECTL_DIR = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent
KUBECTL_VERSIONS = ("1.27", "1.33")


def needs() -> str | None:
    """Why the suite cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (a real runc node)"
    for tool in ("runc", "docker-registry"):
        if not shutil.which(tool):
            return f"needs {tool}"
    for version in KUBECTL_VERSIONS:
        if not (KUBECTL_DIR / f"kubectl.{version}").exists():
            return f"needs kubectl.{version} beside kubectl"
    return None


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class CompatCluster:
    """A running ``kubetrio up`` cluster and how to reach it."""

    name: str
    data_dir: Path
    kubeconfig: Path
    server: str
    cache_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def kubectl(
        self,
        *args: str,
        version: str = "1.33",
        check: bool = True,
        input: str | bytes | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run a real kubectl binary against the cluster; text output."""
        command = [
            str(KUBECTL_DIR / f"kubectl.{version}"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir / version),
            *args,
        ]
        result = subprocess.run(
            command,
            input=input.decode() if isinstance(input, bytes) else input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} (kubectl {version}) exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    @contextmanager
    def kubectl_proxy(self, *, version: str = "1.33") -> Iterator[str]:
        """``kubectl proxy --port=0`` running for the block; yields its base URL."""
        proxy = subprocess.Popen(
            [
                str(KUBECTL_DIR / f"kubectl.{version}"),
                "--kubeconfig",
                str(self.kubeconfig),
                "proxy",
                "--port=0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        try:
            assert proxy.stdout is not None
            line = proxy.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
            match = re.search(r"Starting to serve on ([\d.]+):(\d+)", line)
            assert match, line
            yield f"http://{match[1]}:{match[2]}"
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


def ssl_context(configuration: Any) -> ssl.SSLContext:
    """What the official client's ``configuration`` (from the kubeconfig) trusts and
    presents — the cluster's CA and the admin's client certificate — as an ``ssl``
    context, for the tests that speak HTTPS or WebSocket to the server themselves."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def recording_informer(core: Any, namespace: str) -> tuple[Any, list[tuple[str, str]]]:
    """The official client's ``SharedInformer`` over ConfigMaps of ``namespace`` (resync
    every 2 s), not started, and the list its handlers append (event type, name) to."""
    from kubernetes.informer import ADDED, DELETED, MODIFIED, SharedInformer

    informer = SharedInformer(
        list_func=core.list_namespaced_config_map, namespace=namespace, resync_period=2
    )
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(kind: str) -> Callable[[Any], None]:
        def handler(obj: Any) -> None:
            name = obj.metadata.name if hasattr(obj, "metadata") else obj["metadata"]["name"]
            with lock:
                events.append((kind, name))

        return handler

    for kind in (ADDED, MODIFIED, DELETED):
        informer.add_event_handler(kind, record(kind))
    return informer, events
