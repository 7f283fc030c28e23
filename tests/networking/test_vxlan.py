"""Pods on two nodes reach each other over kernel VXLAN programmed from Node objects.

Topology (root; every namespace gets a random suffix and is deleted afterwards)::

    underlay netns: bridge br0
      ├─ veth ── node1 netns  eth0 172.31.254.1/24, vxlan.calico, block 10.244.254.128/28
      │            └─ veth (proxy ARP) ── pod1 10.244.254.129/32
      └─ veth ── node2 netns  eth0 172.31.254.2/24, vxlan.calico, block 10.244.254.144/28
                   └─ veth (proxy ARP) ── pod2 10.244.254.145/32 (and .146, and .161
                                          in its second block 10.244.254.160/28)
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.blocks import BlockClaims
from kubetrio_cni_calico.felix import PolicyAgent
from kubetrio_cni_calico.nft import PolicyTable
from kubetrio_cni_calico.vxlan import MAC, MTU, VxlanRoutes

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.store import open_store
from tests.kit import sh

from .conftest import Underlay, http_get_sync, ping, routes

pytestmark = pytest.mark.root

NODES = {
    "vx-1": ("172.31.254.1", "10.244.254.128/28"),
    "vx-2": ("172.31.254.2", "10.244.254.144/28"),
}
PODS = {  # pod → (node, address, labels)
    "client": ("vx-1", "10.244.254.129", {"app": "client"}),
    "web": ("vx-2", "10.244.254.145", {"app": "web"}),
    "other": ("vx-2", "10.244.254.146", {"app": "other"}),
    "extra": ("vx-2", "10.244.254.161", {"app": "extra"}),  # in vx-2's second block
}
POOL = "10.244.254.128/26"  # /28 blocks: vx-1 .128, vx-2 .144 and then .160


@dataclass
class Topology:
    nodes: dict[str, str] = field(default_factory=dict)
    """node name → its netns"""
    pods: dict[str, str] = field(default_factory=dict)
    """pod name → its netns"""
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("needs root (network namespaces) and busybox")
    underlay = Underlay({name: node_ip for name, (node_ip, _) in NODES.items()})
    topo = Topology(nodes=underlay.netns)
    try:
        underlay.build()
        for index, (name, (node_name, pod_ip, _)) in enumerate(PODS.items()):
            node, host = topo.nodes[node_name], f"cali{index}"
            pod = topo.pods[name] = underlay.add_netns(f"ktvp{underlay.tag}{index}")
            # Wired as the calico plugin does it, with the VXLAN MTU.
            sh("ip", "link", "add", "eth0", "netns", pod, "mtu", str(MTU), "type", "veth",
               "peer", "name", host, "netns", node, "mtu", str(MTU))  # fmt: skip
            sh("ip", "-n", pod, "addr", "add", f"{pod_ip}/32", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            sh("ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            sh("ip", "netns", "exec", node, "sysctl", "-qw", f"net.ipv4.conf.{host}.proxy_arp=1")
            sh("ip", "-n", node, "link", "set", host, "up")
            sh("ip", "-n", node, "route", "add", f"{pod_ip}/32", "dev", host)
            root = tmp_path / name
            root.mkdir()
            (root / "index.html").write_text(name)
            httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", str(root)]
            topo.servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", pod, *httpd],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield topo
    finally:
        for server in topo.servers:
            server.kill()
            server.wait()
        underlay.remove()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store) as running,
    ):
        yield Client.in_process(running.api)


async def start_routes(
    client: Client, topology: Topology, nursery: trio.Nursery
) -> dict[str, VxlanRoutes]:
    agents = {}
    for name, (node_ip, block) in NODES.items():
        await client.create(
            "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        )
        agents[name] = VxlanRoutes(
            client, name, block=block, underlay_ip=node_ip, netns=topology.nodes[name]
        )
        await nursery.start(agents[name].run)
    return agents


async def test_pods_on_two_nodes_reach_each_other(topology: Topology, client: Client) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agents = await start_routes(client, topology, nursery)
            while not await ping(topology.pods["client"], PODS["web"][1]):
                await trio.sleep(0.1)
            assert await ping(topology.pods["web"], PODS["client"][1])
            node2 = await client.get("v1", "nodes", "vx-2")
            assert node2["metadata"]["annotations"][MAC]
            node1_routes = await routes(topology.nodes["vx-1"])
            assert "10.244.254.144/28 via 10.244.254.144 dev vxlan.calico onlink" in node1_routes
            # A node that leaves takes its route with it on the other nodes.
            await client.delete("v1", "nodes", "vx-2")
            while agents["vx-1"].peers:
                await trio.sleep(0.05)
            assert "10.244.254.144/28" not in await routes(topology.nodes["vx-1"])
            nursery.cancel_scope.cancel()


async def test_policy_across_nodes(topology: Topology, client: Client) -> None:
    """Each node enforces policy on its own pods, for peers on any node."""
    for name, (node, pod_ip, labels) in PODS.items():
        await client.create(
            "v1",
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            },
            namespace="default",
        )
        await client.patch(
            "v1", "pods", name, {"status": {"phase": "Running", "podIP": pod_ip}},
            namespace="default", subresource="status",
        )  # fmt: skip

    async def get(source: str, target: str) -> bool:
        body = await trio.to_thread.run_sync(
            http_get_sync, topology.pods[source], PODS[target][1], 0.5
        )
        return body == target

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await start_routes(client, topology, nursery)
            for name, netns in topology.nodes.items():
                table = PolicyTable(f"kubetrio-policy-{secrets.token_hex(2)}", netns=netns)
                agent = PolicyAgent(client, name, table=table, keep_table_on_exit=False)
                await nursery.start(agent.run)
            while not (await get("client", "web") and await get("other", "web")):
                await trio.sleep(0.1)
            await client.create(
                "networking.k8s.io/v1",
                "networkpolicies",
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": {"name": "web-from-client"},
                    "spec": {
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [
                            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}
                        ],
                    },
                },
                namespace="default",
            )
            while await get("other", "web"):  # same node as web: now blocked
                await trio.sleep(0.1)
            assert await get("client", "web")  # across the VXLAN tunnel: allowed
            assert await get("client", "other") and await get("web", "other")
            nursery.cancel_scope.cancel()


async def test_routes_cover_every_block_of_a_peer(topology: Topology, tmp_path: Path) -> None:
    """With IPAMBlocks served, a peer's second block is routed through its tunnel too."""
    manager = plugins.load(only=["cni_calico"])
    async with (
        open_store(f"sqlite://{tmp_path}/blocks.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        client = Client.in_process(running.api)
        claims = {name: BlockClaims(client, name, pool=POOL, block_size=28) for name in NODES}
        for name, (_, block) in NODES.items():
            await claims[name].claim(block)
        node1 = topology.nodes["vx-1"]
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                agents = await start_routes(client, topology, nursery)
                while not await ping(topology.pods["client"], PODS["web"][1]):
                    await trio.sleep(0.1)
                assert "10.244.254.160/28" not in await routes(node1)
                assert not await ping(topology.pods["client"], PODS["extra"][1])
                extra = await claims["vx-2"].claim_extra()
                assert extra["spec"]["cidr"] == "10.244.254.160/28"
                while not await ping(topology.pods["client"], PODS["extra"][1]):
                    await trio.sleep(0.1)
                assert "10.244.254.160/28 via 10.244.254.144 dev vxlan.calico onlink" in (
                    await routes(node1)
                )
                # Released: the route goes; the peer's first block stays routed.
                assert await claims["vx-2"].release(extra["metadata"]["name"])
                while "10.244.254.160/28" in agents["vx-1"].peers:
                    await trio.sleep(0.05)
                assert "10.244.254.160/28" not in await routes(node1)
                assert await ping(topology.pods["client"], PODS["web"][1])
                nursery.cancel_scope.cancel()
