"""LoadBalancer addresses from the underlay: two nodes, one client, one L2 segment.

Topology (root; every namespace gets a random suffix and is deleted afterwards)::

    underlay netns: bridge br0
      ├─ veth ── node-a netns  eth0 172.31.253.1/24  proxy, announcer
      │            └─ veth (proxy ARP) ── pod-a 10.244.253.2/32   httpd "pod-a"
      ├─ veth ── node-b netns  eth0 172.31.253.2/24  proxy, announcer
      │            └─ veth (proxy ARP) ── pod-b 10.244.253.66/32  httpd "pod-b"
      └─ veth ── client netns  eth0 172.31.253.100/24 (no route to pods or Services)

The allocator hands out addresses of 172.31.253.240/29; the client reaches them only
because the announcing node answers ARP for them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.client import Client
from kubetrio.netns import in_netns
from kubetrio.proxy import ServiceProxy
from kubetrio.servicelb import AddressPool, ServiceLBAnnouncer, choose_node, garp_frame
from tests.kit import serve_http_in, wait_for
from tests.kit import sh as run

from .conftest import lb_service, running_manager

POOL = "172.31.253.240/29"
NODES = {"node-a": ("172.31.253.1", "10.244.253.2"), "node-b": ("172.31.253.2", "10.244.253.66")}
CLIENT_IP = "172.31.253.100"


def sh(*args: str) -> str:
    """A command's output (it must succeed)."""
    return run(*args).stdout


