"""Preemption (DefaultPreemption, the post filter) against kube-scheduler's documented
rules: who may preempt, which pods become victims, which node is chosen, and how
nominated pods hold their node's room.

The rules are those of upstream's ``pkg/scheduler/framework/preemption`` and
``plugins/defaultpreemption`` (SelectVictimsOnNode, filterPodsWithPDBViolation,
pickOneNodeForPreemption, PodEligibleToPreemptOthers)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from kubetrio_scheduler.default_preemption import (
    Budget,
    Candidate,
    DefaultPreemption,
    pick_one_node,
    split_by_budget,
)
from kubetrio_scheduler.node_affinity import NodeAffinity
from kubetrio_scheduler.node_filters import NodeName, NodeUnschedulable
from kubetrio_scheduler.resources import NodeResourcesFit
from kubetrio_scheduler.taints import TaintToleration

from kubetrio.providers import PodInfo
from kubetrio.scheduler import FitError, Framework, SchedulerConfig, pod_info

Factory = Callable[..., Any]


def low(
    pod: Factory,
    name: str,
    node: str,
    priority: int,
    cpu: str = "1",
    started: str = "2026-01-01T00:00:00Z",
    **kwargs: Any,
) -> dict[str, Any]:
    """A running pod of some priority on ``node``."""
    made: dict[str, Any] = pod(name, cpu=cpu, node_name=node, priority=priority, **kwargs)
    made["status"] = {"phase": "Running", "startTime": started}
    return made


def framework(budgets: list[Budget] | None = None) -> tuple[Framework, DefaultPreemption]:
    preemption = DefaultPreemption(rng=random.Random(0))
    preemption.budgets_override = budgets or []
    plugins: list[Any] = [
        NodeName(),
        NodeUnschedulable(),
        TaintToleration(),
        NodeAffinity(),
        NodeResourcesFit(),
        preemption,
    ]
    return Framework(plugins), preemption


def preempt(fw: Framework, snap: Any, pod: dict[str, Any]) -> FitError:
    with pytest.raises(FitError) as failed:
        fw.schedule(pod_info(pod), snap)
    return failed.value


def names(pods: Any) -> list[str]:
    return [p.name for p in pods]


def info(name: str, priority: int, started: str = "2026-01-01T00:00:00Z", **labels: str) -> PodInfo:
    pod = {
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"priority": priority, "containers": []},
        "status": {"startTime": started},
    }
    return PodInfo(pod, requests={}, non_zero_cpu=0, non_zero_memory=0)


def budget(
    allowed: int, *, namespace: str = "default", disrupted: tuple[str, ...] = (), **labels: str
) -> Budget:
    found = Budget.of(
        {
            "metadata": {"name": "b", "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels}},
            "status": {
                "disruptionsAllowed": allowed,
                "disruptedPods": dict.fromkeys(disrupted, "t"),
            },
        }
    )
    assert found is not None
    return found


# --- victims on one node -------------------------------------------------------------------


def test_removes_all_lower_priority_pods_then_reprieves_the_most_important_first(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("n1", cpu="4")],
        [
            low(pod, "a", "n1", 1),
            low(pod, "b", "n1", 2),
            low(pod, "c", "n1", 3, cpu="2"),
        ],
    )
    fw, _ = framework()
    error = preempt(fw, snap, pod("high", cpu="2", priority=10))
    result = error.post_filter
    assert result is not None and result.nominated_node == "n1"
    # c (priority 3) is put back first and fits beside the pod; then b and a do not.
    assert names(result.victims) == ["b", "a"]
    # The cycle failed; the pod waits for the victims to go (no preemption text).
    assert str(error) == "0/1 nodes are available: 1 Insufficient cpu."


def test_equal_priority_pods_are_never_victims(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("n1", cpu="2")], [low(pod, "peer", "n1", 5, cpu="2")])
    fw, _ = framework()
    error = preempt(fw, snap, pod("p", cpu="1", priority=5))
    assert error.post_filter is not None and error.post_filter.nominated_node == ""
    assert str(error) == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    )


def test_a_node_too_small_even_when_emptied_reports_the_filter_reason(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("n1", cpu="2")], [low(pod, "a", "n1", 0)])
    fw, _ = framework()
    error = preempt(fw, snap, pod("huge", cpu="3", priority=10))
    assert str(error) == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: 0/1 nodes are available: 1 Insufficient cpu.."
    )


def test_unresolvable_nodes_are_not_tried(snapshot: Factory, node: Factory, pod: Factory) -> None:
    taint = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    snap = snapshot(
        [node("tainted", cpu="1", taints=taint), node("full", cpu="1")],
        [
            low(pod, "t", "tainted", 0, tolerations=[{"operator": "Exists"}]),
            low(pod, "f", "full", 0),
        ],
    )
    fw, _ = framework()
    error = preempt(fw, snap, pod("p", cpu="1", priority=10))
    assert error.post_filter is not None
    assert error.post_filter.nominated_node == "full"
    assert names(error.post_filter.victims) == ["f"]
    only_tainted = snapshot(
        [node("tainted", cpu="1", taints=taint)],
        [low(pod, "t", "tainted", 0, tolerations=[{"operator": "Exists"}])],
    )
    error = preempt(fw, only_tainted, pod("p", cpu="1", priority=10))
    assert str(error).endswith(
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    )


def test_pdb_protected_victims_are_reprieved_first(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("n1", cpu="4")],
        [
            low(pod, "a", "n1", 1),
            low(pod, "b", "n1", 2, labels={"app": "db"}),
            low(pod, "c", "n1", 3, cpu="2"),
        ],
    )
    fw, _ = framework([budget(0, app="db")])
    result = preempt(fw, snap, pod("high", cpu="2", priority=10)).post_filter
    assert result is not None
    # b would violate its budget: it is tried first and spared; then c must go, a stays.
    assert names(result.victims) == ["c"]


def test_preemption_policy_never_and_terminating_victims_on_the_nominated_node(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("n1", cpu="1")], [low(pod, "a", "n1", 0)])
    fw, _ = framework()
    never = pod("p", cpu="1", priority=10, preemptionPolicy="Never")
    error = preempt(fw, snap, never)
    assert error.post_filter is not None and error.post_filter.nominated_node is None
    assert str(error) == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: not eligible due to preemptionPolicy=Never.."
    )
    # A victim of its earlier preemption is still terminating: wait, do not preempt more.
    going = low(pod, "a", "n1", 0)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    going["status"]["conditions"] = [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    ]
    snap = snapshot([node("n1", cpu="1")], [going])
    waiting = pod("p", cpu="1", priority=10)
    waiting["status"] = {"nominatedNodeName": "n1"}
    error = preempt(fw, snap, waiting)
    assert error.post_filter is not None and error.post_filter.nominated_node is None
    assert str(error).endswith(
        "preemption: not eligible due to a terminating pod on the nominated node.."
    )


# --- the node ---------------------------------------------------------------------------


def test_node_choice_prefers_no_pdb_violation(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [node("protected", cpu="1"), node("plain", cpu="1")],
        [
            low(pod, "guarded", "protected", 0, labels={"app": "db"}),
            # Higher priority than the guarded one: loses on rule 2, wins on rule 1.
            low(pod, "other", "plain", 5),
        ],
    )
    fw, _ = framework([budget(0, app="db")])
    result = preempt(fw, snap, pod("p", cpu="1", priority=10)).post_filter
    assert result is not None and result.nominated_node == "plain"
    # Without the budget the lower-priority victim's node wins.
    fw, _ = framework()
    result = preempt(fw, snap, pod("p", cpu="1", priority=10)).post_filter
    assert result is not None and result.nominated_node == "protected"


def test_pick_one_node_rules_in_order() -> None:
    def cand(node: str, *victims: PodInfo, pdb: int = 0) -> Candidate:
        return Candidate(node, list(victims), pdb)

    # 1. fewest PDB violations
    assert pick_one_node([cand("a", info("x", 1), pdb=1), cand("b", info("y", 9))]).node == "b"
    # 2. lowest highest-victim priority
    assert (
        pick_one_node([cand("a", info("x", 5)), cand("b", info("y", 4), info("z", 4))]).node == "b"
    )
    # 3. smallest sum of priorities (negative priorities count as small, not as savings)
    assert (
        pick_one_node(
            [cand("a", info("x", 4), info("y", 3)), cand("b", info("z", 4), info("w", 1))]
        ).node
        == "b"
    )
    assert (
        pick_one_node([cand("a", info("x", -5), info("y", -5)), cand("b", info("z", -5))]).node
        == "b"
    )
    # 4. fewest victims
    assert (
        pick_one_node([cand("a", info("x", 0), info("y", 0)), cand("b", info("z", 0))]).node == "b"
    )
    # 5. latest start among the most important victims
    early = info("x", 3, started="2026-01-01T00:00:00Z")
    late = info("y", 3, started="2026-06-01T00:00:00Z")
    assert pick_one_node([cand("a", early), cand("b", late)]).node == "b"
    # 6. the first
    assert pick_one_node([cand("a", info("x", 1)), cand("b", info("y", 1))]).node == "a"


def test_split_by_budget_uses_up_each_budget_in_order() -> None:
    pods = [info("p1", 0, app="web"), info("p2", 0, app="web"), info("p3", 0, app="web")]
    violating, others = split_by_budget(pods, [budget(1, app="web")])
    assert (names(violating), names(others)) == (["p2", "p3"], ["p1"])
    # A pod the API server already counted as disrupted does not use the budget again.
    violating, others = split_by_budget(pods, [budget(1, app="web", disrupted=("p1",))])
    assert (names(violating), names(others)) == (["p3"], ["p1", "p2"])
    # Other namespaces and unlabelled pods are not covered.
    violating, _ = split_by_budget(pods, [budget(0, namespace="other", app="web")])
    assert violating == []
    violating, _ = split_by_budget([info("bare", 0)], [budget(0, app="web")])
    assert violating == []
    # An empty or null selector selects nothing for preemption.
    assert Budget.of({"metadata": {"namespace": "default"}, "spec": {"selector": {}}}) is None
    assert Budget.of({"metadata": {"namespace": "default"}, "spec": {}}) is None


def test_candidate_count_follows_default_preemption_args() -> None:
    plugin = DefaultPreemption()
    assert plugin.num_candidates(50) == 50
    assert plugin.num_candidates(5000) == 500
    configured = plugin.configured(
        {"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 3}
    )
    assert configured.num_candidates(5000) == 3
    with pytest.raises(ValueError, match="minCandidateNodesPercentage 101"):
        plugin.configured({"minCandidateNodesPercentage": 101})


# --- nominated pods ----------------------------------------------------------------------


def test_a_nominated_pod_holds_its_room_against_lower_priority_pods(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("n1", cpu="2"), node("n2", cpu="1")])
    waiting = pod_info(pod("waiting", cpu="2", priority=10))
    snap.nominate(waiting, "n1")
    fw, _ = framework()
    # A lower-priority pod that fits only n1's free cpu is kept off n1.
    error = preempt(fw, snap, pod("small", cpu="2", priority=1))
    assert error.node_reasons == {"n1": ("Insufficient cpu",), "n2": ("Insufficient cpu",)}
    # One of equal priority is not held off (it is not less important)... but it must
    # fit beside the nominated pod too: kube-scheduler counts pods of >= priority.
    error = preempt(fw, snap, pod("peer", cpu="2", priority=10))
    assert "n1" in error.node_reasons
    # A more important pod ignores the nomination.
    chosen, _ = fw.schedule(pod_info(pod("vip", cpu="2", priority=20)), snap)
    assert chosen.name == "n1"
    # The nominated pod itself is not counted twice.
    chosen, _ = fw.schedule(waiting, snap)
    assert chosen.name == "n1"


def test_a_profile_can_turn_preemption_off(snapshot: Factory, node: Factory, pod: Factory) -> None:
    config = SchedulerConfig.from_yaml(
        """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
    plugins:
      postFilter:
        disabled: [{name: DefaultPreemption}]
