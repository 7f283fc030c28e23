"""The HorizontalPodAutoscaler's arithmetic: metrics, the replica calculator, behavior.

As upstream's ``pkg/controller/podautoscaler`` (``replica_calculator.go``,
``metrics/client.go``, ``metrics/utilization.go`` and the normalization in
``horizontal.go``), kept apart from the controller so it can be tested with figures:

* :class:`MetricsSource` — where pod figures come from. :class:`RestMetricsSource` reads
  ``metrics.k8s.io/v1beta1`` PodMetrics (``containers[].usage``) as upstream's REST
  metrics client does; tests hand in their own.
* :class:`ReplicaCalculator` — ``Utilization`` against the pods' requests and
  ``AverageValue``: pods pending, unready within the CPU initialization period or
  without metrics are grouped and counted as upstream does, with a tolerance band.
* :class:`Recommendations` — per autoscaler, the stabilization windows and the scaling
  policies of ``spec.behavior`` (or, without one, the legacy down-scale window and
  ``max(2 * current, 4)`` scale-up limit), with upstream's condition reasons.

Every figure is a milli-value, as upstream's ``MilliValue()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kubetrio.api.autoscaling import default_scale_down_rules, default_scale_up_rules
from kubetrio.api.quantity import Quantity, QuantityParseError
from kubetrio.client import Client, ClientError, KubeObject

from ._objects import is_deleting, parse_time, pod_condition, wall_now

DEFAULT_TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance``."""
CPU_INITIALIZATION_PERIOD = 300.0
"""``--horizontal-pod-autoscaler-cpu-initialization-period`` (5 minutes)."""
INITIAL_READINESS_DELAY = 30.0
"""``--horizontal-pod-autoscaler-initial-readiness-delay``."""
DOWNSCALE_STABILIZATION = 300.0
"""``--horizontal-pod-autoscaler-downscale-stabilization`` (5 minutes)."""
METRIC_WINDOW = 60.0
"""A PodMetrics window when the API leaves it out (metrics-server's default)."""

SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


class MetricsError(Exception):
    """Metrics could not be read or did not fit (the message is upstream's wording)."""


@dataclasses.dataclass(frozen=True)
class PodMetric:
    """One pod's figure: a milli-value, sampled at ``timestamp`` over ``window`` seconds."""

    value: int
    timestamp: float = 0.0
    window: float = METRIC_WINDOW


class MetricsSource(Protocol):
    """Where the resource figures of pods come from."""

    async def resource_metric(
        self, resource: str, namespace: str, selector: str, container: str
    ) -> tuple[dict[str, PodMetric], float]:
        """Each selected pod's usage of ``resource`` (its ``container`` only, when given),
        and the sample time; :class:`MetricsError` when nothing can be read."""
        ...


def milli_value(value: Any) -> int:
    """A quantity's milli-value (0 when it is not one)."""
    try:
        return Quantity(value).milli_value()
    except (QuantityParseError, TypeError, ValueError):
        return 0


def pod_metrics_info(
    items: list[KubeObject], resource: str, container: str
) -> dict[str, PodMetric]:
    """PodMetrics items as figures per pod, as upstream's ``getPodMetrics`` (the sum of the
    containers; a pod missing the resource in any container is left out) and
    ``getContainerMetrics`` (one container; a pod without it is an error)."""
    found: dict[str, PodMetric] = {}
    for item in items:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", ""))
        timestamp = parse_time(item.get("timestamp")) or 0.0
        window = _duration(item.get("window"))
        containers = item.get("containers") or []
        if container:
            match = next((c for c in containers if c.get("name") == container), None)
            if match is None:
                raise MetricsError(
                    f"container {container} not present in metrics for pod "
                    f"{metadata.get('namespace', '')}/{name}"
                )
            usage = match.get("usage") or {}
            if resource in usage:
                found[name] = PodMetric(milli_value(usage[resource]), timestamp, window)
            continue
        if not containers:
            continue
        usages = [(c.get("usage") or {}).get(resource) for c in containers]
        if any(u is None for u in usages):
            continue
        found[name] = PodMetric(sum(milli_value(u) for u in usages), timestamp, window)
    return found


