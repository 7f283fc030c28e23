"""Counts over every node that survive from one scheduling cycle to the next.

InterPodAffinity and PodTopologySpread need, for every cycle, totals over the whole
cluster (matching pods per topology value). Recounting walks every pod on every node;
instead a :class:`NodeCounts` keeps each node's contribution and, at the next cycle,
recomputes only the nodes the snapshot reports changed (``changed_since``) — usually the
one node the previous pod was placed on.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from kubetrio.providers import NodeInfo, NodeSnapshot

K = TypeVar("K", bound=Hashable)

MAX_COUNTERS = 64
"""Counters kept per snapshot (one per distinct pod shape asking); more → start over."""


class NodeCounts(Generic[K]):
    """Totals of per-node contributions (``key → count``), kept current incrementally."""

    def __init__(self, contribution: Callable[[NodeInfo], dict[K, int]]) -> None:
        self.contribution = contribution
        self.mark = -1
        self.per_node: dict[str, dict[K, int]] = {}
        self.totals: dict[K, int] = {}
        self._firsts: dict[Any, int] | None = None
        """For tuple keys, once asked (:meth:`first_keys`): key[0] → totals holding it."""

    def _add(self, values: dict[K, int], sign: int) -> None:
        totals = self.totals
        firsts = self._firsts
        for key, value in values.items():
            old = totals.get(key, 0)
            total = old + sign * value
            if total:
                totals[key] = total
            else:
                totals.pop(key, None)
            if firsts is not None and bool(old) != bool(total):
                first = key[0]  # type: ignore[index]
                held = firsts.get(first, 0) + (1 if total else -1)
                if held:
                    firsts[first] = held
                else:
                    firsts.pop(first, None)

    def first_keys(self) -> tuple[Any, ...]:
        """The distinct first items of the (tuple) keys of :attr:`totals`, kept current
        from the first call on (a handful, where the totals may hold thousands)."""
        if self._firsts is None:
            firsts: dict[Any, int] = {}
            for key in self.totals:
                first = key[0]  # type: ignore[index]
                firsts[first] = firsts.get(first, 0) + 1
            self._firsts = firsts
        return tuple(self._firsts)

    def refresh(self, snapshot: NodeSnapshot) -> dict[K, int]:
        """The totals over the snapshot's nodes as they are now."""
        mark, changed = snapshot.changed_since(self.mark)
        if changed is None:
            self.per_node.clear()
            self.totals.clear()
            self._firsts = None
            names: Iterable[str] = [node.name for node in snapshot.nodes]
        else:
            names = set(changed)
        for name in names:
            old = self.per_node.pop(name, None)
            if old:
                self._add(old, -1)
            node = snapshot.get(name)
            if node is not None:
                new = self.contribution(node)
                if new:
                    self.per_node[name] = new
                    self._add(new, +1)
        self.mark = mark
        return self.totals


_COUNTERS: weakref.WeakKeyDictionary[NodeSnapshot, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


def counter(
    snapshot: NodeSnapshot,
    signature: Hashable,
    contribution: Callable[[NodeInfo], dict[K, int]],
) -> NodeCounts[K]:
    """The counter of ``signature`` (what is counted) over ``snapshot``, made on first use.

    ``contribution`` must depend only on the node, its pods and ``signature``.
    """
    try:
        counters = _COUNTERS[snapshot]
    except KeyError:
        counters = _COUNTERS[snapshot] = {}
    found = counters.get(signature)
    if found is None:
        if len(counters) >= MAX_COUNTERS:
            counters.clear()
        found = counters[signature] = NodeCounts(contribution)
    result: NodeCounts[K] = found
    return result
