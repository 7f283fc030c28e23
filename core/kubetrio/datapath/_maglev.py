"""Maglev consistent hashing for Service backends.

A :class:`MaglevTable` maps every flow hash to one backend so that each backend gets an
equal (or weight-proportional) share of the slots, and adding or removing one backend moves
only about ``1/N`` of the flows. The same backends, weights, size and seed give the same
table on every node, which lets each node's service proxy agree without talking. The table
is built in Rust; :meth:`MaglevTable.diff` lists moved slots so the proxy can update an
nftables map incrementally instead of rewriting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubetrio import _datapath

from ._address import IPv4Like
from ._checksum import flow_hash

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: The Maglev paper's table size (a prime); room for about 650 backends at 100 slots each.
DEFAULT_TABLE_SIZE = _datapath.DEFAULT_TABLE_SIZE


@dataclass(frozen=True, slots=True)
class SlotChange:
    """One slot that points at a different backend in the new table."""

    slot: int
    old: str
    new: str


class MaglevTable:
    """A populated Maglev lookup table over named backends.

    :param backends: backend names (e.g. ``"10.244.1.3:8080"``), or a mapping of name to
        integer weight; weight 0 keeps a backend listed but gives it no slots.
    :param size: number of slots, a prime (default 65537).
    :param seed: permutation seed; nodes must agree on it.
    :raises DatapathError: bad size, duplicate names, or no backend with positive weight.
    """

    __slots__ = ("_table",)

    def __init__(
        self,
        backends: Sequence[str] | Mapping[str, int],
        *,
        size: int = DEFAULT_TABLE_SIZE,
        seed: int = 0,
    ) -> None:
        if isinstance(backends, Mapping):
            names, weights = list(backends), list(backends.values())
            self._table = _datapath.Maglev(names, weights, size, seed)
        else:
            self._table = _datapath.Maglev(list(backends), None, size, seed)

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._table.size

    @property
    def seed(self) -> int:
        """Permutation seed."""
        return self._table.seed

    @property
    def backends(self) -> list[str]:
        """Backend names; a lookup returns an index into this list."""
        return self._table.backends

    @property
    def weights(self) -> list[int]:
        """Backend weights, in the order of :attr:`backends`."""
        return self._table.weights

    def table(self) -> list[int]:
        """Slot → backend index for every slot."""
        return self._table.table()

    def table_bytes(self) -> bytes:
        """The table as little-endian uint32 values (``array('I', ...)`` on x86/ARM)."""
        return self._table.table_bytes()

    def lookup(self, flow_hash: int) -> str:
        """The backend that serves a flow with this 64-bit hash."""
        return self._table.backends[self._table.lookup(flow_hash)]

    def lookup_index(self, flow_hash: int) -> int:
        """Index into :attr:`backends` of the backend for ``flow_hash``."""
        return self._table.lookup(flow_hash)

    def lookup_flow(
        self, src: IPv4Like, dst: IPv4Like, src_port: int, dst_port: int, protocol: int
    ) -> str:
        """The backend for a connection's 5-tuple (hashed with seed 0)."""
        return self.lookup(flow_hash(src, dst, src_port, dst_port, protocol))

    def lookup_batch(self, hashes: Buffer, out: Buffer) -> None:
        """Backend indices for a uint64 buffer of hashes, written to a uint32 buffer.

        Runs without the GIL; ``out`` must hold at least as many items as ``hashes``.
        """
        self._table.lookup_batch(hashes, out)

    def slot_counts(self) -> dict[str, int]:
        """Slots per backend name."""
        return dict(zip(self._table.backends, self._table.slot_counts(), strict=True))

    def diff(self, new: MaglevTable) -> list[SlotChange]:
        """Slots whose backend changes going from ``self`` to ``new`` (same size required)."""
        old_names, new_names = self._table.backends, new._table.backends
        return [
            SlotChange(slot, old_names[o], new_names[n])
            for slot, o, n in self._table.diff(new._table)
        ]

    def __repr__(self) -> str:
        return f"MaglevTable({len(self.backends)} backends, size={self.size}, seed={self.seed})"
