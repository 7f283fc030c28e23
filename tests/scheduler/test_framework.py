"""The framework (stages, FailedScheduling text, node sampling), queue and configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from kubetrio_scheduler.default_preemption import DefaultPreemption
from kubetrio_scheduler.node_affinity import NodeAffinity
from kubetrio_scheduler.node_filters import NodeName, NodeUnschedulable
from kubetrio_scheduler.resources import NodeResourcesBalancedAllocation, NodeResourcesFit
from kubetrio_scheduler.taints import TaintToleration

from kubetrio.providers import CycleState, NodeInfo, PodInfo
from kubetrio.scheduler import (
    ConfigError,
    FitError,
    Framework,
    Profile,
    SchedulerConfig,
    SchedulingQueue,
    pod_info,
)

Factory = Callable[..., Any]


def builtins() -> list[Any]:
    return [
        NodeName(),
        NodeUnschedulable(),
        TaintToleration(),
        NodeAffinity(),
        NodeResourcesFit(),
        NodeResourcesBalancedAllocation(),
        DefaultPreemption(),
    ]


def test_fit_error_counts_nodes_per_reason_like_kube_scheduler(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot(
        [
            node("n1", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]),
            node("n2", cpu="1"),
            node("n3", cpu="1"),
        ]
    )
    framework = Framework(builtins())
    with pytest.raises(FitError) as failed:
        framework.schedule(pod_info(pod("p", cpu="2")), snap)
    assert str(failed.value) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.."
    )
    assert failed.value.plugins == {"TaintToleration", "NodeResourcesFit"}


def test_no_nodes_and_preemption_policy_never(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    framework = Framework(builtins())
    with pytest.raises(FitError, match=r"^no nodes available to schedule pods$"):
        framework.schedule(pod_info(pod("p")), snapshot([]))
    never = pod("p", cpu="8", preemptionPolicy="Never")
    with pytest.raises(FitError) as failed:
        framework.schedule(pod_info(never), snapshot([node("n1")]))
    assert str(failed.value) == (
        "0/1 nodes are available: 1 Insufficient cpu. "
        "preemption: not eligible due to preemptionPolicy=Never.."
    )


def test_picks_the_best_scoring_node(snapshot: Factory, node: Factory, pod: Factory) -> None:
    snap = snapshot(
        [node("small", cpu="2"), node("big", cpu="16"), node("mid", cpu="4")],
    )
    framework = Framework(builtins())
    chosen, _ = framework.schedule(pod_info(pod("p", cpu="1")), snap)
    assert chosen.name == "big"


def test_node_local_results_are_memoised_until_the_node_changes(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    calls: list[str] = []

    class Counting:
        name = "Counting"
        node_local = True

        def filter(self, pod: Any, node: NodeInfo, state: CycleState) -> None:
            calls.append(node.name)

    snap = snapshot([node("n1"), node("n2")])
    framework = Framework([Counting(), NodeResourcesFit()])
    first = pod_info(pod("a", cpu="1", labels={"app": "x"}))
    chosen, _ = framework.schedule(first, snap)
    assert sorted(calls) == ["n1", "n2"]
    snap.assume(first, chosen.name)
    calls.clear()
    framework.schedule(pod_info(pod("b", cpu="1", labels={"app": "x"})), snap)
    assert calls == [chosen.name]  # only the node that changed is asked again
    calls.clear()
    framework.schedule(pod_info(pod("c", cpu="2", labels={"app": "x"})), snap)
    assert sorted(calls) == ["n1", "n2"]  # another pod class


def test_node_local_scores_are_memoised_until_the_node_changes(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    scored: list[str] = []
    base = {"n1": 50, "n2": 60, "n3": 70}

    class PassAll:
        name = "PassAll"
        node_local = True

        def filter(self, pod: Any, node: NodeInfo, state: CycleState) -> None:
            return None

    class Crowding:
        """Prefers n3, then n2, then n1; each pod on a node costs it 30 points."""

        name = "Crowding"
        node_local = True

        def score(self, pod: Any, node: NodeInfo, state: CycleState) -> int:
            scored.append(node.name)
            return base[node.name] - 30 * len(node.pods)

    snap = snapshot([node("n1"), node("n2"), node("n3")])
    framework = Framework([PassAll(), Crowding()])
    chosen = []
    for name in ("a", "b", "c"):
        info = pod_info(pod(name, labels={"app": "x"}))
        node_info, _ = framework.schedule(info, snap)
        snap.assume(info, node_info.name)
        chosen.append(node_info.name)
        if name == "a":
            assert sorted(scored) == ["n1", "n2", "n3"]
        else:  # only the node the last pod went to is scored again
            assert scored == [chosen[-2]]
        scored.clear()
    # The remembered scores still follow the changes: 70 → n3 (now 40), 60 → n2 (now 30).
    assert chosen == ["n3", "n2", "n1"]


def test_remembered_rejections_still_make_the_fit_error(
    snapshot: Factory, node: Factory, pod: Factory
) -> None:
    snap = snapshot([node("n1", cpu="1"), node("n2", cpu="1", unschedulable=True)])
    framework = Framework(builtins())
    for name in ("a", "b"):  # the second pod of the class gets the verdicts from memory
        with pytest.raises(FitError) as error:
            framework.schedule(pod_info(pod(name, cpu="2", labels={"app": "x"})), snap)
        assert error.value.node_reasons == {
            "n1": ("Insufficient cpu",),
            "n2": ("node(s) were unschedulable",),
        }
        assert error.value.plugins == {"NodeResourcesFit", "NodeUnschedulable"}


def test_percentage_of_nodes_to_score() -> None:
    framework = Framework([])
    assert framework.num_feasible_nodes_to_find(50) == 50
    assert framework.num_feasible_nodes_to_find(1000) == 420  # 50 - 1000/125 = 42%
    assert framework.num_feasible_nodes_to_find(5000) == 500  # 10%
    assert framework.num_feasible_nodes_to_find(100_000) == 5000  # floor of 5%
    assert framework.num_feasible_nodes_to_find(150) == 100  # at least 100 nodes
    fixed = Framework([], Profile(percentage_of_nodes_to_score=30))
    assert fixed.num_feasible_nodes_to_find(1000) == 300


def test_filtering_stops_early_and_rotates(snapshot: Factory, node: Factory, pod: Factory) -> None:
    seen: list[str] = []

    class Recorder:
        name = "Recorder"

        def filter(self, pod: Any, node: Any) -> None:  # the two-argument form
            seen.append(node["metadata"]["name"])

    snap = snapshot([node(f"n{i:03}") for i in range(200)])
    framework = Framework([Recorder()], Profile(percentage_of_nodes_to_score=60))
    framework.schedule(pod_info(pod("a")), snap)
    assert len(seen) == 120 and seen[0] == "n000"
    seen.clear()
    framework.schedule(pod_info(pod("b")), snap)
    assert seen[0] == "n120"  # the next cycle starts where the last one stopped


def test_reserve_and_unreserve(snapshot: Factory, node: Factory, pod: Factory) -> None:
    log: list[str] = []

    class Gate:
        name = "Gate"

        def reserve(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> str | None:
            log.append(f"reserve {node.name}")
            return None

        def unreserve(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> None:
            log.append(f"unreserve {node.name}")

    class Refuse:
        name = "Refuse"

        def reserve(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> str | None:
            return "quota exhausted"

    snap = snapshot([node("n1")])
    with pytest.raises(FitError, match="1 quota exhausted"):
        Framework([Gate(), Refuse()]).schedule(pod_info(pod("p")), snap)
    assert log == ["reserve n1", "unreserve n1"]


# --- configuration ------------------------------------------------------------------------------


CONFIG = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 20
podInitialBackoffSeconds: 2
profiles:
  - schedulerName: default-scheduler
    plugins:
      score:
        enabled: [{name: NodeResourcesFit, weight: 5}]
        disabled: [{name: NodeResourcesBalancedAllocation}]
    pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}
  - schedulerName: bare
    plugins:
      multiPoint:
        disabled: [{name: "*"}]
        enabled: [{name: NodeName}]
"""


