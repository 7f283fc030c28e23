"""The raw netlink encoder writes what libnftables writes for the same commands."""

from __future__ import annotations

import pytest

from kubetrio.proxy import (
    Nft,
    NftError,
    Renderer,
    diff_script,
    full_script,
    service_ports,
)
from kubetrio.proxy._netlink import Unsupported, encode_commands

from .conftest import Topology
from .test_nftables import NODE, endpoint_slice, service


def _fragments(mode: str) -> dict[str, object]:
    sticky = service("web", "10.96.0.10", type="NodePort", sessionAffinity="ClientIP")
    sticky["spec"]["ports"][0]["nodePort"] = 30080
    local = service("x", "10.96.0.11", type="NodePort", externalTrafficPolicy="Local")
    local["spec"]["ports"][0]["nodePort"] = 30081
    empty = service("none", "10.96.0.12")
    slice_x = endpoint_slice("x", ["10.244.252.3", "10.244.252.4"])
    slice_x["endpoints"][1]["nodeName"] = "elsewhere"
    renderer = Renderer(node_name=NODE, mode=mode, cluster_cidr="10.244.0.0/15")
    ips = ["10.244.252.3", "10.244.252.4", "10.244.252.5"]
    return {
        "web": renderer.render(service_ports(sticky, [endpoint_slice("web", ips)])),
        "x": renderer.render(service_ports(local, [slice_x])),
        "none": renderer.render(service_ports(empty, [])),
    }


def test_unknown_shapes_fall_back() -> None:
    with pytest.raises(Unsupported):
        encode_commands(["add rule ip kubetrio x tcp dport 22 accept"])
    with pytest.raises(Unsupported):
        encode_commands(full_script([]))


@pytest.mark.root
@pytest.mark.parametrize("mode", ["nftables", "maglev"])
def test_same_ruleset_as_libnftables(topology: Topology, mode: str) -> None:
    fragments = _fragments(mode)
    commands = diff_script({}, fragments)  # type: ignore[arg-type]
    encode_commands(commands)  # every command is encodable
    listings = []
    for netlink in (False, True):
        nft = Nft(topology.node, netlink=netlink)
        try:
            if netlink:
                nft.run_sync(full_script([]))
                nft.run_sync(commands)
            else:
                # nft 1.0.6 cannot add a rule using the endpoint maps once they come from
                # the kernel ("conflicting protocols specified: ip vs. th" evaluating
                # their typeof), so libnftables gets the base and the diff in one go.
                nft.run_sync([*full_script([]), *commands])
            listings.append(nft.run_sync("list table ip kubetrio"))
        finally:
            nft.close()
    by_lib, by_netlink = listings
    assert "dnat ip to" in by_netlink and "@service-endpoints" in by_netlink
    assert by_netlink == by_lib


@pytest.mark.root
@pytest.mark.parametrize("mode", ["nftables", "maglev"])
def test_full_sync_same_as_libnftables(topology: Topology, mode: str) -> None:
    fragments = list(_fragments(mode).values())
    listings = []
    for netlink in (False, True):
        nft = Nft(topology.node, netlink=netlink)
        try:
            nft.replace_sync(fragments)  # type: ignore[arg-type]
            listings.append(nft.run_sync("list table ip kubetrio"))
        finally:
            nft.close()
    by_lib, by_netlink = listings
    assert by_netlink == by_lib


@pytest.mark.root
def test_failed_netlink_batch_changes_nothing(topology: Topology) -> None:
    nft = Nft(topology.node)
    try:
        nft.replace_sync(list(_fragments("nftables").values()))  # type: ignore[arg-type]
        before = nft.run_sync("list table ip kubetrio")
        with pytest.raises(NftError):
            # A chain is created, then an element points at a chain that does not exist.
            nft.run_sync(
                [
                    "add chain ip kubetrio half-done",
                    "add element ip kubetrio service-ips { 10.96.9.9 . tcp . 80 : goto missing }",
                ]
            )
        assert nft.run_sync("list table ip kubetrio") == before
        nft.run_sync(["add chain ip kubetrio fine"])  # the socket still works afterwards
    finally:
        nft.run_sync(["add table ip kubetrio", "delete table ip kubetrio"])
        nft.close()
