"""Internet checksum (RFC 1071), incremental updates (RFC 1624) and flow hashes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetrio import _datapath

from ._address import IPv4Like, ipv4_int

if TYPE_CHECKING:
    from typing_extensions import Buffer


def internet_checksum(data: Buffer) -> int:
    """Ones'-complement checksum of ``data`` as stored in IPv4/UDP/TCP headers.

    A buffer that already contains a correct checksum field sums to ``0``.
    """
    return _datapath.internet_checksum(data)


def checksum_adjust16(checksum: int, old: int, new: int) -> int:
    """The checksum after one 16-bit field changes from ``old`` to ``new`` (RFC 1624 eqn. 3)."""
    return _datapath.checksum_adjust16(checksum, old, new)


def checksum_adjust32(checksum: int, old: IPv4Like, new: IPv4Like) -> int:
    """The checksum after a 32-bit field (e.g. an IPv4 address, for NAT) changes."""
    return _datapath.checksum_adjust32(checksum, ipv4_int(old), ipv4_int(new))


def hash64(data: Buffer, seed: int = 0) -> int:
    """Seeded 64-bit hash, identical on every platform and node for the same inputs."""
    return _datapath.hash64(data, seed)


def flow_hash(
    src: IPv4Like, dst: IPv4Like, src_port: int, dst_port: int, protocol: int, seed: int = 0
) -> int:
    """64-bit hash of a connection's 5-tuple, for Maglev lookup and ECMP source ports."""
    return _datapath.flow_hash(ipv4_int(src), ipv4_int(dst), src_port, dst_port, protocol, seed)


def packet_flow_hash(packet: Buffer, seed: int = 0) -> int:
    """:func:`flow_hash` of an IPv4 packet's 5-tuple (addresses only for fragments)."""
    return _datapath.packet_flow_hash(packet, seed)
