"""The nftables service proxy against real traffic between network namespaces."""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest
import trio

from kubetrio.client import Client, ClientError
from kubetrio.nft import Verdict, to_nft_text
from kubetrio.proxy import (
    MAGLEV_SLOTS,
    TABLE,
    Nft,
    NftError,
    Renderer,
    ServiceProxy,
    describe,
    full_script,
    service_ports,
)
from kubetrio.proxy import diff_script as typed_diff_script
from tests.kit import sh

from .conftest import Topology, eventually, http_get_many

NODE = "node1"


def service(name: str, cluster_ip: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80}], **spec},
    }
    return body


def endpoint_slice(
    service_name: str, ips: list[str], *, not_ready: tuple[str, ...] = (), node: str = NODE
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-test",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ip not in not_ready},
                "nodeName": node,
            }
            for ip in ips
        ],
    }


async def put_slice(client: Client, body: dict[str, Any]) -> None:
    try:
        current = await client.get(
            "discovery.k8s.io/v1", "endpointslices", body["metadata"]["name"], namespace="default"
        )
    except ClientError:
        await client.create("discovery.k8s.io/v1", "endpointslices", body, namespace="default")
        return
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.update("discovery.k8s.io/v1", "endpointslices", body, namespace="default")


# --- rendering without the kernel --------------------------------------------------------


def diff_script(*args: Any) -> list[str]:
    """The diff as nft command lines (the text printer pins the typed commands)."""
    return to_nft_text(typed_diff_script(*args)).splitlines()


def _svc_and_slice(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        service("web", "10.96.0.10"),
        endpoint_slice("web", [f"10.244.252.{i + 2}" for i in range(n)]),
    )


def test_incremental_diff_touches_only_changes() -> None:
    renderer = Renderer(node_name=NODE)
    svc, slice3 = _svc_and_slice(3)
    _, slice4 = _svc_and_slice(4)
    old = renderer.render(service_ports(svc, [slice3]))
    new = renderer.render(service_ports(svc, [slice4]))
    assert set(old.shared_chains) == {"lb-cluster-ip-3"}
    commands = diff_script({"default/web": old}, {"default/web": new}, set(old.shared_chains))
    # The one new chain is the shared chain for four endpoints; nothing else is a chain.
    assert [c for c in commands if c.startswith("add chain")] == [
        f"add chain ip {TABLE} lb-cluster-ip-4"
    ]
    slot = "10.96.0.10 . tcp . 80 . 3 : 10.244.252.5 . 80"
    assert f"add element ip {TABLE} service-endpoints {{ {slot} }}" in commands
    assert f"add element ip {TABLE} hairpin {{ 10.244.252.5 . 10.244.252.5 }}" in commands
    # Once that chain exists, the same change is one verdict and a slot.
    again = diff_script({"k": old}, {"k": new}, {"lb-cluster-ip-3", "lb-cluster-ip-4"})
    assert not any(" chain " in c or " rule " in c for c in again)
    assert diff_script({"default/web": new}, {"default/web": new}) == []
    removal = diff_script({"default/web": new}, {})
    assert any(c.startswith("delete element") and "service-ips" in c for c in removal)
    assert not any("hairpin" in c or " chain " in c for c in removal)  # shared parts stay


def test_endpoint_replaced_writes_only_data_elements() -> None:
    """A pod replaced (same count) changes data-map slots only: no rule, chain or verdict,
    so the kernel has no jump graph to re-validate at commit."""
    renderer = Renderer(node_name=NODE)
    svc, before = _svc_and_slice(3)
    after = endpoint_slice("web", ["10.244.252.2", "10.244.252.3", "10.244.252.9"])
    old = renderer.render(service_ports(svc, [before]))
    new = renderer.render(service_ports(svc, [after]))
    commands = diff_script({"k": old}, {"k": new}, set(old.shared_chains))
    key = "10.96.0.10 . tcp . 80"
    assert commands == [
        f"delete element ip {TABLE} service-endpoints {{ {key} . 2 }}",
        f"add element ip {TABLE} service-endpoints {{ {key} . 2 : 10.244.252.9 . 80 }}",
        f"add element ip {TABLE} hairpin {{ 10.244.252.9 . 10.244.252.9 }}",
    ]


