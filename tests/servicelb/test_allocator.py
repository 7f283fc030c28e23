"""The ServiceLB allocator against a real in-process API server."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kubetrio.client import Client
from kubetrio.servicelb import AddressPool, ingress_ips
from tests.kit import wait_for

from .conftest import lb_service, running_manager

POOL = "10.77.0.10-10.77.0.12"


async def create(client: Client, name: str, **spec: Any) -> None:
    await client.create("v1", "services", lb_service(name, **spec), namespace="default")


async def ips(client: Client, name: str) -> list[str]:
    return ingress_ips(await client.get("v1", "services", name, namespace="default"))


async def assigned(client: Client, name: str) -> str:
    """Wait for the Service's one address."""

    async def one() -> str | None:
        found = await ips(client, name)
        return found[0] if len(found) == 1 else None

    address: str = await wait_for(one)
    return address


async def event(client: Client, service: str, reason: str) -> dict[str, Any]:
    """Wait for an Event of ``reason`` about ``service``."""

    async def find() -> dict[str, Any] | None:
        events = await client.list("v1", "events", namespace="default")
        for item in events["items"]:
            if item["involvedObject"]["name"] == service and item["reason"] == reason:
                return item  # type: ignore[no-any-return]
        return None

    found: dict[str, Any] = await wait_for(find)
    return found


def test_pool_parsing() -> None:
    pool = AddressPool("192.168.1.240/30, 10.0.0.5-10.0.0.6")
    assert list(pool) == [
        "10.0.0.5", "10.0.0.6", "192.168.1.240", "192.168.1.241", "192.168.1.242", "192.168.1.243",
    ]  # fmt: skip
    assert len(pool) == 6 and "10.0.0.6" in pool and "10.0.0.7" not in pool
    assert "not an address" not in pool
    assert pool.first_free({"10.0.0.5": "a"}) == "10.0.0.6"
    assert AddressPool("10.0.0.1/32").first_free({"10.0.0.1": "a"}) is None
    for bad in ("10.0.0.9-10.0.0.1", "fd00::/64", "nonsense"):
        with pytest.raises(ValueError):
            AddressPool(bad)


async def test_allocation_exhaustion_release_and_reuse(client: Client) -> None:
    async with running_manager(client, POOL):
        for name in ("a", "b", "c"):
            await create(client, name)
        got = {name: await assigned(client, name) for name in ("a", "b", "c")}
        assert sorted(got.values()) == ["10.77.0.10", "10.77.0.11", "10.77.0.12"]  # none shared
        service = await client.get("v1", "services", "a", namespace="default")
        assert service["status"]["loadBalancer"]["ingress"] == [{"ip": got["a"], "ipMode": "VIP"}]
        allocated = await event(client, "a", "IPAllocated")
        assert allocated["message"] == f'Assigned IP ["{got["a"]}"]'

        await create(client, "d")  # the pool is exhausted: d stays pending, with a Warning
        failed = await event(client, "d", "AllocationFailed")
        assert failed["type"] == "Warning" and "no available IPs" in failed["message"]
        assert await ips(client, "d") == []

        await client.delete("v1", "services", "b", namespace="default")
        assert await assigned(client, "d") == got["b"]  # b's address, released and reused


async def test_requested_load_balancer_ip(client: Client) -> None:
    async with running_manager(client, POOL):
        await create(client, "wants-11", loadBalancerIP="10.77.0.11")
        assert await assigned(client, "wants-11") == "10.77.0.11"
        await create(client, "also-11", loadBalancerIP="10.77.0.11")
        taken = await event(client, "also-11", "AllocationFailed")
        assert "10.77.0.11 is already in use by default/wants-11" in taken["message"]
        await create(client, "outside", loadBalancerIP="10.99.0.1")
        outside = await event(client, "outside", "AllocationFailed")
        assert "not in the pool" in outside["message"]
        await create(client, "any")
        assert await assigned(client, "any") == "10.77.0.10"  # the requested one is skipped
        # The holder goes: the Service waiting for that very address gets it.
        await client.delete("v1", "services", "wants-11", namespace="default")
        assert await assigned(client, "also-11") == "10.77.0.11"
        assert await ips(client, "outside") == []