def test_yaml_configuration(snapshot: Factory, node: Factory, pod: Factory) -> None:
    config = SchedulerConfig.from_yaml(CONFIG)
    assert config.percentage_of_nodes_to_score == 20
    assert config.pod_initial_backoff_seconds == 2
    default, bare = (Framework(builtins(), p) for p in config.profiles)
    scores = {s.name: s.weight for s in default.stages["score"]}
    assert scores == {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 5}
    assert [s.name for s in bare.stages["filter"]] == ["NodeName"]
    # MostAllocated packs: the fuller node wins.
    snap = snapshot([node("empty"), node("used")], [pod("q", cpu="2", node_name="used")])
    chosen, _ = default.schedule(pod_info(pod("p", cpu="1")), snap)
    assert chosen.name == "used"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Other", "kind"),
        ("profiles: [{plugins: {sideways: {}}}]", "sideways"),
        ("percentageOfNodesToScore: 101", "percentageOfNodesToScore"),
        ("profiles: [{plugins: {score: {enabled: [{weight: 1}]}}}]", "needs a name"),
        ("profiles: [{}, {}]", "duplicate"),
    ],
)
def test_bad_configuration(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SchedulerConfig.from_yaml(text)


def test_unknown_plugin_names_are_errors() -> None:
    config = SchedulerConfig.from_yaml("profiles: [{plugins: {filter: {enabled: [{name: Nope}]}}}]")
    with pytest.raises(ConfigError, match="Nope"):
        Framework(builtins(), config.profiles[0])


# --- queue --------------------------------------------------------------------------------------


def info(name: str, priority: int = 0) -> PodInfo:
    return pod_info(
        {"metadata": {"name": name, "namespace": "default"}, "spec": {"priority": priority}}
    )


async def test_queue_pops_by_priority_then_age() -> None:
    queue = SchedulingQueue()
    queue.add(info("old-low", 0))
    queue.add(info("high", 100))
    queue.add(info("new-low", 0))
    popped = [(await queue.pop()).info.name for _ in range(3)]
    assert popped == ["high", "old-low", "new-low"]


async def test_unschedulable_pods_wait_for_a_cluster_change(autojump_clock: Any) -> None:
    queue = SchedulingQueue(initial_backoff=1, max_backoff=10)
    queue.add(info("p"))
    entry = await queue.pop()
    queue.add_unschedulable(entry, plugins={"NodeResourcesFit"})
    assert queue.counts()["unschedulable"] == 1
    with trio.move_on_after(60):
        await queue.pop()
        raise AssertionError("an unschedulable pod came back without a cluster change")
    queue.move_all_to_active_or_backoff()
    start = trio.current_time()
    again = await queue.pop()
    assert again is entry and trio.current_time() - start < 1.01


async def test_backoff_grows_and_a_change_during_the_cycle_is_not_lost(autojump_clock: Any) -> None:
    queue = SchedulingQueue(initial_backoff=1, max_backoff=10)
    queue.add(info("p"))
    entry = await queue.pop()
    queue.move_all_to_active_or_backoff()  # a node appears while "p" is being scheduled
    queue.add_unschedulable(entry, plugins={"NodeResourcesFit"})
    assert queue.counts()["backoff"] == 1  # not parked: the change may have helped
    start = trio.current_time()
    await queue.pop()
    assert 1 <= trio.current_time() - start < 1.1
    queue.add_unschedulable(entry, plugins=None)  # an error: backoff doubles
    start = trio.current_time()
    await queue.pop()
    assert 2 <= trio.current_time() - start < 2.1


async def test_deleted_pods_leave_the_queue() -> None:
    queue = SchedulingQueue()
    queue.add(info("a"))
    queue.add(info("b"))
    queue.delete("default/a")
    assert (await queue.pop()).info.name == "b"
    assert len(queue) == 1  # b is in flight until done
    queue.done("default/b")
    assert len(queue) == 0


async def test_cluster_events_move_only_the_pods_they_may_help() -> None:
    queue = SchedulingQueue(initial_backoff=0, max_backoff=0)
    for name in ("short-of-cpu", "wants-affinity"):
        queue.add(info(name))
    cpu, affinity = await queue.pop(), await queue.pop()
    queue.scheduling_cycle += 1  # no change happened during these cycles
    queue.add_unschedulable(cpu, plugins={"NodeResourcesFit"})
    queue.add_unschedulable(affinity, plugins={"InterPodAffinity"})
    wants = {"NodeResourcesFit": {"NodeAdd", "PodDelete"}, "InterPodAffinity": {"PodAdd"}}

    def interested(plugins: set[str], event: str) -> bool:
        return any(event in wants[p] for p in plugins)

    queue.move_all_to_active_or_backoff("PodAdd", interested)
    assert (await queue.pop()).info.name == "wants-affinity"
    assert queue.counts()["unschedulable"] == 1
    queue.move_all_to_active_or_backoff("PodDelete", interested)
    assert (await queue.pop()).info.name == "short-of-cpu"
