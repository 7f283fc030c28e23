"""ServiceLB: address allocation throughput and L2 failover time.

* **allocation** — ``--services`` LoadBalancer Services created by 16 concurrent writers
  with the allocator running (``ControllerManager(extra=[ServiceLBController(pool)])``,
  in-process API server on SQLite): seconds until every one shows its address, and how
  long after the last create the last address appeared. Baseline, in the same run on a
  fresh store: the same creates without an allocator (the API work allocation cannot
  avoid); ``ratio_alloc_vs_create`` = allocation time / baseline time.
* **failover** (root) — two node network namespaces and a client on one bridge, an
  announcer per node. The node announcing the address is marked NotReady (then Ready
  again, which moves the address back): milliseconds from the Node status write until
  the client's interface receives the new node's gratuitous ARP for the address
  (``--rounds`` moves each way, p50/max). For scale: ``client_reachable_ms``, the
  client's ``base_reachable_time_ms`` — how long, without the gratuitous ARP, a client
  may keep sending to the old node's MAC before it even starts to re-check.

The last line is one JSON object with the figures and ratios.

Run: ``sudo .venv/bin/python benchmarks/servicelb.py [--services 500] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client, FunctionHandler, Informer
from kubetrio.controllers import ControllerManager
from kubetrio.netns import in_netns
from kubetrio.servicelb import ServiceLBAnnouncer, ServiceLBController, choose_node, ingress_ips
from kubetrio.servicelb._garp import ETH_P_ARP
from kubetrio.store import open_store

WRITERS = 16


def lb_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }


async def create_all(client: Client, count: int) -> None:
    async def writer(offset: int) -> None:
        for i in range(offset, count, WRITERS):
            await client.create("v1", "services", lb_service(f"s{i}"), namespace="default")

    async with trio.open_nursery() as nursery:
        for offset in range(WRITERS):
            nursery.start_soon(writer, offset)


async def allocation(db: Path, count: int, pool: str | None) -> dict[str, float]:
    """Create ``count`` Services; with a pool, wait until all have distinct addresses."""
    async with open_store(f"sqlite://{db}") as store, open_apiserver(store) as running:
        client = Client.in_process(running.api)
        async with trio.open_nursery() as nursery:
            manager = ControllerManager(
                client, controllers=(), extra=[ServiceLBController(pool)], identity="bench"
            )
            await nursery.start(manager.run)
            await manager.leading.wait()
            # Addresses are counted as a watch delivers them (polling lists would compete).
            addresses: dict[str, str] = {}
            all_there = trio.Event()

            def seen(service: dict[str, Any]) -> None:
                for ip in ingress_ips(service):
                    addresses[service["metadata"]["name"]] = ip
                if len(addresses) == count:
                    all_there.set()

            watcher = Informer(client, "v1", "services", namespace="default")
            watcher.add_handler(FunctionHandler(seen))
            await nursery.start(watcher.run)
            started = time.perf_counter()
            await create_all(client, count)
            created = time.perf_counter()
            if pool is not None:
                await all_there.wait()
                assert len(set(addresses.values())) == count, "an address was handed out twice"
            done = time.perf_counter()
            nursery.cancel_scope.cancel()
    return {"total_s": done - started, "after_last_create_s": done - created}


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


class Lab:
    """Two node namespaces and a client namespace on one bridge (removed on exit)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.underlay = f"ktsbu{tag}"
        self.nodes = {"node-a": f"ktsbn{tag}0", "node-b": f"ktsbn{tag}1"}
        self.client = f"ktsbc{tag}"
        self.addresses = {"node-a": "172.31.252.1", "node-b": "172.31.252.2"}

    def __enter__(self) -> Lab:
        try:
            sh("ip", "netns", "add", self.underlay)
            sh("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.underlay, "link", "set", "br0", "up")
            hosts = [*((self.nodes[n], a) for n, a in self.addresses.items())]
            hosts.append((self.client, "172.31.252.100"))
            for index, (netns, address) in enumerate(hosts):
                sh("ip", "netns", "add", netns)
                sh("ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name",
                   f"u{index}", "netns", self.underlay)  # fmt: skip
                sh("ip", "-n", self.underlay, "link", "set", f"u{index}", "master", "br0", "up")
                sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
                sh("ip", "-n", netns, "link", "set", "eth0", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for netns in [self.underlay, *self.nodes.values(), self.client]:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)

    def mac(self, node: str) -> bytes:
        [link] = json.loads(sh("ip", "-n", self.nodes[node], "-j", "link", "show", "eth0"))
        return bytes.fromhex(link["address"].replace(":", ""))

    def arp_listener(self) -> socket.socket:
        """A packet socket receiving ARP on the client's interface."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            sock.bind(("eth0", ETH_P_ARP))
            return sock

        return in_netns(self.client, make)


def wait_garp(sock: socket.socket, ip: str, mac: bytes, timeout: float = 10.0) -> float:
    """perf_counter() when a gratuitous ARP for ``ip`` from ``mac`` arrives (blocking)."""
    packed = socket.inet_aton(ip)
    deadline = time.perf_counter() + timeout
    while True:
        sock.settimeout(max(deadline - time.perf_counter(), 0.001))
        frame = sock.recv(128)
        if frame[22:28] == mac and frame[28:32] == packed == frame[38:42]:
            return time.perf_counter()


async def failover(rounds: int) -> dict[str, Any]:
    """Move an address between two nodes ``rounds`` times each way; ms per move."""
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        async with open_store(f"sqlite://{tmp}/f.db") as store, open_apiserver(store) as running:
            client = Client.in_process(running.api)

            async def ready(node: str, value: bool) -> None:
                condition = {"type": "Ready", "status": "True" if value else "False"}
                await client.patch(
                    "v1", "nodes", node, {"status": {"conditions": [condition]}},
                    subresource="status",
                )  # fmt: skip

            for node, address in lab.addresses.items():
                await client.create(
                    "v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
                )
                await client.patch(
                    "v1", "nodes", node,
                    {"status": {"addresses": [{"type": "InternalIP", "address": address}]}},
                    subresource="status",
                )  # fmt: skip
                await ready(node, True)
            ip = "172.31.252.240"
            svc = lb_service("web")
            svc["spec"]["loadBalancerIP"] = ip
            async with trio.open_nursery() as nursery:
                manager = ControllerManager(
                    client, controllers=(), extra=[ServiceLBController(f"{ip}/32")]
                )
                await nursery.start(manager.run)
                for node, netns in lab.nodes.items():
                    await nursery.start(ServiceLBAnnouncer(client, node, netns=netns).run)
                await client.create("v1", "services", svc, namespace="default")
                first = choose_node(ip, lab.nodes)
                assert first is not None
                second = next(n for n in lab.nodes if n != first)
                samples: dict[str, list[float]] = {"away": [], "back": []}
                listener = lab.arp_listener()
                await trio.to_thread.run_sync(wait_garp, listener, ip, lab.mac(first))
                for _ in range(rounds):
                    for kind, to, change in (
                        ("away", second, lambda: ready(first, False)),
                        ("back", first, lambda: ready(first, True)),
                    ):
                        samples[kind].append(await _timed_move(listener, ip, lab.mac(to), change))
                listener.close()
                nursery.cancel_scope.cancel()
        reachable = int(
            sh("ip", "netns", "exec", lab.client, "sysctl", "-n",
               "net.ipv4.neigh.eth0.base_reachable_time_ms").strip()
        )  # fmt: skip
    every = samples["away"] + samples["back"]
    return {
        "failover_p50_ms": round(statistics.median(samples["away"]), 1),
        "failback_p50_ms": round(statistics.median(samples["back"]), 1),
        "move_max_ms": round(max(every), 1),
        "client_reachable_ms": reachable,
    }


async def _timed_move(
    listener: socket.socket, ip: str, mac: bytes, change: Callable[[], Any]
) -> float:
    async with trio.open_nursery() as nursery:
        arrived: list[float] = []

        async def listen() -> None:
            arrived.append(await trio.to_thread.run_sync(wait_garp, listener, ip, mac))

        nursery.start_soon(listen)
        await trio.sleep(0.05)  # the listener thread is waiting before the change starts
        started = time.perf_counter()
        await change()
    return (arrived[0] - started) * 1000


def main() -> None:
    """Run the measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured = trio.run(allocation, Path(tmp) / "a.db", args.services, "10.200.0.0/20")
        baseline = trio.run(allocation, Path(tmp) / "b.db", args.services, None)
    results: dict[str, Any] = {
        "bench": "servicelb",
        "services": args.services,
        "allocated_s": round(measured["total_s"], 3),
        "services_per_s": round(args.services / measured["total_s"], 1),
        "last_address_after_last_create_ms": round(measured["after_last_create_s"] * 1000, 1),
        "create_only_s": round(baseline["total_s"], 3),
        "ratio_alloc_vs_create": round(measured["total_s"] / baseline["total_s"], 3),
    }
    print(
        f"{args.services} LoadBalancer Services allocated in {results['allocated_s']} s "
        f"({results['services_per_s']}/s); creating them alone took {results['create_only_s']} s"
    )
    if os.geteuid() == 0:
        moved = trio.run(failover, args.rounds)
        results.update(moved)
        results["ratio_failover_vs_client_reachable"] = round(
            moved["failover_p50_ms"] / moved["client_reachable_ms"], 4
        )
        print(
            f"failover to the other node's gratuitous ARP: p50 {moved['failover_p50_ms']} ms "
            f"(back {moved['failback_p50_ms']} ms, max {moved['move_max_ms']} ms); a client "
            f"without it may keep the old MAC {moved['client_reachable_ms']} ms"
        )
    else:
        print("not root: failover skipped")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
