"""InterPodAffinity: place pods near (affinity) or away from (anti-affinity) other pods.

A term selects pods (``labelSelector``) in some namespaces (``namespaces`` or
``namespaceSelector``; neither means the term owner's namespace; ``namespaceSelector: {}``
means all) and names a ``topologyKey``: two nodes are "near" when they carry the same
value of that label.

Filter, as kube-scheduler:

* the incoming pod's required **affinity** needs, for every term, a node whose topology
  value already hosts a pod matching all the terms — unless no such pod exists anywhere
  and the pod matches its own terms (the first pod of a group may go anywhere that has
  the topology labels);
* its required **anti-affinity** rules out topology values that host a matching pod;
* existing pods' required anti-affinity is symmetric: their topology values are ruled
  out for pods their terms match.

Scores add each preferred term's weight (affinity +, anti-affinity minus) to the topology
values of the matching pods, both ways (existing pods' preferred terms count for the
incoming pod, and their *required* affinity terms count ``hardPodAffinityWeight``), and
are then scaled to 0..100 between the lowest and highest node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetrio.api.selectors import LabelSelectorError, Selector, label_selector_from_struct
from kubetrio.providers import SKIP, CycleState, NodeInfo, NodeSnapshot, PodInfo, Unresolvable

MAX_NODE_SCORE = 100
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


@dataclass(frozen=True)
class AffinityTerm:
    """A parsed ``PodAffinityTerm`` (with the weight of its preferred wrapper, if any)."""

    selector: Selector
    namespaces: frozenset[str]
    namespace_selector: Selector | None
    topology_key: str
    weight: int = 0

    def matches(self, pod: PodInfo, snapshot: NodeSnapshot) -> bool:
        """Whether ``pod`` is one of the pods this term selects."""
        if pod.namespace not in self.namespaces and (
            self.namespace_selector is None
            or not self.namespace_selector.matches(snapshot.namespace_labels(pod.namespace))
        ):
            return False
        return self.selector.matches(pod.labels)


def _selector(raw: Any) -> Selector:
    try:
        return label_selector_from_struct(raw)
    except LabelSelectorError:
        return label_selector_from_struct(None)  # an invalid selector selects nothing


def parse_term(raw: Mapping[str, Any], owner_namespace: str, weight: int = 0) -> AffinityTerm:
    """Parse one ``PodAffinityTerm`` of a pod in ``owner_namespace``."""
    namespaces = frozenset(raw.get("namespaces") or ())
    raw_ns_selector = raw.get("namespaceSelector")
    ns_selector = None if raw_ns_selector is None else _selector(raw_ns_selector)
    if not namespaces and ns_selector is None:
        namespaces = frozenset({owner_namespace})
    return AffinityTerm(
        selector=_selector(raw.get("labelSelector")),
        namespaces=namespaces,
        namespace_selector=ns_selector,
        topology_key=str(raw.get("topologyKey") or ""),
        weight=weight,
    )


@dataclass(frozen=True)
class PodTerms:
    """All the affinity terms of one pod, parsed."""

    affinity: tuple[AffinityTerm, ...]
    anti_affinity: tuple[AffinityTerm, ...]
    preferred_affinity: tuple[AffinityTerm, ...]
    preferred_anti_affinity: tuple[AffinityTerm, ...]


def pod_terms(pod: PodInfo) -> PodTerms:
    """The pod's parsed terms, memoised on its :class:`PodInfo`."""
    found: PodTerms | None = pod.memo.get("InterPodAffinity")
    if found is not None:
        return found
    affinity = (pod.pod.get("spec") or {}).get("affinity") or {}
    pa = affinity.get("podAffinity") or {}
    paa = affinity.get("podAntiAffinity") or {}
    ns = pod.namespace

    def required(block: Mapping[str, Any]) -> tuple[AffinityTerm, ...]:
        return tuple(parse_term(t, ns) for t in block.get(REQUIRED) or ())

    def preferred(block: Mapping[str, Any]) -> tuple[AffinityTerm, ...]:
        return tuple(
            parse_term(w.get("podAffinityTerm") or {}, ns, int(w.get("weight") or 0))
            for w in block.get(PREFERRED) or ()
        )

    found = PodTerms(required(pa), required(paa), preferred(pa), preferred(paa))
    pod.memo["InterPodAffinity"] = found
    return found


@dataclass
class _FilterState:
    existing_anti: dict[str, set[str]]
    affinity_counts: dict[tuple[str, str], int]
    anti_counts: dict[tuple[str, str], int]
    terms: PodTerms
    self_match: bool


