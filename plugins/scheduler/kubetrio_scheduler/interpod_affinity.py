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

from ._counting import counter

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


NO_TERMS = PodTerms((), (), (), ())
"""The terms of a pod without pod (anti-)affinity."""


def pod_terms(pod: PodInfo) -> PodTerms:
    """The pod's parsed terms, memoised on its :class:`PodInfo`."""
    found: PodTerms | None = pod.memo.get("InterPodAffinity")
    if found is not None:
        return found
    affinity = (pod.pod.get("spec") or {}).get("affinity") or {}
    pa = affinity.get("podAffinity") or {}
    paa = affinity.get("podAntiAffinity") or {}
    if not pa and not paa:  # most pods: nothing to parse
        pod.memo["InterPodAffinity"] = NO_TERMS
        return NO_TERMS
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


def _existing_anti(node: NodeInfo, pod: PodInfo, snapshot: NodeSnapshot) -> dict[Any, int]:
    """The node's topology values that its pods' required anti-affinity forbids to ``pod``."""
    found: dict[Any, int] = {}
    for other in node.pods_with_required_anti_affinity.values():
        for term in pod_terms(other).anti_affinity:
            value = node.labels.get(term.topology_key)
            if value is not None and term.matches(pod, snapshot):
                pair = (term.topology_key, value)
                found[pair] = found.get(pair, 0) + 1
    return found


def _term_counts(node: NodeInfo, terms: PodTerms, snapshot: NodeSnapshot) -> dict[Any, int]:
    """The node's pods matching the terms: ``("a", key, value)`` for pods matching every
    affinity term, ``("x", key, value)`` per anti-affinity term."""
    found: dict[Any, int] = {}
    labels = node.labels
    for other in node.pods.values():
        if terms.affinity and all(t.matches(other, snapshot) for t in terms.affinity):
            for t in terms.affinity:
                value = labels.get(t.topology_key)
                if value is not None:
                    key = ("a", t.topology_key, value)
                    found[key] = found.get(key, 0) + 1
        for t in terms.anti_affinity:
            value = labels.get(t.topology_key)
            if value is not None and t.matches(other, snapshot):
                key = ("x", t.topology_key, value)
                found[key] = found.get(key, 0) + 1
    return found


def _score_weights(
    node: NodeInfo, pod: PodInfo, terms: PodTerms, hard: int, snapshot: NodeSnapshot
) -> dict[Any, int]:
    """The weights the node's pods add to (or take from) their topology values for ``pod``:
    its preferred terms matching them, and their terms matching it."""
    found: dict[Any, int] = {}
    labels = node.labels

    def add(key: str, amount: int) -> None:
        value = labels.get(key)
        if value is not None and amount:
            found[(key, value)] = found.get((key, value), 0) + amount

    has_preferences = bool(terms.preferred_affinity or terms.preferred_anti_affinity)
    others = node.pods if has_preferences else node.pods_with_affinity
    for other in others.values():
        for t in terms.preferred_affinity:
            if t.matches(other, snapshot):
                add(t.topology_key, t.weight)
        for t in terms.preferred_anti_affinity:
            if t.matches(other, snapshot):
                add(t.topology_key, -t.weight)
        theirs = pod_terms(other)
        if hard:
            for t in theirs.affinity:
                if t.matches(pod, snapshot):
                    add(t.topology_key, hard)
        for t in theirs.preferred_affinity:
            if t.matches(pod, snapshot):
                add(t.topology_key, t.weight)
        for t in theirs.preferred_anti_affinity:
            if t.matches(pod, snapshot):
                add(t.topology_key, -t.weight)
    return found


@dataclass
class _FilterState:
    """The counters' totals as they are (not copied: thousands of entries, rebuilt into
    other shapes every cycle, were most of the cycle's time): ``existing`` maps
    ``(key, value)`` to the pods whose anti-affinity forbids that value,
    ``existing_keys`` its keys, ``counts`` maps ``("a" | "x", key, value)`` to the pods
    matching the pod's affinity (``a``) or one anti-affinity term (``x``)."""

    existing: dict[Any, int]
    existing_keys: tuple[str, ...]
    counts: dict[Any, int]
    any_affinity_count: bool
    terms: PodTerms
    self_match: bool