"""
    )
    fw_on, _ = framework()
    fw = Framework(list(fw_on.plugins.values()), config.profiles[0])
    snap = snapshot([node("n1", cpu="1")], [low(pod, "a", "n1", 0)])
    error = preempt(fw, snap, pod("p", cpu="1", priority=10))
    assert error.post_filter is None
    assert str(error) == "0/1 nodes are available: 1 Insufficient cpu."


def test_a_third_party_post_filter_is_checked_and_called(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    from kubetrio.plugins import PluginError, check_scheduler_plugin
    from kubetrio.providers import PostFilterResult

    class Wrong:
        name = "Wrong"

        def post_filter(self, state: Any) -> None:
            return None

    with pytest.raises(PluginError, match=r"post_filter.*PostFilterPlugin"):
        check_scheduler_plugin("x", Wrong())

    class Evict:
        """Frees the node whose what-if (without its pods) passes the filters."""

        name = "Evict"

        def post_filter(self, state: Any, pod: PodInfo, failed: Any, filters: Any) -> Any:
            for name in failed:
                emptied = state.snapshot.get(name).clone()
                for key in list(emptied.pods):
                    emptied.remove_pod(key)
                if filters(emptied) is None:
                    return PostFilterResult(nominated_node=name, victims=[])
            return PostFilterResult(message="evict: nothing")

    check_scheduler_plugin("x", Evict())
    fw = Framework([NodeResourcesFit(), Evict()])
    snap = snapshot([node("n1", cpu="1")], [low(pod, "a", "n1", 0)])
    error = preempt(fw, snap, pod("p", cpu="1"))
    assert error.post_filter is not None and error.post_filter.nominated_node == "n1"
    # The cache's node was not touched by the what-if.
    assert list(snap.node("n1").pods) == ["default/a"]
    error = preempt(fw, snap, pod("p", cpu="2"))
    assert str(error) == "0/1 nodes are available: 1 Insufficient cpu. evict: nothing."
