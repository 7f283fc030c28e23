"""Per-node address blocks claimed through API objects (Calico's IPAMBlock).

The cluster pod CIDR (the pool) is cut into blocks, /26 by default. A node owns a
block by creating the cluster-scoped ``IPAMBlock`` named after it
(``ipamblocks.crd.kubetrio.io``, name ``10-244-0-64-26``): the API server's create is a
compare-and-swap on the name, so when two nodes race for one block exactly one create
succeeds and the other moves on to the next block. Two nodes therefore never hand out
one address.

The block object also holds the node's allocation map (``spec.allocations``: address →
owner), written after every allocation and release with the object's resourceVersion,
so a restarted agent knows which addresses are taken even for pods it cannot see.
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


class BlockClaims:
    """Claims this node's block and keeps its allocation map in the block object."""

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
        self.block: dict[str, Any] | None = None
        """The claimed block object as last read or written."""

    async def claim(self, wanted: str | None = None) -> dict[str, Any]:
        """The node's block: the one it holds already, else ``wanted``, else the first free.

        Raises :class:`BlockTaken` when ``wanted`` is another node's, :class:`PoolExhausted`
        when no block is left, :class:`ClientError` (404) when the kind is not served.
        """
        listed = await self.client.list(API_VERSION, PLURAL)
        taken: set[str] = set()
        items: list[dict[str, Any]] = listed.get("items") or []
        for item in items:
            spec = item.get("spec") or {}
            taken.add(item["metadata"]["name"])
            if spec.get("node") == self.node_name and (
                wanted is None or spec.get("cidr") == wanted
            ):
                self.block = item
                return item
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
                    API_VERSION,
                    PLURAL,
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "metadata": {"name": name},
                        "spec": {"cidr": str(cidr), "node": self.node_name, "allocations": {}},
                    },
                )
            except ClientError as exc:
                if not exc.conflict:
                    raise
                if wanted is not None:
                    raise BlockTaken(f"block {cidr} belongs to another node") from exc
                continue  # another node won this one: try the next
            log.info("node %s claimed block %s", self.node_name, cidr)
            self.block = created
            return created
        raise PoolExhausted(f"no free /{self.block_size} block left in {self.pool}")

    async def save(self, allocations: Mapping[str, str]) -> None:
        """Write the allocation map (address → owner) into the block object."""
        if self.block is None:
            return
        wanted = dict(sorted(allocations.items()))
        for _ in range(5):
            spec = self.block.get("spec") or {}
            if (spec.get("allocations") or {}) == wanted:
                return
            body = {**self.block, "spec": {**spec, "allocations": wanted}}
            try:
                self.block = await self.client.update(API_VERSION, PLURAL, body)
                return
            except ClientError as exc:
                if not exc.conflict:
                    raise
                # Someone (a previous agent of this node) wrote in between: read, redo.
                self.block = await self.client.get(API_VERSION, PLURAL, body["metadata"]["name"])
        raise RuntimeError("the block object kept changing under us")