def _duration(text: Any) -> float:
    """A Go duration as PodMetrics writes ``window`` (``"10s"``, ``"1m0s"``, ``"10.5s"``)."""
    if not isinstance(text, str) or not text:
        return METRIC_WINDOW
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text[i : i + 2] == "ms" else ch
        if unit not in units or not number:
            return METRIC_WINDOW
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    return total if not number else METRIC_WINDOW


class RestMetricsSource:
    """PodMetrics from ``/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods``, as
    upstream's ``resourceMetricsClient``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def resource_metric(
        self, resource: str, namespace: str, selector: str, container: str
    ) -> tuple[dict[str, PodMetric], float]:
        """See :class:`MetricsSource`."""
        try:
            listed = await self.client.list(
                "metrics.k8s.io/v1beta1", "pods", namespace=namespace, label_selector=selector
            )
        except ClientError as exc:
            raise MetricsError(
                f"unable to fetch metrics from resource metrics API: {exc.message}"
            ) from exc
        items = list(listed.get("items") or [])
        if not items:
            raise MetricsError("no metrics returned from resource metrics API")
        try:
            found = pod_metrics_info(items, resource, container)
        except MetricsError as exc:
            raise MetricsError(f"failed to get container metrics: {exc}") from exc
        return found, parse_time(items[0].get("timestamp")) or 0.0


# ---- the replica calculator ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """How far the usage ratio may stray from 1 before scaling down / up."""

    down: float = DEFAULT_TOLERANCE
    up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        """Whether ``ratio`` is close enough to 1 to leave the scale alone."""
        return 1.0 - self.down <= ratio <= 1.0 + self.up


@dataclasses.dataclass
class Grouped:
    """Pods by how their figures count (upstream's ``groupPods``)."""

    ready: int = 0
    unready: set[str] = dataclasses.field(default_factory=set)
    missing: set[str] = dataclasses.field(default_factory=set)
    ignored: set[str] = dataclasses.field(default_factory=set)


def group_pods(
    pods: list[KubeObject],
    metrics: Mapping[str, PodMetric],
    resource: str,
    *,
    cpu_initialization_period: float,
    initial_readiness_delay: float,
    now: float,
) -> Grouped:
    """Deleted and failed pods are ignored; pending ones are unready; pods without a
    figure are missing; for CPU, a pod still starting up (unready, or its figure not yet a
    whole window after it became ready) is unready too, as is one that has never been
    ready since shortly after it started."""
    grouped = Grouped()
    for pod in pods:
        name = str(pod["metadata"]["name"])
        status = pod.get("status") or {}
        phase = status.get("phase")
        if is_deleting(pod) or phase == "Failed":
            grouped.ignored.add(name)
            continue
        if phase == "Pending":
            grouped.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            grouped.missing.add(name)
            continue
        if resource == "cpu":
            condition = pod_condition(pod, "Ready")
            started = parse_time(status.get("startTime"))
            if condition is None or started is None:
                unready = True
            else:
                changed = parse_time(condition.get("lastTransitionTime")) or 0.0
                if started + cpu_initialization_period > now:
                    unready = (
                        condition.get("status") == "False"
                        or metric.timestamp < changed + metric.window
                    )
                else:
                    unready = (
                        condition.get("status") == "False"
                        and started + initial_readiness_delay > changed
                    )
            if unready:
                grouped.unready.add(name)
                continue
        grouped.ready += 1
    return grouped


def _restartable_init(container: KubeObject) -> bool:
    return container.get("restartPolicy") == "Always"


def pod_requests(pods: list[KubeObject], container: str, resource: str) -> dict[str, int]:
    """Each pod's request of ``resource`` in milli-units: its containers' sum (sidecars
    included) or the one named; :class:`MetricsError` for a container without one."""
    requests: dict[str, int] = {}
    for pod in pods:
        name = str(pod["metadata"]["name"])
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [c for c in spec.get("initContainers") or [] if _restartable_init(c)]
        total = 0
        found = False
        for c in containers:
            if container and c.get("name") != container:
                continue
            wanted = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if wanted is None:
                raise MetricsError(
                    f"missing request for {resource} in container {c.get('name')} of Pod {name}"
                )
            total += milli_value(wanted)
            found = True
        if container and not found:
            raise MetricsError(f"container {container} not found in Pod {name}")
        requests[name] = total
    return requests


def utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """(usage ratio, utilization in percent of requests, average raw value), as upstream's
    ``GetResourceUtilizationRatio`` (integer percent, like Go's)."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        used += metric.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = (used * 100) // requested
    return utilization / target, utilization, used // entries


def usage_ratio(metrics: Mapping[str, PodMetric], target: int) -> tuple[float, int]:
    """(usage ratio, average value), as upstream's ``GetMetricUsageRatio``."""
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target, average


@dataclasses.dataclass
class ReplicaCalculator:
    """Desired replicas from pod figures (upstream's ``ReplicaCalculator``)."""

    source: MetricsSource
    cpu_initialization_period: float = CPU_INITIALIZATION_PERIOD
    initial_readiness_delay: float = INITIAL_READINESS_DELAY
    clock: Callable[[], float] = wall_now

    async def resource_replicas(
        self,
        current: int,
        target_utilization: int,
        resource: str,
        tolerances: Tolerances,
        namespace: str,
        selector: str,
        pods: list[KubeObject],
        container: str = "",
    ) -> tuple[int, int, int, float]:
        """(replicas, utilization %, raw average, timestamp) for a ``Utilization`` target."""
        try:
            metrics, timestamp = await self.source.resource_metric(
                resource, namespace, selector, container
            )
        except MetricsError as exc:
            raise MetricsError(f"unable to get metrics for resource {resource}: {exc}") from exc
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        grouped = self._group(pods, metrics, resource)
        metrics = {k: v for k, v in metrics.items() if k not in grouped.ignored | grouped.unready}
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        requests = pod_requests(pods, container, resource)
        ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
        scale_up_with_unready = bool(grouped.unready) and ratio > 1.0
        if not scale_up_with_unready and not grouped.missing:
            if tolerances.within(ratio):
                return current, utilization, raw, timestamp
            return math.ceil(ratio * grouped.ready), utilization, raw, timestamp
        if grouped.missing:
            if ratio < 1.0:
                # On a scale-down, missing pods count as using their whole request (or
                # the target, above 100%).
                fallback = max(100, target_utilization)
                for name in grouped.missing:
                    metrics[name] = PodMetric(requests.get(name, 0) * fallback // 100)
            elif ratio > 1.0:
                for name in grouped.missing:
                    metrics[name] = PodMetric(0)
        if scale_up_with_unready:
            for name in grouped.unready:
                metrics[name] = PodMetric(0)
        new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
        return (
            self._rebalanced(current, ratio, new_ratio, len(metrics), tolerances),
            utilization,
            raw,
            timestamp,
        )

    async def raw_resource_replicas(
        self,
        current: int,
        target_value: int,
        resource: str,
        tolerances: Tolerances,
        namespace: str,
        selector: str,
        pods: list[KubeObject],
        container: str = "",
    ) -> tuple[int, int, float]:
        """(replicas, average value, timestamp) for an ``AverageValue`` target."""
        try:
            metrics, timestamp = await self.source.resource_metric(
                resource, namespace, selector, container
            )
        except MetricsError as exc:
            raise MetricsError(f"unable to get metrics for resource {resource}: {exc}") from exc
        if not pods:
            raise MetricsError("no pods returned by selector while calculating replica count")
        grouped = self._group(pods, metrics, resource)
        metrics = {k: v for k, v in metrics.items() if k not in grouped.ignored | grouped.unready}
        if not metrics:
            raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
        ratio, usage = usage_ratio(metrics, target_value)
        scale_up_with_unready = bool(grouped.unready) and ratio > 1.0
        if not scale_up_with_unready and not grouped.missing:
            if tolerances.within(ratio):
                return current, usage, timestamp
            return math.ceil(ratio * grouped.ready), usage, timestamp
        if grouped.missing:
            if ratio < 1.0:
                for name in grouped.missing:
                    metrics[name] = PodMetric(target_value)
            elif ratio > 1.0:
                for name in grouped.missing:
                    metrics[name] = PodMetric(0)
        if scale_up_with_unready:
            for name in grouped.unready:
                metrics[name] = PodMetric(0)
        new_ratio, _ = usage_ratio(metrics, target_value)
        replicas = self._rebalanced(current, ratio, new_ratio, len(metrics), tolerances)
        return replicas, usage, timestamp

    def _group(
        self, pods: list[KubeObject], metrics: Mapping[str, PodMetric], resource: str
    ) -> Grouped:
        return group_pods(
            pods,
            metrics,
            resource,
            cpu_initialization_period=self.cpu_initialization_period,
            initial_readiness_delay=self.initial_readiness_delay,
            now=self.clock(),
        )

    @staticmethod
    def _rebalanced(
        current: int, ratio: float, new_ratio: float, counted: int, tolerances: Tolerances
    ) -> int:
        """The second pass: no change when the new figures are within tolerance or turn
        the direction of scaling around."""
        if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current
        replicas = math.ceil(new_ratio * counted)
        if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
            return current
        return replicas


# ---- behavior: stabilization and scaling policies -------------------------------------


@dataclasses.dataclass
class ScaleEvent:
    """A change of scale this controller made (absolute size of the change)."""

    change: int
    timestamp: float
    outdated: bool = False


@dataclasses.dataclass
class Normalized:
    """A normalized recommendation and the conditions it sets."""

    replicas: int
    able_reason: str
    able_message: str
    limited: bool
    limited_reason: str
    limited_message: str


_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
_UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
_DOWN_STABILIZED = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent "
    "recommendation",
)
_READY = ("ReadyForNewScale", "recommended size matches current size")
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)


