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

from .conftest import Underlay

_WIRE = """
import sys, trio
from kubetrio_cni_calico.veth import CalicoNetwork
block, netns = sys.argv[1:]
wired = trio.run(lambda: CalicoNetwork(block).add(
    pod={}, netns_path=f"/var/run/netns/{netns}", container_id=netns))
print(wired.ips[0])
"""


@dataclass
class Pod:
    """A pod network namespace on a node, and its address."""

    node: str
    netns: str
    ip: str


@dataclass
class NodeLab(Underlay):
    """:class:`~.conftest.Underlay` nodes added one by one, and pods on the nodes."""

    nodes: dict[str, str] = field(default_factory=dict)
    """node name → its underlay address"""
    pods: dict[str, Pod] = field(default_factory=dict)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def add_pod(self, name: str, node: str, block: str) -> Pod:
        """A pod on ``node`` wired by ``CalicoNetwork(block).add`` in the node's netns."""
        netns = self.add_netns(f"ktp{self.tag}{len(self.pods)}")
        result = await trio.run_process(
            ["ip", "netns", "exec", self.netns[node], sys.executable, "-c", _WIRE, block, netns],
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
        self.remove()


@contextmanager
def node_lab() -> Iterator[NodeLab]:
    """A :class:`NodeLab` with its underlay built; everything removed on exit."""
    lab = NodeLab()
    try:
        lab.build_bridge()
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
