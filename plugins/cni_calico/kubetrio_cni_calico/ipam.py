"""Address allocation from the node's block of the pod CIDR.

This is the node-local half of Calico-style IPAM: a node owns one block (a /26 by
default) and hands out its addresses. Claiming the block through an API object, so
that two nodes never share one, and keeping the allocations in it is :mod:`.blocks`.
"""

from __future__ import annotations

import ipaddress


class BlockExhausted(RuntimeError):
    """Every address of the node's block is in use."""


class BlockAllocator:
    """Hands out the addresses of one IPv4 block, one per owner (a container id)."""

    def __init__(self, block: str) -> None:
        self.block = ipaddress.IPv4Network(block)
        self._by_owner: dict[str, ipaddress.IPv4Address] = {}

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        """The owner's address: the one it already has, else the lowest free one."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        used = set(self._by_owner.values())
        for address in self.block.hosts():
            if address not in used:
                self._by_owner[owner] = address
                return address
        raise BlockExhausted(f"no free address left in {self.block}")

    def adopt(self, owner: str, address: ipaddress.IPv4Address) -> None:
        """Record an address already in use (found after a restart); ignore foreign ones."""
        if address in self.block and address not in self._by_owner.values():
            self._by_owner[owner] = address

    def release(self, owner: str) -> ipaddress.IPv4Address | None:
        """Free the owner's address; return it, or None when it had none."""
        return self._by_owner.pop(owner, None)

    def in_use(self) -> dict[str, ipaddress.IPv4Address]:
        """A copy of the owner → address map."""
        return dict(self._by_owner)
