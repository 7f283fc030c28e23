"""Pods on two nodes reach each other over kernel VXLAN programmed from Node objects.

Topology (root; every namespace gets a random suffix and is deleted afterwards)::

    underlay netns: bridge br0
      ├─ veth ── node1 netns  eth0 172.31.254.1/24, vxlan.calico, block 10.244.254.128/28
      │            └─ veth (proxy ARP) ── pod1 10.244.254.129/32
      └─ veth ── node2 netns  eth0 172.31.254.2/24, vxlan.calico, block 10.244.254.144/28
                   └─ veth (proxy ARP) ── pod2 10.244.254.145/32
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.vxlan import MAC, MTU, VxlanRoutes

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.store import open_store

pytestmark = pytest.mark.root

NODES = {
    "vx-1": ("172.31.254.1", "10.244.254.128/28", "10.244.254.129"),
    "vx-2": ("172.31.254.2", "10.244.254.144/28", "10.244.254.145"),
}


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def topology() -> Iterator[dict[str, tuple[str, str]]]:
    """node name → (node netns, pod netns)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tag = secrets.token_hex(2)
    underlay = f"ktvu{tag}"
    made = [underlay]
    spaces: dict[str, tuple[str, str]] = {}
    try:
        sh("ip", "netns", "add", underlay)
        sh("ip", "-n", underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", underlay, "link", "set", "br0", "up")
        for index, (name, (node_ip, _, pod_ip)) in enumerate(NODES.items()):
            node, pod = f"ktvn{tag}{index}", f"ktvp{tag}{index}"
            made += [node, pod]
            spaces[name] = (node, pod)
            sh("ip", "netns", "add", node)
            sh("ip", "netns", "add", pod)
            sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            sh("ip", "-n", node, "link", "set", "lo", "up")
            sh("ip", "-n", pod, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", node, "type", "veth", "peer", "name",
               f"u{index}", "netns", underlay)  # fmt: skip
            sh("ip", "-n", underlay, "link", "set", f"u{index}", "master", "br0", "up")
            sh("ip", "-n", node, "addr", "add", f"{node_ip}/24", "dev", "eth0")
            sh("ip", "-n", node, "link", "set", "eth0", "up")
            # Proxy ARP answers for the pods' gateway only if it routes out elsewhere.
            sh("ip", "-n", node, "route", "add", "default", "dev", "eth0")
            # The pod, wired as the calico plugin does it, with the VXLAN MTU.
            sh("ip", "link", "add", "eth0", "netns", pod, "mtu", str(MTU), "type", "veth",
               "peer", "name", "cali0", "netns", node, "mtu", str(MTU))  # fmt: skip
            sh("ip", "-n", pod, "addr", "add", f"{pod_ip}/32", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            sh("ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf.cali0.proxy_arp=1")
            sh("ip", "-n", node, "link", "set", "cali0", "up")
            sh("ip", "-n", node, "route", "add", f"{pod_ip}/32", "dev", "cali0")
        yield spaces
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store) as running,
    ):
        yield Client.in_process(running.api)


async def ping(netns: str, address: str) -> bool:
    result = await trio.run_process(
        ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", address],
        check=False,
        capture_stdout=True,
    )
    return result.returncode == 0


async def routes(netns: str) -> str:
    result = await trio.run_process(["ip", "-n", netns, "route"], capture_stdout=True)
    return result.stdout.decode()


async def test_pods_on_two_nodes_reach_each_other(
    topology: dict[str, tuple[str, str]], client: Client
) -> None:
    for name in NODES:
        await client.create(
            "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agents = {}
            for name, (node_ip, block, _) in NODES.items():
                agents[name] = VxlanRoutes(
                    client, name, block=block, underlay_ip=node_ip, netns=topology[name][0]
                )
                await nursery.start(agents[name].run)
            pod1, pod2 = topology["vx-1"][1], topology["vx-2"][1]
            while not await ping(pod1, NODES["vx-2"][2]):
                await trio.sleep(0.1)
            assert await ping(pod2, NODES["vx-1"][2])
            node2 = await client.get("v1", "nodes", "vx-2")
            assert node2["metadata"]["annotations"][MAC]
            assert "10.244.254.144/28 via 10.244.254.144 dev vxlan.calico onlink" in await routes(
                topology["vx-1"][0]
            )
            # A node that leaves takes its route with it on the other nodes.
            await client.delete("v1", "nodes", "vx-2")
            while "10.244.254.144/28" in await routes(topology["vx-1"][0]):
                await trio.sleep(0.05)
            assert agents["vx-1"].peers == {}
            nursery.cancel_scope.cancel()
