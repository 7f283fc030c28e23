"""Which node announces which address: the rule every announcer applies on its own."""

from __future__ import annotations

from typing import Any

from kubetrio.servicelb import AddressPool, choose_node, plan


def node(name: str, ready: str = "True", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def service(name: str, ip: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}},
    }


def slice_on(service_name: str, *nodes: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": ready}, "nodeName": n}
            for n in nodes
        ],
    }


NODES = [node(f"n{i}") for i in range(5)]


def test_only_ready_unexcluded_nodes_announce() -> None:
    addresses = list(AddressPool("192.0.2.0/26"))
    services = [service(f"s{i}", ip) for i, ip in enumerate(addresses)]
    nodes = [
        *NODES,
        node("down", ready="False"),
        node("unknown", ready="Unknown"),
        node("excluded", **{"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
    ]
    chosen = plan(services, nodes, [])
    assert set(chosen) == set(addresses)  # every address has exactly one announcer
    assert set(chosen.values()) == {f"n{i}" for i in range(5)}  # spread; never a bad node


def test_losing_a_node_moves_only_its_addresses() -> None:
    services = [service(f"s{i}", ip) for i, ip in enumerate(AddressPool("192.0.2.0/26"))]
    before = plan(services, NODES, [])
    after = plan(services, [n for n in NODES if n["metadata"]["name"] != "n2"], [])
    moved = {ip for ip in before if before[ip] != after[ip]}
    assert moved == {ip for ip, owner in before.items() if owner == "n2"} != set()


def test_local_policy_and_foreign_class() -> None:
    ip = next(a for a in AddressPool("192.0.2.0/26") if choose_node(a, ["n0", "n1", "n2"]) == "n0")
    local = service("local", ip, externalTrafficPolicy="Local")
    assert plan([local], NODES[:3], [slice_on("local", "n2")]) == {ip: "n2"}
    assert plan([local], NODES[:3], [slice_on("local", "n2", ready=False)]) == {}
    assert plan([local], NODES[:3], []) == {}  # no endpoint anywhere: nobody announces
    foreign = service("other", ip, loadBalancerClass="example.com/lb")
    assert plan([foreign], NODES, []) == {}
    cluster_ip = service("plain", ip, type="ClusterIP")
    assert plan([cluster_ip], NODES, []) == {}
