"""PodTopologySpread: spread matching pods evenly over topology domains.

For each ``topologySpreadConstraints`` entry the plugin counts, per value of
``topologyKey`` (a *domain*), the pods in the incoming pod's namespace that the
``labelSelector`` matches, over the nodes that are eligible: they carry the key and, with
``nodeAffinityPolicy: Honor`` (the default), match the pod's node selector and required
node affinity; with ``nodeTaintsPolicy: Honor`` their taints must be tolerated too
(default ``Ignore``).

``whenUnsatisfiable: DoNotSchedule`` is a filter: placing the pod on a node must not make
``count(domain) + self - min(count)`` exceed ``maxSkew``. When fewer domains than
``minDomains`` exist, the global minimum is taken as 0. Nodes without the key are
ruled out (``... (missing required label)``).

``whenUnsatisfiable: ScheduleAnyway`` only scores: nodes in less crowded domains score
higher (the counts are summed per node, then reversed and scaled to 0..100).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubetrio.api.selectors import LabelSelectorError, Selector, label_selector_from_struct
from kubetrio.providers import SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

from ._counting import counter
from .node_affinity import required_matcher
from .taints import untolerated

MAX_NODE_SCORE = 100


@dataclass(frozen=True)
class Constraint:
    """A parsed ``TopologySpreadConstraint``."""

    max_skew: int
    topology_key: str
    hard: bool
    selector: Selector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def constraints_of(pod: PodInfo) -> tuple[Constraint, ...]:
    """The pod's parsed constraints, memoised on its :class:`PodInfo`."""
    found: tuple[Constraint, ...] | None = pod.memo.get("PodTopologySpread")
    if found is not None:
        return found
    parsed = []
    for raw in (pod.pod.get("spec") or {}).get("topologySpreadConstraints") or ():
        try:
            selector = label_selector_from_struct(raw.get("labelSelector"))
        except LabelSelectorError:
            selector = label_selector_from_struct(None)
        keys = raw.get("matchLabelKeys") or ()
        if keys:  # matchLabelKeys: AND the pod's own values for those keys
            extra = {k: pod.labels[k] for k in keys if k in pod.labels}
            if extra:
                base = raw.get("labelSelector") or {}
                merged = {
                    "matchLabels": {**(base.get("matchLabels") or {}), **extra},
                    "matchExpressions": base.get("matchExpressions") or [],
                }
                selector = label_selector_from_struct(merged)
        parsed.append(
            Constraint(
                max_skew=int(raw.get("maxSkew") or 1),
                topology_key=str(raw.get("topologyKey") or ""),
                hard=(raw.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule",
                selector=selector,
                min_domains=int(raw.get("minDomains") or 1),
                honor_affinity=(raw.get("nodeAffinityPolicy") or "Honor") == "Honor",
                honor_taints=(raw.get("nodeTaintsPolicy") or "Ignore") == "Honor",
            )
        )
    found = tuple(parsed)
    pod.memo["PodTopologySpread"] = found
    return found


def _counts(
    pod: PodInfo, constraints: Sequence[Constraint], nodes: Sequence[NodeInfo]
) -> list[dict[str, int]]:
    """Per constraint: domain value → matching pods (every eligible domain present)."""
    matcher = required_matcher(pod.pod)
    tolerations = (pod.pod.get("spec") or {}).get("tolerations") or ()
    keys = [c.topology_key for c in constraints]
    result: list[dict[str, int]] = [{} for _ in constraints]
    for node in nodes:
        labels = node.labels
        if any(key not in labels for key in keys):
            continue  # kube-scheduler counts only nodes carrying every constraint's key
        affinity_ok = matcher is None or matcher(node)
        taints_ok: bool | None = None
        for index, constraint in enumerate(constraints):
            if constraint.honor_affinity and not affinity_ok:
                continue
            if constraint.honor_taints:
                if taints_ok is None:
                    taints_ok = not untolerated(
                        node.taints, tolerations, ("NoSchedule", "NoExecute")
                    )
                if not taints_ok:
                    continue
            domain = labels[constraint.topology_key]
            count = result[index].get(domain, 0)
            for other in node.pods.values():
                if (
                    other.namespace == pod.namespace
                    and other.key != pod.key
                    and not other.pod["metadata"].get("deletionTimestamp")
                    and constraint.selector.matches(other.labels)
                ):
                    count += 1
            result[index][domain] = count
    return result


NODE_BITS = 20
"""Incremental totals pack ``pods << NODE_BITS | eligible nodes`` per domain, so the
smallest domain is ``min(totals.values()) >> NODE_BITS`` (domains always have a node)."""


def _incremental_counts(
    state: CycleState, pod: PodInfo, constraints: Sequence[Constraint]
) -> list[dict[str, int]]:
    """Per constraint: domain → packed (pods, nodes), from counters kept across cycles."""
    keys = tuple(c.topology_key for c in constraints)
    result = []
    for constraint in constraints:
        namespace, selector, key = pod.namespace, constraint.selector, constraint.topology_key

        def contribution(
            node: NodeInfo, namespace: str = namespace, selector: Any = selector, key: str = key
        ) -> dict[str, int]:
            labels = node.labels
            if any(k not in labels for k in keys):
                return {}
            count = 0
            for other in node.pods.values():
                if (
                    other.namespace == namespace
                    and selector.matches(other.labels)
                    and not other.pod["metadata"].get("deletionTimestamp")
                ):
                    count += 1
            return {labels[key]: count << NODE_BITS | 1}

        signature = ("PodTopologySpread", namespace, selector, key, keys)
        result.append(counter(state.snapshot, signature, contribution).refresh(state.snapshot))
    return result


@dataclass
class _SpreadState:
    constraints: tuple[Constraint, ...]
    counts: list[dict[str, int]]
    minimum: list[int]
    self_match: list[int]
    shift: int = 0
    """``counts`` values are ``pods << shift`` (plus a node count below) when set."""


class PodTopologySpread:
    """``topologySpreadConstraints``: a filter for DoNotSchedule, a score for ScheduleAnyway."""

    name = "PodTopologySpread"
    requeue_on = frozenset({"NodeAdd", "NodeUpdate", "PodAdd", "PodUpdate", "PodDelete"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    weight = 2
    reason = "node(s) didn't match pod topology spread constraints"
    missing_label_reason = Unresolvable(
        "node(s) didn't match pod topology spread constraints (missing required label)"
    )

    def _state(self, state: CycleState, pod: PodInfo, hard: bool) -> _SpreadState | None:
        constraints = tuple(c for c in constraints_of(pod) if c.hard == hard)
        if not constraints:
            return None
        self_match = [int(c.selector.matches(pod.labels)) for c in constraints]
        simple = required_matcher(pod.pod) is None or not any(c.honor_affinity for c in constraints)
        if simple and not any(c.honor_taints for c in constraints):
            # Eligibility depends on the nodes alone: keep the counts across cycles.
            packed = _incremental_counts(state, pod, constraints)
            minimum = [
                0 if len(domains) < c.min_domains else min(domains.values(), default=0) >> NODE_BITS
                for c, domains in zip(constraints, packed, strict=True)
            ]
            return _SpreadState(constraints, packed, minimum, self_match, NODE_BITS)
        counts = _counts(pod, constraints, state.snapshot.nodes)
        minimum = [
            0 if len(domains) < c.min_domains else min(domains.values(), default=0)
            for c, domains in zip(constraints, counts, strict=True)
        ]
        return _SpreadState(constraints, counts, minimum, self_match)

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Any:
        """Count the pods per domain of each DoNotSchedule constraint."""
        found = self._state(state, pod, hard=True)
        if found is None:
            return SKIP
        state[self.name] = found
        return None

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        """Whether placing the pod here keeps every skew within ``maxSkew``."""
        found: _SpreadState | None = state.get(self.name)
        if found is None:
            return None
        labels = node.labels
        for index, constraint in enumerate(found.constraints):
            domain = labels.get(constraint.topology_key)
            if domain is None:
                return self.missing_label_reason
            count = found.counts[index].get(domain, 0) >> found.shift
            skew = count + found.self_match[index] - found.minimum[index]
            if skew > constraint.max_skew:
                return self.reason
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        """Count the pods per domain of each ScheduleAnyway constraint."""
        found = self._state(state, pod, hard=False)
        if found is None:
            return SKIP
        state[self.name + ".score"] = found
        return None

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> float:
        """The matching pods in this node's domains (fewer is better)."""
        found: _SpreadState = state[self.name + ".score"]
        total = 0.0
        for index, constraint in enumerate(found.constraints):
            domain = node.labels.get(constraint.topology_key)
            if domain is None:
                total += 1e9  # nodes outside every domain come last
            else:
                total += found.counts[index].get(domain, 0) >> found.shift
        return total

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        """Reverse and scale: the least crowded node gets 100, the most crowded 0."""
        if not scores:
            return
        low, high = min(scores.values()), max(scores.values())
        spread = high - low
        for name, value in scores.items():
            scores[name] = (
                int(MAX_NODE_SCORE * (high - value) / spread) if spread else (MAX_NODE_SCORE)
            )


__all__ = ["Constraint", "PodTopologySpread", "constraints_of"]
