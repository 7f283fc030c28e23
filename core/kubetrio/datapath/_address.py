"""Conversion between the address types callers use and the integers the extension takes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

#: Anything that names an IPv4 address: ``"10.0.0.1"``, ``IPv4Address(...)`` or an ``int``
#: in host order.
IPv4Like = IPv4Address | str | int
#: Anything that names an IPv4 network: ``"10.244.1.0/24"`` or ``IPv4Network(...)``.
NetworkLike = IPv4Network | str


def ipv4_int(address: IPv4Like) -> int:
    """The address as an ``int`` in host order; raises ``ValueError`` if it is not IPv4."""
    return int(IPv4Address(address))  # also range-checks an int


def ipv4_network(network: NetworkLike) -> IPv4Network:
    """The network as an ``IPv4Network``; host bits must be zero."""
    return network if isinstance(network, IPv4Network) else IPv4Network(network)
