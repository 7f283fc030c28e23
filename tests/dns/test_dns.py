"""Cluster DNS: every record type through dnspython, and busybox nslookup from a netns."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import trio

from kubetrio.client import Client
from kubetrio.dns import ClusterDNS, resolv_conf

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def populate(client: Client) -> None:
    """web (ClusterIP), db (headless, 2 ready + 1 not), ext (ExternalName), a StatefulSet pod."""

    async def create(api: str, resource: str, body: dict[str, Any]) -> None:
        await client.create(api, resource, body, namespace="default")

    await create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]},
    })  # fmt: skip
    await create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]},
    })  # fmt: skip
    await create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "example.org"},
    })  # fmt: skip
    await create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-1"},
        "spec": {"hostname": "db-1", "subdomain": "db",
                 "containers": [{"name": "c", "image": "busybox"}]},
    })  # fmt: skip
    await create("discovery.k8s.io/v1", "endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-x", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": True}},
            {"addresses": ["10.244.1.6"], "conditions": {"ready": True},
             "targetRef": {"kind": "Pod", "name": "db-1", "namespace": "default"}},
            {"addresses": ["10.244.1.7"], "conditions": {"ready": False}},
        ],
    })  # fmt: skip


async def fake_upstream(
    sock: trio.socket.SocketType, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answers every A question with 192.0.2.1."""
    task_status.started()
    while True:
        data, peer = await sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(
            dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.1")
        )
        await sock.sendto(response.to_wire(), peer)


@pytest.fixture
async def server(cluster: Any) -> AsyncIterator[tuple[str, int]]:
    await populate(cluster.client)
    async with trio.open_nursery() as nursery:
        upstream = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        await upstream.bind(("127.0.0.1", 0))
        await nursery.start(fake_upstream, upstream)
        dns_server = ClusterDNS(
            cluster.client, listen=("127.0.0.1", 0), upstream=upstream.getsockname()
        )
        address = await nursery.start(dns_server.run)
        # The pod informer may land after the slices: wait until db-1 has its hostname.
        while "db-1" not in {e.hostname for e in dns_server.zone.endpoints("default/db")}:
            await trio.sleep(0.02)
        yield address
        nursery.cancel_scope.cancel()
        upstream.close()


async def ask(address: tuple[str, int], name: str, rdtype: str, *, tcp: bool = False) -> Any:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, address[0], port=address[1], timeout=2)
    return await dns.asyncquery.udp(query, address[0], port=address[1], timeout=2)


def values(response: Any, rdtype: str) -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset)


