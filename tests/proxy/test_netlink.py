"""The two printers of typed nft commands — raw netlink and nft text through libnftables —
write the same table."""

from __future__ import annotations

import pytest

from kubetrio.nft import (
    AddChain,
    AddElements,
    AddRule,
    AddSet,
    Raw,
    Unsupported,
    Verdict,
    encode,
    remove_table,
    to_nft_text,
)
from kubetrio.proxy import (
    PROXY_TABLE,
    Nft,
    NftError,
    Renderer,
    diff_script,
    full_script,
    service_ports,
)

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
    raw = AddRule(PROXY_TABLE, "x", (Raw("tcp dport 22"), Verdict("accept")))
    with pytest.raises(Unsupported):
        encode([raw])
    interval = AddSet(PROXY_TABLE, "nets", ("ipv4_addr",), flags=("interval",))
    with pytest.raises(Unsupported):
        encode([interval])
    assert to_nft_text([raw, interval]).splitlines() == [
        "add rule ip kubetrio x tcp dport 22 accept",
        "add set ip kubetrio nets { type ipv4_addr; flags interval; }",
    ]
    encode(full_script(_fragments("nftables").values()))  # type: ignore[arg-type]  # all typed


def test_text_printer_spells_elements_and_rules() -> None:
    text = to_nft_text(full_script(_fragments("maglev").values()))  # type: ignore[arg-type]
    assert "add element ip kubetrio service-ips { 10.96.0.10 . tcp . 80 : goto lb-" in text
    assert "10.96.0.10 . tcp . 80 . 0 : 10.244.252." in text
    assert (
        "add rule ip kubetrio lb-cluster-ip-maglev-client ip saddr != 10.244.0.0/15 "
        "jump mark-for-masquerade"
    ) in text
    assert "dnat ip to ip daddr . meta l4proto . th dport . jhash ip saddr mod 251 seed 0x1" in text
    assert "add chain ip kubetrio nat-prerouting { type nat hook prerouting priority -100;" in text


@pytest.mark.root
@pytest.mark.parametrize("mode", ["nftables", "maglev"])
def test_same_ruleset_as_libnftables(topology: Topology, mode: str) -> None:
    fragments = _fragments(mode)
    commands = diff_script({}, fragments)  # type: ignore[arg-type]
    encode(commands)  # every command is encodable
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
            nft.run_sync(full_script(fragments))  # type: ignore[arg-type]
            listings.append(nft.run_sync("list table ip kubetrio"))
        finally:
            nft.close()
    by_lib, by_netlink = listings
    assert by_netlink == by_lib


@pytest.mark.root
def test_failed_netlink_batch_changes_nothing(topology: Topology) -> None:
    nft = Nft(topology.node)
    try:
        nft.run_sync(full_script(_fragments("nftables").values()))  # type: ignore[arg-type]
        before = nft.run_sync("list table ip kubetrio")
        with pytest.raises(NftError):
            # A chain is created, then an element points at a chain that does not exist.
            nft.run_sync(
                [
                    AddChain(PROXY_TABLE, "half-done"),
                    AddElements(
                        PROXY_TABLE,
                        "service-ips",
                        ("ipv4_addr", "inet_proto", "inet_service"),
                        ("verdict",),
                        ((("10.96.9.9", "tcp", 80), Verdict("goto", "missing")),),
                    ),
                ]
            )
        assert nft.run_sync("list table ip kubetrio") == before
        nft.run_sync([AddChain(PROXY_TABLE, "fine")])  # the socket still works afterwards
    finally:
        nft.run_sync(remove_table(PROXY_TABLE))
        nft.close()
