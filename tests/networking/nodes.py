"""Nodes as network namespaces on one underlay bridge, with pods wired by the plugin.

::

    underlay netns: bridge br0
      ├─ veth ── node netns  eth0 <address>/24, forwarding on, default route dev eth0
      │            └─ veth (proxy ARP) ── pod netns  wired by CalicoNetwork.add
      └─ ...

A pod is wired by the plugin's own :meth:`CalicoNetwork.add`, run in a short Python
process inside the node's namespace (the method works on the namespace it runs in).
Every namespace and process made here carries the lab's random tag and is removed by
:meth:`NodeLab.close`, also when the test fails.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.store import open_store

_WIRE = """
import sys, trio
from kubetrio_cni_calico.veth import CalicoNetwork
block, netns = sys.argv[1:]
wired = trio.run(lambda: CalicoNetwork(block).add(
    pod={}, netns_path=f"/var/run/netns/{netns}", container_id=netns))
print(wired.ips[0])
"""


def sh(*args: str) -> str:
    """Run a command; its stdout. Raises on failure."""
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class Pod:
    """A pod network namespace on a node, and its address."""

    node: str
    netns: str
    ip: str


@dataclass
class NodeLab:
    """An underlay bridge with node namespaces on it, and pods on the nodes."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    nodes: dict[str, str] = field(default_factory=dict)
    """node name → its netns"""
    addresses: dict[str, str] = field(default_factory=dict)
    """node name → its underlay address"""
    pods: dict[str, Pod] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def underlay(self) -> str:
        """The namespace holding the bridge."""
        return f"ktbu{self.tag}"

    def _netns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build_underlay(self) -> None:
        """The underlay namespace and its bridge."""
        self._netns(self.underlay)
        sh("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.underlay, "link", "set", "br0", "up")

    def add_node(self, name: str, address: str) -> str:
        """A node namespace with ``address``/24 on the bridge; its netns name."""
        index = len(self.nodes)
        node = self.nodes[name] = self._netns(f"ktbn{self.tag}{index}")
        self.addresses[name] = address
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "link", "add", "eth0", "netns", node, "type", "veth", "peer", "name",
           f"u{index}", "netns", self.underlay)  # fmt: skip
        sh("ip", "-n", self.underlay, "link", "set", f"u{index}", "master", "br0", "up")
        sh("ip", "-n", node, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        # Proxy ARP answers for the pods' gateway only if it routes out elsewhere.
        sh("ip", "-n", node, "route", "add", "default", "dev", "eth0")
        return node

    async def add_pod(self, name: str, node: str, block: str) -> Pod:
        """A pod on ``node`` wired by ``CalicoNetwork(block).add`` in the node's netns."""
        netns = self._netns(f"ktbp{self.tag}{len(self.pods)}")
        result = await trio.run_process(
            ["ip", "netns", "exec", self.nodes[node], sys.executable, "-c", _WIRE, block, netns],
            capture_stdout=True,
            capture_stderr=True,
        )
        pod = self.pods[name] = Pod(node, netns, result.stdout.decode().strip())
        return pod

    def serve(self, pod: Pod, root: Path) -> None:
        """``busybox httpd`` on port 80 in the pod, serving ``root``."""
        self.servers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", pod.netns, "busybox", "httpd", "-f", "-p", "80",
                 "-h", str(root)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip

    def close(self) -> None:
        """Stop the servers, delete every namespace (their links go with them)."""
        for server in self.servers:
            server.kill()
            server.wait()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextmanager
def node_lab() -> Iterator[NodeLab]:
    """A :class:`NodeLab` with its underlay built; everything removed on exit."""
    lab = NodeLab()
    try:
        lab.build_underlay()
        yield lab
    finally:
        lab.close()


@asynccontextmanager
async def calico_api(tmp_path: Path) -> AsyncIterator[Client]:
    """An in-process API server that serves the plugin's kinds (``ipamblocks``)."""
    manager = plugins.load(only=["cni_calico"])
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        yield Client.in_process(running.api)


async def ping(netns: str, address: str) -> bool:
    """One ICMP echo from ``netns``; whether it was answered within a second."""
    result = await trio.run_process(
        ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", address],
        check=False,
        capture_stdout=True,
    )
    return result.returncode == 0


async def wget(netns: str, address: str) -> str:
    """GET / of ``address`` from ``netns`` with busybox wget; the body, or ``!error``."""
    # A deadline of our own: this busybox's ``wget -T`` crashes.
    with trio.move_on_after(3):
        result = await trio.run_process(
            ["ip", "netns", "exec", netns, "busybox", "wget", "-q", "-O", "-",
             f"http://{address}/"],
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )  # fmt: skip
        if result.returncode == 0:
            return str(result.stdout.decode().strip())
    return "!error"


async def routes(netns: str) -> list[dict[str, Any]]:
    """The namespace's IPv4 main table (``ip -j route``)."""
    result = await trio.run_process(["ip", "-n", netns, "-j", "route"], capture_stdout=True)
    listed: list[dict[str, Any]] = json.loads(result.stdout or b"[]")
    return listed
