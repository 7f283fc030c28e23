"""Cross-node pod routes over the kernel VXLAN device (felix's route role, VXLAN mode).

Each node creates ``vxlan.calico`` (VNI 4096, UDP 4789, no learning), gives it its first
block's network address as its tunnel address (never handed to a pod: the allocator uses
the blocks' host addresses), and publishes on its Node object what other nodes need to
reach it::

    vxlan.kubetrio.io/block        10.244.1.0/26     the node's first pod block
    vxlan.kubetrio.io/tunnel-ip    10.244.1.0        the device's address
    vxlan.kubetrio.io/mac          the device's MAC
    vxlan.kubetrio.io/underlay-ip  172.30.0.2        where encapsulated packets go

For every peer (:mod:`.peers`: other nodes, all their blocks from the IPAMBlocks) it
programs, flannel style, a route to each block via the peer's tunnel address
(``onlink``), a permanent neighbour entry for that address with the peer's MAC, and an
FDB entry sending that MAC to the peer's underlay address. Nodes that disappear (or
lose their annotations, or release a block) have their entries removed.
"""

from __future__ import annotations

import json
import logging

from kubetrio.client import Client

from .peers import BLOCK, PeerRoutes

log = logging.getLogger("kubetrio.cni_calico.vxlan")

PREFIX = "vxlan.kubetrio.io/"
TUNNEL_IP = PREFIX + "tunnel-ip"
MAC = PREFIX + "mac"
UNDERLAY_IP = PREFIX + "underlay-ip"
DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
MTU = 1450
"""Pod MTU under VXLAN: 1500 minus the 50 bytes of outer headers."""


class VxlanRoutes(PeerRoutes):
    """Programs VXLAN routes to other nodes' blocks; publishes this node's tunnel.

    Takes the arguments of :class:`~.peers.PeerRoutes`, and ``device``: the VXLAN device.
    """

    prefix = PREFIX
    kind = "VXLAN"

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        underlay_ip: str | None = None,
        netns: str | None = None,
        block: str | None = None,
        device: str = DEVICE,
    ) -> None:
        super().__init__(client, node_name, underlay_ip=underlay_ip, netns=netns, block=block)
        self.device = device
        self.peers: dict[str, tuple[str, str, str]] = {}
        """Programmed peer blocks: block → (tunnel address, MAC, underlay address)."""

    async def ensure_device(self, underlay: str) -> str:
        """Create (or keep) the VXLAN device with the tunnel address; return its MAC."""
        shown = json.loads(await self._cmd("ip", "-j", "-d", "link", "show", check=False) or b"[]")
        existing = [link for link in shown if link.get("ifname") == self.device]
        if existing:
            info = (existing[0].get("linkinfo") or {}).get("info_data") or {}
            if info.get("id") != VNI or info.get("local") != underlay:
                await self._cmd("ip", "link", "del", self.device)
                existing = []
        if not existing:
            await self._cmd(
                "ip", "link", "add", self.device, "type", "vxlan", "id", str(VNI),
                "dstport", str(PORT), "local", underlay, "nolearning",
            )  # fmt: skip
        tunnel = str((await self.own_block()).network_address)
        await self._cmd("ip", "addr", "replace", f"{tunnel}/32", "dev", self.device)
        await self._cmd("ip", "link", "set", self.device, "mtu", str(MTU), "up")
        [link] = json.loads(await self._cmd("ip", "-j", "link", "show", "dev", self.device))
        return str(link["address"])

    async def setup(self, underlay: str) -> dict[str, str]:
        """Create the device; publish the first block, the tunnel address and the MAC."""
        mac = await self.ensure_device(underlay)
        block = await self.own_block()
        return {BLOCK: str(block), "tunnel-ip": str(block.network_address), "mac": mac}

    def desired_peers(self) -> dict[str, tuple[str, str, str]]:
        """block → (tunnel address, MAC, underlay address), every block of every peer."""
        wanted = {}
        for peer in self.table.peers().values():
            tunnel, mac = peer.tunnel.get("tunnel-ip"), peer.tunnel.get("mac")
            if tunnel and mac and peer.underlay:
                for block in peer.blocks:
                    wanted[block] = (tunnel, mac, peer.underlay)
        return wanted

    async def sync(self) -> None:
        """Program the peers the caches call for; remove the others."""
        wanted = self.desired_peers()
        dev = self.device
        kept = set(wanted.values())
        for block, entry in self.peers.items():
            if wanted.get(block) != entry:
                await self._cmd("ip", "route", "del", block, check=False)
        for tunnel, mac, _ in set(self.peers.values()) - kept:
            await self._cmd("ip", "neigh", "del", tunnel, "dev", dev, check=False)
            await self._cmd("bridge", "fdb", "del", mac, "dev", dev, check=False)
        for tunnel, mac, underlay in kept:
            await self._cmd("bridge", "fdb", "replace", mac, "dev", dev, "dst", underlay)
            await self._cmd(
                "ip", "neigh", "replace", tunnel, "lladdr", mac, "dev", dev, "nud", "permanent"
            )
        for block, (tunnel, _, _) in wanted.items():
            await self._cmd("ip", "route", "replace", block, "via", tunnel, "dev", dev, "onlink")
        self.peers = wanted

    async def remove(self) -> None:
        """Delete the device (its routes, neighbours and FDB entries go with it)."""
        await self._cmd("ip", "link", "del", self.device, check=False)
        self.peers = {}
