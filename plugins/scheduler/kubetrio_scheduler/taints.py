"""TaintToleration: taints keep pods off nodes unless the pods tolerate them.

``NoSchedule`` and ``NoExecute`` taints that a pod does not tolerate rule the node out
(``node(s) had untolerated taint {key: value}``); ``PreferNoSchedule`` taints only lower
the node's score. A toleration matches a taint when the effects agree (an empty effect
matches all) and either ``operator: Exists`` with the same key (an empty key matches
every taint) or ``operator: Equal`` (the default) with the same key and value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetrio.providers import CycleState, NodeInfo, PodInfo, Unresolvable

MAX_NODE_SCORE = 100


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Whether one toleration tolerates one taint (Kubernetes' ``ToleratesTaint``)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        if not key:  # an empty key needs operator Exists
            return False
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated(
    taints: Sequence[Mapping[str, Any]],
    tolerations: Sequence[Mapping[str, Any]],
    effects: tuple[str, ...],
) -> list[Mapping[str, Any]]:
    """The taints with one of ``effects`` that no toleration tolerates."""
    return [
        taint
        for taint in taints
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations)
    ]


class TaintToleration:
    """Filters out nodes with untolerated NoSchedule/NoExecute taints; scores down
    nodes with untolerated PreferNoSchedule taints."""

    name = "TaintToleration"
    requeue_on = frozenset({"NodeAdd", "NodeUpdate"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    node_local = True  # results depend on the pod and this node only (memoised)
    weight = 3

    def filter(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> str | None:
        """The first untolerated hard taint, worded as kube-scheduler does, or None."""
        taints = node.taints
        if not taints:
            return None
        tolerations = (pod.get("spec") or {}).get("tolerations") or ()
        for taint in untolerated(taints, tolerations, ("NoSchedule", "NoExecute")):
            key, value = taint.get("key", ""), taint.get("value", "")
            return Unresolvable(f"node(s) had untolerated taint {{{key}: {value}}}")
        return None

    def score(self, pod: dict[str, Any], node: NodeInfo, state: CycleState) -> int:
        """How many PreferNoSchedule taints the pod does not tolerate (fewer is better)."""
        taints = node.taints
        if not taints:
            return 0
        tolerations = [
            t
            for t in (pod.get("spec") or {}).get("tolerations") or ()
            if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"
        ]
        return len(untolerated(taints, tolerations, ("PreferNoSchedule",)))

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None:
        """Reverse and scale: no untolerated taint → 100, the most → 0."""
        worst = max(scores.values(), default=0)
        for name, value in scores.items():
            scores[name] = (
                MAX_NODE_SCORE if worst == 0 else MAX_NODE_SCORE - value * MAX_NODE_SCORE // worst
            )