def test_lb_chains_are_shared_across_services() -> None:
    renderer = Renderer(node_name=NODE)
    fragments = [
        renderer.render(
            service_ports(
                service(f"s{i}", f"10.96.1.{i}"),
                [endpoint_slice(f"s{i}", [f"10.244.{i}.{k}" for k in range(1, 11)])],
            )
        )
        for i in range(1, 50)
    ]
    assert describe(fragments)["chains"] == 1  # one lb-cluster-ip-10 for all of them
    assert all(not f.chains for f in fragments)


def test_spare_chains_cover_the_next_counts() -> None:
    renderer = Renderer(node_name=NODE)
    spare = renderer.spare_chains(["lb-cluster-ip-20", "lb-local-nodeport-3"])
    assert set(spare) == {
        *(f"lb-cluster-ip-{n}" for n in [*range(1, 17), 21]),
        *(f"lb-local-nodeport-{n}" for n in range(1, 17)),
    }
    name, rules = renderer._lb_chain("nftables", "service-ips", "cluster", 5, False)
    assert spare[name] == rules
    assert Renderer(node_name=NODE, mode="maglev").spare_chains(["lb-cluster-ip-maglev"]) == {}


def test_not_ready_and_terminating_fallback() -> None:
    svc, body = _svc_and_slice(3)
    body["endpoints"][0]["conditions"] = {"ready": False}
    (port,) = service_ports(svc, [body])
    from kubetrio.proxy._model import usable_endpoints

    assert [e.ip for e in usable_endpoints(port.endpoints)] == ["10.244.252.3", "10.244.252.4"]
    for endpoint in body["endpoints"]:
        endpoint["conditions"] = {"ready": False, "serving": True, "terminating": True}
    (port,) = service_ports(svc, [body])
    assert len(usable_endpoints(port.endpoints)) == 3  # only terminating ones: use them


def test_internal_traffic_policy_local() -> None:
    renderer = Renderer(node_name=NODE)
    svc = service("web", "10.96.0.10", internalTrafficPolicy="Local")
    body = endpoint_slice("web", ["10.244.252.2", "10.244.252.3"])
    body["endpoints"][1]["nodeName"] = "elsewhere"
    fragment = renderer.render(service_ports(svc, [body]))
    key = ("10.96.0.10", "tcp", 80)
    assert fragment.elements["service-ips"] == {key: Verdict("goto", "lb-cluster-ip-1")}
    assert fragment.elements["service-endpoints"] == {(*key, 0): ("10.244.252.2", 80)}
    # No local endpoint at all: the ClusterIP is rejected rather than sent elsewhere.
    body["endpoints"][0]["nodeName"] = "elsewhere"
    fragment = renderer.render(service_ports(svc, [body]))
    assert key in fragment.elements["no-endpoint-services"]
    assert fragment.elements.keys() == {"no-endpoint-services"}


def test_maglev_diff_moves_about_one_nth() -> None:
    renderer = Renderer(node_name=NODE, mode="maglev")
    svc, slice5 = _svc_and_slice(5)
    _, slice4 = _svc_and_slice(4)
    old = renderer.render(service_ports(svc, [slice5]))
    new = renderer.render(service_ports(svc, [slice4]))
    commands = diff_script({"k": old}, {"k": new}, set(old.shared_chains))
    changed = sum(c.startswith("add element") and "service-endpoints" in c for c in commands)
    # The removed backend held ~1/5 of 251 slots; Maglev moves little more than those.
    assert 40 <= changed <= 70, changed
    # The slot count does not depend on the backends: only data elements change.
    assert not any(" chain " in c or " rule " in c or "service-ips" in c for c in commands)


def _annotated(svc: dict[str, Any], mode: str) -> dict[str, Any]:
    svc["metadata"]["annotations"] = {"kubetrio.io/proxy-mode": mode}
    return svc


