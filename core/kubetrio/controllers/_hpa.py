"""The horizontal pod autoscaler: ``autoscaling/v2`` HorizontalPodAutoscalers at work.

As upstream's ``pkg/controller/podautoscaler``: every sync period (15 s) each autoscaler
reads its target's ``scale`` subresource (the kind resolved to a resource through
discovery, so Deployments, ReplicaSets, StatefulSets, ReplicationControllers and custom
resources with a scale subresource all work), computes the replicas each metric asks for
(resource metrics: ``Utilization`` of the pods' requests or ``AverageValue``, read from
``metrics.k8s.io``), takes the largest, normalizes it (stabilization windows, ``behavior``
policies, min/max) and writes the new size through ``scale``. The status carries the
current and desired replicas, the metrics, ``lastScaleTime`` and the conditions
``AbleToScale``, ``ScalingActive`` and ``ScalingLimited`` with upstream's reasons and
messages; events are upstream's (``SuccessfulRescale``, ``FailedGetScale``,
``FailedGetResourceMetric``, ``FailedComputeMetricsReplicas`` …).

The figures come from a :class:`~._hpa_replicas.MetricsSource` (``metrics=``), the REST
one by default; the arithmetic is in :mod:`._hpa_replicas`.
"""

from __future__ import annotations

import datetime
from typing import Any

import trio

from kubetrio.api import selectors
from kubetrio.api.autoscaling import default_behavior
from kubetrio.api.quantity import Quantity
from kubetrio.client import (
    ClientError,
    Discovery,
    EventHandler,
    EventRecorder,
    Informer,
    KubeObject,
    discover,
)

from ._hpa_replicas import (
    CPU_INITIALIZATION_PERIOD,
    DEFAULT_TOLERANCE,
    DOWNSCALE_STABILIZATION,
    INITIAL_READINESS_DELAY,
    MetricsError,
    MetricsSource,
    Recommendations,
    ReplicaCalculator,
    RestMetricsSource,
    Tolerances,
    milli_value,
)
from ._objects import wall_now
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

SYNC_PERIOD = 15.0
"""``--horizontal-pod-autoscaler-sync-period``."""
COMPONENT = "horizontal-pod-autoscaler"
"""The events' ``source.component``, as upstream's."""
API_VERSION = "autoscaling/v2"


class SpecError(Exception):
    """The autoscaler cannot work as written (reason, message), reported, not retried."""


class _Changed(EventHandler):
    """New autoscalers and spec changes are looked at once; status writes are not."""

    def __init__(self, controller: HorizontalController) -> None:
        self.controller = controller

    def on_add(self, obj: KubeObject) -> None:
        self.controller.queue.add(object_key(obj))

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if old.get("spec") != new.get("spec"):
            self.controller.queue.add(object_key(new))

    def on_delete(self, obj: KubeObject) -> None:
        self.controller.forget(object_key(obj))


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    status: KubeObject, type_: str, value: str, reason: str, message: str, now: str
) -> None:
    """Upstream's ``setConditionInList``: the transition time moves only with the status."""
    conditions: list[KubeObject] = status.setdefault("conditions", [])
    for condition in conditions:
        if condition.get("type") == type_:
            if condition.get("status") != value:
                condition["lastTransitionTime"] = now
            condition.update(status=value, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": type_,
            "status": value,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
    )


