"""Pods on two nodes reach each other over the userspace IPIP tunnel, through the whole plugin.

Each node is a ``CalicoNetwork`` with ``netns=`` its node namespace, running its node
services in this process (root; every namespace gets a random suffix and is deleted
afterwards)::

    underlay netns: bridge br0
      ├─ veth ── node1 netns  eth0 172.31.252.1/24, tunl.calico (TunnelEngine, IPIP)
      │            └─ pods wired by CalicoNetwork.add, blocks of 10.244.254.224/27 (/30 each)
      └─ veth ── node2 netns  eth0 172.31.252.2/24, tunl.calico
                   └─ pods ...

Node 1 is configured with an IPIP pool and creates it; node 2 is configured with the
defaults (a VXLAN pool of 10.244.0.0/16) and must follow the stored IPIP pool. A /30
block holds two pods, so node 2's third pod comes from an extra block, which node 1 must
route too, and which is released again once empty past the grace period.
"""

from __future__ import annotations

import ipaddress
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.blocks import API_VERSION, PLURAL
from kubetrio_cni_calico.ipip import DEVICE, MTU, UNDERLAY_IP, IpipRoutes
from kubetrio_cni_calico.pools import Pool, ensure_pool
from kubetrio_cni_calico.veth import CalicoNetwork

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.netns import in_netns
from kubetrio.store import open_store
from tests.kit import sh

from .conftest import Underlay, http_get_sync, ping, routes

pytestmark = pytest.mark.root

POOL = "10.244.254.224/27"
NODES = {"ipip-1": "172.31.252.1", "ipip-2": "172.31.252.2"}
GRACE = 3600.0
"""Long enough that the services' own collection (every 30 s) never releases a block here."""


@dataclass
class Cluster:
    client: Client
    underlay: Underlay
    www: Path
    networks: dict[str, CalicoNetwork] = field(default_factory=dict)
    pods: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """pod name → (node, netns, address)"""
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def add_pod(self, name: str, node: str) -> str:
        """Wire a pod netns through the node's plugin, serve its name over HTTP."""
        netns = self.underlay.add_netns(f"ktip{self.underlay.tag}{len(self.pods)}")
        wired = await self.networks[node].add(
            pod={}, netns_path=f"/var/run/netns/{netns}", container_id=f"{netns}-sandbox"
        )
        [address] = wired.ips
        self.pods[name] = (node, netns, address)
        root = self.www / name
        root.mkdir()
        (root / "index.html").write_text(name)
        httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", str(root)]
        self.servers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", netns, *httpd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return address

    async def delete_pod(self, name: str) -> None:
        node, netns, _ = self.pods.pop(name)
        await self.networks[node].delete(pod={}, netns_path="", container_id=f"{netns}-sandbox")

    async def get(self, source: str, target: str) -> str:
        """HTTP GET / of ``target`` from inside ``source``: its body, or ``!error``."""
        return await trio.to_thread.run_sync(
            http_get_sync, self.pods[source][1], self.pods[target][2], 1.0
        )


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Nodes on an underlay and an API server; ``indirect`` param False: one that serves
    none of the plugin's kinds."""
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("needs root (network namespaces) and busybox")
    underlay = Underlay(NODES)
    manager = plugins.load(only=["cni_calico"]) if getattr(request, "param", True) else None
    www = tmp_path / "www"
    www.mkdir()
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        lab = Cluster(Client.in_process(running.api), underlay, www)
        try:
            underlay.build()
            for name in NODES:
                node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
                await lab.client.create("v1", "nodes", node)
            yield lab
        finally:
            for server in lab.servers:
                server.kill()
                server.wait()
            underlay.remove()


def links(netns: str) -> str:
    """``ip link`` of a namespace."""
    result = subprocess.run(["ip", "-n", netns, "link"], capture_output=True, text=True, check=True)
    return result.stdout


async def wait_for(predicate_text: str, netns: str, present: bool = True) -> None:
    """Wait (under the caller's deadline) until ``ip route`` shows (or stops showing) a text."""
    while (predicate_text in await routes(netns)) != present:
        await trio.sleep(0.05)


