"""Per-node blocks claimed through IPAMBlock objects; allocations kept in them."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from kubetrio_cni_calico.blocks import (
    API_VERSION,
    PLURAL,
    BlockClaims,
    BlockGC,
    BlockTaken,
    PoolExhausted,
)
from kubetrio_cni_calico.pools import Pool
from kubetrio_cni_calico.veth import CalicoNetwork, host_veth_name

from kubetrio import plugins
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client
from kubetrio.store import open_store

POOL = "10.244.254.64/26"  # test-only: four /28 blocks


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """An in-process API server that serves the plugin's kinds."""
    manager = plugins.load(only=["cni_calico"])
    async with (
        open_store(f"sqlite://{tmp_path}/store.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        yield Client.in_process(running.api)


async def test_racing_nodes_claim_distinct_blocks(client: Client) -> None:
    claimed: dict[str, str] = {}

    async def claim(node: str) -> None:
        block = await BlockClaims(client, node, pool=POOL, block_size=28).claim()
        claimed[node] = block["spec"]["cidr"]

    async with trio.open_nursery() as nursery:
        for index in range(4):
            nursery.start_soon(claim, f"node-{index}")
    assert sorted(claimed.values()) == [
        "10.244.254.112/28",
        "10.244.254.64/28",
        "10.244.254.80/28",
        "10.244.254.96/28",
    ]
    # A node asking again gets the block it holds; a fifth finds the pool full.
    again = await BlockClaims(client, "node-2", pool=POOL, block_size=28).claim()
    assert again["spec"]["cidr"] == claimed["node-2"]
    with pytest.raises(PoolExhausted):
        await BlockClaims(client, "node-9", pool=POOL, block_size=28).claim()
    with pytest.raises(BlockTaken):
        await BlockClaims(client, "node-9").claim(claimed["node-0"])
    listed = await client.list(API_VERSION, PLURAL)
    assert {item["spec"]["node"] for item in listed["items"]} == set(claimed)


async def test_allocations_are_saved_in_the_block(client: Client) -> None:
    claims = BlockClaims(client, "node-a", pool=POOL, block_size=28)
    block = await claims.claim()
    await claims.save({"10.244.254.65": "cali1"})
    # An older copy (another writer in between) is re-read, not overwritten blindly.
    stale = dict(block)
    await claims.save({"10.244.254.65": "cali1", "10.244.254.66": "cali2"})
    claims.blocks[block["metadata"]["name"]] = stale
    await claims.save({"10.244.254.66": "cali2"})
    stored = await client.get(API_VERSION, PLURAL, block["metadata"]["name"])
    assert stored["spec"]["allocations"] == {"10.244.254.66": "cali2"}


async def test_a_full_node_claims_extra_blocks(client: Client) -> None:
    claims = BlockClaims(client, "node-a", pool=POOL, block_size=28)
    first = await claims.claim()
    rival = await BlockClaims(client, "node-b", pool=POOL, block_size=28).claim()
    extra = await claims.claim_extra()  # skips the rival's block
    assert (first["spec"]["cidr"], rival["spec"]["cidr"], extra["spec"]["cidr"]) == (
        "10.244.254.64/28",
        "10.244.254.80/28",
        "10.244.254.96/28",
    )
    assert extra["spec"]["extra"] is True and "extra" not in first["spec"]
    # Each block object keeps the allocations of its own addresses.
    await claims.save({"10.244.254.65": "cali1", "10.244.254.97": "cali2"})
    stored = {
        b["spec"]["cidr"]: b["spec"]["allocations"]
        for b in (await client.list(API_VERSION, PLURAL))["items"]
    }
    assert stored["10.244.254.64/28"] == {"10.244.254.65": "cali1"}
    assert stored["10.244.254.96/28"] == {"10.244.254.97": "cali2"}
    # A restarted agent gets its first block back and knows the extra one.
    restarted = BlockClaims(client, "node-a", pool=POOL, block_size=28)
    assert (await restarted.claim())["spec"]["cidr"] == "10.244.254.64/28"
    assert [str(c) for c in restarted.cidrs()] == ["10.244.254.64/28", "10.244.254.96/28"]
    await restarted.claim_extra()
    with pytest.raises(PoolExhausted):
        await restarted.claim_extra()


async def test_orphaned_blocks_are_released_after_the_grace_period(client: Client) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "alive"}}
    await client.create("v1", "nodes", node)
    kept = await BlockClaims(client, "alive", pool=POOL, block_size=28).claim()
    gone = await BlockClaims(client, "gone", pool=POOL, block_size=28).claim()
    busy = BlockClaims(client, "busy-but-unregistered", pool=POOL, block_size=28)
    await busy.claim()
    collectors = [BlockGC(client, grace=10), BlockGC(client, grace=10)]
    for gc in collectors:
        assert await gc.collect(0) == []
    assert await collectors[0].collect(9) == []
    await busy.save({"10.244.254.97": "cali1"})  # its agent is alive after all: new grace
    # Two collectors racing: one deletes, the other finds the block gone.
    assert await collectors[0].collect(10) == [gone["metadata"]["name"]]
    assert await collectors[1].collect(10) == []
    names = {b["metadata"]["name"] for b in (await client.list(API_VERSION, PLURAL))["items"]}
    assert names == {kept["metadata"]["name"], "10-244-254-96-28"}
    assert await collectors[0].collect(19) == []
    assert await collectors[0].collect(20) == ["10-244-254-96-28"]


