"""Simulated nodes (KWOK-style): Node objects, Lease heartbeats, Running pods, no processes.

``await nursery.start(SimulatedNodes(client, count=3).run)`` registers three nodes and
plays their kubelets until cancelled; see :class:`SimulatedNodes`.
"""

from ._nodes import SIMULATED_LABEL as SIMULATED_LABEL
from ._nodes import SimulatedNode as SimulatedNode
from ._nodes import SimulatedNodes as SimulatedNodes
