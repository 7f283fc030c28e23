"""The scheduling framework: one profile's plugins, called stage by stage for one pod.

:class:`Framework` is built once per profile from the registered plugins and the
profile's configuration. :meth:`Framework.schedule` is one scheduling cycle minus the
binding: pre-filter, filter (over a rotating window of nodes, stopping once enough
feasible nodes are found — ``percentageOfNodesToScore``), pre-score, score, normalize,
pick the best node (ties broken at random), reserve. It is synchronous: it only reads
the in-memory cache.

A failed cycle yields a :class:`FitError` whose message is worded as kube-scheduler's
(``0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient
cpu. preemption: ...``), counting nodes per reason, reasons sorted.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from kubetrio.providers import (
    SKIP,
    CycleState,
    NodeInfo,
    NodeSnapshot,
    PodInfo,
    PostFilterResult,
    SchedulerPlugin,
    Unresolvable,
)

from ._config import STAGES, ConfigError, Profile

MIN_FEASIBLE_NODES_TO_FIND = 100
"""kube-scheduler's floor on how many feasible nodes a cycle looks for."""
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
"""kube-scheduler's floor on the adaptive percentage of nodes to score."""
MAX_NODE_SCORE = 100

_repeat = itertools.repeat
_CLASS_ENCODER = msgspec.json.Encoder(order="sorted", enc_hook=str)
"""Canonical JSON of what tells pod classes apart (keys sorted at every level)."""

_CLASS_IDS = itertools.count()
"""Pod class ids, unique in the process (see ``Framework._pod_class``)."""

_METHODS = {
    "preFilter": "pre_filter",
    "filter": "filter",
    "postFilter": "post_filter",
    "preScore": "pre_score",
    "score": "score",
    "reserve": "reserve",
    "preBind": "pre_bind",
    "bind": "bind",
}


def _none() -> bool:
    return False


NodeCall = Callable[[Any, NodeInfo, CycleState], Any]


