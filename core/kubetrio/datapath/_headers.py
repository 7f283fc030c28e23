"""Parse and build IPv4, UDP and TCP packets (for tests, tools and the slow path)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from kubetrio import _datapath
from kubetrio._datapath import Ipv4Header as Ipv4Header

from ._address import IPv4Like, ipv4_int

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: IP protocol numbers used by the datapath.
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """An IPv4/UDP packet's headers and where its payload lies."""

    ip: Ipv4Header
    src_port: int
    dst_port: int
    payload_offset: int
    payload_len: int

    @property
    def src(self) -> IPv4Address:
        """Source address."""
        return IPv4Address(self.ip.src)

    @property
    def dst(self) -> IPv4Address:
        """Destination address."""
        return IPv4Address(self.ip.dst)


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """An IPv4/TCP packet's headers and where its payload lies."""

    ip: Ipv4Header
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload_offset: int
    payload_len: int


def parse_ipv4(packet: Buffer, *, verify_checksum: bool = True) -> Ipv4Header:
    """Parse the IPv4 header at the start of ``packet``.

    :raises MalformedPacketError: truncated, bad version/length, or bad checksum.
    """
    return _datapath.parse_ipv4(packet, verify_checksum)


def parse_udp(packet: Buffer) -> UdpDatagram:
    """Parse an unfragmented IPv4/UDP packet, verifying both checksums.

    :raises MalformedPacketError: if it is not a valid UDP datagram.
    """
    return UdpDatagram(*_datapath.parse_udp(packet))


def parse_tcp(packet: Buffer) -> TcpSegment:
    """Parse an unfragmented IPv4/TCP packet, verifying both checksums.

    :raises MalformedPacketError: if it is not a valid TCP segment.
    """
    return TcpSegment(*_datapath.parse_tcp(packet))


def build_udp(
    src: IPv4Like, dst: IPv4Like, src_port: int, dst_port: int, payload: Buffer, *, ttl: int = 64
) -> bytes:
    """An IPv4/UDP packet with correct checksums."""
    return _datapath.build_udp(ipv4_int(src), ipv4_int(dst), src_port, dst_port, payload, ttl)


def build_tcp(
    src: IPv4Like,
    dst: IPv4Like,
    src_port: int,
    dst_port: int,
    payload: Buffer = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0x18,
    window: int = 65535,
    ttl: int = 64,
) -> bytes:
    """An IPv4/TCP packet (no options) with correct checksums; ``flags`` default PSH|ACK."""
    return _datapath.build_tcp(
        ipv4_int(src),
        ipv4_int(dst),
        src_port,
        dst_port,
        payload,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        ttl=ttl,
    )