async def test_pods_across_nodes_over_ipip(cluster: Cluster) -> None:
    configured = {
        "ipip-1": Pool(POOL, block_size=30, mode="ipip"),
        "ipip-2": Pool(),  # the defaults: a VXLAN pool, which the stored one overrides
    }
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for name, node_ip in NODES.items():
                network = CalicoNetwork(
                    "10.0.0.0/30",
                    pool=configured[name],
                    underlay_ip=node_ip,
                    netns=cluster.underlay.netns[name],
                    gc_grace=GRACE,
                )
                cluster.networks[name] = network
                await nursery.start(network.run_node_services, cluster.client, name)
                if name == "ipip-1":  # alone so far: its route agent sets up no tunnel
                    assert isinstance(network.routes, IpipRoutes)
                    await network.routes.table.nodes.synced.wait()
                    assert DEVICE not in links(cluster.underlay.netns[name])
            two = cluster.networks["ipip-2"]
            # Node 2 follows the stored pool: IPIP, its blocks, its MTU.
            assert two.mode == "ipip" and two.mtu == MTU == 1480
            assert isinstance(two.routes, IpipRoutes)
            assert [str(b) for b in two.ipam.blocks] == ["10.244.254.228/30"]

            await cluster.add_pod("a", "ipip-1")
            await cluster.add_pod("b", "ipip-2")
            await cluster.add_pod("c", "ipip-2")
            extra = await cluster.add_pod("d", "ipip-2")  # node 2's first block is full
            assert ipaddress.IPv4Address(extra) in ipaddress.IPv4Network("10.244.254.232/30")
            pod_eth0 = subprocess.run(
                ["ip", "-n", cluster.pods["d"][1], "link", "show", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert f"mtu {MTU} " in pod_eth0

            node1 = cluster.underlay.netns["ipip-1"]
            await wait_for(f"10.244.254.232/30 dev {DEVICE}", node1)
            assert f"10.244.254.228/30 dev {DEVICE}" in await routes(node1)
            for target in ("b", "d"):
                while not await ping(cluster.pods["a"][1], cluster.pods[target][2]):
                    await trio.sleep(0.1)
                assert await cluster.get("a", target) == target
                assert await ping(cluster.pods[target][1], cluster.pods["a"][2])
            assert await cluster.get("d", "a") == "a"
            node2 = await cluster.client.get("v1", "nodes", "ipip-2")
            assert node2["metadata"]["annotations"][UNDERLAY_IP] == NODES["ipip-2"]

            # The extra block empties: kept through the grace period, then released,
            # and node 1 stops routing it.
            await cluster.delete_pod("d")
            now = trio.current_time()
            assert await two.release_idle_blocks(now) == []
            assert await two.release_idle_blocks(now + GRACE - 5) == []
            assert await two.release_idle_blocks(now + GRACE) == ["10-244-254-232-30"]
            listed = await cluster.client.list(API_VERSION, PLURAL)
            assert {b["spec"]["cidr"] for b in listed["items"]} == {
                "10.244.254.224/30",
                "10.244.254.228/30",
            }
            await wait_for("10.244.254.232/30", node1, present=False)
            assert await cluster.get("a", "c") == "c"  # the first block still routed
            nursery.cancel_scope.cancel()
    # The engines stopped with the node services and took their devices along.
    for netns in cluster.underlay.netns.values():
        assert DEVICE not in links(netns)


@pytest.mark.parametrize("cluster", [False], indirect=True)
async def test_hand_placed_nodes_without_ipamblocks(cluster: Cluster) -> None:
    """No pool or block kinds served: configured blocks, peers from Node annotations."""
    blocks = {"ipip-1": "10.244.254.240/29", "ipip-2": "10.244.254.248/29"}
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for name, node_ip in NODES.items():
                netns = cluster.underlay.netns[name]
                network = CalicoNetwork(blocks[name], mode="ipip", underlay_ip=node_ip, netns=netns)
                cluster.networks[name] = network
                await nursery.start(network.run_node_services, cluster.client, name)
                assert network.claims is None and network.mtu == MTU
            await cluster.add_pod("a", "ipip-1")
            await cluster.add_pod("b", "ipip-2")
            while await cluster.get("a", "b") != "b":
                await trio.sleep(0.1)
            assert await cluster.get("b", "a") == "a"
            nursery.cancel_scope.cancel()


NODE_AGENT = """
import sys, trio
from kubetrio.client import Client
from kubetrio_cni_calico.pools import Pool
from kubetrio_cni_calico.veth import CalicoNetwork

async def main(url, node, pod):
    network = CalicoNetwork("10.0.0.0/30", pool=Pool())  # follows the stored pool
    client = Client.connect(url)
    async with trio.open_nursery() as nursery:
        await nursery.start(network.run_node_services, client, node)
        wired = await network.add(pod={}, netns_path="/var/run/netns/" + pod, container_id=pod)
        print(network.mode, wired.ips[0], flush=True)

trio.run(main, *sys.argv[1:])
"""
"""A node agent's network part, run by a process that lives in its node's namespace."""


@pytest.fixture
def api_on_underlay(tmp_path: Path) -> Iterator[tuple[Underlay, str]]:
    """Nodes on an underlay, and an API server listening on the underlay bridge (in a
    thread of its own that entered the underlay namespace) with an IPIP pool and the
    Nodes (InternalIP = underlay address) stored."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    underlay = Underlay(NODES)
    ready: queue.Queue[str | BaseException] = queue.Queue()
    stop = threading.Event()
    server_ip = "172.31.252.254"

    async def serve() -> None:
        manager = plugins.load(only=["cni_calico"])
        async with (
            open_store(f"sqlite://{tmp_path}/store.db") as store,
            open_apiserver(store, host=server_ip, plugins=manager) as running,
        ):
            client = Client.in_process(running.api)
            await ensure_pool(client, Pool(POOL, block_size=30, mode="ipip"))
            for name, node_ip in NODES.items():
                node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
                await client.create("v1", "nodes", node)
                address = {"addresses": [{"type": "InternalIP", "address": node_ip}]}
                await client.patch("v1", "nodes", name, {"status": address}, subresource="status")
            ready.put(running.url)
            await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)

    def thread() -> None:
        try:
            in_netns(underlay.bridge_netns, lambda: trio.run(serve))
        except BaseException as exc:
            ready.put(exc)

    server = threading.Thread(target=thread)
    try:
        underlay.build()
        sh("ip", "-n", underlay.bridge_netns, "addr", "add", f"{server_ip}/24", "dev", "br0")
        server.start()
        url = ready.get(timeout=30)
        if isinstance(url, BaseException):
            raise url
        yield underlay, url
    finally:
        stop.set()
        if server.is_alive():
            server.join()
        underlay.remove()


async def test_node_agents_inside_their_namespaces(api_on_underlay: tuple[Underlay, str]) -> None:
    """Each node's network services in a process entered into its node namespace (as
    ``kubetrio up --nodes`` starts agents): ``ip`` without ``-n``, the tunnel device and
    the policy table all land in that namespace; the API is reached over the underlay."""
    underlay, url = api_on_underlay
    agents: list[subprocess.Popen[str]] = []
    addresses = {}
    try:
        for name in NODES:
            pod = underlay.add_netns(f"ktia{underlay.tag}{len(agents)}")
            agent = subprocess.Popen(
                ["ip", "netns", "exec", underlay.netns[name], sys.executable, "-c", NODE_AGENT,
                 url, name, pod],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            agents.append(agent)
            assert agent.stdout is not None
            with trio.fail_after(30):
                line = await trio.to_thread.run_sync(agent.stdout.readline, abandon_on_cancel=True)
            mode, address = line.split()
            assert mode == "ipip"
            addresses[pod] = address
        [(pod1, ip1), (pod2, ip2)] = addresses.items()
        with trio.fail_after(30):
            while not await ping(pod1, ip2):
                await trio.sleep(0.1)
        assert await ping(pod2, ip1)
        for netns in underlay.netns.values():
            assert DEVICE in links(netns)
            tables = subprocess.run(
                ["ip", "netns", "exec", netns, "nft", "list", "tables"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert "kubetrio-policy" in tables
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
