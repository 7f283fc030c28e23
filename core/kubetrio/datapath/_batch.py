"""Fixed-stride packet batches: the unit of work of every batch call into Rust.

Per-packet calls from Python cost more than the packet work itself, so the datapath moves
packets in batches: one ``bytearray`` with packet ``i`` at ``i * stride`` and one
``array('I')`` of lengths. This is also the layout ``recvmmsg``/``sendmmsg`` fill, so a
batch can go from a socket through encapsulation and back without per-packet objects.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetrio import _datapath

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: Default slot size: a 1500-byte packet plus VXLAN's 50 bytes of headers, rounded up.
DEFAULT_STRIDE = 2048


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Outcome of a batch call: packets processed and packets dropped as malformed."""

    ok: int
    dropped: int


class PacketBatch:
    """Up to ``capacity`` packets of at most ``stride`` bytes each, stored contiguously.

    A dropped packet keeps its slot with length 0, so indices line up between a batch and
    the batch produced from it.
    """

    __slots__ = ("_count", "capacity", "data", "lengths", "stride")

    def __init__(self, capacity: int, stride: int = DEFAULT_STRIDE) -> None:
        if capacity < 0 or stride <= 0:
            raise ValueError("capacity must be >= 0 and stride > 0")
        self.capacity = capacity
        self.stride = stride
        #: Packet bytes; slot ``i`` is ``data[i * stride:(i + 1) * stride]``.
        self.data = bytearray(capacity * stride)
        #: Length of each packet, uint32.
        self.lengths = array("I", bytes(4 * capacity))
        self._count = 0

    @classmethod
    def from_packets(cls, packets: Iterable[Buffer], stride: int = DEFAULT_STRIDE) -> PacketBatch:
        """A batch holding ``packets`` (each at most ``stride`` bytes)."""
        items = [memoryview(p).cast("B") for p in packets]
        batch = cls(len(items), stride)
        for p in items:
            batch.append(p)
        return batch

    def append(self, packet: Buffer) -> None:
        """Copy ``packet`` into the next slot."""
        view = memoryview(packet).cast("B")
        if self._count == self.capacity:
            raise ValueError("batch is full")
        if len(view) > self.stride:
            raise ValueError(f"packet of {len(view)} bytes exceeds the stride {self.stride}")
        start = self._count * self.stride
        self.data[start : start + len(view)] = view
        self.lengths[self._count] = len(view)
        self._count += 1

    def clear(self) -> None:
        """Forget all packets (the memory is kept for reuse)."""
        self._count = 0

    def set_count(self, count: int) -> None:
        """Declare the first ``count`` slots filled (after something wrote them directly)."""
        if not 0 <= count <= self.capacity:
            raise ValueError(f"count {count} outside 0..{self.capacity}")
        self._count = count

    def data_view(self) -> memoryview:
        """The filled part of :attr:`data`, for passing to Rust."""
        return memoryview(self.data)[: self._count * self.stride]

    def lengths_view(self) -> memoryview:
        """The filled part of :attr:`lengths`, for passing to Rust."""
        return memoryview(self.lengths)[: self._count]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> memoryview:
        """Packet ``i`` as a view into :attr:`data` (valid until the batch is reused)."""
        if not -self._count <= i < self._count:
            raise IndexError(i)
        i %= self._count
        start = i * self.stride
        return memoryview(self.data)[start : start + self.lengths[i]]

    def __iter__(self) -> Iterator[memoryview]:
        for i in range(self._count):
            yield self[i]

    def copy_into(self, out: PacketBatch, *, offset: int = 0) -> BatchStats:
        """Copy every packet to slot ``offset`` of ``out`` (in Rust, GIL released).

        Packets that do not fit get length 0. This is the memory traffic of an
        encapsulation without its header work, and the baseline the benchmarks use.
        """
        if out.capacity < self._count:
            raise ValueError(f"output batch holds {out.capacity} packets, need {self._count}")
        out.set_count(self._count)
        ok, dropped = _datapath.copy_batch(
            self.data_view(),
            self.stride,
            self.lengths_view(),
            out.data_view(),
            out.stride,
            out.lengths_view(),
            offset,
        )
        return BatchStats(ok, dropped)

    def packets(self) -> list[bytes]:
        """Copies of all packets (empty ``bytes`` for dropped ones)."""
        return [bytes(p) for p in self]
