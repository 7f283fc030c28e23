"""The address pool LoadBalancer Services get their addresses from.

A pool is written as one or more comma-separated parts, each a CIDR (``192.168.1.240/28``)
or an inclusive range (``192.168.1.240-192.168.1.250``), IPv4 only. Every address of a
CIDR is handed out, network and broadcast included, as MetalLB does by default: the pool
is a set of addresses to announce, not a subnet of its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

IPv4 = ipaddress.IPv4Address


class AddressPool:
    """An ordered set of IPv4 addresses: membership tests and the first free address.

    :param spec: ``CIDR`` or ``first-last``, several joined by commas.
    :raises ValueError: when a part is neither, is not IPv4, or a range runs backwards.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.ranges: list[tuple[int, int]] = [_parse(part.strip()) for part in spec.split(",")]
        self.ranges.sort()

    def __contains__(self, address: object) -> bool:
        try:
            value = int(IPv4(str(address)))
        except ValueError:
            return False
        return any(first <= value <= last for first, last in self.ranges)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def __iter__(self) -> Iterator[str]:
        for first, last in self.ranges:
            for value in range(first, last + 1):
                yield str(IPv4(value))

    def first_free(self, used: set[str] | dict[str, str]) -> str | None:
        """The lowest address of the pool not in ``used``; None when all are taken."""
        return next((address for address in self if address not in used), None)

    def __repr__(self) -> str:
        return f"AddressPool({self.spec!r})"


def _parse(part: str) -> tuple[int, int]:
    if "-" in part:
        first_text, _, last_text = part.partition("-")
        first, last = int(IPv4(first_text.strip())), int(IPv4(last_text.strip()))
        if last < first:
            raise ValueError(f"address range {part!r} runs backwards")
        return first, last
    network = ipaddress.ip_network(part, strict=False)
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"address pool {part!r} is not IPv4")
    return int(network.network_address), int(network.broadcast_address)
