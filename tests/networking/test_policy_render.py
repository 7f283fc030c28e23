"""Rendering NetworkPolicy into the policy table's sets and chains (no root needed)."""

from __future__ import annotations

from typing import Any

import pytest
from kubetrio_cni_calico.nft import PolicyTable
from kubetrio_cni_calico.policy import (
    EGRESS_MAP,
    INGRESS_MAP,
    NftSet,
    Ruleset,
    policy_types,
    render_policy,
)

from kubetrio.nft import Unsupported, Verdict, encode

NAMESPACES: list[dict[str, Any]] = [
    {"metadata": {"name": "a", "labels": {"team": "a"}}},
    {"metadata": {"name": "b"}},
]


def pod(
    name: str,
    ip: str,
    labels: dict[str, str],
    *,
    namespace: str = "a",
    node: str = "n1",
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}], **spec},
        "status": {"phase": "Running", "podIP": ip},
    }


def netpol(name: str, spec: dict[str, Any], namespace: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def render(pods: list[dict[str, Any]], policies: list[dict[str, Any]]) -> Ruleset:
    return render_policy(node_name="n1", pods=pods, namespaces=NAMESPACES, policies=policies)


def chain_of(ruleset: Ruleset, map_name: str, ip: str) -> tuple[str, ...]:
    [element] = [e for e in ruleset.sets[map_name].elements if e.startswith(f"{ip} ")]
    return ruleset.chains[element.split("jump ")[1]]


def test_unselected_pods_get_no_chains() -> None:
    ruleset = render([pod("x", "10.0.0.1", {"app": "x"})], [])
    assert ruleset.chains == {}
    assert ruleset.sets[INGRESS_MAP].elements == () and ruleset.isolated_pods() == 0


def test_policy_types_default_from_the_rules() -> None:
    assert policy_types(netpol("p", {"podSelector": {}})) == {"Ingress"}
    assert policy_types(netpol("p", {"podSelector": {}, "egress": [{}]})) == {"Ingress", "Egress"}
    assert policy_types(netpol("p", {"podSelector": {}, "policyTypes": ["Egress"]})) == {"Egress"}


def test_default_deny_and_named_port_of_the_selected_pod() -> None:
    web = pod("web", "10.0.0.1", {"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
    other = pod("other", "10.0.0.2", {"app": "other"}, node="n2")
    ruleset = render(
        [web, other],
        [
            netpol(
                "p",
                {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"app": "other"}}}],
                            "ports": [
                                {"port": "http"},
                                {"port": "nope"},
                                {"port": 9000, "endPort": 9010, "protocol": "UDP"},
                            ],
                        }
                    ],
                },
            )
        ],
    )
    rules = chain_of(ruleset, INGRESS_MAP, "10.0.0.1")
    [peer_set] = [name for name in ruleset.sets if name.startswith("peer-")]
    assert rules == (
        "ip saddr 10.0.0.1 return",
        f"ip saddr @{peer_set} meta l4proto tcp th dport 8080 return",
        f"ip saddr @{peer_set} meta l4proto udp th dport 9000-9010 return",
        "counter drop",
    )
    assert ruleset.sets[peer_set].elements == ("10.0.0.2",)
    # The remote pod is a peer but gets no chain: it is not this node's.
    assert len(ruleset.sets[INGRESS_MAP].elements) == 1


def test_namespace_selector_combined_and_ipblock_except() -> None:
    pods = [
        pod("t", "10.0.0.1", {"app": "t"}),
        pod("in-a", "10.0.0.2", {"role": "client"}),
        pod("in-b", "10.0.0.3", {"role": "client"}, namespace="b"),
        pod("host", "10.0.0.4", {"role": "client"}, hostNetwork=True),
    ]
    ruleset = render(
        pods,
        [
            netpol(
                "p",
                {
                    "podSelector": {},
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": "b"}
                                    },
                                    "podSelector": {"matchLabels": {"role": "client"}},
                                },
                                {
                                    "ipBlock": {
                                        "cidr": "192.168.0.0/24",
                                        "except": ["192.168.0.0/25"],
                                    }
                                },
                            ]
                        }
                    ],
                },
            )
        ],
    )
    [peer_set] = [name for name in ruleset.sets if name.startswith("peer-")]
    assert set(ruleset.sets[peer_set].elements) == {"10.0.0.3", "192.168.0.128/25"}
    # Every local pod of namespace a is selected (empty podSelector), none of b.
    assert len(ruleset.sets[INGRESS_MAP].elements) == 2


