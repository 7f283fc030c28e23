"""Longest-prefix-match route table: which node owns the pod CIDR an address falls in."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from kubetrio import _datapath

from ._address import IPv4Like, NetworkLike, ipv4_int, ipv4_network

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: Value written by :meth:`RouteTable.lookup_batch` for addresses no route covers.
NO_ROUTE = 0xFFFFFFFF


class RouteTable:
    """IPv4 routes ``network → value`` (a node index, say) with longest-prefix lookup.

    Backed by one hash table per prefix length in Rust: insert and remove are O(1), and a
    lookup probes only the prefix lengths present, longest first.
    """

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table = _datapath.PrefixTable()

    def add(self, network: NetworkLike, value: int) -> int | None:
        """Add or replace a route; returns the value it replaced.

        :raises ValueError: if ``network`` has host bits set or ``value`` is not a uint32.
        """
        net = ipv4_network(network)
        return self._table.insert(int(net.network_address), net.prefixlen, value)

    def remove(self, network: NetworkLike) -> int | None:
        """Remove a route; returns its value, or ``None`` if there was none."""
        net = ipv4_network(network)
        return self._table.remove(int(net.network_address), net.prefixlen)

    def lookup(self, address: IPv4Like) -> int | None:
        """Value of the most specific route containing ``address``."""
        return self._table.lookup(ipv4_int(address))

    def lookup_route(self, address: IPv4Like) -> tuple[IPv4Network, int] | None:
        """The most specific route containing ``address`` and its value."""
        r = self._table.lookup_route(ipv4_int(address))
        if r is None:
            return None
        prefix, length, value = r
        return IPv4Network((prefix, length)), value

    def lookup_batch(self, addresses: Buffer, out: Buffer, *, miss: int = NO_ROUTE) -> None:
        """Look up a uint32 buffer of addresses (host order) into a uint32 buffer, GIL released."""
        self._table.lookup_batch(addresses, out, miss)

    def routes(self) -> list[tuple[IPv4Network, int]]:
        """All routes, ordered by prefix length then address."""
        return [(IPv4Network((p, n)), v) for p, n, v in self._table.routes()]

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[tuple[IPv4Network, int]]:
        return iter(self.routes())
