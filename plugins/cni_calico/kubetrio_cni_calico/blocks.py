"""Per-node address blocks claimed through API objects (Calico's IPAMBlock).

The cluster pod CIDR (the pool) is cut into blocks, /26 by default. A node owns a
block by creating the cluster-scoped ``IPAMBlock`` named after it
(``ipamblocks.crd.kubetrio.io``, name ``10-244-0-64-26``): the API server's create is a
compare-and-swap on the name, so when two nodes race for one block exactly one create
succeeds and the other moves on to the next block. Two nodes therefore never hand out
one address.

A node starts with one block; when its blocks are full it claims another free one the
same way (``spec.extra: true``). Each block object holds the allocation map of its
addresses (``spec.allocations``: address → owner), written after every allocation and
release with the object's resourceVersion, so a restarted agent knows which addresses
are taken even for pods it cannot see.

Blocks are released again (:class:`BlockGC`): a block whose node no longer exists, after
a grace period, by whichever node agent notices it first; a node's own empty extra
blocks, after a grace period, by that node (it alone allocates from them, so it can
retire one without racing its own allocations).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

from kubetrio.client import Client, ClientError
from kubetrio.providers import ResourceDefinition

log = logging.getLogger("kubetrio.cni_calico.blocks")

GROUP = "crd.kubetrio.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "ipamblocks"
KIND = "IPAMBlock"
DEFAULT_POOL = "10.244.0.0/16"
DEFAULT_BLOCK_SIZE = 26

IPAM_BLOCK = ResourceDefinition(
    group=GROUP,
    version=VERSION,
    kind=KIND,
    plural=PLURAL,
    namespaced=False,
    short_names=("ipb",),
    schema={
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cidr": {"type": "string"},
                    "node": {"type": "string"},
                    "extra": {"type": "boolean"},
                    "allocations": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    },
                },
            }
        },
    },
)
"""The kind the plugin registers: one object per claimed block."""


class PoolExhausted(RuntimeError):
    """Every block of the pool is claimed by some node."""


class BlockTaken(RuntimeError):
    """The block this node was configured with belongs to another node."""


def block_name(cidr: ipaddress.IPv4Network) -> str:
    """The object name of a block: ``10.244.0.64/26`` → ``10-244-0-64-26``."""
    return f"{cidr.network_address}-{cidr.prefixlen}".replace(".", "-")


def _cidr(block: Mapping[str, Any]) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(str((block.get("spec") or {})["cidr"]))


def is_extra(block: Mapping[str, Any]) -> bool:
    """Whether a block was claimed after its node's first one filled up."""
    return bool((block.get("spec") or {}).get("extra"))