def _changed_within(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.timestamp > now - period)


def scale_up_limit(
    current: int, ups: list[ScaleEvent], downs: list[ScaleEvent], rules: KubeObject, now: float
) -> int:
    """The most replicas the scale-up policies allow now (``selectPolicy`` Max/Min/Disabled)."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    results = []
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = current - _changed_within(period, ups, now) + _changed_within(period, downs, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            results.append(start + value)
        else:
            results.append(math.ceil(start * (1 + value / 100)))
    if not results:
        return current
    return min(results) if select == "Min" else max(results)


def scale_down_limit(
    current: int, ups: list[ScaleEvent], downs: list[ScaleEvent], rules: KubeObject, now: float
) -> int:
    """The fewest replicas the scale-down policies allow now."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    results = []
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = current - _changed_within(period, ups, now) + _changed_within(period, downs, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            results.append(start - value)
        else:
            results.append(int(start * (1 - value / 100)))
    if not results:
        return current
    return max(results) if select == "Min" else min(results)


class Recommendations:
    """One autoscaler's recent recommendations and scale events, and the normalization
    that uses them (upstream keeps these maps per HPA key in the controller)."""

    def __init__(self, downscale_stabilization: float = DOWNSCALE_STABILIZATION) -> None:
        self.downscale_stabilization = downscale_stabilization
        self.recommendations: list[tuple[int, float]] = []
        self.ups: list[ScaleEvent] = []
        self.downs: list[ScaleEvent] = []

    def record_initial(self, current: int, now: float) -> None:
        """The first look: the current size counts as a recommendation."""
        if not self.recommendations:
            self.recommendations.append((current, now))

    def _record(self, desired: int, now: float, cutoff: float) -> None:
        for i, (_, when) in enumerate(self.recommendations):
            if when < cutoff:
                self.recommendations[i] = (desired, now)
                return
        self.recommendations.append((desired, now))

    def normalize(
        self, current: int, desired: int, minimum: int, maximum: int, now: float
    ) -> Normalized:
        """Without a behavior: the highest recommendation of the down-scale window, then
        the min/max bounds and the scale-up limit ``max(2 * current, 4)``."""
        cutoff = now - self.downscale_stabilization
        stabilized = max([desired] + [r for r, when in self.recommendations if when >= cutoff])
        self._record(desired, now, cutoff)
        able = _DOWN_STABILIZED if stabilized != desired else _READY
        up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if maximum > up_limit:
            highest, why = up_limit, _UP_LIMIT
        else:
            highest, why = maximum, _TOO_MANY
        if stabilized < minimum:
            replicas, why = minimum, _TOO_FEW
        elif stabilized > highest:
            replicas = highest
        else:
            replicas, why = stabilized, _RANGE
        return Normalized(replicas, *able, replicas != stabilized, *why)

    def normalize_with_behavior(
        self,
        behavior: KubeObject,
        current: int,
        desired: int,
        minimum: int,
        maximum: int,
        now: float,
    ) -> Normalized:
        """With a (defaulted) behavior: stabilize within both windows, then the policies'
        rate limits and the min/max bounds."""
        up_rules = behavior.get("scaleUp") or default_scale_up_rules()
        down_rules = behavior.get("scaleDown") or default_scale_down_rules()
        up_window = float(up_rules.get("stabilizationWindowSeconds") or 0)
        down_window = down_rules.get("stabilizationWindowSeconds")
        down_window = self.downscale_stabilization if down_window is None else float(down_window)
        up_cutoff, down_cutoff = now - up_window, now - down_window
        up_rec = down_rec = desired
        for rec, when in self.recommendations:
            if when > up_cutoff:
                up_rec = min(rec, up_rec)
            if when > down_cutoff:
                down_rec = max(rec, down_rec)
        stabilized = min(max(current, up_rec), down_rec)
        self._record(desired, now, min(up_cutoff, down_cutoff))
        if stabilized != desired:
            able = _UP_STABILIZED if desired >= current else _DOWN_STABILIZED
        else:
            able = _READY
        replicas, why = stabilized, _RANGE
        if stabilized > current:
            limit = max(scale_up_limit(current, self.ups, self.downs, up_rules, now), current)
            highest, reason = (limit, _UP_LIMIT) if maximum > limit else (maximum, _TOO_MANY)
            if stabilized > highest:
                replicas, why = highest, reason
        elif stabilized < current:
            limit = min(scale_down_limit(current, self.ups, self.downs, down_rules, now), current)
            lowest, reason = (limit, _DOWN_LIMIT) if minimum < limit else (minimum, _TOO_FEW)
            if stabilized < lowest:
                replicas, why = lowest, reason
        return Normalized(replicas, *able, replicas != stabilized, *why)

    def record_scale(
        self, behavior: KubeObject | None, previous: int, new: int, now: float
    ) -> None:
        """Remember a change of scale for the policies' periods (only with a behavior)."""
        if behavior is None:
            return
        key = "scaleUp" if new > previous else "scaleDown"
        rules = behavior.get(key) or {}
        longest = max(
            (float(p.get("periodSeconds") or 0) for p in rules.get("policies") or []), default=0.0
        )
        events = self.ups if new > previous else self.downs
        for event in events:
            if event.timestamp < now - longest:
                event.outdated = True
        fresh = ScaleEvent(abs(new - previous), now)
        for i, event in enumerate(events):
            if event.outdated:
                events[i] = fresh
                return
        events.append(fresh)