@pytest.mark.parametrize("node_mode", ["nftables", "maglev"])
def test_service_annotation_overrides_the_node_mode(node_mode: str) -> None:
    """A Service's ``kubetrio.io/proxy-mode`` picks its ``lb-`` chain and slot count; the
    others keep the node's mode, and both kinds sit in one table."""
    other = "maglev" if node_mode == "nftables" else "nftables"
    renderer = Renderer(node_name=NODE, mode=node_mode)
    svc, slice3 = _svc_and_slice(3)
    plain = renderer.render(service_ports(svc, [slice3]))
    chosen = renderer.render(service_ports(_annotated(svc, other), [slice3]))
    ignored = renderer.render(service_ports(_annotated(svc, "ipvs"), [slice3]))
    chains = {"nftables": "lb-cluster-ip-3", "maglev": "lb-cluster-ip-maglev"}
    slots = {"nftables": 3, "maglev": MAGLEV_SLOTS}
    assert set(plain.shared_chains) == {chains[node_mode]}
    assert set(chosen.shared_chains) == {chains[other]}
    assert ignored == plain  # an unknown mode falls back to the node's
    assert len(plain.elements["service-endpoints"]) == slots[node_mode]
    assert len(chosen.elements["service-endpoints"]) == slots[other]
    table = to_nft_text(full_script([plain, renderer.render(service_ports(
        _annotated(service("db", "10.96.0.11"), other),
        [endpoint_slice("db", ["10.244.252.9", "10.244.252.10", "10.244.252.11"])],
    ))]))  # fmt: skip
    assert "numgen random mod 3" in table and "jhash ip saddr . th sport mod 251" in table
    # Switching a Service's mode rewrites its own elements: the verdict and the slots.
    commands = diff_script({"k": plain}, {"k": chosen}, set(plain.shared_chains))
    assert f"add chain ip {TABLE} {chains[other]}" in commands
    key = "10.96.0.10 . tcp . 80"
    assert f"add element ip {TABLE} service-ips {{ {key} : goto {chains[other]} }}" in commands
    gone = slots[node_mode] - slots[other]
    deleted = [c for c in commands if c.startswith("delete element") and "endpoints" in c]
    assert len(deleted) >= max(gone, 0)


def test_client_ip_affinity_follows_the_service_mode() -> None:
    """Under ClientIP affinity an nftables Service keeps kube-proxy's affinity chains, a
    Maglev one hashes the client address only."""
    renderer = Renderer(node_name=NODE, mode="nftables")
    svc, slice3 = _svc_and_slice(3)
    svc["spec"]["sessionAffinity"] = "ClientIP"
    plain = renderer.render(service_ports(svc, [slice3]))
    assert plain.chains and not plain.shared_chains
    maglev = renderer.render(service_ports(_annotated(svc, "maglev"), [slice3]))
    assert not maglev.chains and set(maglev.shared_chains) == {"lb-cluster-ip-maglev-client"}


# --- real traffic ------------------------------------------------------------------------


@pytest.mark.root
async def test_clusterip_spreads_over_ready_backends(topology: Topology, cluster: Any) -> None:
    client: Client = cluster.client
    with trio.fail_after(40):
        await client.create("v1", "services", service("web", "10.96.0.10"), namespace="default")
        ready, not_ready = topology.pod_ips[1:4], topology.pod_ips[4]
        await put_slice(client, endpoint_slice("web", [*ready, not_ready], not_ready=(not_ready,)))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)

            async def spread() -> collections.Counter[str]:
                answers = collections.Counter(
                    await http_get_many(topology.pods[0], "10.96.0.10", count=30)
                )
                return answers if len(answers) >= 3 else collections.Counter()

            answers = await eventually(spread)
            assert set(answers) == {topology.pods[1], topology.pods[2], topology.pods[3]}, answers
            # The node itself (masqueraded, through the output hook) reaches it too.
            (from_node,) = await http_get_many(topology.node, "10.96.0.10")
            assert from_node in topology.pods[1:4]
            nursery.cancel_scope.cancel()
        out = sh("ip", "netns", "exec", topology.node, "nft", "list", "tables").stdout
        assert TABLE not in out  # removed on shutdown