def test_egress_named_port_resolves_per_destination_pod() -> None:
    pods = [
        pod("client", "10.0.0.1", {"app": "client"}),
        pod("s1", "10.0.0.2", {"app": "s"}, ports=[{"name": "web", "containerPort": 80}]),
        pod("s2", "10.0.0.3", {"app": "s"}, ports=[{"name": "web", "containerPort": 8080}]),
        pod("s3", "10.0.0.4", {"app": "s"}),
    ]
    ruleset = render(
        pods,
        [
            netpol(
                "p",
                {
                    "podSelector": {"matchLabels": {"app": "client"}},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"podSelector": {"matchLabels": {"app": "s"}}}],
                            "ports": [{"port": "web"}],
                        }
                    ],
                },
            )
        ],
    )
    [named] = [name for name in ruleset.sets if name.startswith("nport-")]
    assert ruleset.sets[named].elements == ("10.0.0.2 . tcp . 80", "10.0.0.3 . tcp . 8080")
    assert chain_of(ruleset, EGRESS_MAP, "10.0.0.1") == (
        f"ip daddr . meta l4proto . th dport @{named} return",
        "counter drop",
    )


def test_membership_change_is_a_set_update_only() -> None:
    policies = [
        netpol(
            "p",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "c"}}}]}],
            },
        )
    ]
    web = pod("web", "10.0.0.1", {"app": "web"})
    before = render([web, pod("c1", "10.0.0.2", {"app": "c"})], policies)
    after = render(
        [web, pod("c1", "10.0.0.2", {"app": "c"}), pod("c2", "10.0.0.3", {"app": "c"})], policies
    )
    script = PolicyTable().diff_script(before, after)
    assert script.splitlines() == [
        f"flush set inet kubetrio-policy {name}" for name in after.sets if name.startswith("peer-")
    ] + [
        f"add element inet kubetrio-policy {name} {{ 10.0.0.2, 10.0.0.3 }}"
        for name in after.sets
        if name.startswith("peer-")
    ]
    assert PolicyTable().diff_script(after, after) == ""


def _verdict_map_change() -> tuple[Ruleset, Ruleset]:
    """Two rulesets whose only difference is an address more in the ingress map."""
    chains = {"in-x": ("ip saddr 10.0.0.9 return", "counter drop"), "in-y": ("counter drop",)}
    items = [(("10.0.0.1",), Verdict("jump", "in-x"))]
    before = Ruleset(chains=dict(chains))
    before.sets[INGRESS_MAP] = NftSet(("ipv4_addr",), tuple(items), data=("verdict",))
    before.sets[EGRESS_MAP] = NftSet(("ipv4_addr",), (), data=("verdict",))
    after = Ruleset(chains=dict(chains), sets=dict(before.sets))
    items.append((("10.0.0.2",), Verdict("jump", "in-y")))
    after.sets[INGRESS_MAP] = NftSet(("ipv4_addr",), tuple(items), data=("verdict",))
    return before, after


def test_verdict_map_changes_go_by_netlink_rules_by_text() -> None:
    """The policy table's commands are typed: a change of the verdict maps only is
    encodable as netlink; the policy rules (nft text) send a transaction through
    libnftables."""
    before, after = _verdict_map_change()
    table = PolicyTable()
    commands = table.diff_commands(before, after)
    assert table.diff_script(before, after).splitlines() == [
        f"flush map inet kubetrio-policy {INGRESS_MAP}",
        f"add element inet kubetrio-policy {INGRESS_MAP} "
        "{ 10.0.0.1 : jump in-x, 10.0.0.2 : jump in-y }",
    ]
    encode(commands)
    with pytest.raises(Unsupported):
        encode(table.full_commands(after))  # rules of an inet table, and nft text
