"""Cross-node pod routes over the kernel VXLAN device (felix's route role, VXLAN mode).

Each node owns one block of the pod CIDR. It creates ``vxlan.calico`` (VNI 4096, UDP
4789, no learning), gives it the block's network address as its tunnel address (never
handed to a pod: the allocator uses the block's host addresses), and publishes on its
Node object what other nodes need to reach it::

    vxlan.kubetrio.io/block        10.244.1.0/26     the node's pod block
    vxlan.kubetrio.io/tunnel-ip    10.244.1.0        the device's address
    vxlan.kubetrio.io/mac          the device's MAC
    vxlan.kubetrio.io/underlay-ip  172.30.0.2        where encapsulated packets go

From every other node's annotations it programs, flannel style, a route to the block via
the peer's tunnel address (``onlink``), a permanent neighbour entry for that address
with the peer's MAC, and an FDB entry sending that MAC to the peer's underlay address.
Nodes that disappear (or lose their annotations) have their entries removed. The state
is level-based: every change of Nodes re-derives the whole table of peers.
"""

from __future__ import annotations

import ipaddress
import json
import logging

import trio

from kubetrio.client import Client, ClientError, FunctionHandler, Informer

log = logging.getLogger("kubetrio.cni_calico.vxlan")

PREFIX = "vxlan.kubetrio.io/"
BLOCK = PREFIX + "block"
TUNNEL_IP = PREFIX + "tunnel-ip"
MAC = PREFIX + "mac"
UNDERLAY_IP = PREFIX + "underlay-ip"
DEVICE = "vxlan.calico"
VNI = 4096
PORT = 4789
MTU = 1450
"""Pod MTU under VXLAN: 1500 minus the 50 bytes of outer headers."""


class VxlanRoutes:
    """Programs VXLAN routes to other nodes' blocks; publishes this node's tunnel.

    :param netns: run every ``ip``/``bridge`` command in this named network namespace
        (tests put several nodes in one process); None for the caller's own.
    """

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        block: str,
        underlay_ip: str | None = None,
        netns: str | None = None,
        device: str = DEVICE,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.block = ipaddress.IPv4Network(block)
        self.underlay_ip = underlay_ip
        self.netns = netns
        self.device = device
        self.nodes = Informer(client, "v1", "nodes")
        self.peers: dict[str, tuple[str, str, str]] = {}
        """Programmed peers: block → (tunnel address, MAC, underlay address)."""
        self._changed = trio.Event()

    async def _cmd(self, tool: str, *args: str, check: bool = True) -> bytes:
        prefix = [tool, "-n", self.netns] if self.netns else [tool]
        result = await trio.run_process(
            [*prefix, *args], check=check, capture_stdout=True, capture_stderr=True
        )
        return bytes(result.stdout)

    async def _underlay(self) -> str:
        if self.underlay_ip:
            return self.underlay_ip
        while True:  # the node agent registers the Node right after starting us
            try:
                node = await self.client.get("v1", "nodes", self.node_name)
            except ClientError as exc:
                if not exc.not_found:
                    raise
            else:
                for address in (node.get("status") or {}).get("addresses") or []:
                    if address.get("type") == "InternalIP":
                        return str(address["address"])
            await trio.sleep(0.2)

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
        tunnel = str(self.block.network_address)
        await self._cmd("ip", "addr", "replace", f"{tunnel}/32", "dev", self.device)
        await self._cmd("ip", "link", "set", self.device, "mtu", str(MTU), "up")
        [link] = json.loads(await self._cmd("ip", "-j", "link", "show", "dev", self.device))
        return str(link["address"])

    async def _publish(self, mac: str, underlay: str) -> None:
        annotations = {
            BLOCK: str(self.block),
            TUNNEL_IP: str(self.block.network_address),
            MAC: mac,
            UNDERLAY_IP: underlay,
        }
        while True:
            try:
                await self.client.patch(
                    "v1", "nodes", self.node_name, {"metadata": {"annotations": annotations}}
                )
                return
            except ClientError as exc:
                if not exc.not_found:
                    raise
            await trio.sleep(0.2)  # not registered yet

    def desired_peers(self) -> dict[str, tuple[str, str, str]]:
        """block → (tunnel address, MAC, underlay address) of every other node."""
        peers = {}
        for node in self.nodes.list():
            meta = node.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if meta.get("name") == self.node_name or not all(
                annotations.get(key) for key in (BLOCK, TUNNEL_IP, MAC, UNDERLAY_IP)
            ):
                continue
            peers[str(annotations[BLOCK])] = (
                str(annotations[TUNNEL_IP]),
                str(annotations[MAC]),
                str(annotations[UNDERLAY_IP]),
            )
        return peers

    async def sync(self) -> None:
        """Program the peers the Node cache calls for; remove the others."""
        wanted = self.desired_peers()
        for block, (tunnel, mac, _) in self.peers.items():
            if wanted.get(block) != self.peers[block]:
                await self._cmd("ip", "route", "del", block, check=False)
                await self._cmd("ip", "neigh", "del", tunnel, "dev", self.device, check=False)
                await self._cmd("bridge", "fdb", "del", mac, "dev", self.device, check=False)
        dev = self.device
        for block, (tunnel, mac, underlay) in wanted.items():
            await self._cmd("bridge", "fdb", "replace", mac, "dev", dev, "dst", underlay)
            await self._cmd(
                "ip", "neigh", "replace", tunnel, "lladdr", mac, "dev", dev, "nud", "permanent"
            )
            await self._cmd("ip", "route", "replace", block, "via", tunnel, "dev", dev, "onlink")
        self.peers = wanted

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish this node's tunnel, then follow the Nodes until cancelled."""
        underlay = await self._underlay()
        mac = await self.ensure_device(underlay)
        self.nodes.add_handler(FunctionHandler(lambda _obj: self._changed.set()))
        async with trio.open_nursery() as nursery:
            await nursery.start(self.nodes.run)
            nursery.start_soon(self._publish, mac, underlay)
            task_status.started()
            while True:
                self._changed = trio.Event()
                try:
                    await self.sync()
                except Exception as exc:  # a refused command: log, retry on a timer
                    log.warning("programming VXLAN peers failed: %s", exc)
                    with trio.move_on_after(1.0):
                        await self._changed.wait()
                    continue
                await self._changed.wait()

    async def remove(self) -> None:
        """Delete the device (its routes, neighbours and FDB entries go with it)."""
        await self._cmd("ip", "link", "del", self.device, check=False)
        self.peers = {}
