"""Pods as network namespaces wired by the calico plugin, and an API server to watch.

Each pod is a netns wired by ``CalicoNetwork.add`` in this (the host's) namespace from
the test-only block 10.244.254.0/26, serving its own name with ``busybox httpd``.
Everything made here — namespaces, veths, processes, the policy table — is removed
afterwards, also when the test fails.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.nft import PolicyTable
from kubetrio_cni_calico.veth import CalicoNetwork

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.netns import in_netns
from kubetrio.store import open_store
from tests.kit import root_or_skip, serve_http_in, sh

TEST_BLOCK = "10.244.254.0/26"
NODE = "policy-node"


@dataclass
class Pod:
    name: str
    namespace: str
    netns: str
    ip: str
    container_id: str


@dataclass
class PodLab:
    """Pods in network namespaces plus the cluster objects that describe them."""

    client: Client
    network: CalicoNetwork
    www: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    pods: dict[str, Pod] = field(default_factory=dict)
    table: PolicyTable = field(init=False)

    def __post_init__(self) -> None:
        # A table of its own: a node agent of another test in this namespace may write
        # ``kubetrio-policy`` meanwhile. Every table's forward hook sees each packet.
        self.table = PolicyTable(f"kubetrio-policy-test{self.suffix}")

    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def add_pod(
        self, name: str, namespace: str, labels: dict[str, str], *, node: str = NODE
    ) -> Pod:
        """Wire a netns, start httpd in it, create its Pod with status.podIP."""
        netns = f"ktnp{self.suffix}{len(self.pods)}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        container_id = f"{netns}-sandbox"
        pod = Pod(name, namespace, netns, "", container_id)
        self.pods[name] = pod
        wired = await self.network.add(
            pod={}, netns_path=f"/var/run/netns/{netns}", container_id=container_id
        )
        pod.ip = wired.ips[0]
        self.servers.append(serve_http_in(netns, self.www / name, name))
        await self.client.create(
            "v1",
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "httpd",
                            "image": "busybox",
                            "ports": [{"name": "http", "containerPort": 80}],
                        }
                    ],
                },
            },
            namespace=namespace,
        )
        await self.client.patch(
            "v1",
            "pods",
            name,
            {"status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}},
            namespace=namespace,
            subresource="status",
        )
        return pod

    async def get(self, source: str, target: str, *, timeout: float = 0.5) -> str:
        """GET / of ``target`` from inside ``source``: its body, or ``!error``."""
        return await trio.to_thread.run_sync(
            http_get_sync, self.pods[source].netns, self.pods[target].ip, timeout
        )

    async def close(self) -> None:
        for server in self.servers:
            server.kill()
            server.wait()
        for pod in self.pods.values():
            await self.network.delete(
                pod={}, netns_path=f"/var/run/netns/{pod.netns}", container_id=pod.container_id
            )
            subprocess.run(["ip", "netns", "del", pod.netns], check=False, capture_output=True)
        subprocess.run(
            ["nft", "delete", "table", "inet", self.table.name], check=False, capture_output=True
        )
        shutil.rmtree(self.www, ignore_errors=True)


def http_get_sync(netns: str, ip: str, timeout: float) -> str:
    """GET / from inside ``netns`` (a worker thread enters it)."""

    def call() -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.connect((ip, 80))
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        except OSError as exc:
            return f"!{type(exc).__name__}"
        finally:
            sock.close()
        return data.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()

    return in_netns(netns, call)


@dataclass
class Underlay:
    """Node network namespaces on one underlay bridge, as nodes of a cluster are.

    ``nodes`` maps node name → underlay address; :meth:`build` makes a netns per node
    (``eth0`` on the bridge with that /24 address, a default route out of it, forwarding
    on); :meth:`add_node` adds one more; :meth:`remove` deletes every namespace it made,
    including ones added later with :meth:`add_netns` (pods).
    """

    nodes: dict[str, str]
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    netns: dict[str, str] = field(default_factory=dict)
    """node name → its network namespace"""
    made: list[str] = field(default_factory=list)

    def add_netns(self, name: str) -> str:
        """Create a namespace (deleted by :meth:`remove`) with loopback up."""
        self.made.append(name)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    @property
    def bridge_netns(self) -> str:
        """The namespace holding the bridge ``br0`` (the underlay switch)."""
        return f"ktu{self.tag}"

    def build(self) -> None:
        """The bridge, then every node of :attr:`nodes` on it."""
        self.build_bridge()
        for name, node_ip in list(self.nodes.items()):
            self.add_node(name, node_ip)

    def build_bridge(self) -> None:
        """The underlay namespace and its bridge."""
        underlay = self.add_netns(self.bridge_netns)
        sh("ip", "-n", underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", underlay, "link", "set", "br0", "up")

    def add_node(self, name: str, node_ip: str) -> str:
        """A node namespace with ``node_ip``/24 on the bridge; its netns name."""
        index = len(self.netns)
        self.nodes[name] = node_ip
        node = self.netns[name] = self.add_netns(f"ktn{self.tag}{index}")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "link", "add", "eth0", "netns", node, "type", "veth", "peer", "name",
           f"u{index}", "netns", self.bridge_netns)  # fmt: skip
        sh("ip", "-n", self.bridge_netns, "link", "set", f"u{index}", "master", "br0", "up")
        sh("ip", "-n", node, "addr", "add", f"{node_ip}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        # Proxy ARP answers for the pods' gateway only if it routes out elsewhere.
        sh("ip", "-n", node, "route", "add", "default", "dev", "eth0")
        return node

    def remove(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def ping(netns: str, address: str) -> bool:
    """One ping from inside ``netns``, answered within a second."""
    result = await trio.run_process(
        ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", address],
        check=False,
        capture_stdout=True,
    )
    return result.returncode == 0


async def routes(netns: str) -> str:
    """``ip route`` of a namespace."""
    result = await trio.run_process(["ip", "-n", netns, "route"], capture_stdout=True)
    return result.stdout.decode()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[PodLab]:
    """An API server, a client, and a plugin wiring pods from the test block."""
    root_or_skip()
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store) as running,
    ):
        client = Client.in_process(running.api)
        pods = PodLab(
            client, CalicoNetwork(TEST_BLOCK), Path(tempfile.mkdtemp(prefix="kubetrio-netpol-"))
        )
        try:
            yield pods
        finally:
            with trio.CancelScope(shield=True):
                await pods.close()