async def test_a_block_released_while_away_is_taken_back(client: Client) -> None:
    claims = BlockClaims(client, "node-away", pool=POOL, block_size=28)
    block = await claims.claim()
    await client.delete(API_VERSION, PLURAL, block["metadata"]["name"])
    await claims.save({"10.244.254.65": "cali1"})
    stored = await client.get(API_VERSION, PLURAL, block["metadata"]["name"])
    assert stored["spec"]["node"] == "node-away"
    assert stored["spec"]["allocations"] == {"10.244.254.65": "cali1"}
    # Unless another node claimed it in between.
    await client.delete(API_VERSION, PLURAL, block["metadata"]["name"])
    await BlockClaims(client, "thief", pool=POOL, block_size=28).claim()
    with pytest.raises(BlockTaken):
        await claims.save({"10.244.254.66": "cali2"})


def _root_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def _routes_in(cidr: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, check=True).stdout
    net = ipaddress.IPv4Network(cidr)
    found = []
    for route in json.loads(out):
        try:
            if ipaddress.IPv4Network(route["dst"], strict=False).subnet_of(net):
                found.append(route["dst"])
        except ValueError:
            continue  # "default"
    return found


@pytest.mark.root
async def test_restart_keeps_allocations_and_drops_stale_ones(client: Client) -> None:
    _root_or_skip()
    tag = secrets.token_hex(3)
    spaces = [f"ktipam{tag}a", f"ktipam{tag}b"]
    for netns in spaces:
        subprocess.run(["ip", "netns", "add", netns], check=True)
    first = CalicoNetwork("10.0.0.0/30", pool=Pool(POOL, block_size=28))
    restarted = CalicoNetwork("10.0.0.0/30", pool=Pool(POOL, block_size=28))
    try:
        await first.claim_block(client, "node-r")
        assert str(first.ipam.block) == "10.244.254.64/28"
        wired = await first.add(
            pod={}, netns_path=f"/var/run/netns/{spaces[0]}", container_id=f"live-{tag}"
        )
        # An allocation recorded by an agent that died before wiring its pod.
        assert first.claims is not None
        in_use = {str(a): o for o, a in first.ipam.in_use().items()}
        await first.claims.save({**in_use, "10.244.254.77": "cali-gone"})

        await restarted.claim_block(client, "node-r")
        assert str(restarted.ipam.block) == "10.244.254.64/28"
        assert {str(a) for a in restarted.ipam.in_use().values()} == set(wired.ips)
        other = await restarted.add(
            pod={}, netns_path=f"/var/run/netns/{spaces[1]}", container_id=f"other-{tag}"
        )
        assert other.ips != wired.ips
        await restarted.delete(pod={}, netns_path="", container_id=f"other-{tag}")
        await restarted.delete(pod={}, netns_path="", container_id=f"live-{tag}")
    finally:
        for container in (f"live-{tag}", f"other-{tag}"):
            subprocess.run(["ip", "link", "del", host_veth_name(container)], capture_output=True)
        for netns in spaces:
            subprocess.run(["ip", "netns", "del", netns], check=False)
    assert restarted.claims is not None and restarted.claims.block is not None
    stored = await client.get(API_VERSION, PLURAL, restarted.claims.block["metadata"]["name"])
    assert stored["spec"]["allocations"] == {}
    assert _routes_in(POOL) == []


@pytest.mark.root
async def test_churn_leaks_no_addresses_or_links(client: Client) -> None:
    """500 pod create/delete cycles (the issue's bar), four at a time, in a claimed block."""
    _root_or_skip()
    network = CalicoNetwork("10.0.0.0/30", pool=Pool(POOL, block_size=28))
    await network.claim_block(client, "node-churn")
    tag = secrets.token_hex(3)
    made: list[str] = []

    async def cycle(worker: int, round_: int) -> None:
        netns = f"ktch{tag}{worker}"
        container = f"churn-{tag}-{worker}-{round_}"
        made.append(container)
        await trio.run_process(["ip", "netns", "add", netns])
        try:
            wired = await network.add(
                pod={}, netns_path=f"/var/run/netns/{netns}", container_id=container
            )
            assert ipaddress.IPv4Address(wired.ips[0]) in network.ipam.block
            await network.delete(
                pod={}, netns_path=f"/var/run/netns/{netns}", container_id=container
            )
        finally:
            await trio.run_process(["ip", "netns", "del", netns], check=False)

    async def worker(index: int) -> None:
        for round_ in range(125):
            await cycle(index, round_)

    try:
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for index in range(4):
                    nursery.start_soon(worker, index)
    finally:
        for container in made:
            subprocess.run(["ip", "link", "del", host_veth_name(container)], capture_output=True)
    assert len(made) == 500
    assert network.ipam.in_use() == {}
    assert network.claims is not None and network.claims.block is not None
    stored = await client.get(API_VERSION, PLURAL, network.claims.block["metadata"]["name"])
    assert stored["spec"]["allocations"] == {}
    assert not {host_veth_name(c) for c in made} & _links()
    assert _routes_in(str(network.ipam.block)) == []
