"""Two tunnel nodes in network namespaces, for the tunnel tests and benchmark (needs root).

Node 1 and node 2 are network namespaces joined by a veth pair ``veth0`` carrying the
underlay addresses ``<underlay>.1/24`` and ``<underlay>.2/24``. On a node, :func:`start_tunnel`
runs a :class:`TunnelEngine` on the TUN device ``kt0`` with the pod address ``10.250.<n>.1/24``
and routes the other node's ``10.250.<m>.0/24`` into it.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from ._engine import TunnelEngine
from ._tunnel import TunnelKind

#: Inner MTU per mode on a 1500-byte underlay: VXLAN adds 50 bytes, IPIP 20.
TUNNEL_MTU = {"vxlan": 1450, "ipip": 1480}


def ip(*args: str) -> str:
    """Run ``ip ARGS`` and return its output; raises CalledProcessError on failure."""
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


def pod_address(node: int) -> str:
    """The pod address of node ``node`` (1 or 2) inside the tunnel."""
    return f"10.250.{node}.1"


@contextmanager
def veth_nodes(underlay: str, prefix: str = "kt") -> Iterator[tuple[str, str]]:
    """Two namespaces joined by ``veth0``; yields their names and always removes them.

    :param underlay: the underlay /24 as a format string, e.g. ``"172.31.250.{}"``.
    :param prefix: start of the namespace names (a random suffix follows).
    """
    tag = secrets.token_hex(3)
    a, b = f"{prefix}A{tag}", f"{prefix}B{tag}"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
        for n, ns in ((1, a), (2, b)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{underlay.format(n)}/24", "dev", "veth0")
            ip("-n", ns, "link", "set", "veth0", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def start_tunnel(
    mode: TunnelKind,
    netns: str,
    node: int,
    underlay: str,
    *,
    offload: bool = True,
    outer_fragments: bool = True,
    gro_send: bool = False,
) -> TunnelEngine:
    """Start node ``node``'s (1 or 2) engine in ``netns`` and wire ``kt0`` as described above.

    The caller stops the engine, which removes ``kt0`` with its address and route.
    """
    other = 3 - node
    engine = TunnelEngine(
        mode,
        "kt0",
        underlay.format(node),
        vni=4096,
        netns=netns,
        offload=offload,
        outer_fragments=outer_fragments,
        gro_send=gro_send,
    )
    engine.add_route(f"10.250.{other}.0/24", underlay.format(other))
    engine.start()
    try:
        ip("-n", netns, "addr", "add", f"{pod_address(node)}/24", "dev", "kt0")
        ip("-n", netns, "link", "set", "kt0", "mtu", str(TUNNEL_MTU[mode]), "up")
        ip("-n", netns, "route", "add", f"10.250.{other}.0/24", "dev", "kt0")
    except BaseException:
        engine.stop()
        raise
    return engine
