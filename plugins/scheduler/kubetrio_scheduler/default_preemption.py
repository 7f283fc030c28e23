"""DefaultPreemption: make room for a pod no node fits by deleting pods of lower priority.

kube-scheduler's PostFilter plugin of the same name, with its rules:

* A pod with ``preemptionPolicy: Never`` never preempts; a pod whose nominated node
  still has a victim of an earlier preemption terminating waits for it instead of
  preempting again.
* Only nodes whose filters failed for reasons preemption can cure are tried (not
  taints, node affinity, ... — :class:`~kubetrio.providers.Unresolvable` reasons), at
  most ``max(10% of them, 100)`` from a random offset, the way kube-scheduler samples.
* On a node, every pod of *strictly lower* priority is removed and the filters run
  again; if the pod fits, the removed pods are put back one by one, most important
  first (higher priority, then longer running), keeping those that still let it fit.
  Pods whose PodDisruptionBudget would be violated are tried first, so they are spared
  when possible.
* Of the candidate nodes, the one with the fewest PDB violations wins, then the lowest
  highest-victim priority, the smallest sum of victim priorities, the fewest victims,
  the latest start of the most important victims, then the first in order.

Like kube-scheduler, filters that kept counts from the whole cluster in ``pre_filter``
(inter-pod affinity, topology spread) still count the victims: a pod that fails only
because of its affinity to lower-priority pods is not helped ("not recommended").

The plugin only decides; the scheduler deletes the victims (``DisruptionTarget``
condition first) and records the nomination.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetrio.api.selectors import LabelSelectorError, Selector, label_selector_from_struct
from kubetrio.providers import (
    ApiCaches,
    CycleState,
    FilterRunner,
    KubeObject,
    NodeInfo,
    ObjectCache,
    PodInfo,
    PostFilterResult,
    Unresolvable,
)

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."


@dataclass
class Candidate:
    """A node where the pod fits once ``victims`` (most important first) are gone."""

    node: str
    victims: list[PodInfo]
    pdb_violations: int


@dataclass
class Budget:
    """What preemption reads of a PodDisruptionBudget."""

    namespace: str
    selector: Selector
    allowed: int
    disrupted: frozenset[str]

    @classmethod
    def of(cls, pdb: Mapping[str, Any]) -> Budget | None:
        """The budget of a PDB object; None when its selector selects nothing (null,
        empty or invalid: kube-scheduler's preemption counts such a PDB for no pod)."""
        raw = (pdb.get("spec") or {}).get("selector")
        if not raw:
            return None
        try:
            selector = label_selector_from_struct(raw)
        except LabelSelectorError:
            return None
        if selector.is_empty() or selector.match_nothing:
            return None
        status = pdb.get("status") or {}
        return cls(
            namespace=(pdb.get("metadata") or {}).get("namespace") or "",
            selector=selector,
            allowed=int(status.get("disruptionsAllowed") or 0),
            disrupted=frozenset(status.get("disruptedPods") or {}),
        )


def start_time(pod: PodInfo) -> str:
    """``status.startTime`` (RFC 3339, compares as text); now for a pod not started."""
    started = (pod.pod.get("status") or {}).get("startTime")
    return str(started) if started else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def importance(pod: PodInfo) -> tuple[int, str]:
    """Sort key, most important first: higher priority, then the earlier start."""
    return -pod.priority, start_time(pod)


def split_by_budget(
    pods: Sequence[PodInfo], budgets: Sequence[Budget]
) -> tuple[list[PodInfo], list[PodInfo]]:
    """(pods whose deletion would violate a budget, the others), order kept.

    Each matching budget's ``disruptionsAllowed`` is used up by the pods in turn; a pod
    already in the budget's ``disruptedPods`` does not use it again.
    """
    allowed = [b.allowed for b in budgets]
    violating: list[PodInfo] = []
    others: list[PodInfo] = []
    for pod in pods:
        violated = False
        if pod.labels:  # a pod without labels matches no budget
            for i, budget in enumerate(budgets):
                if budget.namespace != pod.namespace or not budget.selector.matches(pod.labels):
                    continue
                if pod.name in budget.disrupted:
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else others).append(pod)
    return violating, others


