"""Tunnel throughput with iperf3 between two network namespaces (needs root).

Runs one TCP stream of iperf3 through, in the same run and on the same veth underlay:
kernel VXLAN (the baseline, set up as in PLATFORM.md), the Rust TUN engine in VXLAN mode,
in IPIP mode, and in VXLAN mode without offloads (to show what TSO/GSO/GRO buy). Prints
Gbit/s, retransmits and each engine's ratio to kernel VXLAN, then one JSON line. The
namespaces are created here and always removed.
Goal from the issue: >= 50% of kernel VXLAN (a Python TUN tunnel gets about 5%).

Run: ``sudo python benchmarks/datapath_tunnel.py [seconds]`` (extension built ``--release``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from kubetrio.datapath import TunnelEngine

UNDERLAY = "172.31.251.{}"
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def iperf(a: str, b: str, target: str) -> dict[str, Any]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-B", target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        out = subprocess.run(
            ["ip", "netns", "exec", a, "iperf3", "-c", target, "-t", str(SECONDS), "-J"],
            capture_output=True,
            text=True,
            timeout=SECONDS + 30,
        )
        result: dict[str, Any] = json.loads(out.stdout)
        end = result["end"]
        return {
            "gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits", 0),
        }
    finally:
        server.kill()
        server.wait()


def kernel_vxlan(a: str, b: str) -> dict[str, Any]:
    macs = {}
    for n, ns in ((1, a), (2, b)):
        ip("-n", ns, "link", "add", "vxlan0", "type", "vxlan", "id", "4096", "dstport", "4789")
        ip("-n", ns, "link", "set", "vxlan0", "type", "vxlan", "local", UNDERLAY.format(n))
        macs[n] = json.loads(ip("-j", "-n", ns, "link", "show", "vxlan0"))[0]["address"]
    # nolearning/dev must be given at creation; recreate with the full recipe.
    for n, ns in ((1, a), (2, b)):
        ip("-n", ns, "link", "del", "vxlan0")
        ip(
            "-n", ns, "link", "add", "vxlan0", "address", macs[n], "type", "vxlan", "id", "4096",
            "dstport", "4789", "local", UNDERLAY.format(n), "dev", "veth0", "nolearning",
        )  # fmt: skip
        ip("-n", ns, "addr", "add", f"10.250.{n}.0/32", "dev", "vxlan0")
        ip("-n", ns, "link", "set", "vxlan0", "up")
    for other, ns in ((2, a), (1, b)):
        peer, mac = f"10.250.{other}.0", macs[other]
        ip("-n", ns, "route", "add", f"10.250.{other}.0/24", "via", peer, "dev", "vxlan0", "onlink")
        ip("-n", ns, "neigh", "add", peer, "lladdr", mac, "dev", "vxlan0", "nud", "permanent")
        subprocess.run(
            [
                "bridge",
                "-n",
                ns,
                "fdb",
                "append",
                mac,
                "dev",
                "vxlan0",
                "dst",
                UNDERLAY.format(other),
            ],
            check=True,
            capture_output=True,
        )
    try:
        return iperf(a, b, "10.250.2.0")
    finally:
        for ns in (a, b):
            ip("-n", ns, "link", "del", "vxlan0")


def rust_tunnel(a: str, b: str, mode: str, offload: bool = True) -> dict[str, Any]:
    mtu = "1450" if mode == "vxlan" else "1480"
    engines = []
    try:
        for n, other, ns in ((1, 2, a), (2, 1, b)):
            engine = TunnelEngine(
                mode,  # type: ignore[arg-type]
                "kt0",
                UNDERLAY.format(n),
                vni=4096,
                netns=ns,
                offload=offload,
            )
            engine.add_route(f"10.250.{other}.0/24", UNDERLAY.format(other))
            engine.start()
            engines.append(engine)
            ip("-n", ns, "addr", "add", f"10.250.{n}.1/24", "dev", "kt0")
            ip("-n", ns, "link", "set", "kt0", "mtu", mtu, "up")
            ip("-n", ns, "route", "add", f"10.250.{other}.0/24", "dev", "kt0")
        result = iperf(a, b, "10.250.2.1")
        stats = engines[0].stats()
        result["tx_packets_per_batch"] = stats.tx_packets / max(stats.tx_batches, 1)
        return result
    finally:
        for engine in engines:
            engine.stop()


def main() -> None:
    missing = [tool for tool in ("ip", "iperf3", "bridge") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        # Skip rather than fail `make bench` on machines without root or tools.
        reason = "needs root" if os.geteuid() != 0 else f"missing {', '.join(missing)}"
        print(f"datapath_tunnel skipped: {reason}")
        print(json.dumps({"bench": "datapath_tunnel", "skipped": reason}))
        return
    tag = os.getpid() % 100000
    a, b = f"kbA{tag}", f"kbB{tag}"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
        for n, ns in ((1, a), (2, b)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{UNDERLAY.format(n)}/24", "dev", "veth0")
            ip("-n", ns, "link", "set", "veth0", "up")
        kernel = kernel_vxlan(a, b)
        print(
            f"kernel VXLAN      : {kernel['gbps']:6.2f} Gbit/s  retransmits {kernel['retransmits']}"
        )
        result: dict[str, Any] = {
            "bench": "datapath_tunnel",
            "seconds": SECONDS,
            "kernel_vxlan_gbps": round(kernel["gbps"], 3),
        }
        for mode in ("vxlan", "ipip"):
            r = rust_tunnel(a, b, mode)
            ratio = r["gbps"] / kernel["gbps"]
            print(
                f"rust {mode:5s} tunnel: {r['gbps']:6.2f} Gbit/s  retransmits {r['retransmits']}"
                f"  {ratio:.0%} of kernel VXLAN"
                f"  ({r['tx_packets_per_batch']:.1f} packets per sendmmsg)"
            )
            result[f"rust_{mode}_gbps"] = round(r["gbps"], 3)
            result[f"rust_{mode}_retransmits"] = r["retransmits"]
            result[f"{mode}_ratio_vs_kernel"] = round(ratio, 3)
        # The same VXLAN engine without TUN/UDP offloads: what batching alone gives.
        plain = rust_tunnel(a, b, "vxlan", offload=False)
        print(
            f"rust vxlan, no offloads: {plain['gbps']:6.2f} Gbit/s"
            f"  {plain['gbps'] / kernel['gbps']:.0%} of kernel VXLAN"
        )
        result["rust_vxlan_no_offload_gbps"] = round(plain["gbps"], 3)
        print(json.dumps(result))
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


if __name__ == "__main__":
    main()