class HorizontalController(QueueController):
    """Scales the targets of HorizontalPodAutoscalers (see the module docstring).

    The knobs are kube-controller-manager's ``--horizontal-pod-autoscaler-*`` flags; tests
    shorten :attr:`sync_period` (read at every sync, so it may change while running).
    """

    name = "horizontalpodautoscaling"
    workers = 2

    def __init__(self, metrics: MetricsSource | None = None) -> None:
        super().__init__()
        self.sync_period = SYNC_PERIOD
        self.downscale_stabilization = DOWNSCALE_STABILIZATION
        self.tolerance = DEFAULT_TOLERANCE
        self.cpu_initialization_period = CPU_INITIALIZATION_PERIOD
        self.initial_readiness_delay = INITIAL_READINESS_DELAY
        self.metrics_source = metrics
        """Where pod figures come from (None: ``metrics.k8s.io``); set before the manager
        starts."""
        self._state: dict[str, Recommendations] = {}
        self._selectors: dict[str, selectors.Selector] = {}
        self._discovery: Discovery | None = None
        self._discovered_at = -float("inf")

    def setup(self, ctx: ControllerContext) -> None:
        """Watch autoscalers and pods; events come from ``horizontal-pod-autoscaler``."""
        super().setup(ctx)
        self.hpas: Informer = ctx.informers.informer(API_VERSION, "horizontalpodautoscalers")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.hpas.add_handler(_Changed(self))
        self.events = EventRecorder(ctx.client, COMPONENT)
        self.calculator = ReplicaCalculator(
            self.metrics_source or RestMetricsSource(ctx.client),
            cpu_initialization_period=self.cpu_initialization_period,
            initial_readiness_delay=self.initial_readiness_delay,
        )

    def primary(self) -> Informer | None:
        """HorizontalPodAutoscalers."""
        return self.hpas

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The workers and this controller's event writer."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.events.run)
            await nursery.start(super().run)
            task_status.started()

    def forget(self, key: str) -> None:
        """An autoscaler is gone: drop what was remembered of it."""
        self._state.pop(key, None)
        self._selectors.pop(key, None)

    # ---- one sync -------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Sync one autoscaler, then look again after the sync period."""
        namespace, name = split_key(key)
        hpa = self.hpas.get(name, namespace)
        if hpa is None:
            self.forget(key)
            return None
        await self._sync(key, hpa)
        return Result(requeue_after=self.sync_period)

    async def _sync(self, key: str, shared: KubeObject) -> None:
        hpa: KubeObject = {**shared, "status": _copy(shared.get("status") or {})}
        original = _copy(hpa["status"])
        spec = hpa.get("spec") or {}
        status = hpa["status"]
        now = _now_rfc3339()
        ref = spec.get("scaleTargetRef") or {}
        namespace = hpa["metadata"].get("namespace", "")
        try:
            api_version, resource, scale = await self._scale_of(namespace, ref)
        except (SpecError, ClientError) as exc:
            message = exc.message if isinstance(exc, ClientError) else str(exc)
            self.events.warning(hpa, "FailedGetScale", message)
            set_condition(
                status,
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {message}",
                now,
            )
            await self._write_status(hpa, original)
            return
        set_condition(
            status,
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            now,
        )
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        state = self._state.setdefault(key, Recommendations(self.downscale_stabilization))
        state.downscale_stabilization = self.downscale_stabilization
        clock = wall_now()
        state.record_initial(current, clock)
        minimum = int(spec.get("minReplicas") or 1)
        maximum = int(spec.get("maxReplicas") or 0)
        behavior = default_behavior(spec.get("behavior"))
        metric_statuses: list[KubeObject] | None = None
        rescale = True
        reason = ""
        if current == 0 and minimum != 0:
            desired = 0
            rescale = False
            set_condition(
                status,
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                now,
            )
        elif current > maximum:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", maximum
        elif current < minimum:
            reason, desired = "Current number of replicas below Spec.MinReplicas", minimum
        else:
            proposed, metric, metric_statuses, error = await self._replicas_for_metrics(
                key, hpa, scale, status, now
            )
            if proposed < 0:
                _set_status(status, current, status.get("desiredReplicas", 0), metric_statuses)
                await self._write_status(hpa, original)
                self.events.warning(hpa, "FailedComputeMetricsReplicas", error)
                return
            desired = max(proposed, 0)
            if desired > current:
                reason = f"{metric} above target"
            if desired < current:
                reason = "All metrics below target"
            if behavior is None:
                normalized = state.normalize(current, desired, minimum, maximum, clock)
            else:
                normalized = state.normalize_with_behavior(
                    behavior, current, desired, minimum, maximum, clock
                )
            set_condition(
                status, "AbleToScale", "True", normalized.able_reason, normalized.able_message, now
            )
            set_condition(
                status,
                "ScalingLimited",
                "True" if normalized.limited else "False",
                normalized.limited_reason,
                normalized.limited_message,
                now,
            )
            desired = normalized.replicas
            rescale = desired != current
        if rescale:
            try:
                await self.client.update(
                    api_version,
                    resource,
                    {**scale, "spec": {**(scale.get("spec") or {}), "replicas": desired}},
                    namespace=namespace,
                    subresource="scale",
                )
            except ClientError as exc:
                self.events.warning(
                    hpa,
                    "FailedRescale",
                    f"New size: {desired}; reason: {reason}; error: {exc.message}",
                )
                set_condition(
                    status,
                    "AbleToScale",
                    "False",
                    "FailedUpdateScale",
                    f"the HPA controller was unable to update the target scale: {exc.message}",
                    now,
                )
                _set_status(status, current, status.get("desiredReplicas", 0), metric_statuses)
                await self._write_status(hpa, original)
                return
            set_condition(
                status,
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
                now,
            )
            self.events.normal(hpa, "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            state.record_scale(behavior, current, desired, clock)
            status["lastScaleTime"] = now
        else:
            desired = current
        _set_status(status, current, desired, metric_statuses)
        await self._write_status(hpa, original)

    # ---- the target's scale ---------------------------------------------------------

    async def _resources_of(self, group: str, kind: str) -> list[tuple[str, str]]:
        """(apiVersion, resource) of a kind in a group, preferred version first, as the
        RESTMapper's mappings; discovery is read again (at most once per sync period)
        when the kind is unknown, so new custom resources are found."""
        for attempt in range(2):
            found = self._discovery
            if found is None or (attempt and trio.current_time() - self._discovered_at > 1.0):
                found = self._discovery = await discover(self.client)
                self._discovered_at = trio.current_time()
            matches = [r for r in found.resources if r.group == group and r.kind == kind]
            if matches:
                preferred = found.preferred.get(group)
                matches.sort(key=lambda r: r.api_version.rpartition("/")[2] != preferred)
                return [(r.api_version, r.resource) for r in matches]
        return []

    async def _scale_of(self, namespace: str, ref: KubeObject) -> tuple[str, str, KubeObject]:
        """The target's ``scale`` through the first mapping that works (upstream's
        ``scaleForResourceMappings``); the first error otherwise."""
        api_version = str(ref.get("apiVersion") or "")
        group, _, version = api_version.rpartition("/")
        if not version:
            raise SpecError(f"unexpected GroupVersion string: {api_version}")
        kind = str(ref.get("kind") or "")
        mappings = await self._resources_of(group, kind)
        if not mappings:
            raise SpecError(f'no matches for kind "{kind}" in group "{group}"')
        first: ClientError | None = None
        for mapping_version, resource in mappings:
            try:
                scale = await self.client.get(
                    mapping_version,
                    resource,
                    str(ref.get("name") or ""),
                    namespace=namespace,
                    subresource="scale",
                )
            except ClientError as exc:
                first = first or exc
                continue
            return mapping_version, resource, scale
        assert first is not None
        raise first

    # ---- metrics --------------------------------------------------------------------

    def _pods(self, namespace: str, selector: selectors.Selector) -> list[KubeObject]:
        return [
            p
            for p in self.pods.list(namespace)
            if selector.matches((p.get("metadata") or {}).get("labels") or {})
        ]

    def _selector(
        self, key: str, hpa: KubeObject, scale: KubeObject, status: KubeObject, now: str
    ) -> tuple[selectors.Selector, str]:
        """The target's pod selector (upstream's ``validateAndParseSelector``): present,
        parseable, and not also the selector of another autoscaler's pods."""
        text = str((scale.get("status") or {}).get("selector") or "")
        if not text:
            self.events.warning(hpa, "SelectorRequired", "selector is required")
            set_condition(
                status,
                "ScalingActive",
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
                now,
            )
            raise SpecError("selector is required")
        try:
            parsed = selectors.parse_label_selector(text)
        except ValueError as exc:
            message = (
                f"couldn't convert selector into a corresponding internal selector object: {exc}"
            )
            self.events.warning(hpa, "InvalidSelector", message)
            set_condition(status, "ScalingActive", "False", "InvalidSelector", message, now)
            raise SpecError(message) from exc
        self._selectors[key] = parsed
        namespace = hpa["metadata"].get("namespace", "")
        pods = self._pods(namespace, parsed)
        controlling = sorted(
            other
            for other, theirs in self._selectors.items()
            if split_key(other)[0] == namespace
            and any(theirs.matches(p["metadata"].get("labels") or {}) for p in pods)
        )
        if len(controlling) > 1:
            message = (
                f"pods by selector {text} are controlled by multiple HPAs: "
                f"[{' '.join(controlling)}]"
            )
            self.events.warning(hpa, "AmbiguousSelector", message)
            set_condition(status, "ScalingActive", "False", "AmbiguousSelector", message, now)
            raise SpecError(message)
        return parsed, text

    async def _replicas_for_metrics(
        self, key: str, hpa: KubeObject, scale: KubeObject, status: KubeObject, now: str
    ) -> tuple[int, str, list[KubeObject], str]:
        """(replicas, metric description, metric statuses, error) over all metrics, as
        upstream's ``computeReplicasForMetrics``: -1 when nothing can be computed (or some
        metric failed and the rest would scale down)."""
        try:
            selector, text = self._selector(key, hpa, scale, status, now)
        except SpecError as exc:
            return -1, "", [], str(exc)
        spec = hpa.get("spec") or {}
        metrics = list(spec.get("metrics") or [])
        spec_replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        statuses: list[KubeObject] = [{} for _ in metrics]
        replicas, metric = 0, ""
        invalid = 0
        first_error = ""
        first_condition: tuple[str, str] | None = None
        pods = self._pods(hpa["metadata"].get("namespace", ""), selector)
        for i, metric_spec in enumerate(metrics):
            try:
                proposal, name, statuses[i] = await self._replicas_for_metric(
                    hpa, metric_spec, spec_replicas, text, pods
                )
            except _MetricFailure as exc:
                if not invalid:
                    first_condition = (exc.reason, exc.condition_message)
                    first_error = exc.error
                invalid += 1
                continue
            if replicas == 0 or proposal > replicas:
                replicas, metric = proposal, name
        error = ""
        if first_error:
            error = (
                f"invalid metrics ({invalid} invalid out of {len(metrics)}), "
                f"first error is: {first_error}"
            )
        if invalid >= len(metrics) or (invalid and replicas < spec_replicas):
            if first_condition is not None:
                set_condition(status, "ScalingActive", "False", *first_condition, now)
            return -1, "", [s for s in statuses if s], error
        set_condition(
            status,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {metric}",
            now,
        )
        return replicas, metric, [s for s in statuses if s], error

    async def _replicas_for_metric(
        self,
        hpa: KubeObject,
        metric: KubeObject,
        current: int,
        selector: str,
        pods: list[KubeObject],
    ) -> tuple[int, str, KubeObject]:
        kind = metric.get("type")
        if kind in ("Resource", "ContainerResource"):
            field = "resource" if kind == "Resource" else "containerResource"
            source = metric.get(field) or {}
            reason = (
                "FailedGetResourceMetric"
                if kind == "Resource"
                else "FailedGetContainerResourceMetric"
            )
            container = str(source.get("container") or "") if kind == "ContainerResource" else ""
            try:
                replicas, name, current_value = await self._resource_metric(
                    hpa, source, current, selector, pods, container, kind
                )
            except MetricsError as exc:
                self.events.warning(hpa, reason, str(exc))
                what = (
                    f"{source.get('name')} resource metric value"
                    if kind == "Resource"
                    else f"{container} container metric value"
                )
                raise _MetricFailure(reason, str(exc), f"failed to get {what}: {exc}") from exc
            found: KubeObject = {"name": source.get("name"), "current": current_value}
            if container:
                found["container"] = container
            return replicas, name, {"type": kind, field: found}
        # Pods, Object and External metrics need a custom or external metrics API,
        # which is not served: report it as upstream does when the API is missing.
        reasons = {
            "Pods": ("FailedGetPodsMetric", "custom.metrics.k8s.io", "pods"),
            "Object": ("FailedGetObjectMetric", "custom.metrics.k8s.io", "object"),
            "External": ("FailedGetExternalMetric", "external.metrics.k8s.io", "external"),
        }
        reason, group, what = reasons.get(str(kind), ("InvalidMetricSourceType", "", ""))
        if not group:
            message = f'unknown metric source type "{kind}"'
        else:
            api = "custom" if group.startswith("custom") else "external"
            message = (
                f"unable to fetch metrics from {api} metrics API: the server could not find "
                f"the requested resource ({group} is not served)"
            )
        self.events.warning(hpa, reason, message)
        raise _MetricFailure(reason, message, f"failed to get {what} metric value: {message}")

    async def _resource_metric(
        self,
        hpa: KubeObject,
        source: KubeObject,
        current: int,
        selector: str,
        pods: list[KubeObject],
        container: str,
        kind: str,
    ) -> tuple[int, str, KubeObject]:
        resource = str(source.get("name") or "")
        target = source.get("target") or {}
        namespace = hpa["metadata"].get("namespace", "")
        tolerances = self._tolerances(hpa)
        if target.get("averageValue") is not None:
            try:
                replicas, usage, _ = await self.calculator.raw_resource_replicas(
                    current,
                    milli_value(target["averageValue"]),
                    resource,
                    tolerances,
                    namespace,
                    selector,
                    pods,
                    container,
                )
            except MetricsError as exc:
                raise MetricsError(f"failed to get {resource} usage: {exc}") from exc
            return replicas, f"{resource} resource", {"averageValue": _quantity(usage)}
        if target.get("averageUtilization") is None:
            raise MetricsError(
                "invalid resource metric source: neither an average utilization target nor an "
                "average value (usage) target was set"
            )
        try:
            replicas, utilization, raw, _ = await self.calculator.resource_replicas(
                current,
                int(target["averageUtilization"]),
                resource,
                tolerances,
                namespace,
                selector,
                pods,
                container,
            )
        except MetricsError as exc:
            raise MetricsError(f"failed to get {resource} utilization: {exc}") from exc
        name = f"{resource} resource utilization (percentage of request)"
        if kind == "ContainerResource":
            name = f"{resource} container resource utilization (percentage of request)"
        return replicas, name, {"averageUtilization": utilization, "averageValue": _quantity(raw)}

    def _tolerances(self, hpa: KubeObject) -> Tolerances:
        """The default tolerance, or the behavior's own per direction."""
        behavior = (hpa.get("spec") or {}).get("behavior") or {}

        def of(rules: Any) -> float:
            value = (rules or {}).get("tolerance")
            if value is None:
                return self.tolerance
            return milli_value(value) / 1000

        return Tolerances(down=of(behavior.get("scaleDown")), up=of(behavior.get("scaleUp")))

    # ---- status ---------------------------------------------------------------------

    async def _write_status(self, hpa: KubeObject, original: KubeObject) -> None:
        """``updateStatusIfNeeded``: write only a changed status."""
        if hpa["status"] == original:
            return
        try:
            await self.client.update(
                API_VERSION,
                "horizontalpodautoscalers",
                hpa,
                namespace=hpa["metadata"].get("namespace", ""),
                subresource="status",
            )
        except ClientError as exc:
            if exc.not_found:
                return
            self.events.warning(hpa, "FailedUpdateStatus", exc.message)
            raise


class _MetricFailure(Exception):
    """One metric could not be computed: its condition and the error to report."""

    def __init__(self, reason: str, message: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.condition_message = f"the HPA was unable to compute the replica count: {message}"
        self.error = error


def _set_status(
    status: KubeObject, current: int, desired: int, metrics: list[KubeObject] | None
) -> None:
    """``setStatus``: replicas and metrics anew, conditions and lastScaleTime kept."""
    status["currentReplicas"] = current
    status["desiredReplicas"] = desired
    if metrics:
        status["currentMetrics"] = metrics
    else:
        status.pop("currentMetrics", None)


def _quantity(milli: int) -> str:
    """A milli-value as Kubernetes prints a DecimalSI quantity (``250m``, ``2``, ``1k``)."""
    return str(Quantity.from_milli(milli))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
