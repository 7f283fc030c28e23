"""Maglev mode: flows keep their backend when another backend goes away."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kubetrio.client import Client
from kubetrio.proxy import ServiceProxy

from .conftest import Topology, http_get_many
from .test_nftables import NODE, endpoint_slice, put_slice, service

FLOWS = 240


@pytest.mark.root
async def test_removing_one_of_n_moves_about_one_nth(topology: Topology, cluster: Any) -> None:
    client: Client = cluster.client
    backends = topology.pods[1:5]
    n = len(backends)
    source_ports = list(range(41000, 41000 + FLOWS))
    with trio.fail_after(60):
        await client.create("v1", "services", service("mg", "10.96.0.20"), namespace="default")
        await put_slice(client, endpoint_slice("mg", topology.pod_ips[1:5]))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node, mode="maglev")
            await nursery.start(proxy.run)
            before = await http_get_many(topology.pods[0], "10.96.0.20", source_ports=source_ports)
            assert set(before) == set(backends), set(before)
            # The same flows again with nothing changed: every one lands where it did.
            again = await http_get_many(topology.pods[0], "10.96.0.20", source_ports=source_ports)
            assert again == before

            removed = backends[-1]
            await put_slice(client, endpoint_slice("mg", topology.pod_ips[1:4]))
            syncs = proxy.stats.incremental_syncs
            while proxy.stats.incremental_syncs == syncs:
                await trio.sleep(0.01)
            await proxy.wait_applied()
            print(f"maglev update: {proxy.stats.last_commands} nft commands, "
                  f"{proxy.stats.last_sync_seconds * 1000:.1f} ms")  # fmt: skip
            after = await http_get_many(topology.pods[0], "10.96.0.20", source_ports=source_ports)
            assert removed not in after
            moved = sum(b != a for b, a in zip(before, after, strict=True))
            needlessly = sum(b != a and b != removed for b, a in zip(before, after, strict=True))
            print(f"{moved}/{FLOWS} flows moved ({moved / FLOWS:.2%}, 1/N = {1 / n:.2%}); "
                  f"{needlessly} of them had not been on the removed backend")  # fmt: skip
            # Only the removed backend's flows must move (≈1/N); random choice would move
            # about (N-1)/N of them. Maglev's table may shift a few extra slots.
            assert moved / FLOWS < 1 / n + 0.08
            assert needlessly / FLOWS < 0.08
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_annotated_service_is_maglev_on_an_nftables_node(
    topology: Topology, cluster: Any
) -> None:
    """Under a proxy in nftables mode, a Service annotated ``kubetrio.io/proxy-mode:
    maglev`` keeps every flow on its backend (each connection ends with a reset, so
    conntrack forgets it and the rules choose again), while a plain Service in the same
    table still picks at random."""
    client: Client = cluster.client
    backends = topology.pods[1:4]
    source_ports = list(range(43000, 43000 + FLOWS // 4))
    maglev = service("mg", "10.96.0.21")
    maglev["metadata"]["annotations"] = {"kubetrio.io/proxy-mode": "maglev"}
    with trio.fail_after(60):
        for body in (maglev, service("rnd", "10.96.0.22")):
            await client.create("v1", "services", body, namespace="default")
            name = body["metadata"]["name"]
            await put_slice(client, endpoint_slice(name, topology.pod_ips[1:4]))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node, mode="nftables")
            await nursery.start(proxy.run)
            await proxy.wait_applied()
            rounds = [
                await http_get_many(topology.pods[0], ip, source_ports=source_ports)
                for ip in ("10.96.0.21", "10.96.0.21", "10.96.0.22", "10.96.0.22")
            ]
            assert all(set(answers) == set(backends) for answers in rounds), rounds
            assert rounds[0] == rounds[1]
            # Random choice: each of 60 flows keeps its backend with probability 1/3.
            assert rounds[2] != rounds[3]
            nursery.cancel_scope.cancel()
