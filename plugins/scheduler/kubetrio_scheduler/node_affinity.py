"""NodeAffinity: ``spec.nodeSelector`` and ``affinity.nodeAffinity`` (required and preferred).

Required terms (``nodeSelectorTerms``) are ORed; inside a term, ``matchExpressions`` (on
labels) and ``matchFields`` (only ``metadata.name``, as in Kubernetes) are ANDed.
Operators: ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``, ``Lt`` (integers).
A term with no requirement matches no node. Preferred terms add their ``weight`` to the
nodes they match; scores are then scaled so the best node gets 100.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetrio.providers import SKIP, CycleState, NodeInfo, PodInfo, Unresolvable

MAX_NODE_SCORE = 100

NodeMatcher = Callable[[NodeInfo], bool]


def _requirement(expr: Mapping[str, Any], field: bool) -> Callable[[NodeInfo], bool]:
    key = str(expr.get("key", ""))
    operator = expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or ()]

    def value_of(node: NodeInfo) -> str | None:
        if field:
            return node.name if key == "metadata.name" else None
        return node.labels.get(key)

    if operator == "In":
        wanted = frozenset(values)
        return lambda node: value_of(node) in wanted
    if operator == "NotIn":
        unwanted = frozenset(values)
        return lambda node: value_of(node) not in unwanted
    if operator == "Exists":
        return lambda node: value_of(node) is not None
    if operator == "DoesNotExist":
        return lambda node: value_of(node) is None
    if operator in ("Gt", "Lt") and len(values) == 1:
        try:
            bound = int(values[0])
        except ValueError:
            return lambda node: False
        greater = operator == "Gt"

        def compare(node: NodeInfo) -> bool:
            have = value_of(node)
            if have is None:
                return False
            try:
                number = int(have)
            except ValueError:
                return False
            return number > bound if greater else number < bound

        return compare
    return lambda node: False  # an invalid requirement matches nothing


def term_matcher(term: Mapping[str, Any]) -> NodeMatcher:
    """One ``NodeSelectorTerm`` as a predicate (no requirement → matches nothing)."""
    checks = [_requirement(e, False) for e in term.get("matchExpressions") or ()]
    checks += [_requirement(e, True) for e in term.get("matchFields") or ()]
    if not checks:
        return lambda node: False
    return lambda node: all(check(node) for check in checks)


def required_matcher(pod: Mapping[str, Any]) -> NodeMatcher | None:
    """The pod's node selector and required node affinity as one predicate, or None
    when the pod has neither."""
    spec = pod.get("spec") or {}
    selector: Mapping[str, str] = spec.get("nodeSelector") or {}
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not selector and required is None:
        return None
    items = tuple(selector.items())
    terms = (
        None
        if required is None
        else [term_matcher(t) for t in required.get("nodeSelectorTerms") or ()]
    )

    def matches(node: NodeInfo) -> bool:
        labels = node.labels
        for key, value in items:
            if labels.get(key) != value:
                return False
        return terms is None or any(term(node) for term in terms)

    return matches


class NodeAffinity:
    """Filters by ``nodeSelector`` and required node affinity; scores preferred terms."""

    name = "NodeAffinity"
    requeue_on = frozenset({"NodeAdd", "NodeUpdate"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    node_local = True  # results depend on the pod and this node only (memoised)
    weight = 2
    reason = Unresolvable("node(s) didn't match Pod's node affinity/selector")

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Any:
        """Parse the pod's requirements once; skip pods that have none."""
        memo = pod.memo
        if "NodeAffinity.required" not in memo:
            memo["NodeAffinity.required"] = required_matcher(pod.pod)
        matcher = memo["NodeAffinity.required"]
        if matcher is None:
            return SKIP
        state[self.name] = matcher
        return None

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        """The reason when the node does not match, else None."""
        matcher: NodeMatcher | None = state.get(self.name)
        if matcher is None:
            matcher = required_matcher(pod)
        if matcher is None or matcher(node):
            return None
        return self.reason

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        """Parse the preferred terms once; skip pods that have none."""
        affinity = ((pod.pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
        preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        terms = [
            (int(p.get("weight") or 0), term_matcher(p.get("preference") or {})) for p in preferred
        ]
        terms = [(w, m) for w, m in terms if w]
        if not terms:
            return SKIP
        state[self.name + ".preferred"] = terms
        return None

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> int:
        """Sum of the weights of the preferred terms the node matches."""
        terms: list[tuple[int, NodeMatcher]] = state.get(self.name + ".preferred") or []
        return sum(weight for weight, matches in terms if matches(node))

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        """Scale so the best node gets 100."""
        best = max(scores.values(), default=0)
        if best > 0:
            for name, value in scores.items():
                scores[name] = value * MAX_NODE_SCORE // best
