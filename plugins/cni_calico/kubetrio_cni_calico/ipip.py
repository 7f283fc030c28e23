"""Cross-node pod routes over IPIP, through the Rust userspace tunnel (Calico's IPIP mode).

This kernel has no ``ipip`` device, so each node runs a :class:`kubetrio.datapath.TunnelEngine`
in IPIP mode: a TUN device ``tunl.calico`` whose packets Rust threads wrap in an outer
IPv4 header (protocol 4) to the peer's underlay address, and the reverse for packets
arriving on a raw protocol-4 socket. For every peer block (:mod:`.peers`: other nodes, all
their blocks) the node has a kernel route ``block dev tunl.calico`` and the engine a route
``block → peer underlay address``; both follow the peer table.

The device gets the node's first block's network address (never a pod's), so traffic the
node itself sends to remote pods has a source the peers route back through the tunnel.
The node publishes ``ipip.kubetrio.io/underlay-ip`` and ``ipip.kubetrio.io/block``. Pods
get MTU 1480 (20 bytes of outer header). The engine's threads live in the agent process:
stopping the agent stops the tunnel, and the engine removes the device it created.
"""

from __future__ import annotations

import ipaddress
import logging

import trio

from kubetrio.client import Client
from kubetrio.datapath import TunnelEngine

from .peers import BLOCK, PeerRoutes

log = logging.getLogger("kubetrio.cni_calico.ipip")

PREFIX = "ipip.kubetrio.io/"
UNDERLAY_IP = PREFIX + "underlay-ip"
DEVICE = "tunl.calico"
MTU = 1480
"""Pod MTU under IPIP: 1500 minus the 20-byte outer IPv4 header."""


class IpipRoutes(PeerRoutes):
    """Runs the IPIP tunnel engine and keeps its routes (and the kernel's) on the peers.

    Takes the arguments of :class:`~.peers.PeerRoutes`, and ``device``: the TUN device.
    """

    prefix = PREFIX
    kind = "IPIP"

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
        self.engine: TunnelEngine | None = None
        self.peers: dict[str, str] = {}
        """Programmed peer blocks: block → underlay address of the node holding it."""

    async def setup(self, underlay: str) -> dict[str, str]:
        """Start the engine (it creates the TUN device), then address and raise the device."""
        await self.remove()  # a device left by an earlier run would hold stale routes
        engine = TunnelEngine("ipip", self.device, underlay, netns=self.netns)
        await trio.to_thread.run_sync(engine.start)
        self.engine = engine
        blocks = self.table.own_blocks()
        own = self.block or (ipaddress.IPv4Network(blocks[0]) if blocks else None)
        if own is not None:
            tunnel = f"{own.network_address}/32"
            await self._cmd("ip", "addr", "replace", tunnel, "dev", self.device)
        await self._cmd("ip", "link", "set", self.device, "mtu", str(MTU), "up")
        # The first block, for peers whose API server does not serve ipamblocks.
        return {BLOCK: str(own)} if own is not None else {}

    def desired_peers(self) -> dict[str, str]:
        """block → underlay address, every block of every peer with a known underlay."""
        return {
            block: peer.underlay
            for peer in self.table.peers().values()
            if peer.underlay
            for block in peer.blocks
        }

    async def sync(self) -> None:
        """Program the peers the caches call for; remove the others."""
        if self.engine is None:
            return
        wanted = self.desired_peers()
        for block in self.peers.keys() - wanted.keys():
            await self._cmd("ip", "route", "del", block, "dev", self.device, check=False)
            self.engine.remove_route(block)
        for block, underlay in wanted.items():
            # The engine first, so the kernel never routes a block the engine drops.
            self.engine.add_route(block, underlay)
            await self._cmd("ip", "route", "replace", block, "dev", self.device)
        self.peers = wanted

    async def remove(self) -> None:
        """Stop the engine and delete the device (its routes go with it)."""
        engine, self.engine = self.engine, None
        if engine is not None:
            await trio.to_thread.run_sync(engine.stop)
        await self._cmd("ip", "link", "del", self.device, check=False)
        self.peers = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Like :meth:`PeerRoutes.run`; the engine stops when cancelled."""
        try:
            await super().run(task_status=task_status)
        finally:
            engine, self.engine = self.engine, None
            if engine is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(engine.stop)
