"""The machine-local underlay of a multi-node ``kubetrio up``: node namespaces on a bridge.

``kubetrio up --nodes N`` gives every node a network namespace of its own, as if each
were a machine on one LAN::

    host:  bridge kt<tag>  172.30.0.254/24   (the underlay; the local registry listens here)
             ├─ veth ─ netns kubetrio-<name>-1: eth0 172.30.0.1  server + its node agent
             ├─ veth ─ netns kubetrio-<name>-2: eth0 172.30.0.2  node agent
             └─ …

Each namespace routes by default through the bridge address, so nodes reach the host's
registry and each other; pod traffic between nodes is the network plugin's business
(VXLAN, IPIP or BGP routes inside the node namespaces). The layout is saved as
``topology.json`` in the cluster's folder, so ``kubetrio down`` removes exactly what
``up`` made — the processes left in each namespace, the namespaces (with every link,
route, nft table and tunnel inside them) and the bridge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

NETNS_DIR = Path("/run/netns")
DEFAULT_UNDERLAY = "172.30.0.0/24"
LB_ADDRESSES = 16


@dataclasses.dataclass
class Node:
    """One node of the local cluster: its namespace, its link to the bridge, its address."""

    name: str
    """The Kubernetes node name."""
    netns: str
    veth: str
    """The host end of the node's veth pair (the node end is ``eth0``)."""
    address: str


@dataclasses.dataclass
class Topology:
    """The underlay bridge and the node namespaces of one local cluster."""

    bridge: str
    gateway: str
    """The bridge's address: the nodes' default route, where the registry listens."""
    prefix: int
    nodes: list[Node]

    @classmethod
    def plan(cls, cluster: str, count: int, underlay: str = DEFAULT_UNDERLAY) -> Topology:
        """Names and addresses for ``count`` nodes of ``cluster`` on the ``underlay`` subnet.

        Link names are at most 15 characters (the kernel's limit), so they carry a hash
        of the cluster name rather than the name itself.
        """
        network = ipaddress.IPv4Network(underlay)
        hosts = list(network.hosts())
        if count < 1 or count + 1 > len(hosts):
            raise ValueError(f"{underlay} has no room for {count} nodes and a gateway")
        tag = hashlib.sha1(cluster.encode()).hexdigest()[:6]
        nodes = [
            Node(
                name=f"{cluster}-node-{i}",
                netns=f"kubetrio-{cluster}-{i}",
                veth=f"kt{tag}n{i}",
                address=str(hosts[i - 1]),
            )
            for i in range(1, count + 1)
        ]
        return cls(
            bridge=f"kt{tag}br", gateway=str(hosts[-1]), prefix=network.prefixlen, nodes=nodes
        )

    def lb_range(self) -> str | None:
        """The default LoadBalancer pool: the 16 addresses below the gateway, when the
        underlay has room for them beside the nodes (None otherwise)."""
        network = ipaddress.IPv4Network(f"{self.gateway}/{self.prefix}", strict=False)
        hosts = list(network.hosts())
        if len(hosts) < len(self.nodes) + 1 + LB_ADDRESSES:
            return None
        return f"{hosts[-1 - LB_ADDRESSES]}-{hosts[-2]}"

    def save(self, path: Path) -> None:
        """Write the layout as JSON (what ``down`` reads)."""
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Topology | None:
        """The saved layout, or None when there is none."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(
            bridge=data["bridge"],
            gateway=data["gateway"],
            prefix=data["prefix"],
            nodes=[Node(**node) for node in data["nodes"]],
        )

    def create(self) -> None:
        """Make the bridge and every node namespace (fails if one exists already)."""
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node in self.nodes:
            _ip("netns", "add", node.netns)
            _ip(
                "link",
                "add",
                node.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.netns,
            )
            _ip("link", "set", node.veth, "master", self.bridge, "up")
            _ip("-n", node.netns, "link", "set", "lo", "up")
            _ip("-n", node.netns, "addr", "add", f"{node.address}/{self.prefix}", "dev", "eth0")
            _ip("-n", node.netns, "link", "set", "eth0", "up")
            _ip("-n", node.netns, "route", "add", "default", "via", self.gateway)

    def command_in(self, node: Node, command: list[str]) -> list[str]:
        """``command`` run inside the node's network namespace (and nothing else's)."""
        return ["nsenter", f"--net={NETNS_DIR / node.netns}", "--", *command]

    def remove(self, *, grace: float = 5.0) -> None:
        """Stop what still runs in the node namespaces, then delete them and the bridge."""
        for node in self.nodes:
            if (NETNS_DIR / node.netns).exists():
                _kill_all(node.netns, grace)
                _ip("netns", "del", node.netns, check=False)
            _ip("link", "del", node.veth, check=False)  # gone with the namespace, normally
        _ip("link", "del", self.bridge, check=False)


def _ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _pids_in(netns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(pid) for pid in result.stdout.split()]


def _kill_all(netns: str, grace: float) -> None:
    """SIGTERM every process in the namespace (a bird, a leftover agent), SIGKILL stragglers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids_in(netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = _pids_in(netns)
        if not pids:
            return
