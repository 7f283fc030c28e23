"""VXLAN (RFC 7348) and IPIP (RFC 2003) encapsulation, one packet or a batch at a time.

An encapsulator is fixed to one local/remote pair, like a kernel tunnel's FDB entry or
route; the tunnel engine keeps one per remote node and picks it with a
:class:`~kubetrio.datapath.RouteTable`. Decapsulation copies nothing: it reports where the
inner packet lies inside the outer one.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Literal

from kubetrio import _datapath

from ._address import IPv4Like, ipv4_int
from ._batch import DEFAULT_STRIDE, BatchStats, PacketBatch

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: IANA VXLAN UDP port.
VXLAN_PORT = _datapath.VXLAN_PORT
#: Bytes VXLAN adds in front of the inner Ethernet frame (outer IPv4 + UDP + VXLAN).
VXLAN_OVERHEAD = _datapath.VXLAN_OVERHEAD
#: Bytes IPIP adds in front of the inner IPv4 packet.
IPIP_OVERHEAD = _datapath.IPIP_OVERHEAD

TunnelKind = Literal["vxlan", "ipip"]


def _mac(mac: bytes | str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "")) if isinstance(mac, str) else bytes(mac)
    if len(raw) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {len(raw)}")
    return raw


def _encap_batch(
    encap: _datapath.VxlanEncap | _datapath.IpipEncap,
    overhead: int,
    batch: PacketBatch,
    out: PacketBatch | None,
    first_ident: int,
) -> tuple[PacketBatch, BatchStats]:
    if out is None:
        out = PacketBatch(len(batch), batch.stride + overhead)
    if out.capacity < len(batch):
        raise ValueError(f"output batch holds {out.capacity} packets, need {len(batch)}")
    out.set_count(len(batch))
    ok, dropped = encap.encap_batch(
        batch.data_view(),
        batch.stride,
        batch.lengths_view(),
        out.data_view(),
        out.stride,
        out.lengths_view(),
        first_ident,
    )
    return out, BatchStats(ok, dropped)


class VxlanTunnel:
    """VXLAN encapsulation from ``local`` to ``remote`` with network identifier ``vni``.

    The outer UDP source port comes from the inner flow's hash (49152-65535), the UDP
    checksum is zero (allowed over IPv4), and DF is clear.
    """

    __slots__ = ("_encap",)

    def __init__(
        self,
        local: IPv4Like,
        remote: IPv4Like,
        vni: int,
        *,
        port: int = VXLAN_PORT,
        ttl: int = 64,
    ) -> None:
        self._encap = _datapath.VxlanEncap(ipv4_int(local), ipv4_int(remote), vni, port, ttl)

    @property
    def local(self) -> IPv4Address:
        """Outer source address."""
        return IPv4Address(self._encap.local)

    @property
    def remote(self) -> IPv4Address:
        """Outer destination address."""
        return IPv4Address(self._encap.remote)

    @property
    def vni(self) -> int:
        """VXLAN network identifier."""
        return self._encap.vni

    def encap(self, frame: Buffer, *, ident: int = 0) -> bytes:
        """Encapsulate one Ethernet frame."""
        return self._encap.encap(frame, ident)

    def encap_ipv4(
        self, packet: Buffer, *, src_mac: bytes | str, dst_mac: bytes | str, ident: int = 0
    ) -> bytes:
        """Encapsulate one IPv4 packet behind an Ethernet header with the given MACs."""
        return self._encap.encap_ipv4(packet, _mac(src_mac), _mac(dst_mac), ident)

    def encap_batch(
        self, batch: PacketBatch, out: PacketBatch | None = None, *, first_ident: int = 0
    ) -> tuple[PacketBatch, BatchStats]:
        """Encapsulate every frame of ``batch`` into ``out`` (allocated when ``None``).

        Runs without the GIL. Frames that cannot be encapsulated get length 0.
        """
        return _encap_batch(self._encap, VXLAN_OVERHEAD, batch, out, first_ident)


class IpipTunnel:
    """IPIP encapsulation from ``local`` to ``remote``; TOS and DF copied from the inner packet."""

    __slots__ = ("_encap",)

    def __init__(self, local: IPv4Like, remote: IPv4Like, *, ttl: int = 64) -> None:
        self._encap = _datapath.IpipEncap(ipv4_int(local), ipv4_int(remote), ttl)

    @property
    def local(self) -> IPv4Address:
        """Outer source address."""
        return IPv4Address(self._encap.local)

    @property
    def remote(self) -> IPv4Address:
        """Outer destination address."""
        return IPv4Address(self._encap.remote)

    def encap(self, packet: Buffer, *, ident: int = 0) -> bytes:
        """Encapsulate one IPv4 packet."""
        return self._encap.encap(packet, ident)

    def encap_batch(
        self, batch: PacketBatch, out: PacketBatch | None = None, *, first_ident: int = 0
    ) -> tuple[PacketBatch, BatchStats]:
        """Encapsulate every packet of ``batch`` into ``out`` (allocated when ``None``).

        Runs without the GIL. Packets that are not IPv4 get length 0.
        """
        return _encap_batch(self._encap, IPIP_OVERHEAD, batch, out, first_ident)


@dataclass(frozen=True, slots=True)
class Decapsulated:
    """Where the inner packet lies in an outer one, and the tunnel's tag.

    ``tag`` is the VNI for VXLAN and the outer source address (as ``int``) for IPIP.
    """

    tag: int
    offset: int
    length: int

    def inner(self, packet: Buffer) -> memoryview:
        """The inner packet as a view into ``packet``."""
        return memoryview(packet).cast("B")[self.offset : self.offset + self.length]


def vxlan_decap(packet: Buffer) -> Decapsulated:
    """Locate the inner Ethernet frame of a VXLAN packet (outer IPv4 + UDP + VXLAN).

    :raises MalformedPacketError: bad outer checksum, not UDP, fragment, no I flag, short.
    """
    return Decapsulated(*_datapath.vxlan_decap(packet))


def ipip_decap(packet: Buffer) -> Decapsulated:
    """Locate the inner IPv4 packet of an IPIP packet.

    :raises MalformedPacketError: bad outer checksum, not protocol 4, fragment, bad inner.
    """
    return Decapsulated(*_datapath.ipip_decap(packet))


class DecapBatch:
    """Result of :func:`decap_batch`: per-packet inner offset, length (0 = dropped) and tag."""

    __slots__ = ("batch", "lengths", "offsets", "stats", "tags")

    def __init__(self, batch: PacketBatch, kind: TunnelKind) -> None:
        n = len(batch)
        self.batch = batch
        self.offsets = array("I", bytes(4 * n))
        self.lengths = array("I", bytes(4 * n))
        self.tags = array("I", bytes(4 * n))
        ok, dropped = _datapath.decap_batch(
            kind,
            batch.data_view(),
            batch.stride,
            batch.lengths_view(),
            self.offsets,
            self.lengths,
            self.tags,
        )
        self.stats = BatchStats(ok, dropped)

    def __len__(self) -> int:
        return len(self.lengths)

    def inner(self, i: int) -> memoryview:
        """Inner packet ``i`` as a view into the outer batch (empty if it was dropped)."""
        start = i * self.batch.stride + self.offsets[i]
        return memoryview(self.batch.data)[start : start + self.lengths[i]]

    def to_batch(self, stride: int = DEFAULT_STRIDE) -> PacketBatch:
        """Copy the inner packets into a new batch (dropped packets keep length 0)."""
        out = PacketBatch(len(self), stride)
        for i in range(len(self)):
            out.append(self.inner(i))
        return out


def decap_batch(kind: TunnelKind, batch: PacketBatch) -> DecapBatch:
    """Decapsulate every packet of ``batch`` (``"vxlan"`` or ``"ipip"``) without copying.

    Runs without the GIL; malformed packets are counted in ``stats.dropped``.
    """
    return DecapBatch(batch, kind)