class InterPodAffinity:
    """Required and preferred pod affinity and anti-affinity, with topology keys."""

    name = "InterPodAffinity"
    weight = 2
    existing_reason = "node(s) didn't satisfy existing pods anti-affinity rules"
    affinity_reason = Unresolvable("node(s) didn't match pod affinity rules")
    anti_affinity_reason = "node(s) didn't match pod anti-affinity rules"

    def __init__(self, hard_pod_affinity_weight: int = 1) -> None:
        self.hard_pod_affinity_weight = hard_pod_affinity_weight

    def configured(self, args: Mapping[str, Any]) -> InterPodAffinity:
        """A copy with ``hardPodAffinityWeight`` from ``pluginConfig``."""
        return InterPodAffinity(int(args.get("hardPodAffinityWeight", 1)))

    # --- filter -------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Any:
        """Count matching pods per topology value; skip when no term is involved."""
        snapshot = state.snapshot
        terms = pod_terms(pod)
        existing_anti: dict[str, set[str]] = {}
        for node in snapshot.nodes_with_affinity_pods():
            for other in node.pods_with_required_anti_affinity.values():
                for term in pod_terms(other).anti_affinity:
                    value = node.labels.get(term.topology_key)
                    if value is not None and term.matches(pod, snapshot):
                        existing_anti.setdefault(term.topology_key, set()).add(value)
        if not terms.affinity and not terms.anti_affinity and not existing_anti:
            return SKIP
        affinity_counts: dict[tuple[str, str], int] = {}
        anti_counts: dict[tuple[str, str], int] = {}
        if terms.affinity or terms.anti_affinity:
            for node in snapshot.nodes:
                labels = node.labels
                for other in node.pods.values():
                    if other.key == pod.key:
                        continue
                    if terms.affinity and all(t.matches(other, snapshot) for t in terms.affinity):
                        for t in terms.affinity:
                            value = labels.get(t.topology_key)
                            if value is not None:
                                pair = (t.topology_key, value)
                                affinity_counts[pair] = affinity_counts.get(pair, 0) + 1
                    for t in terms.anti_affinity:
                        value = labels.get(t.topology_key)
                        if value is not None and t.matches(other, snapshot):
                            pair = (t.topology_key, value)
                            anti_counts[pair] = anti_counts.get(pair, 0) + 1
        self_match = all(t.matches(pod, snapshot) for t in terms.affinity)
        state[self.name] = _FilterState(
            existing_anti, affinity_counts, anti_counts, terms, self_match
        )
        return None

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        """The first rule the node breaks (in kube-scheduler's order: the pod's affinity,
        its anti-affinity, then existing pods' anti-affinity), or None."""
        found: _FilterState | None = state.get(self.name)
        if found is None:
            return None
        labels = node.labels
        for term in found.terms.affinity:
            value = labels.get(term.topology_key)
            if value is None:
                return self.affinity_reason
            if found.affinity_counts.get((term.topology_key, value), 0) > 0:
                continue
            # The first pod of a group that selects itself may start the group anywhere.
            if found.affinity_counts or not found.self_match:
                return self.affinity_reason
        for term in found.terms.anti_affinity:
            value = labels.get(term.topology_key)
            if value is not None and found.anti_counts.get((term.topology_key, value), 0):
                return self.anti_affinity_reason
        for key, values in found.existing_anti.items():
            if labels.get(key) in values:
                return self.existing_reason
        return None

    # --- score ----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        """Sum the weights per topology value; skip when no preference is involved."""
        snapshot = state.snapshot
        terms = pod_terms(pod)
        has_preferences = bool(terms.preferred_affinity or terms.preferred_anti_affinity)
        candidates = snapshot.nodes if has_preferences else snapshot.nodes_with_affinity_pods()
        if not candidates:
            return SKIP
        by_key: dict[str, dict[str, float]] = {}

        def add(key: str, value: str | None, amount: float) -> None:
            if value is not None and amount:
                values = by_key.setdefault(key, {})
                values[value] = values.get(value, 0) + amount

        hard = self.hard_pod_affinity_weight
        for node in candidates:
            labels = node.labels
            others = node.pods if has_preferences else node.pods_with_affinity
            for other in others.values():
                if other.key == pod.key:
                    continue
                for t in terms.preferred_affinity:
                    if t.matches(other, snapshot):
                        add(t.topology_key, labels.get(t.topology_key), t.weight)
                for t in terms.preferred_anti_affinity:
                    if t.matches(other, snapshot):
                        add(t.topology_key, labels.get(t.topology_key), -t.weight)
                theirs = pod_terms(other)
                if hard:
                    for t in theirs.affinity:
                        if t.matches(pod, snapshot):
                            add(t.topology_key, labels.get(t.topology_key), hard)
                for t in theirs.preferred_affinity:
                    if t.matches(pod, snapshot):
                        add(t.topology_key, labels.get(t.topology_key), t.weight)
                for t in theirs.preferred_anti_affinity:
                    if t.matches(pod, snapshot):
                        add(t.topology_key, labels.get(t.topology_key), -t.weight)
        if not by_key:
            return SKIP
        state[self.name + ".score"] = by_key
        return None

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> float:
        """The summed weights of the topology values this node carries."""
        by_key: dict[str, dict[str, float]] = state.get(self.name + ".score") or {}
        labels = node.labels
        total = 0.0
        for key, values in by_key.items():
            value = labels.get(key)
            if value is not None:
                total += values.get(value, 0)
        return total

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        """Scale to 0..100 between the lowest and the highest node."""
        if not scores:
            return
        low, high = min(scores.values()), max(scores.values())
        spread = high - low
        for name, value in scores.items():
            scores[name] = int(MAX_NODE_SCORE * (value - low) / spread) if spread else 0