async def test_record_types(server: tuple[str, int]) -> None:
    with trio.fail_after(20):
        r = await ask(server, "web.default.svc.cluster.local", "A")
        assert values(r, "A") == ["10.96.0.10"] and r.rcode() == dns.rcode.NOERROR
        r = await ask(server, "web.default.svc.cluster.local", "A", tcp=True)
        assert values(r, "A") == ["10.96.0.10"]
        r = await ask(server, "_http._tcp.web.default.svc.cluster.local", "SRV")
        assert values(r, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
        # Headless: the ready pods' addresses, not the unready one.
        r = await ask(server, "db.default.svc.cluster.local", "A")
        assert values(r, "A") == ["10.244.1.5", "10.244.1.6"]
        r = await ask(server, "_sql._tcp.db.default.svc.cluster.local", "SRV")
        assert values(r, "SRV") == [
            "0 33 5432 db-0.db.default.svc.cluster.local.",
            "0 33 5432 db-1.db.default.svc.cluster.local.",
        ]
        # StatefulSet-style pod names: from the slice's hostname, or the pod's spec.
        r = await ask(server, "db-0.db.default.svc.cluster.local", "A")
        assert values(r, "A") == ["10.244.1.5"]
        r = await ask(server, "db-1.db.default.svc.cluster.local", "A")
        assert values(r, "A") == ["10.244.1.6"]
        r = await ask(server, "10-244-1-5.default.pod.cluster.local", "A")
        assert values(r, "A") == ["10.244.1.5"]
        r = await ask(server, "ext.default.svc.cluster.local", "A")
        assert values(r, "CNAME") == ["example.org."]
        r = await ask(server, "10.0.96.10.in-addr.arpa", "PTR")
        assert values(r, "PTR") == ["web.default.svc.cluster.local."]
        r = await ask(server, "5.1.244.10.in-addr.arpa", "PTR")
        assert values(r, "PTR") == ["db-0.db.default.svc.cluster.local."]
        # Inside the zone: NXDOMAIN for what does not exist, NODATA for other types.
        r = await ask(server, "nope.default.svc.cluster.local", "A")
        assert r.rcode() == dns.rcode.NXDOMAIN and r.authority
        r = await ask(server, "web.default.svc.cluster.local", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        r = await ask(server, "_nope._tcp.web.default.svc.cluster.local", "SRV")
        assert r.rcode() == dns.rcode.NXDOMAIN
        # Outside the zone: forwarded.
        r = await ask(server, "example.org", "A")
        assert values(r, "A") == ["192.0.2.1"]


async def test_refuses_outside_names_without_upstream(cluster: Any) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                ClusterDNS(cluster.client, listen=("127.0.0.1", 0), watch_pods=False).run
            )
            r = await ask(address, "example.org", "A")
            assert r.rcode() == dns.rcode.REFUSED
            r = await ask(address, "kubernetes.default.svc.cluster.local", "A")
            assert r.rcode() == dns.rcode.NXDOMAIN
            nursery.cancel_scope.cancel()


def test_resolv_conf() -> None:
    assert resolv_conf("team-a", "10.96.0.10") == (
        "search team-a.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )


@pytest.mark.root
async def test_busybox_nslookup_from_a_pod_netns(cluster: Any) -> None:
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("needs root and busybox")
    suffix = os.urandom(2).hex()
    node, pod = f"ktdn{suffix}", f"ktdp{suffix}"
    netns_etc = Path("/etc/netns")
    made_etc = not netns_etc.exists()
    conf_dir = netns_etc / pod

    def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=check, capture_output=True, text=True, timeout=10)

    with trio.fail_after(30):
        await populate(cluster.client)
        try:
            sh("ip", "netns", "add", node)
            sh("ip", "netns", "add", pod)
            sh("ip", "link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name",
               "eth0", "netns", node)  # fmt: skip
            for ns, ip in ((node, "172.31.0.1/24"), (pod, "172.31.0.2/24")):
                sh("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            # `ip netns exec` bind-mounts /etc/netns/<pod>/resolv.conf over /etc/resolv.conf.
            conf_dir.mkdir(parents=True)
            (conf_dir / "resolv.conf").write_text(resolv_conf("default", "172.31.0.1"))
            async with trio.open_nursery() as nursery:
                dns_server = ClusterDNS(cluster.client, listen=("172.31.0.1", 53), netns=node)
                await nursery.start(dns_server.run)

                def nslookup(name: str) -> str:
                    result = sh(
                        "ip", "netns", "exec", pod, "busybox", "nslookup", name, check=False
                    )
                    return result.stdout + result.stderr

                out = await trio.to_thread.run_sync(nslookup, "web")  # short name, via search
                assert "10.96.0.10" in out, out
                out = await trio.to_thread.run_sync(nslookup, "db.default.svc.cluster.local")
                assert "10.244.1.5" in out and "10.244.1.6" in out, out
                out = await trio.to_thread.run_sync(nslookup, "nope.default.svc.cluster.local")
                assert "NXDOMAIN" in out, out
                nursery.cancel_scope.cancel()
        finally:
            sh("ip", "netns", "del", pod, check=False)
            sh("ip", "netns", "del", node, check=False)
            shutil.rmtree(conf_dir, ignore_errors=True)
            if made_etc:
                shutil.rmtree(netns_etc, ignore_errors=True)
