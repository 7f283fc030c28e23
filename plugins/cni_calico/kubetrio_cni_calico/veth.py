"""Wiring a pod's network namespace the way Calico does.

Each pod gets a veth pair: ``eth0`` inside the pod holds the pod's /32, the host end
(``cali`` + a hash of the container id) has no address. The pod's default route points
at the link-local gateway 169.254.1.1, which the host end answers for by proxy ARP; the
host routes the /32 to the host end. Routing per pod rather than bridging keeps every
pod packet on the host's routing table, where NetworkPolicy and cross-node routes act
on it, and lets an address move between nodes without any L2 state.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
from pathlib import Path
from typing import Any

import trio

from kubetrio.client import Client, ClientError
from kubetrio.providers import PodNetwork

from .blocks import DEFAULT_BLOCK_SIZE, DEFAULT_POOL, BlockClaims
from .felix import PolicyAgent
from .ipam import BlockAllocator
from .vxlan import VxlanRoutes

log = logging.getLogger("kubetrio.cni_calico")
GATEWAY = "169.254.1.1"
NETNS_DIR = Path("/var/run/netns")


def host_veth_name(container_id: str) -> str:
    """The host-side interface name: ``cali`` + 11 hex digits (15 chars, the kernel limit)."""
    return "cali" + hashlib.sha1(container_id.encode()).hexdigest()[:11]


def netns_name(netns_path: str) -> str:
    """The iproute2 name of a network namespace bound under /var/run/netns."""
    path = Path(netns_path)
    if path.parent.resolve() != NETNS_DIR.resolve():
        raise ValueError(f"network namespace {netns_path} is not under {NETNS_DIR}")
    return path.name


async def _ip(*args: str, check: bool = True) -> int:
    result = await trio.run_process(["ip", *args], check=check, capture_stderr=True)
    return result.returncode


class CalicoNetwork:
    """The ``calico`` network plugin: routed /32 pod addresses from the node's block."""

    name = "calico"

    def __init__(
        self,
        block: str,
        *,
        mtu: int = 1500,
        pool: str | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        mode: str = "",
        underlay_ip: str | None = None,
    ) -> None:
        """``block``: the node's block, or with ``pool`` the fallback when no API
        server serves ``ipamblocks``; ``pool``: claim the first free block of it;
        ``mode``: ``vxlan`` routes to other nodes' blocks over the kernel VXLAN device
        (from ``underlay_ip``, else the Node's InternalIP); "" leaves routing alone."""
        if mode not in ("", "vxlan"):
            raise ValueError(f"network mode {mode!r} is not supported (use vxlan or none)")
        self.ipam = BlockAllocator(block)
        self.mtu = mtu
        self.mode = mode
        self.underlay_ip = underlay_ip
        self.pool = pool
        self.block_size = block_size
        self.claims: BlockClaims | None = None
        """Set once the block is claimed through the API; allocations are then saved."""
        self._adopted = False
        self._save_lock = trio.Lock()

    async def claim_block(self, client: Client, node_name: str) -> None:
        """Claim this node's block through an ``IPAMBlock`` and load its allocations.

        The configured block is claimed as is; with a pool, the block this node holds
        already or else the first free one. Allocations recorded in the object whose
        interface no longer exists (an agent that died between allocating and wiring)
        are dropped; addresses of live pods found in the routes are added.
        """
        claims = BlockClaims(
            client, node_name, pool=self.pool or DEFAULT_POOL, block_size=self.block_size
        )
        try:
            block = await claims.claim(None if self.pool else str(self.ipam.block))
        except ClientError as exc:
            if not exc.not_found:
                raise
            log.warning("ipamblocks are not served: using block %s unclaimed", self.ipam.block)
            return
        spec = block.get("spec") or {}
        allocator = BlockAllocator(str(spec["cidr"]))
        links = await _host_links()
        for address, owner in (spec.get("allocations") or {}).items():
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
        if self.claims is None:
            return
        async with self._save_lock:
            try:
                await self.claims.save({str(a): o for o, a in self.ipam.in_use().items()})
            except Exception as exc:
                # The block is this node's alone, so handing out its addresses stays safe
                # while the API is away; the next save writes the whole map again.
                log.warning("saving the allocations of block %s failed: %s", self.ipam.block, exc)

    async def _adopt_existing(self) -> None:
        """Re-learn the addresses of pods wired before a restart, from the host's routes.

        Allocations live in memory; an agent that restarts keeps its running pods, whose
        /32 routes point at their ``cali*`` interfaces. Each becomes an allocation again,
        owned by its interface name — the same owner ``add``/``delete`` use.
        """
        result = await trio.run_process(
            ["ip", "-j", "-4", "route", "show", "table", "main"],
            capture_stdout=True,
            check=False,
        )
        routes = json.loads(result.stdout or b"[]") if result.returncode == 0 else []
        for route in routes:
            device = str(route.get("dev", ""))
            destination = str(route.get("dst", ""))
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
        address = self.ipam.allocate(host)
        await self._save()  # before wiring: a crash after this leaves no unrecorded address
        # Start from a clean slate so a retried add after a partial failure converges.
        await _ip("link", "del", host, check=False)
        await _ip("-n", ns, "link", "del", "eth0", check=False)
        mtu = str(self.mtu)
        await _ip(
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
        await trio.to_thread.run_sync(_enable_proxy_arp, host)
        await _ip("link", "set", host, "up")
        await _ip("-n", ns, "link", "set", "lo", "up")
        await _ip("-n", ns, "addr", "add", f"{address}/32", "dev", "eth0")
        await _ip("-n", ns, "link", "set", "eth0", "up")
        await _ip("-n", ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
        await _ip("-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0")
        await _ip("route", "replace", f"{address}/32", "dev", host, "scope", "link")
        return PodNetwork(ips=[str(address)], gateway=GATEWAY, mtu=self.mtu)

    async def delete(self, *, pod: dict[str, Any], netns_path: str, container_id: str) -> None:
        """Remove the veth pair (its route goes with it) and release the address."""
        host = host_veth_name(container_id)
        await _ip("link", "del", host, check=False)
        if self.ipam.release(host) is not None:
            await self._save()

    async def run_node_services(
        self, client: Any, node_name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Enable forwarding, claim the node's block, then enforce NetworkPolicy on this
        node's pods (and in ``vxlan`` mode program routes to other nodes) until cancelled.

        Without a client (a node agent with no cluster) there is no policy to enforce.
        """
        await trio.to_thread.run_sync(_write_sysctl, "net/ipv4/ip_forward", "1")
        if client is None:
            task_status.started()
            await trio.sleep_forever()
        await self.claim_block(client, node_name)
        async with trio.open_nursery() as nursery:
            if self.mode == "vxlan":
                routes = VxlanRoutes(
                    client, node_name, block=str(self.ipam.block), underlay_ip=self.underlay_ip
                )
                # Not awaited: without an underlay address it waits for the Node the
                # agent registers only after node services have started.
                nursery.start_soon(routes.run)
            await nursery.start(PolicyAgent(client, node_name).run)
            task_status.started()


async def _host_links() -> set[str]:
    """Names of the interfaces in this network namespace."""
    result = await trio.run_process(["ip", "-j", "link", "show"], capture_stdout=True, check=False)
    links = json.loads(result.stdout or b"[]") if result.returncode == 0 else []
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