async def test_type_change_and_foreign_class(client: Client) -> None:
    async with running_manager(client, "10.77.0.10/32"):
        await create(client, "lb")
        assert await assigned(client, "lb") == "10.77.0.10"
        await create(client, "other-class", loadBalancerClass="example.com/other")
        await create(client, "waiting")
        await event(client, "waiting", "AllocationFailed")
        # lb stops being a LoadBalancer: its status is cleared and the address moves on.
        await client.patch(
            "v1", "services", "lb",
            {"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80}]}},
            namespace="default",
        )  # fmt: skip
        assert await assigned(client, "waiting") == "10.77.0.10"
        assert await ips(client, "lb") == []
        assert await ips(client, "other-class") == []  # another implementation's to serve


async def test_restart_rebuilds_in_use_set(client: Client) -> None:
    pool = "10.77.0.10-10.77.0.14"
    async with running_manager(client, pool):
        await create(client, "first")
        await create(client, "second")
        before = {await assigned(client, "first"), await assigned(client, "second")}
    # While no allocator runs, somebody wrote an address of the pool into a status, and
    # a younger Service copied first's address.
    await create(client, "manual")
    await create(client, "copycat")
    first_ip = await assigned(client, "first")
    for name, address in (("manual", "10.77.0.12"), ("copycat", first_ip)):
        await client.patch(
            "v1", "services", name,
            {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}},
            namespace="default", subresource="status",
        )  # fmt: skip
    async with running_manager(client, pool):
        await create(client, "third")
        names = ("first", "second", "manual", "copycat", "third")

        async def all_distinct() -> dict[str, list[str]] | None:
            held = {name: await ips(client, name) for name in names}
            flat = sorted(ip for found in held.values() for ip in found)
            return held if flat == list(AddressPool(pool)) else None  # five for five

        held = await wait_for(all_distinct)
        assert held["second"][0] in before  # nobody else claimed it: kept
        assert held["manual"] == ["10.77.0.12"]  # written by hand, in the pool: respected
        # first and copycat were created in the same second or first earlier: the older
        # (by creationTimestamp, then name) kept the address, the other got a new one.
        assert [first_ip] in (held["first"], held["copycat"])


async def test_no_pool_leaves_services_pending(client: Client) -> None:
    async with running_manager(client, None, controllers=("endpoints",)) as manager:
        assert [c.name for c in manager.controllers] == ["endpoints"]
        await create(client, "pending", selector={"app": "x"})
        # The endpoints controller has seen the Service (its slice exists); no address.
        await wait_for(
            lambda: client.list(
                "discovery.k8s.io/v1",
                "endpointslices",
                namespace="default",
                label_selector="kubernetes.io/service-name=pending",
            )
        )
        assert await ips(client, "pending") == []


async def test_concurrent_creates_never_share(client: Client) -> None:
    """Forty Services created at once for a pool of 32: 32 distinct addresses, 8 pending."""
    pool = "10.77.1.0/27"
    async with running_manager(client, pool):
        async with trio.open_nursery() as nursery:
            for index in range(40):
                nursery.start_soon(create, client, f"s{index}")

        async def settled() -> list[str] | None:
            items = (await client.list("v1", "services", namespace="default"))["items"]
            found = [ip for item in items for ip in ingress_ips(item)]
            return found if len(found) >= 32 else None

        found = await wait_for(settled)
        assert sorted(found) == sorted(AddressPool(pool))  # each address exactly once

        async def eight_pending() -> set[str] | None:
            events = (await client.list("v1", "events", namespace="default"))["items"]
            names = {
                e["involvedObject"]["name"] for e in events if e["reason"] == "AllocationFailed"
            }
            return names if len(names) >= 8 else None

        pending = await wait_for(eight_pending)
        assert len(pending) == 8
        for name in pending:
            assert await ips(client, name) == []