@pytest.mark.root
async def test_nodeport_scaling_and_no_endpoints(topology: Topology, cluster: Any) -> None:
    client: Client = cluster.client
    with trio.fail_after(40):
        svc = service("np", "10.96.0.11", type="NodePort")
        svc["spec"]["ports"][0]["nodePort"] = 30080
        await client.create("v1", "services", svc, namespace="default")
        await put_slice(client, endpoint_slice("np", topology.pod_ips[1:2]))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)
            answers = await http_get_many(topology.ext, topology.node_ip, 30080, count=5)
            assert answers == [topology.pods[1]] * 5

            # Scale up: measure how long until the new backend answers.
            started = time.perf_counter()
            await put_slice(client, endpoint_slice("np", topology.pod_ips[1:5]))

            async def all_four() -> bool:
                got = set(await http_get_many(topology.ext, topology.node_ip, 30080, count=12))
                return len(got) == 4

            await eventually(all_four, interval=0.0)
            elapsed = time.perf_counter() - started
            print(f"scale 1→4 visible after {elapsed * 1000:.1f} ms; "
                  f"last sync {proxy.stats.last_sync_seconds * 1000:.1f} ms")  # fmt: skip

            # No endpoints: connections are rejected at once, not left to time out.
            await put_slice(client, endpoint_slice("np", []))
            await proxy.wait_applied()

            async def refused() -> bool:
                (answer,) = await http_get_many(topology.pods[0], "10.96.0.11")
                return answer == "!ConnectionRefusedError"

            await eventually(refused)
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_hairpin_and_session_affinity(topology: Topology, cluster: Any) -> None:
    client: Client = cluster.client
    with trio.fail_after(40):
        await client.create("v1", "services", service("self", "10.96.0.12"), namespace="default")
        await put_slice(client, endpoint_slice("self", topology.pod_ips[1:2]))
        sticky = service("sticky", "10.96.0.13", sessionAffinity="ClientIP")
        await client.create("v1", "services", sticky, namespace="default")
        await put_slice(client, endpoint_slice("sticky", topology.pod_ips[1:5]))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)
            # pod1 reaches itself through its Service (hairpin: masqueraded back to it).
            assert (
                await http_get_many(topology.pods[1], "10.96.0.12", count=3)
                == [topology.pods[1]] * 3
            )
            answers = await http_get_many(topology.pods[0], "10.96.0.13", count=20)
            assert len(set(answers)) == 1 and answers[0] in topology.pods[1:5], answers
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_failed_transaction_changes_nothing_and_resync_repairs(
    topology: Topology, cluster: Any
) -> None:
    client: Client = cluster.client
    with trio.fail_after(40):
        await client.create("v1", "services", service("web", "10.96.0.10"), namespace="default")
        await put_slice(client, endpoint_slice("web", topology.pod_ips[1:3]))
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)
            nft = Nft(topology.node)
            before = await nft.run(f"list table ip {TABLE}")
            with pytest.raises(NftError):
                await nft.run(f"add chain ip {TABLE} half-done\nadd rule ip {TABLE} nope accept")
            assert await nft.run(f"list table ip {TABLE}") == before

            # Drift: somebody empties the dispatch and endpoint maps; a full resync puts
            # them back.
            await nft.run(
                f"flush map ip {TABLE} service-ips; flush map ip {TABLE} service-endpoints"
            )
            assert (await http_get_many(topology.pods[0], "10.96.0.10"))[0].startswith("!")
            proxy.resync()
            await proxy.wait_applied()
            (answer,) = await http_get_many(topology.pods[0], "10.96.0.10")
            assert answer in topology.pods[1:3]
            assert proxy.stats.full_syncs >= 2
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_external_traffic_policy_local(topology: Topology, cluster: Any) -> None:
    client: Client = cluster.client
    with trio.fail_after(40):
        svc = service("local", "10.96.0.14", type="NodePort", externalTrafficPolicy="Local")
        svc["spec"]["ports"][0]["nodePort"] = 30081
        await client.create("v1", "services", svc, namespace="default")
        body = endpoint_slice("local", topology.pod_ips[1:3])
        body["endpoints"][1]["nodeName"] = "elsewhere"
        await put_slice(client, body)
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)
            answers = await http_get_many(topology.ext, topology.node_ip, 30081, count=8)
            assert set(answers) == {topology.pods[1]}  # only the local endpoint
            # ClusterIP traffic is not limited by the external policy.
            inside = await http_get_many(topology.pods[0], "10.96.0.14", count=20)
            assert set(inside) == {topology.pods[1], topology.pods[2]}
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_external_and_load_balancer_ips(topology: Topology, cluster: Any) -> None:
    """``spec.externalIPs`` and ``status.loadBalancer.ingress`` IPs are DNATed like the
    NodePort: from outside the node, to every ready endpoint (masqueraded, Cluster policy)."""
    client: Client = cluster.client
    external_ip, ingress_ip = "172.30.0.100", "172.30.0.101"
    with trio.fail_after(40):
        svc = service("lb", "10.96.0.16", type="LoadBalancer", externalIPs=[external_ip])
        svc["spec"]["ports"][0]["nodePort"] = 30082
        await client.create("v1", "services", svc, namespace="default")
        await client.patch(
            "v1",
            "services",
            "lb",
            {"status": {"loadBalancer": {"ingress": [{"ip": ingress_ip}]}}},
            namespace="default",
            subresource="status",
        )
        await put_slice(client, endpoint_slice("lb", topology.pod_ips[1:3]))
        # The outside host sends both addresses to the node (as an L2 announcer would).
        for ip in (external_ip, ingress_ip):
            sh("ip", "-n", topology.ext, "route", "add", f"{ip}/32", "via", topology.node_ip)
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)
            backends = {topology.pods[1], topology.pods[2]}
            for ip, port in ((external_ip, 80), (ingress_ip, 80), (topology.node_ip, 30082)):

                async def both(ip: str = ip, port: int = port) -> set[str]:
                    got = set(await http_get_many(topology.ext, ip, port, count=16))
                    return got if got == backends else set()

                await eventually(both)
            nursery.cancel_scope.cancel()