def pick_one_node(candidates: Sequence[Candidate]) -> Candidate:
    """The best candidate by kube-scheduler's ``pickOneNodeForPreemption`` rules, each
    deciding only among the ones tied on the rules before it."""
    offset = 2**31  # makes every priority non-negative before summing
    rules = (
        lambda c: -c.pdb_violations,
        lambda c: -c.victims[0].priority,
        lambda c: -sum(v.priority + offset for v in c.victims),
        lambda c: -len(c.victims),
        # The latest start among the most important victims: the least work lost.
        lambda c: min(start_time(v) for v in c.victims if v.priority == c.victims[0].priority),
    )
    remaining = list(candidates)
    for rule in rules:
        if len(remaining) == 1:
            break
        scores = [rule(c) for c in remaining]
        best = max(scores)
        remaining = [c for c, s in zip(remaining, scores, strict=True) if s == best]
    return remaining[0]


def _terminating_by_preemption(pod: KubeObject) -> bool:
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "DisruptionTarget":
            return bool(
                condition.get("status") == "True"
                and condition.get("reason") == "PreemptionByScheduler"
            )
    return False


def fit_error(num_nodes: int, statuses: Mapping[str, Sequence[str]]) -> str:
    """``0/N nodes are available: <count> <reason>, ....`` over per-node reasons, nodes
    without an entry counted as "Preemption is not helpful for scheduling"."""
    counts: dict[str, int] = {}
    for reasons in statuses.values():
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    absent = num_nodes - len(statuses)
    if absent > 0:
        counts[NOT_HELPFUL] = counts.get(NOT_HELPFUL, 0) + absent
    text = ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    return f"0/{num_nodes} nodes are available: {text}."