class InterPodAffinity:
    """Required and preferred pod affinity and anti-affinity, with topology keys."""

    name = "InterPodAffinity"
    requeue_on = frozenset(
        {"NodeAdd", "NodeUpdate", "PodAdd", "PodUpdate", "PodDelete", "NamespaceUpdate"}
    )
    """The cluster changes that may let a pod this plugin rejected fit."""
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
        """Count matching pods per topology value; skip when no term is involved.

        The counts live in counters kept across cycles (see ``_counting``): a cycle only
        recounts the nodes that changed since the last pod of the same shape asked.
        """
        snapshot = state.snapshot
        terms = pod_terms(pod)
        existing: dict[Any, int] = {}
        existing_keys: tuple[str, ...] = ()
        if snapshot.nodes_with_affinity_pods():
            existing_counter = counter(
                snapshot,
                ("InterPodAffinity.existing", pod.namespace, frozenset(pod.labels.items())),
                lambda node: _existing_anti(node, pod, snapshot),
            )
            existing = existing_counter.refresh(snapshot)
            existing_keys = existing_counter.first_keys()
        if not terms.affinity and not terms.anti_affinity and not existing:
            return SKIP
        totals: dict[Any, int] = {}
        if terms.affinity or terms.anti_affinity:
            totals = counter(
                snapshot,
                ("InterPodAffinity.terms", terms.affinity, terms.anti_affinity),
                lambda node: _term_counts(node, terms, snapshot),
            ).refresh(snapshot)
        self_match = all(t.matches(pod, snapshot) for t in terms.affinity)
        state[self.name] = _FilterState(
            existing,
            existing_keys,
            totals,
            bool(terms.affinity) and any(kind == "a" for kind, _, _ in totals),
            terms,
            self_match,
        )
        return None

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        """The first rule the node breaks (in kube-scheduler's order: the pod's affinity,
        its anti-affinity, then existing pods' anti-affinity), or None."""
        found: _FilterState | None = state.get(self.name)
        if found is None:
            return None
        labels = node.labels
        counts = found.counts
        for term in found.terms.affinity:
            value = labels.get(term.topology_key)
            if value is None:
                return self.affinity_reason
            if counts.get(("a", term.topology_key, value), 0) > 0:
                continue
            # The first pod of a group that selects itself may start the group anywhere.
            if found.any_affinity_count or not found.self_match:
                return self.affinity_reason
        for term in found.terms.anti_affinity:
            value = labels.get(term.topology_key)
            if value is not None and counts.get(("x", term.topology_key, value), 0):
                return self.anti_affinity_reason
        existing = found.existing
        for key in found.existing_keys:
            value = labels.get(key)
            if value is not None and existing.get((key, value), 0):
                return self.existing_reason
        return None

    # --- score ----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        """Sum the weights per topology value; skip when no preference is involved.

        Like the filter's counts, the sums are kept across cycles per pod shape and only
        the nodes that changed are walked again.
        """
        snapshot = state.snapshot
        terms = pod_terms(pod)
        has_preferences = bool(terms.preferred_affinity or terms.preferred_anti_affinity)
        if not has_preferences and not snapshot.nodes_with_affinity_pods():
            return SKIP
        hard = self.hard_pod_affinity_weight
        signature = (
            "InterPodAffinity.score",
            pod.namespace,
            frozenset(pod.labels.items()),
            terms.preferred_affinity,
            terms.preferred_anti_affinity,
            hard,
        )
        totals = counter(
            snapshot, signature, lambda node: _score_weights(node, pod, terms, hard, snapshot)
        ).refresh(snapshot)
        if not totals:
            return SKIP
        by_key: dict[str, dict[str, float]] = {}
        for (key, value), amount in totals.items():
            by_key.setdefault(key, {})[value] = amount
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
