"""Longest-prefix match through the Python wrapper, against a brute-force model."""

import random
from array import array
from ipaddress import IPv4Address, IPv4Network

import pytest

from kubetrio.datapath import NO_ROUTE, RouteTable


def brute(routes: dict[IPv4Network, int], addr: int) -> int | None:
    best: tuple[int, int] | None = None
    for net, value in routes.items():
        if addr & int(net.netmask) == int(net.network_address) and (
            best is None or net.prefixlen > best[0]
        ):
            best = (net.prefixlen, value)
    return None if best is None else best[1]


def test_pod_cidrs() -> None:
    t = RouteTable()
    assert t.add("10.244.1.0/24", 1) is None
    assert t.add("10.244.2.0/24", 2) is None
    assert t.add("0.0.0.0/0", 0) is None
    assert t.lookup("10.244.2.7") == 2
    assert t.lookup(IPv4Address("10.244.1.9")) == 1
    assert t.lookup("192.168.1.1") == 0
    assert t.lookup_route("10.244.2.7") == (IPv4Network("10.244.2.0/24"), 2)
    assert t.add("10.244.2.0/24", 5) == 2
    assert t.remove("10.244.2.0/24") == 5
    assert t.remove("10.244.2.0/24") is None
    assert t.lookup("10.244.2.7") == 0
    assert len(t) == 2
    assert [str(n) for n, _ in t] == ["0.0.0.0/0", "10.244.1.0/24"]
    with pytest.raises(ValueError):
        t.add("10.244.1.1/24", 1)


def test_random_routes_against_brute_force() -> None:
    rng = random.Random(1)
    t = RouteTable()
    model: dict[IPv4Network, int] = {}
    for step in range(600):
        addr = rng.randrange(4) << 24 | rng.getrandbits(24)
        net = IPv4Network((addr, rng.randrange(33)), strict=False)
        if model and rng.random() < 0.25:
            victim = rng.choice(list(model))
            assert t.remove(victim) == model.pop(victim)
        else:
            assert t.add(net, step) == model.get(net)
            model[net] = step
        probe = rng.randrange(4) << 24 | rng.getrandbits(24)
        assert t.lookup(probe) == brute(model, probe)
    addrs = array("I", [rng.randrange(4) << 24 | rng.getrandbits(24) for _ in range(2000)])
    out = array("I", bytes(4 * len(addrs)))
    t.lookup_batch(addrs, out)
    for a, o in zip(addrs, out, strict=True):
        expected = brute(model, a)
        assert o == (NO_ROUTE if expected is None else expected)
