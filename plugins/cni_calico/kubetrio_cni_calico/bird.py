"""bird2's configuration for one node of the BGP full mesh (Calico's confd role).

What a node's bird does, section by section of the rendered file:

- ``protocol static blocks``: one ``blackhole`` route per block the node holds. bird
  announces it to every peer, and the kernel protocol installs it here, so the block's
  aggregate is reachable from other nodes while this node's pod /32 routes (more
  specific) carry the traffic; addresses of the block that no pod holds are dropped
  here instead of following the default route back out.
- ``protocol kernel``: writes the routes learned over BGP, and the blackholes, into the
  main table (``proto bird``); ``persist`` keeps them when bird stops.
- ``protocol bgp mesh_<address>``: one iBGP session per other node (all in one AS),
  ``direct`` because peers share the underlay L2, so a learned route's next hop is the
  peer's underlay address itself. Only the blocks are exported (iBGP never re-exports
  what it learned, so a full mesh is needed, and is what this renders).

Graceful restart (RFC 4724) makes an agent restart hitless: bird stopped with ``birdc
graceful restart`` leaves its kernel routes in place and its peers keep its routes
(stale, up to 120 s); the next bird, started with ``-R``, holds back pruning the kernel
table until its sessions are back (or ``graceful restart wait`` runs out).

The output depends only on the set of blocks and peers, sorted, so equal inputs give
byte-equal files and the caller can skip a reload when nothing changed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

DEFAULT_ASN = 64512
"""The private AS every node of the mesh uses (Calico's default)."""

BLOCKS_PROTOCOL = "blocks"


def peer_protocol(address: str) -> str:
    """The bgp protocol name of a peer: ``mesh_`` + its address, dots as underscores."""
    return "mesh_" + str(ipaddress.IPv4Address(address)).replace(".", "_")


def render_config(
    *,
    router_id: str,
    blocks: Iterable[str],
    peers: Mapping[str, str],
    asn: int = DEFAULT_ASN,
) -> str:
    """The bird.conf of a node.

    :param router_id: this node's underlay address: router id and BGP source address.
    :param blocks: the CIDRs of the blocks this node holds (announced as blackholes).
    :param peers: node name → underlay address of every other node. Entries with this
        node's own address are left out, and one address appears once (under the first
        name in sorted order), since bird refuses two sessions to one neighbor.
    :param asn: the AS of the whole mesh.
    """
    local = ipaddress.IPv4Address(router_id)
    networks = sorted({ipaddress.IPv4Network(block) for block in blocks})
    by_address: dict[ipaddress.IPv4Address, str] = {}
    for name, address in sorted(peers.items()):
        by_address.setdefault(ipaddress.IPv4Address(address), name)
    by_address.pop(local, None)
    lines = [
        "# Rendered by kubetrio-cni-calico (bird.py); rewritten on every change.",
        f"router id {local};",
        "graceful restart wait 10;",  # a peer that is down must not hold routes back long
        "log stderr { info, remote, warning, error, auth, fatal, bug };",
        "",
        "protocol device { scan time 10; }",
        "",
        f"protocol static {BLOCKS_PROTOCOL} {{",
        "  ipv4;",
        *(f"  route {network} blackhole;" for network in networks),
        "}",
        "",
        "protocol kernel {",
        "  persist;",
        "  graceful restart on;",
        "  ipv4 { import none; export where source ~ [ RTS_BGP, RTS_STATIC ]; };",
        "}",
        "",
        "template bgp mesh {",
        f"  local {local} as {asn};",
        "  direct;",
        "  graceful restart on;",
        # Short timers: a node that dies without a goodbye is noticed within 9 s, and a
        # new peer is tried a second after it appears rather than bird's default 5 s.
        "  hold time 9; keepalive time 3;",
        "  connect delay time 1; connect retry time 2; error wait time 1, 16;",
        f'  ipv4 {{ import all; export where proto = "{BLOCKS_PROTOCOL}"; next hop self; }};',
        "}",
    ]
    for peer, name in sorted(by_address.items()):
        lines += [
            "",
            f"protocol bgp {peer_protocol(str(peer))} from mesh {{",
            f'  description "node {name}";',
            f"  neighbor {peer} as {asn};",
            "}",
        ]
    return "\n".join(lines) + "\n"
