"""Resource plugins: NodeResourcesFit (filter and score) and NodeResourcesBalancedAllocation.

Requests and allocatable come pre-computed as integers (cpu in millicores, bytes, counts)
in :class:`~kubetrio.providers.PodInfo` and :class:`~kubetrio.providers.NodeInfo`, so the
per-node work is a few integer comparisons.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from kubetrio.providers import CycleState, NodeInfo

MAX_NODE_SCORE = 100
DEFAULT_RESOURCES = (("cpu", 1), ("memory", 1))


class NodeResourcesFit:
    """Does the pod's request fit what the node has left? (``Insufficient cpu``,
    ``Too many pods``); scores nodes by the ``scoringStrategy``: ``LeastAllocated`` (the
    default: prefer emptier nodes, spreading load) or ``MostAllocated`` (bin packing).

    Scoring uses the "non-zero" requests (100m cpu, 200Mi memory for containers that
    request nothing), as kube-scheduler does, so such pods still spread.
    """

    name = "NodeResourcesFit"
    requeue_on = frozenset({"NodeAdd", "NodeUpdate", "PodDelete"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    node_local = True  # results depend on the pod and this node only (memoised)
    weight = 1

    def __init__(
        self,
        strategy: str = "LeastAllocated",
        resources: Sequence[tuple[str, int]] = DEFAULT_RESOURCES,
    ) -> None:
        if strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"NodeResourcesFit: unknown scoringStrategy type {strategy!r}")
        self.strategy = strategy
        self.resources = tuple(resources)
        self._weights = sum(w for _, w in self.resources) or 1

    def configured(self, args: Mapping[str, Any]) -> NodeResourcesFit:
        """A copy with ``scoringStrategy`` (``type``, ``resources``) from ``pluginConfig``."""
        strategy = args.get("scoringStrategy") or {}
        resources = [
            (str(r["name"]), int(r.get("weight", 1))) for r in strategy.get("resources") or []
        ]
        return NodeResourcesFit(
            str(strategy.get("type") or self.strategy), resources or self.resources
        )

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> list[str] | None:
        """Every resource the node lacks for this pod, or None when it fits."""
        allocatable = node.allocatable
        requested = node.requested
        reasons = None
        if requested["pods"] + 1 > allocatable.get("pods", 0):
            reasons = ["Too many pods"]
        for resource, value in state.pod_info.requests.items():
            if value and requested.get(resource, 0) + value > allocatable.get(resource, 0):
                if reasons is None:
                    reasons = []
                reasons.append(f"Insufficient {resource}")
        return reasons

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> int:
        """0..100: free share after placing the pod (LeastAllocated) or used share."""
        info = state.pod_info
        total = 0
        least = self.strategy == "LeastAllocated"
        for resource, weight in self.resources:
            capacity = node.allocatable.get(resource, 0)
            if not capacity:
                continue
            if resource == "cpu":
                used = node.non_zero_requested["cpu"] + info.non_zero_cpu
            elif resource == "memory":
                used = node.non_zero_requested["memory"] + info.non_zero_memory
            else:
                used = node.requested.get(resource, 0) + info.requests.get(resource, 0)
            if used > capacity:
                share = 0 if least else MAX_NODE_SCORE
            elif least:
                share = (capacity - used) * MAX_NODE_SCORE // capacity
            else:
                share = used * MAX_NODE_SCORE // capacity
            total += share * weight
        return total // self._weights


class NodeResourcesBalancedAllocation:
    """Prefers nodes whose cpu and memory would be used in equal shares after placing the
    pod: score = (1 - standard deviation of the used fractions) * 100."""

    name = "NodeResourcesBalancedAllocation"
    node_local = True  # results depend on the pod and this node only (memoised)
    weight = 1

    def __init__(self, resources: Sequence[str] = ("cpu", "memory")) -> None:
        self.resources = tuple(resources)

    def configured(self, args: Mapping[str, Any]) -> NodeResourcesBalancedAllocation:
        """A copy balancing the ``resources`` named in ``pluginConfig``."""
        names = [str(r["name"]) for r in args.get("resources") or []]
        return copy.copy(self) if not names else NodeResourcesBalancedAllocation(names)

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> int:
        """0..100, higher for balanced use of the node's resources."""
        requests = state.pod_info.requests
        fractions = []
        for resource in self.resources:
            capacity = node.allocatable.get(resource, 0)
            if not capacity:
                continue
            used = node.requested.get(resource, 0) + requests.get(resource, 0)
            fractions.append(min(1.0, used / capacity))
        if len(fractions) < 2:
            return MAX_NODE_SCORE
        if len(fractions) == 2:
            std = abs(fractions[0] - fractions[1]) / 2
        else:
            mean = sum(fractions) / len(fractions)
            std = (sum((f - mean) ** 2 for f in fractions) / len(fractions)) ** 0.5
        return int((1 - std) * MAX_NODE_SCORE)
