"""A node network namespace with pod namespaces, an outside host, and a cluster to watch.

Topology (names get a random suffix; everything is removed afterwards, also on failure)::

    ext netns  172.30.0.2/24 ── veth ── 172.30.0.1/24  node netns  (ip_forward, the proxy's table)
                                         ├─ veth (proxy ARP) ── pod0  10.244.252.2/32  (client)
                                         ├─ veth (proxy ARP) ── pod1  10.244.252.3/32  httpd "pod1"
                                         └─ ...

Pods are wired like the calico plugin does it (a /32 per pod, default route to the
link-local gateway 169.254.1.1 that the node's end answers by proxy ARP), so a pod that
reaches itself through a Service hairpins by routing, no bridge involved. Backends are
``busybox httpd`` serving their own name.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.netns import in_netns
from tests.kit import root_or_skip, serve_http_in, sh

POD_PREFIX = "10.244.252."


@dataclass
class Topology:
    suffix: str
    node: str
    ext: str
    pods: list[str] = field(default_factory=list)
    pod_ips: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    www: Path = Path()
    node_ip: str = "172.30.0.1"
    ext_ip: str = "172.30.0.2"

    def add_pod(self, index: int, *, serve: bool) -> str:
        name = f"ktp{self.suffix}{index}"
        ip = f"{POD_PREFIX}{index + 2}"
        host_if = f"ktv{self.suffix}{index}"
        sh("ip", "netns", "add", name)
        self.pods.append(name)
        self.pod_ips.append(ip)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", host_if,
           "netns", self.node)  # fmt: skip
        sh("ip", "-n", name, "addr", "add", f"{ip}/32", "dev", "eth0")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        sh("ip", "-n", name, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        sh("ip", "-n", name, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        sh("ip", "-n", self.node, "link", "set", host_if, "up")
        for setting in (
            f"net.ipv4.conf.{host_if}.proxy_arp=1",
            f"net.ipv4.neigh.{host_if}.proxy_delay=0",  # answer the pod's ARP at once
        ):
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", setting)
        sh("ip", "-n", self.node, "route", "add", f"{ip}/32", "dev", host_if)
        if serve:
            self.servers.append(serve_http_in(name, self.www / name, name))
        return name

    def close(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        for name in [*self.pods, self.ext, self.node]:
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.www, ignore_errors=True)


@pytest.fixture
def topology() -> Iterator[Topology]:
    """A node netns, an outside netns and five pods (pod0 = client, pod1..4 serve)."""
    root_or_skip()
    suffix = secrets.token_hex(2)
    topo = Topology(suffix, node=f"ktn{suffix}", ext=f"kte{suffix}")
    topo.www = Path(tempfile.mkdtemp(prefix="kubetrio-proxy-"))
    try:
        sh("ip", "netns", "add", topo.node)
        sh("ip", "netns", "add", topo.ext)
        sh("ip", "netns", "exec", topo.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns in (topo.node, topo.ext):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", topo.ext, "type", "veth", "peer", "name",
           "eth0", "netns", topo.node)  # fmt: skip
        sh("ip", "-n", topo.node, "addr", "add", f"{topo.node_ip}/24", "dev", "eth0")
        sh("ip", "-n", topo.ext, "addr", "add", f"{topo.ext_ip}/24", "dev", "eth0")
        for ns in (topo.node, topo.ext):
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", topo.ext, "route", "add", "default", "via", topo.node_ip)
        # Proxy ARP answers only for addresses routed out of another interface, so the
        # node needs a default route (the pods' gateway 169.254.1.1 falls under it).
        sh("ip", "-n", topo.node, "route", "add", "default", "via", topo.ext_ip)
        # The node's own connections to ClusterIPs need a route before the NAT hook runs.
        sh("ip", "-n", topo.node, "route", "add", "10.96.0.0/12", "dev", "eth0", "src",
           topo.node_ip)  # fmt: skip
        topo.add_pod(0, serve=False)
        for index in range(1, 5):
            topo.add_pod(index, serve=True)
        yield topo
    finally:
        topo.close()


def http_get_sync(
    netns: str, ip: str, port: int = 80, *, source_port: int = 0, timeout: float = 2.0
) -> str:
    """GET / from inside ``netns``; the body, or ``!error`` when it failed."""

    def call() -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            # RST on close: no TIME_WAIT, so the same source port can be used again.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if source_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", source_port))
            sock.connect((ip, port))
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError as exc:
            return f"!{type(exc).__name__}"
        finally:
            sock.close()
        _, _, body = data.partition(b"\r\n\r\n")
        return body.decode(errors="replace").strip()

    return in_netns(netns, call)


async def http_get_many(
    netns: str, ip: str, port: int = 80, *, count: int = 1, source_ports: list[int] | None = None
) -> list[str]:
    """``count`` GETs (or one per source port) in one worker thread."""

    def run() -> list[str]:
        if source_ports is not None:
            return [http_get_sync(netns, ip, port, source_port=p) for p in source_ports]
        return [http_get_sync(netns, ip, port) for _ in range(count)]

    return await trio.to_thread.run_sync(run)


async def eventually(check: Any, *, interval: float = 0.05) -> Any:
    """Await ``check()`` until it returns something truthy."""
    while True:
        result = await check()
        if result:
            return result
        await trio.sleep(interval)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Any]:
    """An in-process cluster (API server + controllers) on SQLite."""
    from kubetrio.cluster import open_cluster
    from kubetrio.store import open_store

    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(store, scheduler=False) as running,
    ):
        yield running
