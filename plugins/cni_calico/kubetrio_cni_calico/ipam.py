"""Address allocation from the node's blocks of the pod CIDR.

This is the node-local half of Calico-style IPAM: a node owns one or more blocks (/26 by
default) and hands out their addresses. Claiming blocks through API objects, so that two
nodes never share one, and keeping the allocations in them is :mod:`.blocks`.
"""

from __future__ import annotations

import ipaddress


class BlockExhausted(RuntimeError):
    """Every address of the node's blocks is in use."""


class BlockAllocator:
    """Hands out the addresses of the node's IPv4 blocks, one per owner (a container id).

    Blocks are used in the order they were added, so a node fills its first block before
    it touches an extra one, and extra blocks empty out first.
    """

    def __init__(self, block: str, *more: str) -> None:
        self.blocks = [ipaddress.IPv4Network(b) for b in (block, *more)]
        self._by_owner: dict[str, ipaddress.IPv4Address] = {}

    @property
    def block(self) -> ipaddress.IPv4Network:
        """The first block."""
        return self.blocks[0]

    def add_block(self, block: str) -> None:
        """Hand out the addresses of one more block (after the others)."""
        network = ipaddress.IPv4Network(block)
        if network not in self.blocks:
            self.blocks.append(network)

    def remove_block(self, block: ipaddress.IPv4Network) -> None:
        """Stop handing out a block's addresses; it must hold none (ValueError otherwise)."""
        if self.in_block(block):
            raise ValueError(f"block {block} still holds addresses")
        self.blocks.remove(block)

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        """The owner's address: the one it already has, else the lowest free one."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        used = set(self._by_owner.values())
        for block in self.blocks:
            for address in block.hosts():
                if address not in used:
                    self._by_owner[owner] = address
                    return address
        raise BlockExhausted(f"no free address left in {', '.join(map(str, self.blocks))}")

    def adopt(self, owner: str, address: ipaddress.IPv4Address) -> None:
        """Record an address already in use (found after a restart); ignore foreign ones."""
        if any(address in b for b in self.blocks) and address not in self._by_owner.values():
            self._by_owner[owner] = address

    def release(self, owner: str) -> ipaddress.IPv4Address | None:
        """Free the owner's address; return it, or None when it had none."""
        return self._by_owner.pop(owner, None)

    def in_use(self) -> dict[str, ipaddress.IPv4Address]:
        """A copy of the owner → address map."""
        return dict(self._by_owner)

    def in_block(self, block: ipaddress.IPv4Network) -> dict[str, ipaddress.IPv4Address]:
        """The owner → address map of one block."""
        return {o: a for o, a in self._by_owner.items() if a in block}