def _with_state(method: Callable[..., Any]) -> NodeCall:
    """Call a per-node stage uniformly as ``f(pod, node, state)``."""
    try:
        params = [
            p
            for p in inspect.signature(method).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= 3:
        return method
    return lambda pod, node, state: method(pod, node)


class ScoreRangeError(Exception):
    """A score plugin gave a score outside [0, MAX_NODE_SCORE]; the message names it."""


def _in_range(plugin: str, score: Any, node: NodeInfo) -> Any:
    """``score`` when it is within [0, 100]; else a :class:`ScoreRangeError` naming the
    plugin (kube-scheduler refuses such a score the same way)."""
    if not 0 <= score <= MAX_NODE_SCORE:
        raise ScoreRangeError(
            f"score plugin {plugin!r} returned {score!r} for node {node.name!r}, "
            f"outside [0, {MAX_NODE_SCORE}] (a plugin scoring on another scale "
            "maps its scores with normalize_scores)"
        )
    return score


def _check_normalized(plugin: str, scores: Mapping[str, float]) -> None:
    for node_name, score in scores.items():
        if not 0 <= score <= MAX_NODE_SCORE:
            raise ScoreRangeError(
                f"score plugin {plugin!r}: normalize_scores gave {score!r} for node "
                f"{node_name!r}, outside [0, {MAX_NODE_SCORE}]"
            )


class FitError(Exception):
    """No node fits the pod; ``str()`` is the ``FailedScheduling`` event message."""

    def __init__(
        self,
        *,
        num_all_nodes: int,
        node_reasons: Mapping[str, Sequence[str]],
        pre_filter_message: str = "",
        post_filter_message: str = "",
    ) -> None:
        self.num_all_nodes = num_all_nodes
        self.node_reasons = node_reasons
        self.pre_filter_message = pre_filter_message
        self.post_filter_message = post_filter_message
        self.plugins: set[str] = set()
        """The plugins that rejected some node (the queue keeps them with the pod)."""
        self.post_filter: PostFilterResult | None = None
        """What the post-filter stage (preemption) decided, if it ran."""
        super().__init__(self.message())

    def message(self) -> str:
        """The event message, as kube-scheduler's ``FitError.Error()`` builds it."""
        if self.num_all_nodes == 0:
            return "no nodes available to schedule pods"
        text = f"0/{self.num_all_nodes} nodes are available:"
        if self.pre_filter_message:
            text += f" {self.pre_filter_message}."
        else:
            counts: dict[str, int] = {}
            for reasons in self.node_reasons.values():
                for reason in reasons:
                    counts[reason] = counts.get(reason, 0) + 1
            if counts:
                text += " " + ", ".join(sorted(f"{n} {r}" for r, n in counts.items())) + "."
        if self.post_filter_message:
            text += f" {self.post_filter_message}."
        return text


UNKNOWN, PASSED, REJECTED = 0, 1, 2
"""Node states in a ``_ClassState``: not examined since it changed, fits, does not."""
_is_passed = PASSED.__eq__
UNSCORED = -math.inf
"""A node-local score sum not computed yet: no sum of weighted 0..100 scores is -inf,
and float comparisons stay on C's fast path (``None in floats`` does not: 60 ns each)."""
MAX_CLASS_STATES = 256
"""Pod classes remembered per framework (each holds a few arrays as long as the nodes)."""


@dataclasses.dataclass
class _ClassState:
    """What node-local filters and scores said about one pod class, in flat arrays
    aligned with the snapshot's nodes (C-level slices and gathers, no object per node):
    ``status`` (UNKNOWN/PASSED/REJECTED), ``reasons`` ((plugin, reasons) of a rejected
    node), ``plain`` (weighted sum of the plain node-local scores; ``UNSCORED`` until
    first asked for, and again after the node changes) and ``norm`` (per normalising
    node-local plugin, its raw scores; valid where ``plain`` is scored).
    ``score_key`` names the score plugins the arrays were filled for."""

    mark: int
    order_version: int
    status: bytearray
    reasons: list[Any]
    plain: list[float]
    norm: list[list[float]] = dataclasses.field(default_factory=list)
    score_key: Any = None
    windows: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    """The ranges of positions with rejected nodes that this cycle walked."""

    def forget(self, index: int) -> None:
        """The node at ``index`` changed: examine it again."""
        self.status[index] = UNKNOWN
        self.reasons[index] = None
        self.plain[index] = UNSCORED

    def add_failures(
        self, nodes: Sequence[NodeInfo], failed: dict[str, Any], rejecting: set[str]
    ) -> None:
        """Add the reasons of the rejected nodes this cycle walked past to ``failed``,
        and the plugins that rejected them to ``rejecting`` (for the ``FitError``)."""
        for begin, end in self.windows:
            index = self.status.find(REJECTED, begin, end)
            while index != -1:
                name, reasons = self.reasons[index]
                failed[nodes[index].name] = reasons
                rejecting.add(name)
                index = self.status.find(REJECTED, index + 1, end)


def _gather(values: list[Any], positions: Sequence[int]) -> list[Any]:
    """``[values[i] for i in positions]`` at C speed (a slice when ``positions`` is one)."""
    if isinstance(positions, range) and positions.step == 1:
        return values[positions.start : positions.stop]
    return list(map(values.__getitem__, positions))


@dataclasses.dataclass
class _Stage:
    plugin: SchedulerPlugin
    name: str
    call: Any
    weight: int = 1
    normalize: Any = None


def _node_local(plugin: SchedulerPlugin) -> bool:
    return bool(getattr(plugin, "node_local", False))


def _as_reasons(result: Any) -> tuple[str, ...]:
    if isinstance(result, str):
        return (result,)
    return tuple(result)


class Framework:
    """The plugins of one profile, in registration order, per stage."""

    def __init__(
        self,
        plugins: Sequence[SchedulerPlugin],
        profile: Profile | None = None,
        *,
        percentage_of_nodes_to_score: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        profile = profile or Profile()
        self.profile = profile
        self.scheduler_name = profile.scheduler_name
        pct = profile.percentage_of_nodes_to_score
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score if pct is None else pct
        self.rng = rng or random.Random()
        self._next_start = 0
        by_name: dict[str, SchedulerPlugin] = {}
        for plugin in plugins:
            args = profile.plugin_config.get(plugin.name)
            configured = getattr(plugin, "configured", None)
            if args is not None and callable(configured):
                plugin = configured(args)
            by_name[plugin.name] = plugin
        for name in profile.plugin_config:
            if name not in by_name:
                raise ConfigError(f"pluginConfig: no plugin called {name!r} is registered")
        self.plugins = by_name
        self.stages: dict[str, list[_Stage]] = {}
        multi = profile.plugins.get("multiPoint")
        for stage in STAGES:
            self.stages[stage] = self._stage_plugins(stage, by_name, multi)
        self._filters = [
            (s.name, _with_state(s.call), _node_local(s.plugin)) for s in self.stages["filter"]
        ]
        self._scores = [
            (s.name, _with_state(s.call), s.weight, s.normalize, _node_local(s.plugin))
            for s in self.stages["score"]
        ]
        self._classes: dict[bytes, int] = {}
        self._class_states: dict[int, _ClassState] = {}

    def _stage_plugins(
        self, stage: str, by_name: Mapping[str, SchedulerPlugin], multi: Any
    ) -> list[_Stage]:
        method = _METHODS[stage]
        chosen: dict[str, int | None] = {}
        disabled: set[str] = set()
        for plugin_set in (multi, self.profile.plugins.get(stage)):
            if plugin_set is None:
                continue
            disabled.update(plugin_set.disabled)
            for name, weight in plugin_set.enabled:
                if name not in by_name:
                    raise ConfigError(f"plugins.{stage}: no plugin called {name!r} is registered")
                chosen[name] = weight if weight is not None else chosen.get(name)
        names = [] if "*" in disabled else [n for n in by_name if n not in disabled]
        names += [n for n in chosen if n not in names]
        stages = []
        for name in names:
            plugin = by_name[name]
            call = getattr(plugin, method, None)
            if call is None:
                continue
            weight = chosen.get(name)
            if weight is None:
                weight = int(getattr(plugin, "weight", 1))
            if stage == "score" and weight == 0:
                continue
            stages.append(
                _Stage(plugin, name, call, weight, getattr(plugin, "normalize_scores", None))
            )
        return stages

    def num_feasible_nodes_to_find(self, num_all_nodes: int) -> int:
        """How many feasible nodes a cycle looks for before it stops filtering."""
        pct = self.percentage_of_nodes_to_score
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or pct >= 100:
            return num_all_nodes
        if pct <= 0:
            pct = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
        return max(num_all_nodes * pct // 100, MIN_FEASIBLE_NODES_TO_FIND)

    # --- the cycle --------------------------------------------------------------------------

    def schedule(self, pod_info: PodInfo, snapshot: NodeSnapshot) -> tuple[NodeInfo, CycleState]:
        """Choose a node for the pod and reserve it; raise :class:`FitError` if none fits."""
        nodes = snapshot.nodes
        state = CycleState(pod_info, snapshot, self.scheduler_name)
        if not nodes:
            raise FitError(num_all_nodes=0, node_reasons={})
        pod = pod_info.pod
        skipped: set[str] = set()
        for stage in self.stages["preFilter"]:
            result = stage.call(state, pod_info)
            if result is SKIP:
                skipped.add(stage.name)
            elif result is not None:
                reasons = _as_reasons(result)
                # No filter ran: removing pods cannot help (the post filter is told so).
                unresolvable = tuple(Unresolvable(r) for r in reasons)
                post = self._post_filter(
                    state, pod_info, {n.name: unresolvable for n in nodes}, skipped
                )
                error = FitError(
                    num_all_nodes=len(nodes),
                    node_reasons={n.name: reasons for n in nodes},
                    pre_filter_message=", ".join(reasons),
                    post_filter_message=post.message if post else "",
                )
                error.plugins.add(stage.name)
                raise error
        feasible, positions, cs, failed, rejecting = self._find_feasible(state, pod, nodes, skipped)
        if feasible and getattr(snapshot, "has_nominations", _none)():
            feasible, positions = self._check_nominated(
                state, feasible, positions, failed, rejecting, skipped
            )
        if not feasible:
            if cs is not None:
                cs.add_failures(nodes, failed, rejecting)
            post = self._post_filter(state, pod_info, failed, skipped)
            error = FitError(
                num_all_nodes=len(nodes),
                node_reasons=failed,
                post_filter_message=post.message if post else "",
            )
            error.plugins = rejecting
            error.post_filter = post
            raise error
        chosen = (
            feasible[0]
            if len(feasible) == 1
            else self._best(state, pod_info, feasible, positions, cs)
        )
        for index, stage in enumerate(self.stages["reserve"]):
            refused = stage.call(state, pod_info, chosen)
            if refused is not None:
                for undo in reversed(self.stages["reserve"][:index]):
                    unreserve = getattr(undo.plugin, "unreserve", None)
                    if unreserve is not None:
                        unreserve(state, pod_info, chosen)
                error = FitError(
                    num_all_nodes=len(nodes), node_reasons={chosen.name: _as_reasons(refused)}
                )
                error.plugins.add(stage.name)
                raise error
        return chosen, state

    def unreserve(self, state: CycleState, pod_info: PodInfo, node: NodeInfo) -> None:
        """Undo every reserve (the binding failed)."""
        for stage in reversed(self.stages["reserve"]):
            unreserve = getattr(stage.plugin, "unreserve", None)
            if unreserve is not None:
                unreserve(state, pod_info, node)

    def _pod_class(self, pod_info: PodInfo) -> int:
        """A small integer shared by pods that node-local plugins cannot tell apart."""
        memo = pod_info.memo
        found: int | None = memo.get("framework.class")
        if found is None:
            spec = dict(pod_info.pod.get("spec") or {})
            spec.pop("nodeName", None)
            text = _CLASS_ENCODER.encode([pod_info.namespace, pod_info.labels, spec])
            found = self._classes.get(text)
            if found is None:
                if len(self._classes) > 100_000:  # bound the table; stale memos just miss
                    self._classes.clear()
                # Ids are unique in the process, whichever profile asks.
                found = self._classes[text] = next(_CLASS_IDS)
            memo["framework.class"] = found
        return found

    def _class_state(self, pod_class: int, snapshot: NodeSnapshot) -> _ClassState:
        """The remembered node-local verdicts of a pod class, brought up to date."""
        count = len(snapshot.nodes)
        found = self._class_states.get(pod_class)
        mark, changed = snapshot.changed_since(found.mark if found else -1)
        if found is None or changed is None or found.order_version != snapshot.order_version:
            if len(self._class_states) >= MAX_CLASS_STATES:
                self._class_states.clear()
            found = self._class_states[pod_class] = _ClassState(
                mark, snapshot.order_version, bytearray(count), [None] * count, [UNSCORED] * count
            )
            return found
        for name in set(changed):
            index = snapshot.index_of(name)
            if index is not None:
                found.forget(index)
        found.mark = mark
        return found

    def _find_feasible(
        self, state: CycleState, pod: Any, nodes: Sequence[NodeInfo], skipped: set[str]
    ) -> tuple[list[NodeInfo], Sequence[int] | None, _ClassState | None, dict[str, Any], set[str]]:
        """The feasible nodes, their positions in ``nodes`` and the class state when
        node-local filters ran, the reasons of the nodes ruled out and the plugins that
        ruled some out (both complete only when no node is feasible: they are needed
        for the ``FitError`` alone: :meth:`_ClassState.add_failures` adds the node-local
        ones when it is raised).

        Node-local verdicts are remembered per pod class (``_ClassState``) and reset for
        the nodes the snapshot reports changed; only those nodes are examined again
        (found with ``bytearray.find``), and a window of nodes that all passed is taken
        as a slice, so a Deployment's next replica costs per-node Python work only for
        the nodes that changed since the last one.
        """
        local = [(n, c) for n, c, is_local in self._filters if is_local and n not in skipped]
        others = [(n, c) for n, c, is_local in self._filters if not is_local and n not in skipped]
        count = len(nodes)
        to_find = self.num_feasible_nodes_to_find(count)
        start = self._next_start % count
        feasible: list[NodeInfo] = []
        positions: list[int] = []
        failed: dict[str, Any] = {}
        rejecting: set[str] = set()
        processed = 0
        cs = self._class_state(self._pod_class(state.pod_info), state.snapshot) if local else None
        if cs is not None:
            cs.windows = []
        while len(feasible) < to_find and processed < count:
            begin = (start + processed) % count
            end = min(count, begin + to_find - len(feasible))
            processed += end - begin
            passed: Sequence[NodeInfo]
            passed_at: Sequence[int]
            if cs is not None:
                status = cs.status
                index = status.find(UNKNOWN, begin, end)
                while index != -1:
                    node = nodes[index]
                    for name, check in local:
                        result = check(pod, node, state)
                        if result is not None:
                            cs.reasons[index] = (name, _as_reasons(result))
                            status[index] = REJECTED
                            break
                    else:
                        status[index] = PASSED
                    index = status.find(UNKNOWN, index + 1, end)
                if status.count(PASSED, begin, end) == end - begin:
                    passed, passed_at = nodes[begin:end], range(begin, end)
                else:
                    cs.windows.append((begin, end))
                    mask = list(map(_is_passed, status[begin:end]))
                    passed = list(itertools.compress(nodes[begin:end], mask))
                    passed_at = list(itertools.compress(range(begin, end), mask))
            else:
                passed, passed_at = nodes[begin:end], range(begin, end)
            if others:
                for node, at in zip(passed, passed_at, strict=True):
                    for name, check in others:
                        result = check(pod, node, state)
                        if result is not None:
                            failed[node.name] = _as_reasons(result)
                            rejecting.add(name)
                            break
                    else:
                        feasible.append(node)
                        positions.append(at)
            else:
                feasible.extend(passed)
                positions.extend(passed_at)
        # The next pod starts where this one stopped, so every node gets its turn.
        self._next_start = (start + processed) % count
        if positions and len(positions) == positions[-1] - positions[0] + 1:
            # One run of positions (increasing within a window; a wrap goes down): a
            # range, so the scores are gathered as one slice.
            return feasible, range(positions[0], positions[-1] + 1), cs, failed, rejecting
        return feasible, positions if cs is not None else None, cs, failed, rejecting

    def _best(
        self,
        state: CycleState,
        pod_info: PodInfo,
        feasible: list[NodeInfo],
        positions: Sequence[int] | None,
        cs: _ClassState | None,
    ) -> NodeInfo:
        pod = pod_info.pod
        skipped: set[str] = set()
        for stage in self.stages["preScore"]:
            if stage.call(state, pod_info, feasible) is SKIP:
                skipped.add(stage.name)
        scores = [s for s in self._scores if s[0] not in skipped]
        local_plain = [(n, c, w) for n, c, w, norm, is_local in scores if is_local and norm is None]
        local_norm = [(n, c) for n, c, w, norm, is_local in scores if is_local and norm]
        totals = [0.0] * len(feasible)
        if local_plain or local_norm:
            # Node-local scores are remembered in the class state's flat arrays, filled
            # on first use; without node-local filters nothing is remembered: score afresh.
            if cs is None or positions is None:
                count = len(feasible)
                cs = _ClassState(0, 0, bytearray(count), [None] * count, [UNSCORED] * count)
                positions = range(count)
            key = ([n for n, _, _ in local_plain], [n for n, _ in local_norm])
            if cs.score_key != key:
                cs.score_key = key
                cs.plain = [UNSCORED] * len(cs.plain)
                cs.norm = [[0.0] * len(cs.plain) for _ in local_norm]
            plain_scores = cs.plain
            totals = _gather(plain_scores, positions)
            if min(totals) == UNSCORED:
                i = totals.index(UNSCORED)
                while True:
                    node, at = feasible[i], positions[i]
                    plain = 0.0
                    for name, call, weight in local_plain:
                        plain += _in_range(name, call(pod, node, state), node) * weight
                    plain_scores[at] = totals[i] = plain
                    for raw_scores, (_, call) in zip(cs.norm, local_norm, strict=True):
                        raw_scores[at] = float(call(pod, node, state))
                    try:
                        i = totals.index(UNSCORED, i + 1)
                    except ValueError:
                        break
            by_name = {n: (w, norm) for n, _, w, norm, _ in scores}
            for raw_scores, (name, _) in zip(cs.norm, local_norm, strict=True):
                raw = _gather(raw_scores, positions)
                if min(raw) == max(raw):
                    continue  # equal scores stay equal: no node gains over another
                weight, normalize = by_name[name]
                normalized = {node.name: raw[i] for i, node in enumerate(feasible)}
                normalize(state, pod_info, normalized)
                _check_normalized(name, normalized)
                values = list(normalized.values())  # dicts keep insertion order
                totals = [t + v * weight for t, v in zip(totals, values, strict=True)]
        for name, call, weight, normalize, is_local in scores:
            if is_local:
                continue
            if normalize is None:
                for i, node in enumerate(feasible):
                    totals[i] += _in_range(name, call(pod, node, state), node) * weight
            else:
                by_node = {node.name: float(call(pod, node, state)) for node in feasible}
                if min(by_node.values()) == max(by_node.values()):
                    continue  # equal scores stay equal: no node gains over another
                normalize(state, pod_info, by_node)
                _check_normalized(name, by_node)
                for i, node in enumerate(feasible):
                    totals[i] += by_node[node.name] * weight
        best = max(totals)
        if totals.count(best) == 1:
            return feasible[totals.index(best)]
        # Ties are broken at random, as kube-scheduler's selectHost does.
        # (C-level: with hundreds of equally empty nodes, a Python loop over the totals
        # showed in the cycle's profile.)
        ties = list(itertools.compress(range(len(totals)), map(operator.eq, totals, _repeat(best))))
        return feasible[self.rng.choice(ties)]

    # --- nominated pods and the post filter --------------------------------------------------

    def run_filters(
        self, state: CycleState, node: NodeInfo, skipped: set[str] | frozenset[str] = frozenset()
    ) -> tuple[str, ...] | None:
        """Every filter on one node (no memo): the first rejection's reasons, or None."""
        pod = state.pod_info.pod
        for name, check, _ in self._filters:
            if name in skipped:
                continue
            result = check(pod, node, state)
            if result is not None:
                return _as_reasons(result)
        return None

    def run_filters_with_nominated(
        self, state: CycleState, node: NodeInfo, skipped: set[str] | frozenset[str] = frozenset()
    ) -> tuple[str, ...] | None:
        """:meth:`run_filters` with the pods nominated to the node that are at least as
        important as the pod counted there too, as kube-scheduler's
        ``RunFilterPluginsWithNominatedPods``: the pod must fit both with them (room they
        were promised) and without them (filters such as anti-affinity may pass only
        because of them)."""
        info = state.pod_info
        nominated_pods = getattr(state.snapshot, "nominated_pods", None)
        others = [
            p
            for p in (nominated_pods(node.name) if nominated_pods else ())
            if p.key != info.key and p.priority >= info.priority
        ]
        if others:
            with_them = node.clone()
            for other in others:
                with_them.add_pod(other)
            reasons = self.run_filters(state, with_them, skipped)
            if reasons is not None:
                return reasons
        return self.run_filters(state, node, skipped)

    def _check_nominated(
        self,
        state: CycleState,
        feasible: list[NodeInfo],
        positions: Sequence[int] | None,
        failed: dict[str, Any],
        rejecting: set[str],
        skipped: set[str],
    ) -> tuple[list[NodeInfo], Sequence[int] | None]:
        """The feasible nodes that still fit once the pods nominated there (of equal or
        higher priority) are counted (with their positions); the others move to
        ``failed``."""
        nominated_pods = getattr(state.snapshot, "nominated_pods", None)
        if nominated_pods is None:
            return feasible, positions
        info = state.pod_info
        kept: list[NodeInfo] = []
        kept_positions: list[int] = []
        for i, node in enumerate(feasible):
            others = [
                p
                for p in nominated_pods(node.name)
                if p.key != info.key and p.priority >= info.priority
            ]
            reasons = None
            if others:
                with_them = node.clone()
                for other in others:
                    with_them.add_pod(other)
                reasons = self.run_filters(state, with_them, skipped)
            if reasons is None:
                kept.append(node)
                if positions is not None:
                    kept_positions.append(positions[i])
            else:
                failed[node.name] = reasons
                rejecting.add("NominatedPods")
        return kept, kept_positions if positions is not None else None

    def _post_filter(
        self,
        state: CycleState,
        pod_info: PodInfo,
        failed: Mapping[str, Sequence[str]],
        skipped: set[str],
    ) -> PostFilterResult | None:
        """Run the post-filter stage (preemption) once no node fits: the first result
        naming a node wins; otherwise the messages are joined as kube-scheduler does."""
        messages = []
        last: PostFilterResult | None = None

        def filters(node: NodeInfo) -> tuple[str, ...] | None:
            return self.run_filters_with_nominated(state, node, skipped)

        for stage in self.stages["postFilter"]:
            result: PostFilterResult | None = stage.call(state, pod_info, failed, filters)
            if result is None:
                continue
            if result.nominated_node:
                return result
            if result.message:
                messages.append(result.message)
            last = result
        if last is None:
            return None
        return PostFilterResult(nominated_node=last.nominated_node, message=", ".join(messages))
