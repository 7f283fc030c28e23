"""The HPA's arithmetic against upstream's documented examples: the replica calculator
(``replica_calculator_test.go``'s cases, the algorithm page's formula) and the behavior
(stabilization windows, Pods/Percent policies, selectPolicy)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kubetrio.api import autoscaling
from kubetrio.controllers import (
    MetricsError,
    PodMetric,
    Recommendations,
    ReplicaCalculator,
    Tolerances,
)
from kubetrio.controllers._hpa_replicas import (
    pod_metrics_info,
    scale_down_limit,
    scale_up_limit,
)

NOW = 1_000_000.0


def stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    cpu: str | None = "1",
    *,
    phase: str = "Running",
    ready: str = "True",
    started: float = NOW - 3600,
    ready_since: float | None = None,
) -> dict[str, Any]:
    requests = {"cpu": cpu} if cpu is not None else {}
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]},
        "status": {
            "phase": phase,
            "startTime": stamp(started),
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "lastTransitionTime": stamp(started if ready_since is None else ready_since),
                }
            ],
        },
    }


class Figures:
    """A metrics source fed with figures (milli-cores per pod)."""

    def __init__(self, levels: dict[str, int], *, timestamp: float = NOW - 30) -> None:
        self.levels = levels
        self.timestamp = timestamp
        self.asked: list[tuple[str, str, str, str]] = []

    async def resource_metric(
        self, resource: str, namespace: str, selector: str, container: str
    ) -> tuple[dict[str, PodMetric], float]:
        self.asked.append((resource, namespace, selector, container))
        if not self.levels:
            raise MetricsError("no metrics returned from resource metrics API")
        return {
            k: PodMetric(v, self.timestamp, 30.0) for k, v in self.levels.items()
        }, self.timestamp


def calculator(levels: dict[str, int]) -> ReplicaCalculator:
    return ReplicaCalculator(
        Figures(levels),
        cpu_initialization_period=120.0,
        initial_readiness_delay=10.0,
        clock=lambda: NOW,
    )


async def utilization(
    levels: dict[str, int], pods: list[dict[str, Any]], current: int, target: int
) -> tuple[int, int, int]:
    replicas, percent, raw, _ = await calculator(levels).resource_replicas(
        current, target, "cpu", Tolerances(), "ns", "app=a", pods
    )
    return replicas, percent, raw


async def test_scale_up_by_the_usage_ratio() -> None:
    """TestReplicaCalcScaleUp: 3 pods at 300m/500m/700m of 1 core, target 30% → 5."""
    pods = [pod("p0"), pod("p1"), pod("p2")]
    assert await utilization({"p0": 300, "p1": 500, "p2": 700}, pods, 3, 30) == (5, 50, 500)


async def test_scale_down_by_the_usage_ratio() -> None:
    """TestReplicaCalcScaleDown: 5 pods averaging 28% of a 50% target → 3."""
    levels = {"p0": 100, "p1": 300, "p2": 500, "p3": 250, "p4": 250}
    pods = [pod(n) for n in levels]
    assert await utilization(levels, pods, 5, 50) == (3, 28, 280)


async def test_within_tolerance_keeps_the_size() -> None:
    """A ratio within 10% of the target changes nothing (TestReplicaCalcTolerance)."""
    levels = {"p0": 1010, "p1": 1070, "p2": 1030}
    pods = [pod(n, "1.1") for n in levels]
    replicas, percent, _ = await utilization(levels, pods, 3, 100)
    assert (replicas, percent) == (3, 94)


async def test_unready_pods_count_as_idle_on_scale_up() -> None:
    """TestReplicaCalcScaleUpUnreadyLessScale: an unready pod is left out of the ratio and
    then counted at 0% for the scale-up, so 3 → 4 rather than 3 → 6."""
    pods = [pod("p0", ready="False"), pod("p1"), pod("p2")]
    assert await utilization({"p0": 300, "p1": 500, "p2": 700}, pods, 3, 30) == (4, 60, 600)


async def test_pending_and_failed_pods() -> None:
    """A pending pod counts as unready (0 on scale-up); failed and deleted ones are ignored."""
    failed = pod("p3", phase="Failed")
    deleted = pod("p4")
    deleted["metadata"]["deletionTimestamp"] = stamp(NOW)
    pods = [pod("p0", phase="Pending"), pod("p1"), pod("p2"), failed, deleted]
    levels = {"p1": 500, "p2": 700, "p3": 4000, "p4": 4000}
    assert await utilization(levels, pods, 3, 30) == (4, 60, 600)


async def test_missing_metrics_on_scale_down_count_as_full_request() -> None:
    """Pods without figures count at 100% of their request when scaling down, which
    softens the scale-down (4 → 3, not 4 → 1)."""
    pods = [pod(f"p{i}") for i in range(4)]
    replicas, percent, _ = await utilization({"p0": 100, "p1": 100, "p2": 100}, pods, 4, 50)
    assert (replicas, percent) == (3, 10)


async def test_missing_metrics_on_scale_up_count_as_idle() -> None:
    """Missing pods count at 0 when scaling up (6, not 8)."""
    pods = [pod(f"p{i}") for i in range(4)]
    replicas, percent, _ = await utilization({"p0": 2000, "p1": 1800, "p2": 1900}, pods, 4, 100)
    assert (replicas, percent) == (6, 190)


async def test_cpu_of_a_pod_still_starting_is_ignored() -> None:
    """Within the CPU initialization period a figure taken less than one window after the
    pod became ready is not trusted (it may count start-up work)."""
    fresh = pod("p2", started=NOW - 60, ready_since=NOW - 40)  # figure at NOW-30, window 30
    pods = [pod("p0"), pod("p1"), fresh]
    replicas, percent, _ = await utilization({"p0": 500, "p1": 500, "p2": 5000}, pods, 3, 50)
    assert (replicas, percent) == (3, 50)


async def test_missing_request_is_an_error_naming_the_container() -> None:
    pods = [pod("p0"), pod("p1", None)]
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod p1"):
        await utilization({"p0": 500, "p1": 500}, pods, 2, 50)


async def test_no_metrics_at_all_is_an_error() -> None:
    with pytest.raises(
        MetricsError,
        match="unable to get metrics for resource cpu: no metrics returned from resource "
        "metrics API",
    ):
        await utilization({}, [pod("p0")], 1, 50)


async def test_average_value_target() -> None:
    """``AverageValue``: the mean usage against the value (documentation's formula:
    ceil(current * currentValue / target))."""
    pods = [pod("p0"), pod("p1")]
    replicas, usage, _ = await calculator({"p0": 400, "p1": 200}).raw_resource_replicas(
        2, 100, "cpu", Tolerances(), "ns", "app=a", pods
    )
    assert (replicas, usage) == (6, 300)


def test_pod_metrics_are_summed_over_containers() -> None:
    """PodMetrics as metrics.k8s.io serves them: nano-cores and milli-cores alike."""
    items = [
        {
            "metadata": {"name": "p0", "namespace": "ns"},
            "timestamp": "2026-01-01T00:00:00Z",
            "window": "10.5s",
            "containers": [
                {"name": "a", "usage": {"cpu": "250m", "memory": "12Ki"}},
                {"name": "b", "usage": {"cpu": "12345n", "memory": "1Mi"}},
            ],
        },
        {"metadata": {"name": "p1"}, "containers": [{"name": "a", "usage": {"memory": "1Ki"}}]},
    ]
    found = pod_metrics_info(items, "cpu", "")
    assert list(found) == ["p0"]
    assert found["p0"].value == 251  # 250m + 0.012345m rounded up, as MilliValue()
    assert found["p0"].window == 10.5
    assert pod_metrics_info(items[:1], "memory", "b")["p0"].value == 1024 * 1024 * 1000
    with pytest.raises(MetricsError, match="container b not present in metrics for pod /p1"):
        pod_metrics_info(items, "memory", "b")


# ---- behavior ----------------------------------------------------------------------


def test_default_behavior_is_upstreams() -> None:
    filled = autoscaling.default_behavior({"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert filled == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }


def test_scale_down_policies_pick_the_largest_change() -> None:
    """The documentation's example: Pods 4 and Percent 10 per minute at 80 replicas: Max
    removes 8, Min removes 4; Disabled none."""
    rules = {
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 60},
            {"type": "Percent", "value": 10, "periodSeconds": 60},
        ]
    }
    assert scale_down_limit(80, [], [], {**rules, "selectPolicy": "Max"}, NOW) == 72
    assert scale_down_limit(80, [], [], {**rules, "selectPolicy": "Min"}, NOW) == 76
    assert scale_down_limit(80, [], [], {**rules, "selectPolicy": "Disabled"}, NOW) == 80


def test_scale_up_limit_counts_changes_within_the_period() -> None:
    """Default scale-up: double or add 4 per 15 s; a scale-up 10 s ago is part of it."""
    rules = autoscaling.default_scale_up_rules()
    assert scale_up_limit(1, [], [], rules, NOW) == 5
    assert scale_up_limit(10, [], [], rules, NOW) == 20
    state = Recommendations()
    state.record_scale({"scaleUp": rules}, 5, 10, NOW - 10)
    assert scale_up_limit(10, state.ups, [], rules, NOW) == 10  # 5 at the period's start
    assert scale_up_limit(10, state.ups, [], rules, NOW + 6) == 20  # that event is past


def test_scale_down_stabilization_applies_the_highest_recent_recommendation() -> None:
    """Without a behavior: a 300 s window of recommendations, the highest one wins."""
    state = Recommendations()
    state.record_initial(5, NOW)
    first = state.normalize(5, 2, 1, 10, NOW + 15)
    assert (first.replicas, first.able_reason) == (5, "ScaleDownStabilized")
    assert first.able_message == (
        "recent recommendations were higher than current one, applying the highest recent "
        "recommendation"
    )
    assert not first.limited
    later = state.normalize(5, 2, 1, 10, NOW + 316)
    assert (later.replicas, later.able_reason) == (2, "ReadyForNewScale")


def test_legacy_scale_up_limit_and_bounds() -> None:
    state = Recommendations()
    state.record_initial(2, NOW)
    limited = state.normalize(2, 9, 1, 10, NOW)
    assert (limited.replicas, limited.limited, limited.limited_reason) == (4, True, "ScaleUpLimit")
    capped = Recommendations().normalize(8, 30, 1, 10, NOW)
    assert (capped.replicas, capped.limited_reason) == (10, "TooManyReplicas")
    assert (
        capped.limited_message == "the desired replica count is more than the maximum replica count"
    )
    floor = Recommendations(0).normalize(3, 0, 2, 10, NOW)
    assert (floor.replicas, floor.limited_reason) == (2, "TooFewReplicas")


def test_behavior_windows_and_policies() -> None:
    """Scale-up window 30 s: the lowest recent recommendation; scale-down window 0 and a
    Pods 1 per 60 s policy: one pod per minute."""
    behavior = autoscaling.default_behavior(
        {
            "scaleUp": {"stabilizationWindowSeconds": 30},
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            },
        }
    )
    assert behavior is not None
    state = Recommendations()
    state.record_initial(2, NOW)
    up = state.normalize_with_behavior(behavior, 2, 6, 1, 10, NOW + 15)
    assert (up.replicas, up.able_reason) == (2, "ScaleUpStabilized")
    up = state.normalize_with_behavior(behavior, 2, 6, 1, 10, NOW + 46)
    assert (up.replicas, up.able_reason) == (6, "ReadyForNewScale")
    state = Recommendations()
    state.record_initial(6, NOW)
    down = state.normalize_with_behavior(behavior, 6, 2, 1, 10, NOW + 60)
    assert (down.replicas, down.limited, down.limited_reason) == (5, True, "ScaleDownLimit")
    state.record_scale(behavior, 6, 5, NOW + 60)
    again = state.normalize_with_behavior(behavior, 5, 2, 1, 10, NOW + 90)
    assert again.replicas == 5  # one pod per minute: the next one at NOW + 120
    later = state.normalize_with_behavior(behavior, 5, 2, 1, 10, NOW + 121)
    assert later.replicas == 4
