"""Service proxy: nftables sync time and first-packet latency at 1k / 10k / 30k Services.

For each size, every Service has one ClusterIP port and ``--endpoints`` endpoints. The
benchmark drives the proxy's own code path (``Renderer`` → ``full_script`` /
``diff_script``, typed commands → ``Nft``, what ``ServiceProxy.sync_once`` runs, with the
shared ``lb-`` chains tracked the same way) without the API server, so that 30k Services
don't measure the control plane:

* **full sync** — render every Service and load the whole table in one transaction;
* **incremental sync** — one Service loses an endpoint, then gets it back (median of
  ``--updates`` changes): render, diff, one transaction. The endpoint count changes, so
  the Service's dispatch element moves to another shared ``lb-`` chain and the kernel
  re-validates the chain graph at commit — the headline figure. Beside it: an endpoint
  replaced by another address (the count stays: data-map elements only) and a Service
  added then removed;
* **first-packet latency** — TCP connect() time (SYN → SYN-ACK, each a new conntrack
  entry, so every packet walks the NAT rules) from a client pod to one ClusterIP, and
  interleaved with it to the backend's own address (the baseline without the proxy);
  p50/p99 are medians over ``--rounds`` rounds of ``--samples`` connects each, because
  on a shared machine a single round's p99 measures whoever else was busy.

Before the data-map layout (a chain per service port and per endpoint) incremental sync
took 18 / 221 / 662 ms at 1k / 10k / 30k: every commit re-validated every chain. Now the
commit walks the dispatch map into one shared chain: a few ms at 30k.

Topology: a node netns (the table), a client pod netns and a backend pod netns holding
the ten endpoint addresses of the measured Service, with a listening socket (backlog 4096);
the other Services' endpoints are unrouted addresses that are never contacted.
Everything is removed at the end. Needs root. The last line is one JSON object (ratios
30k/1k of the ClusterIP p99 — raw, and over the direct p99 of the same round — and of the
incremental sync; ClusterIP vs direct p99).

Run: ``sudo .venv/bin/python benchmarks/service_proxy.py [--sizes 1000,10000,30000]``
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from kubetrio.netns import in_netns
from kubetrio.nft import remove_table
from kubetrio.proxy import (
    PROXY_TABLE,
    Fragment,
    Nft,
    Renderer,
    describe,
    diff_script,
    full_script,
    gc_paused,
    service_ports,
    shared_parts,
)

MEASURED = 0  # index of the Service whose ClusterIP the latency probe connects to


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def cluster_ip(i: int) -> str:
    n = (10 << 24 | 96 << 16) + 1 + i
    return socket.inet_ntoa(struct.pack("!I", n))


def endpoint_ips(i: int, count: int) -> list[str]:
    if i == MEASURED:
        return [f"10.244.253.{10 + k}" for k in range(count)]
    base = (10 << 24 | 200 << 16) + i * count
    return [socket.inet_ntoa(struct.pack("!I", base + k)) for k in range(count)]


def service(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"svc-{i}", "namespace": "bench"},
        "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80}]},
    }


def endpoint_slice(i: int, ips: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"svc-{i}-a", "namespace": "bench"},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


class Topology:
    """node netns + client pod + backend pod (10 addresses, one listener)."""

    def __init__(self, endpoints: int) -> None:
        suffix = secrets.token_hex(2)
        self.node, self.client, self.backend = (f"ktsp{k}{suffix}" for k in "ncb")
        self.endpoints = endpoints
        self.listener: socket.socket | None = None
        self.acceptor: threading.Thread | None = None
        self.stopping = threading.Event()

    def __enter__(self) -> Topology:
        try:
            for ns in (self.node, self.client, self.backend):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # A dummy default route out of a spare veth: proxy ARP needs one to answer.
            sh("ip", "-n", self.node, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
            sh("ip", "-n", self.node, "addr", "add", "172.31.255.1/30", "dev", "up0")
            for link in ("up0", "up1"):
                sh("ip", "-n", self.node, "link", "set", link, "up")
            sh("ip", "-n", self.node, "route", "add", "default", "via", "172.31.255.2")
            pods = [(self.client, "10.244.253.2", ["10.244.253.2"], "kbc")]
            backend_ips = [f"10.244.253.{10 + k}" for k in range(self.endpoints)]
            pods.append((self.backend, backend_ips[0], backend_ips, "kbb"))
            for ns, _, ips, host in pods:
                sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                   host, "netns", self.node)  # fmt: skip
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", self.node, "link", "set", host, "up")
                for ip in ips:
                    sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "eth0")
                    sh("ip", "-n", self.node, "route", "add", f"{ip}/32", "dev", host)
                sh("ip", "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
                sh("ip", "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
                for setting in (f"net.ipv4.conf.{host}.proxy_arp=1",
                                f"net.ipv4.neigh.{host}.proxy_delay=0"):  # fmt: skip
                    sh("ip", "netns", "exec", self.node, "sysctl", "-qw", setting)
            # An acceptor with a deep backlog: a forking httpd falls behind a connect loop,
            # and the SYNs it drops would measure its accept rate (1 s retransmits).
            self.listener = in_netns(
                self.backend, lambda: socket.create_server(("", 80), backlog=4096)
            )
            self.listener.settimeout(0.2)
            self.acceptor = threading.Thread(target=self._accept, daemon=True)
            self.acceptor.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            conn.close()

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.acceptor is not None:
            self.acceptor.join()
        if self.listener is not None:
            self.listener.close()
        for ns in (self.node, self.client, self.backend):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def connect_times(netns: str, ips: list[str], samples: int) -> list[list[float]]:
    """Seconds per TCP connect() to each of ``ips`` (port 80) from netns, ``samples``
    each, interleaved so that every address sees the same noise of a shared machine
    (new flow each time, RST on close)."""

    def run() -> list[list[float]]:
        times: list[list[float]] = [[] for _ in ips]
        for _ in range(samples + 20):
            for ip, out in zip(ips, times, strict=True):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.settimeout(2)
                t0 = time.perf_counter()
                sock.connect((ip, 80))
                out.append(time.perf_counter() - t0)
                sock.close()
        return [out[20:] for out in times]  # the first few warm ARP and caches

    return in_netns(netns, run)


def latency(netns: str, ips: list[str], samples: int, rounds: int) -> list[dict[str, float]]:
    """p50 and p99 (ms) per address: the median over ``rounds`` rounds of ``samples``
    connects each, so that one burst of another process's work does not make the tail."""
    per_round = [connect_times(netns, ips, samples) for _ in range(rounds)]
    figures = []
    for index in range(len(ips)):
        runs = [times[index] for times in per_round]
        figures.append(
            {
                f"p{q}_ms": round(statistics.median(percentile(r, q / 100) for r in runs) * 1e3, 4)
                for q in (50, 99)
            }
        )
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_size(
    topo: Topology,
    size: int,
    endpoints: int,
    samples: int,
    rounds: int,
    updates: int,
    mode: str,
) -> dict[str, Any]:
    renderer = Renderer(node_name="bench-node", cluster_cidr="10.244.0.0/16", mode=mode)
    nft = Nft(topo.node)
    t0 = time.perf_counter()
    with gc_paused():  # as ServiceProxy's full sync renders
        fragments: dict[str, Fragment] = {
            f"bench/svc-{i}": renderer.render(
                service_ports(service(i), [endpoint_slice(i, endpoint_ips(i, endpoints))])
            )
            for i in range(size)
        }
    render_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    # What ServiceProxy's full sync runs (with the spare lb- chains).
    with gc_paused():
        spare = Fragment(shared_chains=renderer.spare_chains(shared_parts(fragments.values())[0]))
        table = full_script([*fragments.values(), spare])
    nft.run_sync(table)
    del table
    load_s = time.perf_counter() - t1
    full_s = time.perf_counter() - t0
    print(
        f"  {size} services: full sync {full_s:.2f} s "
        f"(render {render_s:.2f} s, nft {load_s:.2f} s)",
        flush=True,
    )

    # The shared lb- chains in the kernel, tracked as ServiceProxy.sync_once does.
    shared: set[str] = {*shared_parts(fragments.values())[0], *spare.shared_chains}

    def update(key: str, service_body: dict[str, Any] | None, ips: list[str]) -> float:
        """Render, diff and apply one Service change; returns the nft seconds."""
        index = int(key.rpartition("-")[2])
        new = {}
        if service_body is not None:
            slices = [endpoint_slice(index, ips)]
            new[key] = renderer.render(service_ports(service_body, slices))
        old = {key: fragments[key]} if key in fragments else {}
        commands = diff_script(old, new, shared)
        t_nft = time.perf_counter()
        nft.run_sync(commands)
        spent = time.perf_counter() - t_nft
        for fragment in new.values():
            shared.update(fragment.shared_chains)
        fragments.pop(key, None)
        fragments.update(new)
        return spent

    def timed(changes: list[tuple[str, dict[str, Any] | None, list[str]]]) -> dict[str, float]:
        total, kernel = [], []
        for change in changes:
            t = time.perf_counter()
            kernel.append(update(*change))
            total.append(time.perf_counter() - t)
        return {
            "ms": round(statistics.median(total) * 1e3, 2),
            "min_ms": round(min(total) * 1e3, 2),
            "kernel_ms": round(statistics.median(kernel) * 1e3, 2),
        }

    target = size // 2  # a Service in the middle
    key = f"bench/svc-{target}"
    ips = endpoint_ips(target, endpoints)
    # One endpoint goes and comes back: the endpoint count changes each time.
    scale = timed([(key, service(target), ips[:-1] if n % 2 == 0 else ips) for n in range(updates)])
    # One endpoint replaced by another address (a pod rescheduled): the count stays.
    spare = socket.inet_ntoa(struct.pack("!I", (10 << 24 | 201 << 16) + target))
    replace = timed(
        [(key, service(target), [*ips[:-1], spare if n % 2 == 0 else ips[-1]])
         for n in range(updates)]
    )  # fmt: skip
    # A new Service with its endpoints appears, then goes.
    extra = size + 1
    extra_ips = [socket.inet_ntoa(struct.pack("!I", (10 << 24 | 202 << 16) + k))
                 for k in range(endpoints)]  # fmt: skip
    create = timed(
        [(f"bench/svc-{extra}", service(extra) if n % 2 == 0 else None, extra_ips)
         for n in range(updates)]
    )  # fmt: skip
    inc_ms = scale["ms"]
    print(f"    incremental sync: endpoint removed/added median {inc_ms:.1f} ms "
          f"(min {scale['min_ms']:.1f}); endpoint replaced {replace['ms']:.1f} ms; "
          f"service added/removed {create['ms']:.1f} ms", flush=True)  # fmt: skip

    targets = [cluster_ip(MEASURED), endpoint_ips(MEASURED, endpoints)[0]]
    service_t, direct_t = latency(topo.client, targets, samples, rounds)
    result = {
        "services": size,
        **{f"table_{k}": v for k, v in describe(fragments.values()).items()},
        "full_sync_s": round(full_s, 3),
        "full_sync_nft_s": round(load_s, 3),
        "incremental_sync_ms": inc_ms,
        "incremental_sync_min_ms": scale["min_ms"],
        "incremental_sync_kernel_ms": scale["kernel_ms"],
        "endpoint_replaced_ms": replace["ms"],
        "service_added_removed_ms": create["ms"],
        "clusterip_p50_ms": service_t["p50_ms"],
        "clusterip_p99_ms": service_t["p99_ms"],
        "direct_p50_ms": direct_t["p50_ms"],
        "direct_p99_ms": direct_t["p99_ms"],
    }
    print(f"    first packet: ClusterIP p50 {result['clusterip_p50_ms']} ms p99 "
          f"{result['clusterip_p99_ms']} ms; direct p50 {result['direct_p50_ms']} ms "
          f"p99 {result['direct_p99_ms']} ms", flush=True)  # fmt: skip
    nft.run_sync(remove_table(PROXY_TABLE))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000, help="connects per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--mode", choices=["nftables", "maglev"], default="nftables")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, nftables)")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"service proxy ({args.mode} mode), {args.endpoints} endpoints per service")
    results = []
    with Topology(args.endpoints) as topo:
        for size in sizes:
            results.append(
                run_size(
                    topo,
                    size,
                    args.endpoints,
                    args.samples,
                    args.rounds,
                    args.updates,
                    args.mode,
                )
            )
    first, last = results[0], results[-1]
    summary: dict[str, Any] = {
        "bench": "service_proxy",
        "mode": args.mode,
        "endpoints_per_service": args.endpoints,
        "sizes": sizes,
        "results": results,
        f"p99_ratio_{last['services']}_vs_{first['services']}": round(
            last["clusterip_p99_ms"] / first["clusterip_p99_ms"], 3
        ),
        f"p50_ratio_{last['services']}_vs_{first['services']}": round(
            last["clusterip_p50_ms"] / first["clusterip_p50_ms"], 3
        ),
        "clusterip_vs_direct_p99_at_largest": round(
            last["clusterip_p99_ms"] / last["direct_p99_ms"], 3
        ),
        # The same 30k/1k ratio with each p99 divided by the direct p99 measured
        # interleaved with it: what the proxy adds, without the machine's noise of the day.
        f"p99_over_direct_ratio_{last['services']}_vs_{first['services']}": round(
            (last["clusterip_p99_ms"] / last["direct_p99_ms"])
            / (first["clusterip_p99_ms"] / first["direct_p99_ms"]),
            3,
        ),
        "incremental_sync_ms_at_largest": last["incremental_sync_ms"],
        f"incremental_sync_ratio_{last['services']}_vs_{first['services']}": round(
            last["incremental_sync_ms"] / first["incremental_sync_ms"], 3
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
