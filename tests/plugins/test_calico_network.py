"""Calico-style pod wiring of plugins/cni_calico: IPAM, and a real netns as root."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubetrio_cni_calico.ipam import BlockAllocator, BlockExhausted
from kubetrio_cni_calico.veth import CalicoNetwork, host_veth_name


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
