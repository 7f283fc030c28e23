"""Calico-style pod wiring of plugins/cni_calico: IPAM, and a real netns as root."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetrio_cni_calico.ipam import BlockAllocator, BlockExhausted
from kubetrio_cni_calico.veth import CalicoNetwork, host_veth_name

from kubetrio.netns import IP_COMMANDS_ENV


def test_block_allocator_reuses_and_releases() -> None:
    ipam = BlockAllocator("10.244.3.0/30")  # two usable host addresses
    a = ipam.allocate("c1")
    assert ipam.allocate("c1") == a
    b = ipam.allocate("c2")
    assert {str(a), str(b)} == {"10.244.3.1", "10.244.3.2"}
    with pytest.raises(BlockExhausted):
        ipam.allocate("c3")
    assert ipam.release("c1") == a
    assert ipam.allocate("c3") == a
    assert ipam.release("unknown") is None


def test_block_allocator_adopts_addresses_in_use() -> None:
    ipam = BlockAllocator("10.244.3.0/29")
    ipam.adopt("cali0", ipaddress.IPv4Address("10.244.3.1"))
    ipam.adopt("cali9", ipaddress.IPv4Address("10.9.9.9"))  # not ours: ignored
    assert ipam.allocate("new") == ipaddress.IPv4Address("10.244.3.2")
    assert ipam.in_use() == {
        "cali0": ipaddress.IPv4Address("10.244.3.1"),
        "new": ipaddress.IPv4Address("10.244.3.2"),
    }


def test_host_veth_name_fits_the_kernel_limit() -> None:
    name = host_veth_name("a" * 64)
    assert name.startswith("cali") and len(name) == 15
    assert host_veth_name("x") != host_veth_name("y")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/var/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_pod_gets_routed_address_reachable_from_host(netns: str) -> None:
    # 10.244.250.0/29 is reserved for this test; the route is removed with the veth.
    network = CalicoNetwork("10.244.250.0/29")
    container = uuid.uuid4().hex
    result = await network.add(pod={}, netns_path=netns, container_id=container)
    try:
        [ip] = result.ips
        ns = os.path.basename(netns)
        addr = subprocess.run(
            ["ip", "-n", ns, "-4", "addr", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"{ip}/32" in addr.stdout
        routes = subprocess.run(
            ["ip", "-n", ns, "route"], capture_output=True, text=True, check=True
        )
        assert "default via 169.254.1.1 dev eth0" in routes.stdout
        ping = subprocess.run(["ping", "-c", "1", "-W", "2", ip], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # Idempotent: a second add converges to the same state and address.
        again = await network.add(pod={}, netns_path=netns, container_id=container)
        assert again.ips == [ip]
    finally:
        await network.delete(pod={}, netns_path=netns, container_id=container)
    links = subprocess.run(["ip", "link", "show", host_veth_name(container)], capture_output=True)
    assert links.returncode != 0
    assert network.ipam.in_use() == {}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_restarted_plugin_does_not_reuse_live_addresses(netns: str) -> None:
    first = CalicoNetwork("10.244.250.8/29")
    container = uuid.uuid4().hex
    wired = await first.add(pod={}, netns_path=netns, container_id=container)
    try:
        restarted = CalicoNetwork("10.244.250.8/29")  # an agent restart: memory is empty
        other = f"/var/run/netns/kt-other-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", os.path.basename(other)], check=True)
        try:
            second = await restarted.add(pod={}, netns_path=other, container_id="c2")
            assert second.ips != wired.ips
            await restarted.delete(pod={}, netns_path=other, container_id="c2")
        finally:
            subprocess.run(["ip", "netns", "del", os.path.basename(other)], check=False)
        # The adopted pod is released by the restarted plugin too.
        await restarted.delete(pod={}, netns_path=netns, container_id=container)
        assert restarted.ipam.in_use() == {}
    finally:
        await first.delete(pod={}, netns_path=netns, container_id=container)


def _ip_json(netns: str | None, *args: str) -> Any:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return json.loads(
        subprocess.run([*prefix, "-j", *args], capture_output=True, check=True).stdout
    )


def _wiring(netns: str, host: str, address: str) -> dict[str, Any]:
    """What a pod's wiring left in the kernel, without per-run names and indexes."""
    ns = os.path.basename(netns)
    pod_links = {
        link["ifname"]: (link["mtu"], "UP" in link["flags"], link.get("link_type"))
        for link in _ip_json(ns, "link", "show")
    }
    pod_addresses = [
        (link["ifname"], a["local"], a["prefixlen"])
        for link in _ip_json(ns, "-4", "addr", "show")
        for a in link["addr_info"]
    ]
    pod_routes = _ip_json(ns, "-4", "route", "show")
    [host_link] = _ip_json(None, "link", "show", host)
    host_routes = [
        {k: v for k, v in r.items() if k != "dev"} | {"dev_is_host": r["dev"] == host}
        for r in _ip_json(None, "-4", "route", "show", f"{address}/32")
    ]
    sysctls = {
        path: Path(f"/proc/sys/net/ipv4/{path.format(host)}").read_text().strip()
        for path in ("conf/{}/forwarding", "conf/{}/proxy_arp", "neigh/{}/proxy_delay")
    }
    return {
        "pod_links": pod_links,
        "pod_addresses": pod_addresses,
        "pod_routes": pod_routes,
        "host_link": (host_link["mtu"], "UP" in host_link["flags"], host_link["link_type"]),
        "host_routes": host_routes,
        "sysctls": sysctls,
    }


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    names = [f"kt-test-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/var/run/netns/{names[0]}", f"/var/run/netns/{names[1]}"
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_netlink_wiring_matches_what_ip_commands_made(
    netns_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pods wired in-process (netlink) and by ``ip`` processes (the code before, kept as
    the benchmarks' baseline) end up with the same links, addresses, routes and sysctls."""
    network = CalicoNetwork("10.244.250.16/29", mtu=1450)
    by_netlink, by_ip = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        first = await network.add(pod={}, netns_path=netns_pair[0], container_id=by_netlink)
        monkeypatch.setenv(IP_COMMANDS_ENV, "1")
        second = await network.add(pod={}, netns_path=netns_pair[1], container_id=by_ip)
        monkeypatch.delenv(IP_COMMANDS_ENV)
        netlink = _wiring(netns_pair[0], host_veth_name(by_netlink), first.ips[0])
        ip = _wiring(netns_pair[1], host_veth_name(by_ip), second.ips[0])
        assert netlink["pod_addresses"] == [("lo", "127.0.0.1", 8), ("eth0", first.ips[0], 32)]
        assert netlink["pod_links"]["eth0"] == (1450, True, "ether")
        assert netlink["host_link"] == (1450, True, "ether")
        assert set(netlink["sysctls"].values()) == {"1", "0"}
        ip["pod_addresses"][1] = ("eth0", first.ips[0], 32)  # the one part that differs
        for route in ip["host_routes"]:
            route["dst"] = first.ips[0]
        assert netlink == ip
    finally:
        await network.delete(pod={}, netns_path=netns_pair[0], container_id=by_netlink)
        await network.delete(pod={}, netns_path=netns_pair[1], container_id=by_ip)
    for container in (by_netlink, by_ip):
        shown = subprocess.run(
            ["ip", "link", "show", host_veth_name(container)], capture_output=True
        )
        assert shown.returncode != 0
    assert network.ipam.in_use() == {}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
async def test_add_converges_over_ends_left_by_a_failed_attempt(
    netns_pair: tuple[str, str],
) -> None:
    """A host end left from an attempt whose pod end sits in another namespace, and a
    stray ``eth0`` (of a veth pair inside the pod's): the add replaces both and wires
    the pod."""
    network = CalicoNetwork("10.244.250.24/29")
    container = uuid.uuid4().hex
    host = host_veth_name(container)
    pod_ns, elsewhere = (os.path.basename(p) for p in netns_pair)
    subprocess.run(
        ["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", elsewhere],
        check=True,
    )
    subprocess.run(
        ["ip", "-n", pod_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "stray0"],
        check=True,
    )
    try:
        result = await network.add(pod={}, netns_path=netns_pair[0], container_id=container)
        [eth0] = _ip_json(pod_ns, "-d", "addr", "show", "eth0")
        assert eth0["linkinfo"]["info_kind"] == "veth"
        assert "link_netnsid" in eth0  # its peer is the host end, not the stray pair's
        assert {link["ifname"] for link in _ip_json(pod_ns, "link", "show")} == {"lo", "eth0"}
        assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == result.ips
        assert _ip_json(elsewhere, "link", "show", "type", "veth") == []
        ping = subprocess.run(
            ["ping", "-c", "1", "-W", "2", result.ips[0]], capture_output=True, text=True
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        await network.delete(pod={}, netns_path=netns_pair[0], container_id=container)
    assert subprocess.run(["ip", "link", "show", host], capture_output=True).returncode != 0
