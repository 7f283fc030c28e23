"""Wiring a pod's network namespace the way Calico does.

Each pod gets a veth pair: ``eth0`` inside the pod holds the pod's /32, the host end
(``cali`` + a hash of the container id) has no address. The pod's default route points
at the link-local gateway 169.254.1.1, which the host end answers for by proxy ARP; the
host routes the /32 to the host end. Routing per pod rather than bridging keeps every
pod packet on the host's routing table, where NetworkPolicy and cross-node routes act
on it, and lets an address move between nodes without any L2 state.

The node's blocks come from its IP pool (:mod:`.pools`), whose mode decides how pod
traffic crosses nodes (:class:`~.vxlan.VxlanRoutes`, :class:`~.ipip.IpipRoutes`, BGP) and
the pods' MTU. ``netns`` puts the whole node in a named network namespace (tests run
several nodes in one process); a node agent started inside its node's namespace leaves
it None.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from kubetrio.client import Client, ClientError
from kubetrio.netns import in_netns, ip_commands
from kubetrio.providers import PodNetwork

from . import rtnl
from .blocks import DEFAULT_POOL, BlockClaims, BlockGC, is_extra
from .felix import PolicyAgent
from .ipam import BlockAllocator, BlockExhausted
from .ipip import IpipRoutes
from .nft import PolicyTable
from .peers import RouteAgent
from .pools import MODE_MTU, Pool, ensure_pool
from .vxlan import VxlanRoutes

log = logging.getLogger("kubetrio.cni_calico")
T = TypeVar("T")
GATEWAY = "169.254.1.1"
NETNS_DIR = Path("/var/run/netns")
GC_GRACE = 300.0
"""Seconds a block stays orphaned (its Node gone), or an extra block empty, before release."""


def host_veth_name(container_id: str) -> str:
    """The host-side interface name: ``cali`` + 11 hex digits (15 chars, the kernel limit)."""
    return "cali" + hashlib.sha1(container_id.encode()).hexdigest()[:11]


def netns_name(netns_path: str) -> str:
    """The iproute2 name of a network namespace bound under /var/run/netns."""
    path = Path(netns_path)
    if path.parent.resolve() != NETNS_DIR.resolve():
        raise ValueError(f"network namespace {netns_path} is not under {NETNS_DIR}")
    return path.name


class CalicoNetwork:
    """The ``calico`` network plugin: routed /32 pod addresses from the node's block."""

    name = "calico"

    def __init__(
        self,
        block: str,
        *,
        pool: Pool | None = None,
        mode: str = "",
        mtu: int | None = None,
        underlay_ip: str | None = None,
        netns: str | None = None,
        gc_grace: float = GC_GRACE,
    ) -> None:
        """``block``: the node's block when there is no ``pool`` (a hand-placed node), else
        the fallback when no API server serves ``ipamblocks``. ``pool``: the default pool
        as configured; the node follows the stored one (blocks, mode, MTU). ``mode`` and
        ``mtu``: routing and pod MTU of a hand-placed node ("" leaves routing alone).
        ``underlay_ip``: this node's tunnel source, else the Node's InternalIP.
        ``netns``: the node's network namespace (None: ours). ``gc_grace``: see
        :data:`GC_GRACE`."""
        if mode not in ("", *MODE_MTU):
            raise ValueError(f"network mode {mode!r} is not one of {', '.join(MODE_MTU)}")
        self.ipam = BlockAllocator(block)
        self.pool = pool
        self.mode = pool.mode if pool else mode
        self.mtu = pool.pod_mtu if pool else mtu or MODE_MTU.get(mode, 1500)
        self.underlay_ip = underlay_ip
        self.netns = netns
        self.gc_grace = gc_grace
        self.claims: BlockClaims | None = None
        """Set once the block is claimed through the API; allocations are then saved."""
        self.routes: RouteAgent | None = None
        """The mode's route agent, while node services run."""
        self._adopted = False
        self._save_lock = trio.Lock()
        self._changes = 0
        """Allocation changes counted by :meth:`_save`; ``_saved``: those written."""
        self._saved = 0
        self._grow_lock = trio.Lock()
        self._idle_since: dict[str, float] = {}

    async def _ip(self, *args: str, check: bool = True, capture: bool = False) -> bytes:
        """``ip`` in the node's namespace."""
        prefix = ["ip", "-n", self.netns] if self.netns else ["ip"]
        result = await trio.run_process(
            [*prefix, *args], check=check, capture_stdout=capture, capture_stderr=True
        )
        return bytes(result.stdout or b"") if result.returncode == 0 else b""

    async def _sysctl(self, name: str, value: str) -> None:
        await trio.to_thread.run_sync(in_netns, self.netns, lambda: _write_sysctl(name, value))

    async def _netlink(self, fn: Callable[[], T]) -> T:
        """``fn`` (blocking rtnetlink requests) in a worker thread in the node's namespace."""
        return await trio.to_thread.run_sync(in_netns, self.netns, fn)

    async def claim_block(self, client: Client, node_name: str) -> None:
        """Claim this node's blocks through ``IPAMBlock`` objects and load their allocations.

        With a pool, the stored pool (created from the configured one when absent) decides
        mode and MTU, and the node takes the blocks it holds already or else the first
        free one; without, the configured block is claimed as is. Allocations recorded in
        the objects whose interface no longer exists (an agent that died between
        allocating and wiring) are dropped; addresses of live pods found in the routes
        are added.
        """
        if self.pool is not None:
            self.pool = await ensure_pool(client, self.pool)
            self.mode, self.mtu = self.pool.mode, self.pool.pod_mtu
        claims = BlockClaims(
            client,
            node_name,
            pool=self.pool.cidr if self.pool else DEFAULT_POOL,
            block_size=self.pool.block_size if self.pool else self.ipam.block.prefixlen,
        )
        try:
            await claims.claim(None if self.pool else str(self.ipam.block))
        except ClientError as exc:
            if not exc.not_found:
                raise
            log.warning("ipamblocks are not served: using block %s unclaimed", self.ipam.block)
            return
        allocator = BlockAllocator(*map(str, claims.cidrs()))
        links = await self._host_links()
        for block in claims.blocks.values():
            for address, owner in ((block.get("spec") or {}).get("allocations") or {}).items():
                if owner in links:
                    with contextlib.suppress(ValueError):
                        allocator.adopt(str(owner), ipaddress.IPv4Address(address))
        for owner, address in self.ipam.in_use().items():  # wired before the claim
            allocator.adopt(owner, address)
        self.ipam = allocator
        self.claims = claims
        await self._adopt_existing()
        await self._save()

    async def _save(self) -> None:
        """Write the allocations; callers that queued behind a save begun after their
        change share it (a burst of pods costs a few writes, not one each)."""
        if self.claims is None:
            return
        self._changes += 1
        change = self._changes
        async with self._save_lock:
            if self._saved >= change:
                return
            upto = self._changes
            try:
                await self.claims.save({str(a): o for o, a in self.ipam.in_use().items()})
                self._saved = upto
            except Exception as exc:
                # The block is this node's alone, so handing out its addresses stays safe
                # while the API is away; the next save writes the whole map again.
                log.warning("saving the allocations of the node's blocks failed: %s", exc)

    async def _allocate(self, owner: str) -> ipaddress.IPv4Address:
        """The owner's address; when the node's blocks are full, from one more block."""
        try:
            return self.ipam.allocate(owner)
        except BlockExhausted:
            if self.claims is None or self.pool is None:
                raise
        async with self._grow_lock:
            with contextlib.suppress(BlockExhausted):
                return self.ipam.allocate(owner)  # another add claimed a block meanwhile
            block = await self.claims.claim_extra()
            self.ipam.add_block(str(block["spec"]["cidr"]))
            return self.ipam.allocate(owner)

    async def release_idle_blocks(self, now: float) -> list[str]:
        """Release the node's extra blocks that have been empty for ``gc_grace`` seconds
        at time ``now`` (a monotonic clock); return their names.

        Only this node allocates from its blocks, so taking a block out of the allocator
        before deleting its object leaves no window for an address from a released block.
        """
        if self.claims is None:
            return []
        released = []
        async with self._save_lock:
            idle = {}
            for name, block in list(self.claims.blocks.items()):
                cidr = ipaddress.IPv4Network(str(block["spec"]["cidr"]))
                if not is_extra(block) or self.ipam.in_block(cidr):
                    continue
                since = idle[name] = self._idle_since.get(name, now)
                if now - since < self.gc_grace:
                    continue
                self.ipam.remove_block(cidr)
                gone = False
                try:
                    gone = await self.claims.release(name)
                finally:
                    if not gone:
                        self.ipam.add_block(str(cidr))
                if gone:
                    del idle[name]
                    released.append(name)
            self._idle_since = idle
        return released

    async def _adopt_existing(self) -> None:
        """Re-learn the addresses of pods wired before a restart, from the host's routes.

        Allocations live in memory; an agent that restarts keeps its running pods, whose
        /32 routes point at their ``cali*`` interfaces. Each becomes an allocation again,
        owned by its interface name — the same owner ``add``/``delete`` use.
        """
        if ip_commands():
            shown = await self._ip(
                "-j", "-4", "route", "show", "table", "main", check=False, capture=True
            )
            routes = [
                (str(route.get("dev", "")), str(route.get("dst", "")))
                for route in json.loads(shown or b"[]")
            ]
        else:
            routes = await self._netlink(lambda: rtnl.pod_host_routes("cali"))
        for device, destination in routes:
            if device.startswith("cali") and "/" not in destination:
                with contextlib.suppress(ValueError):
                    self.ipam.adopt(device, ipaddress.IPv4Address(destination))
        self._adopted = True

    async def add(self, *, pod: dict[str, Any], netns_path: str, container_id: str) -> PodNetwork:
        """Create the veth pair, give the pod its address and routes. Idempotent."""
        ns = netns_name(netns_path)
        host = host_veth_name(container_id)
        if not self._adopted:
            await self._adopt_existing()
        address = await self._allocate(host)
        await self._save()  # before wiring: a crash after this leaves no unrecorded address
        if not ip_commands():
            await self._netlink(
                lambda: rtnl.wire_pod(
                    netns_path,
                    host,
                    address=str(address),
                    mtu=self.mtu,
                    gateway=GATEWAY,
                    before_up=_enable_proxy_arp,
                )
            )
            return PodNetwork(ips=[str(address)], gateway=GATEWAY, mtu=self.mtu)
        # Start from a clean slate so a retried add after a partial failure converges.
        await self._ip("link", "del", host, check=False)
        await self._ip("-n", ns, "link", "del", "eth0", check=False)
        mtu = str(self.mtu)
        await self._ip(
            "link",
            "add",
            host,
            "mtu",
            mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            mtu,
            "netns",
            ns,
        )
        await trio.to_thread.run_sync(in_netns, self.netns, lambda: _enable_proxy_arp(host))
        await self._ip("link", "set", host, "up")
        await self._ip("-n", ns, "link", "set", "lo", "up")
        await self._ip("-n", ns, "addr", "add", f"{address}/32", "dev", "eth0")
        await self._ip("-n", ns, "link", "set", "eth0", "up")
        await self._ip("-n", ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
        await self._ip("-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0")
        await self._ip("route", "replace", f"{address}/32", "dev", host, "scope", "link")
        return PodNetwork(ips=[str(address)], gateway=GATEWAY, mtu=self.mtu)

    async def delete(self, *, pod: dict[str, Any], netns_path: str, container_id: str) -> None:
        """Remove the veth pair (its route goes with it) and release the address."""
        host = host_veth_name(container_id)
        if ip_commands():
            await self._ip("link", "del", host, check=False)
        else:
            await self._netlink(lambda: rtnl.remove_link(host))
        if self.ipam.release(host) is not None:
            await self._save()

    async def run_node_services(
        self, client: Any, node_name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Enable forwarding, claim the node's blocks, then until cancelled: enforce
        NetworkPolicy on this node's pods, program routes to other nodes' blocks the way
        the pool's mode says, and release blocks nobody needs any more.

        Without a client (a node agent with no cluster) there is no policy to enforce.
        When cancelled with no pod left on the node (``kubetrio down`` stops the pods
        first), the route agent removes what it made — tunnel device, bird and its
        routes; with pods still running (an agent restart) everything stays, so their
        traffic keeps flowing and the next agent takes over.
        """
        await self._sysctl("net/ipv4/ip_forward", "1")
        if client is None:
            task_status.started()
            await trio.sleep_forever()
        await self.claim_block(client, node_name)
        try:
            async with trio.open_nursery() as nursery:
                self.routes = self.route_agent(client, node_name)
                if self.routes is not None:
                    # Not awaited: without an underlay address it waits for the Node the
                    # agent registers only after node services have started.
                    nursery.start_soon(self.routes.run)
                if self.claims is not None:
                    nursery.start_soon(self._collect_blocks, client)
                policy = PolicyAgent(client, node_name, table=PolicyTable(netns=self.netns))
                await nursery.start(policy.run)
                task_status.started()
        finally:
            if self.routes is not None and not self.ipam.in_use():
                with trio.CancelScope(shield=True), trio.move_on_after(15):
                    await self.routes.remove()

    def route_agent(self, client: Client, node_name: str) -> RouteAgent | None:
        """The route agent of the mode: VXLAN, IPIP, BGP, or None (routing left alone)."""
        block = str(self.ipam.block)
        if self.mode == "vxlan":
            return VxlanRoutes(
                client, node_name, underlay_ip=self.underlay_ip, netns=self.netns, block=block
            )
        if self.mode == "ipip":
            return IpipRoutes(
                client, node_name, underlay_ip=self.underlay_ip, netns=self.netns, block=block
            )
        if self.mode == "bgp":
            from .bgp import BgpRoutes

            bgp: RouteAgent = BgpRoutes(
                client, node_name, underlay_ip=self.underlay_ip, netns=self.netns
            )
            return bgp
        return None

    async def _collect_blocks(self, client: Client) -> None:
        """Every node collects orphaned blocks and releases its own idle extra ones."""
        collector = BlockGC(client, grace=self.gc_grace)
        while True:
            await trio.sleep(min(max(self.gc_grace / 4, 0.05), 30.0))
            now = trio.current_time()
            try:
                await collector.collect(now)
                await self.release_idle_blocks(now)
            except Exception as exc:  # the API away: the next pass tries again
                log.warning("releasing unused blocks failed: %s", exc)

    async def _host_links(self) -> set[str]:
        """Names of the interfaces in the node's network namespace."""
        if not ip_commands():
            return await self._netlink(rtnl.host_link_names)
        links = json.loads(await self._ip("-j", "link", "show", check=False, capture=True) or b"[]")
        return {str(link.get("ifname", "")) for link in links}


def _write_sysctl(name: str, value: str) -> None:
    with open(os.path.join("/proc/sys", name), "w") as f:
        f.write(value)


def _enable_proxy_arp(interface: str) -> None:
    # The kernel answers ARP by proxy only on interfaces that forward; answering at once
    # (proxy_delay 0) keeps the pod's first packet from waiting up to 0.8 s.
    _write_sysctl(f"net/ipv4/conf/{interface}/forwarding", "1")
    _write_sysctl(f"net/ipv4/conf/{interface}/proxy_arp", "1")
    _write_sysctl(f"net/ipv4/neigh/{interface}/proxy_delay", "0")