@dataclass
class Lab:
    client: str
    nodes: dict[str, str] = field(default_factory=dict)
    """node name → its netns"""
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def mac(self, node: str) -> str:
        """The MAC of the node's underlay interface."""
        [link] = json.loads(sh("ip", "-n", self.nodes[node], "-j", "link", "show", "eth0"))
        return str(link["address"])

    def holds(self, node: str) -> set[str]:
        """The /32 addresses labelled ``eth0:lb`` on the node's underlay interface."""
        [link] = json.loads(sh("ip", "-n", self.nodes[node], "-j", "-4", "addr", "show", "eth0"))
        return {a["local"] for a in link["addr_info"] if a.get("label") == "eth0:lb"}

    def client_neighbour(self, ip: str) -> str | None:
        """The MAC the client's ARP cache holds for ``ip``."""
        entries = json.loads(sh("ip", "-n", self.client, "-j", "neigh", "show", ip))
        return entries[0].get("lladdr") if entries else None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("needs root (network namespaces, nftables) and busybox")
    tag = secrets.token_hex(2)
    underlay = f"ktslu{tag}"
    topo = Lab(client=f"ktslc{tag}")
    made = [underlay]
    try:
        sh("ip", "netns", "add", underlay)
        sh("ip", "-n", underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", underlay, "link", "set", "br0", "up")
        hosts = {
            name: (f"ktsln{tag}{i}", address)
            for i, (name, (address, _)) in enumerate(NODES.items())
        }
        hosts["client"] = (topo.client, CLIENT_IP)
        for index, (name, (netns, address)) in enumerate(hosts.items()):
            made.append(netns)
            sh("ip", "netns", "add", netns)
            sh("ip", "-n", netns, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name",
               f"u{index}", "netns", underlay)  # fmt: skip
            sh("ip", "-n", underlay, "link", "set", f"u{index}", "master", "br0", "up")
            sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", netns, "link", "set", "eth0", "up")
            if name != "client":
                topo.nodes[name] = netns
        for index, (name, (_, pod_ip)) in enumerate(NODES.items()):
            node, pod = topo.nodes[name], f"ktslp{tag}{index}"
            made.append(pod)
            sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # Proxy ARP answers for the pods' gateway only if it routes out elsewhere.
            sh("ip", "-n", node, "route", "add", "default", "dev", "eth0")
            sh("ip", "netns", "add", pod)
            sh("ip", "-n", pod, "link", "set", "lo", "up")
            sh("ip", "link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", "cali0",
               "netns", node)  # fmt: skip
            sh("ip", "-n", pod, "addr", "add", f"{pod_ip}/32", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "up")
            sh("ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            sh("ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.conf.cali0.proxy_arp=1")
            sh("ip", "-n", node, "link", "set", "cali0", "up")
            sh("ip", "-n", node, "route", "add", f"{pod_ip}/32", "dev", "cali0")
            topo.servers.append(serve_http_in(pod, tmp_path / name, f"pod-{name[-1]}"))
        # Each node routes to the other node's pod over the underlay.
        for name, node in topo.nodes.items():
            for other, (other_ip, pod_ip) in NODES.items():
                if other != name:
                    sh("ip", "-n", node, "route", "add", f"{pod_ip}/32", "via", other_ip)
        yield topo
    finally:
        for server in topo.servers:
            server.kill()
            server.wait()
        for netns in made:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def http_get(netns: str, ip: str) -> str:
    """GET http://ip/ from inside ``netns``: the body, or ``!error``."""

    def call() -> str:
        try:
            with urllib.request.urlopen(f"http://{ip}/", timeout=1) as response:
                return str(response.read().decode().strip())
        except OSError as exc:
            return f"!{exc}"

    return in_netns(netns, call)


async def get(netns: str, ip: str) -> str:
    return await trio.to_thread.run_sync(http_get, netns, ip)


async def set_ready(client: Client, node: str, ready: bool) -> None:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    await client.patch(
        "v1", "nodes", node, {"status": {"conditions": [condition]}}, subresource="status"
    )


async def create_nodes(client: Client) -> None:
    for name, (address, _) in NODES.items():
        await client.create(
            "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        )
        await client.patch(
            "v1",
            "nodes",
            name,
            {"status": {"addresses": [{"type": "InternalIP", "address": address}]}},
            subresource="status",
        )
        await set_ready(client, name, True)


def endpoint_slice(service: str, nodes: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-manual",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [NODES[n][1]], "conditions": {"ready": True}, "nodeName": n}
            for n in nodes
        ],
    }


async def load_balancer(client: Client, name: str, nodes: list[str], **spec: Any) -> str:
    """A LoadBalancer Service with endpoints on ``nodes``; its allocated address."""
    await client.create("v1", "services", lb_service(name, **spec), namespace="default")
    await client.create(
        "discovery.k8s.io/v1", "endpointslices", endpoint_slice(name, nodes), namespace="default"
    )

    async def address() -> str | None:
        service = await client.get("v1", "services", name, namespace="default")
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return ingress[0]["ip"] if ingress else None

    found: str = await wait_for(address)
    return found


@pytest.fixture
async def nodes(lab: Lab, client: Client) -> AsyncIterator[dict[str, ServiceLBAnnouncer]]:
    """The allocator, and on each node the service proxy and the announcer."""
    await create_nodes(client)
    async with running_manager(client, POOL), trio.open_nursery() as nursery:
        announcers = {}
        for name, netns in lab.nodes.items():
            await nursery.start(ServiceProxy(client, node_name=name, netns=netns).run)
            announcers[name] = ServiceLBAnnouncer(client, name, netns=netns, resync_interval=5)
            await nursery.start(announcers[name].run)
        yield announcers
        nursery.cancel_scope.cancel()
    for name in lab.nodes:
        assert lab.holds(name) == set()  # every announced address removed on stop


def test_garp_frame() -> None:
    frame = garp_frame(bytes.fromhex("020000000001"), "192.0.2.7")
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06"
    sender, target = frame[28:32], frame[38:42]
    assert sender == target == bytes([192, 0, 2, 7])  # gratuitous: asks for its own address
    assert frame[20:22] == b"\x00\x01"  # a request, as arping -U sends


@pytest.mark.root
async def test_address_from_the_underlay_and_failover(
    lab: Lab, client: Client, nodes: dict[str, ServiceLBAnnouncer]
) -> None:
    with trio.fail_after(60):
        ip = await load_balancer(client, "web", ["node-a", "node-b"])
        assert ip in AddressPool(POOL)
        first = choose_node(ip, NODES)
        assert first is not None
        second = next(n for n in NODES if n != first)
        await wait_for(lambda: trio.to_thread.run_sync(lambda: lab.holds(first) == {ip}))
        assert lab.holds(second) == set()  # exactly one node announces it

        answers = {await get(lab.client, ip) for _ in range(12)}
        assert answers == {"pod-a", "pod-b"}, answers  # Cluster policy: both backends
        assert lab.client_neighbour(ip) == lab.mac(first)  # ARP answered by the chosen node
        # The node's own connections: the address is local there, the output DNAT wins.
        for node in NODES:
            assert await get(lab.nodes[node], ip) in ("pod-a", "pod-b")

        # The announcing node becomes NotReady: the other takes over, and its gratuitous
        # ARP moves the client's cache entry before the client sends anything.
        await set_ready(client, first, False)
        await wait_for(
            lambda: trio.to_thread.run_sync(lambda: lab.client_neighbour(ip) == lab.mac(second))
        )
        assert lab.holds(first) == set() and lab.holds(second) == {ip}
        assert await get(lab.client, ip) in ("pod-a", "pod-b")

        # Back to Ready: the address returns to its first choice; then deleting that
        # Node moves it again.
        await set_ready(client, first, True)
        await wait_for(
            lambda: trio.to_thread.run_sync(lambda: lab.client_neighbour(ip) == lab.mac(first))
        )
        await client.delete("v1", "nodes", first)
        await wait_for(
            lambda: trio.to_thread.run_sync(lambda: lab.client_neighbour(ip) == lab.mac(second))
        )
        assert lab.holds(first) == set()
        assert await get(lab.client, ip) in ("pod-a", "pod-b")

        # The Service goes: so does the address.
        await client.delete("v1", "services", "web", namespace="default")
        await wait_for(lambda: trio.to_thread.run_sync(lambda: not lab.holds(second)))
        assert (await get(lab.client, ip)).startswith("!")


@pytest.mark.root
async def test_local_policy_announces_from_a_node_with_an_endpoint(
    lab: Lab, client: Client, nodes: dict[str, ServiceLBAnnouncer]
) -> None:
    # An address the hash gives to node-a, for a Service whose only endpoint is on node-b.
    ip = next(a for a in AddressPool(POOL) if choose_node(a, NODES) == "node-a")
    with trio.fail_after(60):
        assigned = await load_balancer(
            client, "local", ["node-b"], externalTrafficPolicy="Local", loadBalancerIP=ip
        )
        assert assigned == ip
        await wait_for(lambda: trio.to_thread.run_sync(lambda: lab.holds("node-b") == {ip}))
        assert lab.holds("node-a") == set()
        assert {await get(lab.client, ip) for _ in range(6)} == {"pod-b"}
        assert lab.client_neighbour(ip) == lab.mac("node-b")


@pytest.mark.root
async def test_remove_clears_leftovers(lab: Lab, client: Client) -> None:
    """An address left by an announcer that died is removed by the next one's ``remove``."""
    await create_nodes(client)
    netns = lab.nodes["node-a"]
    sh("ip", "-n", netns, "addr", "add", "172.31.253.247/32", "dev", "eth0", "label", "eth0:lb")
    sh("ip", "-n", netns, "addr", "add", "172.31.253.246/32", "dev", "eth0")  # not ours
    announcer = ServiceLBAnnouncer(client, "node-a", netns=netns)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(announcer.run)  # nothing to announce: the first pass removes it
            assert lab.holds("node-a") == set()
            nursery.cancel_scope.cancel()
    shown = sh("ip", "-n", netns, "-4", "addr", "show", "eth0")
    assert "172.31.253.246/32" in shown and "172.31.253.247" not in shown


@pytest.mark.root
async def test_given_interface_with_a_name_too_long_for_a_label(lab: Lab, client: Client) -> None:
    """``interface=`` wins over the InternalIP's; ``<name>:lb`` does not fit: tracked in memory."""
    netns, long = lab.nodes["node-a"], "underlay-long0"
    sh("ip", "-n", netns, "link", "add", long, "type", "veth", "peer", "name", "ulpeer")
    sh("ip", "-n", netns, "link", "set", long, "up")
    sh("ip", "-n", netns, "addr", "add", "172.31.253.246/32", "dev", long)  # not ours
    await create_nodes(client)
    await set_ready(client, "node-b", False)  # node-a is the only candidate

    def on_long() -> set[str]:
        [link] = json.loads(sh("ip", "-n", netns, "-j", "-4", "addr", "show", long))
        return {a["local"] for a in link["addr_info"]}

    with trio.fail_after(30):
        async with running_manager(client, POOL), trio.open_nursery() as nursery:
            announcer = ServiceLBAnnouncer(client, "node-a", interface=long, netns=netns)
            await nursery.start(announcer.run)
            ip = await load_balancer(client, "web", ["node-a"])
            await wait_for(lambda: trio.to_thread.run_sync(lambda: ip in on_long()))
            assert lab.holds("node-a") == set()  # nothing on the InternalIP's interface
            await client.delete("v1", "services", "web", namespace="default")
            await wait_for(lambda: trio.to_thread.run_sync(lambda: ip not in on_long()))
            second = await load_balancer(client, "again", ["node-a"])
            await wait_for(lambda: trio.to_thread.run_sync(lambda: second in on_long()))
            nursery.cancel_scope.cancel()
    assert on_long() == {"172.31.253.246"}  # ours removed on stop, the other one kept
