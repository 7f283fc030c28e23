"""IP pools: the stored pool decides blocks, mode and MTU; the plugin's settings only seed it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.blocks import API_VERSION
from kubetrio_cni_calico.ipip import IpipRoutes
from kubetrio_cni_calico.pools import DEFAULT_NAME, MODE_MTU, PLURAL, Pool, ensure_pool
from kubetrio_cni_calico.veth import CalicoNetwork
from kubetrio_cni_calico.vxlan import VxlanRoutes

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.store import open_store

POOL = "10.244.254.160/27"  # test-only


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """An in-process API server that serves the plugin's kinds."""
    manager = plugins.load(only=["cni_calico"])
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        yield Client.in_process(running.api)


def test_pool_defaults_and_mtu_per_mode() -> None:
    default = Pool.from_settings({})
    assert (default.cidr, default.block_size, default.mode) == ("10.244.0.0/16", 26, "vxlan")
    assert default.pod_mtu == 1450
    assert MODE_MTU == {"vxlan": 1450, "ipip": 1480, "bgp": 1500}
    assert Pool.from_settings({"mode": "ipip"}).pod_mtu == 1480
    assert Pool.from_settings({"mode": "bgp", "mtu": 9000}).pod_mtu == 9000
    with pytest.raises(ValueError, match="mode"):
        Pool(mode="gre")
    with pytest.raises(ValueError, match="block size"):
        Pool("10.244.0.0/16", block_size=12)
    stored = Pool(POOL, block_size=29, mode="bgp", mtu=1400)
    assert Pool.from_object(stored.to_object()) == stored


def test_plugin_settings_describe_the_default_pool() -> None:
    def network(settings: dict[str, object]) -> CalicoNetwork:
        manager = plugins.load(only=["cni_calico"])
        manager.configure(config={"network": settings})
        [found] = [r.provider for r in manager.network_plugins() if r.provider.name == "calico"]
        assert isinstance(found, CalicoNetwork)
        return found

    plain = network({})
    assert plain.pool == Pool() and plain.mode == "vxlan" and plain.mtu == 1450
    ipip = network({"mode": "ipip", "pool": POOL, "blockSize": 28, "underlayAddress": "10.1.1.1"})
    assert ipip.pool == Pool(POOL, block_size=28, mode="ipip") and ipip.mtu == 1480
    assert ipip.underlay_ip == "10.1.1.1"
    # A hand-placed node: its block, no pool, no routing unless asked.
    placed = network({"block": "10.244.254.0/26"})
    assert placed.pool is None and placed.mode == "" and placed.mtu == 1500
    assert network({"block": "10.244.254.0/26", "mode": "ipip"}).mtu == 1480


async def test_first_node_creates_the_pool_others_follow_it(client: Client) -> None:
    ipip = Pool(POOL, block_size=28, mode="ipip")
    created: list[Pool] = []

    async def join(configured: Pool) -> None:
        created.append(await ensure_pool(client, configured))

    # Two agents racing with different settings: one create wins, both use its pool.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(join, ipip)
        nursery.start_soon(join, Pool())
    assert created[0] == created[1]
    stored = await client.get(API_VERSION, PLURAL, DEFAULT_NAME)
    assert Pool.from_object(stored) == created[0]
    # An agent that joins with no network settings follows the stored pool.
    assert await ensure_pool(client, Pool.from_settings({})) == created[0]


async def test_node_follows_the_stored_pool(client: Client) -> None:
    await ensure_pool(client, Pool(POOL, block_size=28, mode="ipip"))
    network = CalicoNetwork("10.0.0.0/30", pool=Pool())  # configured with the defaults
    await network.claim_block(client, "pool-node")
    assert network.mode == "ipip" and network.mtu == 1480
    assert [str(b) for b in network.ipam.blocks] == ["10.244.254.160/28"]
    assert isinstance(network.route_agent(client, "pool-node"), IpipRoutes)
    network.mode = "vxlan"
    assert isinstance(network.route_agent(client, "pool-node"), VxlanRoutes)
    network.mode = ""
    assert network.route_agent(client, "pool-node") is None


async def test_without_pool_kinds_the_configured_pool_is_used(tmp_path: Path) -> None:
    async with (
        open_store(f"sqlite://{tmp_path}/bare.db") as store,
        open_apiserver(store) as running,  # serves no plugin kinds
    ):
        client = Client.in_process(running.api)
        configured = Pool(POOL, block_size=28, mode="ipip")
        assert await ensure_pool(client, configured) == configured