class DefaultPreemption:
    """The post-filter that preempts (see the module's docstring for the rules).

    ``pluginConfig`` args: ``minCandidateNodesPercentage`` (10) and
    ``minCandidateNodesAbsolute`` (100), as kube-scheduler's ``DefaultPreemptionArgs``.
    """

    name = "DefaultPreemption"

    def __init__(
        self,
        *,
        min_candidate_nodes_percentage: int = 10,
        min_candidate_nodes_absolute: int = 100,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= min_candidate_nodes_percentage <= 100:
            raise ValueError(
                "DefaultPreemption: minCandidateNodesPercentage "
                f"{min_candidate_nodes_percentage} is not in the range [0, 100]"
            )
        if min_candidate_nodes_absolute < 0:
            raise ValueError(
                "DefaultPreemption: minCandidateNodesAbsolute "
                f"{min_candidate_nodes_absolute} is not in the range [0, inf)"
            )
        self.min_percentage = min_candidate_nodes_percentage
        self.min_absolute = min_candidate_nodes_absolute
        self.rng = rng or random.Random()
        self._pdbs: ObjectCache | None = None
        self.budgets_override: list[Budget] | None = None
        """Budgets to use instead of the API's (unit tests)."""

    def configured(self, args: Mapping[str, Any]) -> DefaultPreemption:
        """A copy with ``DefaultPreemptionArgs`` from ``pluginConfig``."""
        copy = DefaultPreemption(
            min_candidate_nodes_percentage=int(
                args.get("minCandidateNodesPercentage", self.min_percentage)
            ),
            min_candidate_nodes_absolute=int(
                args.get("minCandidateNodesAbsolute", self.min_absolute)
            ),
            rng=self.rng,
        )
        copy._pdbs = self._pdbs
        return copy

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """Read PodDisruptionBudgets (their ``status.disruptionsAllowed``)."""
        self._pdbs = caches.informer("policy/v1", "poddisruptionbudgets")

    def budgets(self) -> list[Budget]:
        """The budgets in the cluster now."""
        if self.budgets_override is not None:
            return self.budgets_override
        if self._pdbs is None:
            return []
        found = (Budget.of(pdb) for pdb in self._pdbs.list())
        return [b for b in found if b is not None]

    # --- the stage ---------------------------------------------------------------------------

    def post_filter(
        self,
        state: CycleState,
        pod: PodInfo,
        failed: Mapping[str, Sequence[str]],
        filters: FilterRunner,
    ) -> PostFilterResult:
        """Choose a node and its victims, or say why none (``preemption: ...``)."""
        why_not = self.ineligible(state, pod, failed)
        if why_not:
            return PostFilterResult(message=f"preemption: {why_not}")
        snapshot = state.snapshot
        num_nodes = len(snapshot.nodes)
        potential = [
            node
            for name, reasons in failed.items()
            if not any(isinstance(r, Unresolvable) for r in reasons)
            and (node := snapshot.get(name)) is not None
        ]
        candidates, statuses = self.dry_run(pod, potential, filters)
        if not candidates:
            # Clears a nomination the pod may have: that node is no help any more.
            return PostFilterResult(
                nominated_node="", message=f"preemption: {fit_error(num_nodes, statuses)}"
            )
        best = pick_one_node(candidates)
        return PostFilterResult(nominated_node=best.node, victims=best.victims)

    def ineligible(
        self, state: CycleState, pod: PodInfo, failed: Mapping[str, Sequence[str]]
    ) -> str:
        """Why the pod may not preempt now (kube-scheduler's
        ``PodEligibleToPreemptOthers``), or ``""``."""
        spec = pod.pod.get("spec") or {}
        if spec.get("preemptionPolicy") == "Never":
            return NEVER
        nominated = (pod.pod.get("status") or {}).get("nominatedNodeName") or ""
        nominated_of = getattr(state.snapshot, "nominated_node", None)
        if not nominated and nominated_of is not None:
            nominated = nominated_of(pod.key)
        if nominated:
            if any(isinstance(r, Unresolvable) for r in failed.get(nominated, ())):
                return ""  # that node cannot take it any more: preempt elsewhere
            node = state.snapshot.get(nominated)
            if node is not None:
                for other in node.pods.values():
                    if other.priority < pod.priority and _terminating_by_preemption(other.pod):
                        return TERMINATING
        return ""

    def num_candidates(self, num_nodes: int) -> int:
        """How many candidate nodes a dry run looks for."""
        wanted = max(num_nodes * self.min_percentage // 100, self.min_absolute)
        return min(wanted, num_nodes)

    def dry_run(
        self, pod: PodInfo, nodes: Sequence[NodeInfo], filters: FilterRunner
    ) -> tuple[list[Candidate], dict[str, Sequence[str]]]:
        """Candidates over ``nodes`` from a random offset (those without PDB violations
        first), stopping once enough are found; and why each failed node failed."""
        statuses: dict[str, Sequence[str]] = {}
        if not nodes:
            return [], statuses
        budgets = self.budgets()
        wanted = self.num_candidates(len(nodes))
        offset = self.rng.randrange(len(nodes))
        clean: list[Candidate] = []
        violating: list[Candidate] = []
        for i in range(len(nodes)):
            node = nodes[(offset + i) % len(nodes)]
            victims, violations, reasons = self.select_victims(pod, node, budgets, filters)
            if reasons is not None:
                statuses[node.name] = reasons
                continue
            candidate = Candidate(node.name, victims, violations)
            (violating if violations else clean).append(candidate)
            if clean and len(clean) + len(violating) >= wanted:
                break
        return clean + violating, statuses

    def select_victims(
        self,
        pod: PodInfo,
        node: NodeInfo,
        budgets: Sequence[Budget],
        filters: FilterRunner,
    ) -> tuple[list[PodInfo], int, Sequence[str] | None]:
        """The fewest pods to delete from ``node`` for ``pod`` to fit, most important
        first, and how many of them violate a budget; or the reasons it cannot fit."""
        potential = [p for p in node.pods.values() if p.priority < pod.priority]
        if not potential:
            return [], 0, (NO_VICTIMS,)
        what_if = node.clone()
        for victim in potential:
            what_if.remove_pod(victim.key)
        reasons = filters(what_if)
        if reasons is not None:
            return [], 0, reasons
        potential.sort(key=importance)
        violating, others = split_by_budget(potential, budgets)
        victims: list[PodInfo] = []
        violations = 0
        for group, counts in ((violating, True), (others, False)):
            for candidate in group:
                what_if.add_pod(candidate)
                if filters(what_if) is None:
                    continue  # reprieved: the pod fits with it
                what_if.remove_pod(candidate.key)
                victims.append(candidate)
                violations += counts
        if violating and others:
            victims.sort(key=importance)
        return victims, violations, None