@pytest.mark.root
async def test_endpoints_from_pods_through_the_controller(topology: Topology, cluster: Any) -> None:
    """Pods with podIP and Ready set through ``status`` → EndpointSlice controller → rules."""
    client: Client = cluster.client
    with trio.fail_after(40):
        selector_service = service("app", "10.96.0.15", selector={"app": "app"})
        await client.create("v1", "services", selector_service, namespace="default")
        for index in (1, 2, 3):
            name = f"app-{index}"
            await client.create(
                "v1",
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app": "app"}},
                    "spec": {
                        "nodeName": NODE,
                        "containers": [
                            {"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}
                        ],
                    },
                },
                namespace="default",
            )
            ready = "True" if index != 3 else "False"  # app-3 runs but is not ready
            await client.patch(
                "v1",
                "pods",
                name,
                {
                    "status": {
                        "phase": "Running",
                        "podIP": topology.pod_ips[index],
                        "podIPs": [{"ip": topology.pod_ips[index]}],
                        "conditions": [{"type": "Ready", "status": ready}],
                    }
                },
                namespace="default",
                subresource="status",
            )
        async with trio.open_nursery() as nursery:
            proxy = ServiceProxy(client, node_name=NODE, netns=topology.node)
            await nursery.start(proxy.run)

            async def two_backends() -> set[str]:
                got = set(await http_get_many(topology.pods[0], "10.96.0.15", count=16))
                return got if got == {topology.pods[1], topology.pods[2]} else set()

            await eventually(two_backends)
            # app-3 becomes ready: it joins within the time the controller and proxy take.
            started = time.perf_counter()
            await client.patch(
                "v1",
                "pods",
                "app-3",
                {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                namespace="default",
                subresource="status",
            )

            async def three_backends() -> bool:
                got = set(await http_get_many(topology.pods[0], "10.96.0.15", count=16))
                return len(got) == 3

            await eventually(three_backends)
            print(f"pod ready → traffic in {(time.perf_counter() - started) * 1000:.0f} ms")
            nursery.cancel_scope.cancel()