class BlockClaims:
    """Claims this node's blocks and keeps each one's allocation map in its object."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        pool: str = DEFAULT_POOL,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.pool = ipaddress.IPv4Network(pool)
        self.block_size = block_size
        self.blocks: dict[str, dict[str, Any]] = {}
        """This node's block objects as last read or written, by name; the first block first."""

    @property
    def block(self) -> dict[str, Any] | None:
        """The node's first block (the one that is never released while the node lives)."""
        return next(iter(self.blocks.values()), None)

    def cidrs(self) -> list[ipaddress.IPv4Network]:
        """The networks of the node's blocks, the first block first."""
        return [_cidr(block) for block in self.blocks.values()]

    async def claim(self, wanted: str | None = None) -> dict[str, Any]:
        """The node's first block: the one it holds already, else ``wanted``, else the first
        free. Every block the node holds is remembered in :attr:`blocks`.

        Raises :class:`BlockTaken` when ``wanted`` is another node's, :class:`PoolExhausted`
        when no block is left, :class:`ClientError` (404) when the kind is not served.
        """
        listed = await self.client.list(API_VERSION, PLURAL)
        items: list[dict[str, Any]] = listed.get("items") or []
        mine = [i for i in items if (i.get("spec") or {}).get("node") == self.node_name]
        mine.sort(key=lambda i: (is_extra(i), _cidr(i)))
        if wanted is not None:
            mine = [i for i in mine if (i.get("spec") or {}).get("cidr") == wanted] or [
                i for i in mine if is_extra(i)
            ]
        if mine and not is_extra(mine[0]):
            self.blocks = {i["metadata"]["name"]: i for i in mine}
            return mine[0]
        taken = {item["metadata"]["name"] for item in items}
        first = await self._create_free(taken, extra=False, wanted=wanted)
        self.blocks = {first["metadata"]["name"]: first}
        self.blocks.update((i["metadata"]["name"], i) for i in mine)
        return first

    async def claim_extra(self) -> dict[str, Any]:
        """Claim one more free block for this node (its blocks are full)."""
        listed = await self.client.list(API_VERSION, PLURAL)
        taken = {item["metadata"]["name"] for item in listed.get("items") or []}
        block = await self._create_free(taken, extra=True)
        self.blocks[block["metadata"]["name"]] = block
        return block

    async def _create_free(
        self, taken: set[str], *, extra: bool, wanted: str | None = None
    ) -> dict[str, Any]:
        if wanted is not None:
            candidates = [ipaddress.IPv4Network(wanted)]
        else:
            candidates = list(self.pool.subnets(new_prefix=self.block_size))
        for cidr in candidates:
            name = block_name(cidr)
            if name in taken and wanted is None:
                continue
            try:
                created = await self.client.create(
                    API_VERSION, PLURAL, self._block_object(cidr, {}, extra=extra)
                )
            except ClientError as exc:
                if not exc.conflict:
                    raise
                if wanted is not None:
                    raise BlockTaken(f"block {cidr} belongs to another node") from exc
                continue  # another node won this one: try the next
            log.info("node %s claimed block %s%s", self.node_name, cidr, " (extra)" * extra)
            return created
        raise PoolExhausted(f"no free /{self.block_size} block left in {self.pool}")

    def _block_object(
        self, cidr: ipaddress.IPv4Network, allocations: Mapping[str, str], *, extra: bool
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "cidr": str(cidr),
            "node": self.node_name,
            "allocations": dict(allocations),
        }
        if extra:
            spec["extra"] = True
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": block_name(cidr)},
            "spec": spec,
        }

    async def save(self, allocations: Mapping[str, str]) -> None:
        """Write the allocation map (address → owner) into the objects of the node's blocks,
        each block getting the addresses it contains."""
        for name in list(self.blocks):
            cidr = _cidr(self.blocks[name])
            mine = {a: o for a, o in allocations.items() if ipaddress.IPv4Address(a) in cidr}
            await self._save_block(name, dict(sorted(mine.items())))

    async def _save_block(self, name: str, wanted: dict[str, str]) -> None:
        for _ in range(5):
            block = self.blocks[name]
            spec = block.get("spec") or {}
            if (spec.get("allocations") or {}) == wanted:
                return
            body = {**block, "spec": {**spec, "allocations": wanted}}
            try:
                self.blocks[name] = await self.client.update(API_VERSION, PLURAL, body)
                return
            except ClientError as exc:
                if exc.not_found:
                    # Released while this node was away (its Node object gone past the
                    # grace period): take it back, unless another node has it by now.
                    await self._reclaim(block, wanted)
                    return
                if not exc.conflict:
                    raise
                # Someone (a previous agent of this node) wrote in between: read, redo.
                latest = await self.client.get(API_VERSION, PLURAL, name)
                if (latest.get("spec") or {}).get("node") != self.node_name:
                    raise BlockTaken(f"block {_cidr(block)} now belongs to another node") from exc
                self.blocks[name] = latest
        raise RuntimeError("the block object kept changing under us")

    async def _reclaim(self, block: dict[str, Any], allocations: Mapping[str, str]) -> None:
        body = self._block_object(_cidr(block), allocations, extra=is_extra(block))
        try:
            self.blocks[body["metadata"]["name"]] = await self.client.create(
                API_VERSION, PLURAL, body
            )
        except ClientError as exc:
            if not exc.conflict:
                raise
            taken = f"block {_cidr(block)} was released and claimed by another node"
            raise BlockTaken(taken) from exc
        log.warning("node %s claimed its released block %s again", self.node_name, _cidr(block))

    async def release(self, name: str) -> bool:
        """Delete one of the node's blocks unless it changed since last read; True if gone."""
        block = self.blocks[name]
        try:
            await self.client.delete(
                API_VERSION,
                PLURAL,
                name,
                preconditions={"resourceVersion": block["metadata"]["resourceVersion"]},
            )
        except ClientError as exc:
            if not exc.not_found:
                if exc.conflict:
                    self.blocks[name] = await self.client.get(API_VERSION, PLURAL, name)
                    return False
                raise
        del self.blocks[name]
        log.info("node %s released block %s", self.node_name, _cidr(block))
        return True


class BlockGC:
    """Releases blocks whose node no longer exists, once they stayed so for ``grace`` seconds.

    Every node agent runs one; they need no coordination. A block is deleted with its
    resourceVersion as precondition, as last seen when its node was first found missing:
    when two collectors race one deletes it and the other finds it gone, and a block
    written meanwhile (its node is alive after all) is kept and watched afresh.
    """

    def __init__(self, client: Client, *, grace: float) -> None:
        self.client = client
        self.grace = grace
        self.orphans: dict[str, tuple[float, str]] = {}
        """Blocks whose node is missing: name → (first seen so, resourceVersion then)."""

    async def collect(self, now: float) -> list[str]:
        """One pass at time ``now`` (any monotonic clock): the names of the blocks released."""
        nodes = await self.client.list("v1", "nodes")
        alive = {node["metadata"]["name"] for node in nodes.get("items") or []}
        listed = await self.client.list(API_VERSION, PLURAL)
        seen: dict[str, tuple[float, str]] = {}
        released = []
        for block in listed.get("items") or []:
            if (block.get("spec") or {}).get("node") in alive:
                continue
            name = block["metadata"]["name"]
            version = str(block["metadata"]["resourceVersion"])
            since, known = self.orphans.get(name, (now, version))
            if known != version:  # written since: whoever wrote it gets a new grace period
                since = now
            seen[name] = (since, version)
            if now - since < self.grace:
                continue
            try:
                await self.client.delete(
                    API_VERSION, PLURAL, name, preconditions={"resourceVersion": version}
                )
            except ClientError as exc:
                if not (exc.not_found or exc.conflict):
                    raise
                continue  # another collector was first, or the block changed: look again
            del seen[name]
            released.append(name)
            log.info("released block %s of vanished node %s", name, block["spec"].get("node"))
        self.orphans = seen
        return released
