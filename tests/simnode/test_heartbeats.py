"""Simulated nodes renew their Leases on a fixed clock, each node at its own phase.

The Lease writes are replaced by a recorder and trio's virtual clock jumps over the
sleeps, so the schedule itself is what is checked (no wall-clock timing).
"""

from __future__ import annotations

import itertools

import trio
import trio.testing

from kubetrio.client import Client, KubeObject
from kubetrio.simnode import SimulatedNodes
from kubetrio.simnode._nodes import SimulatedNode


class Recording(SimulatedNodes):
    """Records when each node's Lease would be renewed; a renewal takes ``cost`` seconds."""

    def __init__(self, count: int, heartbeat: float, cost: float, concurrency: int = 32) -> None:
        super().__init__(
            Client(transport=None),  # type: ignore[arg-type]  # never called
            count=count,
            heartbeat=heartbeat,
            concurrency=concurrency,
        )
        self.cost = cost
        self.renewals: dict[str, list[float]] = {name: [] for name in self.nodes}
        self.in_flight = 0
        self.most_in_flight_per_node = 0
        self._per_node: dict[str, int] = {}

    async def renew_lease(self, node: SimulatedNode, node_obj: KubeObject | None = None) -> None:
        self._per_node[node.name] = self._per_node.get(node.name, 0) + 1
        self.most_in_flight_per_node = max(self.most_in_flight_per_node, self._per_node[node.name])
        self.renewals[node.name].append(trio.current_time())
        await trio.sleep(self.cost)
        self._per_node[node.name] -= 1


async def _run_for(nodes: Recording, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await nodes._heartbeats()


async def test_renewals_are_spread_over_the_period_and_keep_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nodes = Recording(count=10, heartbeat=10.0, cost=0.5)
    start = trio.current_time()
    await _run_for(nodes, 50.5)
    # Every node renews every 10 s exactly, however long the fleet's renewals take.
    for times in nodes.renewals.values():
        assert len(times) == 5
        assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [10.0] * 4
    # Each node has its own phase (1 s apart for 10 nodes), not one burst for all, and
    # the first renewal of each comes within one period of the start (registration).
    firsts = sorted(round(times[0] - start, 6) for times in nodes.renewals.values())
    assert firsts == [1.0 + i for i in range(10)]
    assert nodes.max_renew_gap == 10.0


async def test_a_slow_renewal_skips_its_turn_instead_of_piling_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each renewal takes 25 s, longer than two periods: a node never has two in flight.
    nodes = Recording(count=4, heartbeat=10.0, cost=25.0)
    await _run_for(nodes, 90.0)
    assert nodes.most_in_flight_per_node == 1
    for times in nodes.renewals.values():
        assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [30.0, 30.0]
