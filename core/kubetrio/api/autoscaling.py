"""HorizontalPodAutoscaler defaults and the conversion between autoscaling/v1 and v2.

Upstream stores autoscaling/v2 and serves autoscaling/v1 by conversion
(``pkg/apis/autoscaling/v1/conversion.go``): v1's ``targetCPUUtilizationPercentage`` is a
v2 ``Resource`` metric of ``cpu`` with an ``averageUtilization`` target, and what v1 has
no field for — other metrics, the behavior, the metric statuses, the conditions — travels
in annotations (``autoscaling.alpha.kubernetes.io/metrics``, ``…/behavior``,
``…/current-metrics``, ``…/conditions``) so that a v1 round trip loses nothing. Other
metrics are written in v1's own (v2beta1-shaped) MetricSpec form.
"""

from __future__ import annotations

import copy
import json
from typing import Any

KubeObject = dict[str, Any]

METRIC_SPECS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
METRIC_STATUSES_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP_ANNOTATIONS = (
    METRIC_SPECS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
)
DEFAULT_CPU_UTILIZATION = 80
"""The target when no metric is given (v2 defaulting and v1 conversion alike)."""

V1 = "autoscaling/v1"
V2 = "autoscaling/v2"


def default_scale_up_rules() -> KubeObject:
    """Upstream's defaults of ``behavior.scaleUp``: no window; 4 pods or 100% per 15 s."""
    return {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }


def default_scale_down_rules() -> KubeObject:
    """Upstream's defaults of ``behavior.scaleDown``: 100% per 15 s; the window is left
    unset for the controller's down-scale stabilization (300 s)."""
    return {
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


def default_behavior(behavior: Any) -> KubeObject | None:
    """``SetDefaults_HorizontalPodAutoscalerBehavior``: every unset field of a given
    behavior's rules from the defaults (no behavior stays none)."""
    if not isinstance(behavior, dict):
        return None
    filled = dict(behavior)
    for key, defaults in (
        ("scaleUp", default_scale_up_rules()),
        ("scaleDown", default_scale_down_rules()),
    ):
        given = behavior.get(key) or {}
        defaults.update({k: v for k, v in given.items() if v is not None})
        filled[key] = defaults
    return filled


def cpu_metric(utilization: int) -> KubeObject:
    """A v2 ``Resource`` metric of ``cpu`` with a ``Utilization`` target."""
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": utilization},
        },
    }


def set_defaults(obj: KubeObject) -> None:
    """Defaults of an HPA in the version it is written in: ``minReplicas`` 1; in v2 also a
    CPU target of 80% when no metric is given, and a given behavior filled in."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if obj.get("apiVersion") == V1:
        return
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_metric(DEFAULT_CPU_UTILIZATION)]
    if spec.get("behavior") is not None:
        spec["behavior"] = default_behavior(spec["behavior"])


# ---- metric specs and statuses: v2 <-> v1 (v2beta1-shaped) ---------------------------


def _metric_to_v1(metric: KubeObject) -> KubeObject:
    kind = metric.get("type")
    out: KubeObject = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        source = metric.get(key) or {}
        target = source.get("target") or {}
        inner: KubeObject = {"name": source.get("name")}
        if kind == "ContainerResource":
            inner["container"] = source.get("container")
        if target.get("averageUtilization") is not None:
            inner["targetAverageUtilization"] = target["averageUtilization"]
        if target.get("averageValue") is not None:
            inner["targetAverageValue"] = target["averageValue"]
        out[key] = inner
    elif kind == "Pods":
        source = metric.get("pods") or {}
        ident = source.get("metric") or {}
        inner = {
            "metricName": ident.get("name"),
            "targetAverageValue": (source.get("target") or {}).get("averageValue"),
        }
        if ident.get("selector") is not None:
            inner["selector"] = ident["selector"]
        out["pods"] = inner
    elif kind == "Object":
        source = metric.get("object") or {}
        ident = source.get("metric") or {}
        target = source.get("target") or {}
        inner = {
            "target": source.get("describedObject") or {},
            "metricName": ident.get("name"),
            "targetValue": target.get("value"),
        }
        if target.get("averageValue") is not None:
            inner["averageValue"] = target["averageValue"]
        if ident.get("selector") is not None:
            inner["selector"] = ident["selector"]
        out["object"] = inner
    elif kind == "External":
        source = metric.get("external") or {}
        ident = source.get("metric") or {}
        target = source.get("target") or {}
        inner = {"metricName": ident.get("name")}
        if ident.get("selector") is not None:
            inner["metricSelector"] = ident["selector"]
        for v2_key, v1_key in (("value", "targetValue"), ("averageValue", "targetAverageValue")):
            if target.get(v2_key) is not None:
                inner[v1_key] = target[v2_key]
        out["external"] = inner
    return out


def _identifier(name: Any, selector: Any) -> KubeObject:
    ident: KubeObject = {"name": name}
    if selector is not None:
        ident["selector"] = selector
    return ident


def _metric_to_v2(metric: KubeObject) -> KubeObject:
    kind = metric.get("type")
    out: KubeObject = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        source = metric.get(key) or {}
        utilization = source.get("targetAverageUtilization")
        target: KubeObject = {"type": "AverageValue" if utilization is None else "Utilization"}
        if utilization is not None:
            target["averageUtilization"] = utilization
        if source.get("targetAverageValue") is not None:
            target["averageValue"] = source["targetAverageValue"]
        inner: KubeObject = {"name": source.get("name"), "target": target}
        if kind == "ContainerResource":
            inner["container"] = source.get("container")
        out[key] = inner
    elif kind == "Pods":
        source = metric.get("pods") or {}
        out["pods"] = {
            "metric": _identifier(source.get("metricName"), source.get("selector")),
            "target": {"type": "AverageValue", "averageValue": source.get("targetAverageValue")},
        }
    elif kind == "Object":
        source = metric.get("object") or {}
        average = source.get("averageValue")
        target = {"type": "Value" if average is None else "AverageValue"}
        if source.get("targetValue") is not None:
            target["value"] = source["targetValue"]
        if average is not None:
            target["averageValue"] = average
        out["object"] = {
            "describedObject": source.get("target") or {},
            "metric": _identifier(source.get("metricName"), source.get("selector")),
            "target": target,
        }
    elif kind == "External":
        source = metric.get("external") or {}
        value = source.get("targetValue")
        target = {"type": "AverageValue" if value is None else "Value"}
        if value is not None:
            target["value"] = value
        if source.get("targetAverageValue") is not None:
            target["averageValue"] = source["targetAverageValue"]
        out["external"] = {
            "metric": _identifier(source.get("metricName"), source.get("metricSelector")),
            "target": target,
        }
    return out


def _status_to_v1(metric: KubeObject) -> KubeObject:
    kind = metric.get("type")
    out: KubeObject = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        source = metric.get(key) or {}
        current = source.get("current") or {}
        inner: KubeObject = {"name": source.get("name")}
        if kind == "ContainerResource":
            inner["container"] = source.get("container")
        if current.get("averageUtilization") is not None:
            inner["currentAverageUtilization"] = current["averageUtilization"]
        inner["currentAverageValue"] = current.get("averageValue") or "0"
        out[key] = inner
    else:
        other = {"Pods": "pods", "Object": "object", "External": "external"}.get(str(kind))
        if other is None:
            return out
        key = other
        source = metric.get(key) or {}
        ident = source.get("metric") or {}
        current = source.get("current") or {}
        inner = {"metricName": ident.get("name")}
        if kind == "Pods":
            inner["currentAverageValue"] = current.get("averageValue") or "0"
        elif kind == "Object":
            inner["target"] = source.get("describedObject") or {}
            inner["currentValue"] = current.get("value") or "0"
            if current.get("averageValue") is not None:
                inner["averageValue"] = current["averageValue"]
        else:
            inner["currentValue"] = current.get("value") or "0"
            if current.get("averageValue") is not None:
                inner["currentAverageValue"] = current["averageValue"]
        if ident.get("selector") is not None:
            inner["metricSelector" if kind == "External" else "selector"] = ident["selector"]
        out[key] = inner
    return out


def _status_to_v2(metric: KubeObject) -> KubeObject:
    kind = metric.get("type")
    out: KubeObject = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        source = metric.get(key) or {}
        current: KubeObject = {"averageValue": source.get("currentAverageValue") or "0"}
        if source.get("currentAverageUtilization") is not None:
            current["averageUtilization"] = source["currentAverageUtilization"]
        inner: KubeObject = {"name": source.get("name"), "current": current}
        if kind == "ContainerResource":
            inner["container"] = source.get("container")
        out[key] = inner
    else:
        other = {"Pods": "pods", "Object": "object", "External": "external"}.get(str(kind))
        if other is None:
            return out
        key = other
        source = metric.get(key) or {}
        selector = source.get("metricSelector" if kind == "External" else "selector")
        inner = {"metric": _identifier(source.get("metricName"), selector)}
        if kind == "Pods":
            inner["current"] = {"averageValue": source.get("currentAverageValue") or "0"}
        elif kind == "Object":
            inner["describedObject"] = source.get("target") or {}
            inner["current"] = {"value": source.get("currentValue") or "0"}
            if source.get("averageValue") is not None:
                inner["current"]["averageValue"] = source["averageValue"]
        else:
            inner["current"] = {"value": source.get("currentValue") or "0"}
            if source.get("currentAverageValue") is not None:
                inner["current"]["averageValue"] = source["currentAverageValue"]
        out[key] = inner
    return out


def _is_cpu_utilization(metric: KubeObject) -> bool:
    source = metric.get("resource") or {}
    return (
        metric.get("type") == "Resource"
        and source.get("name") == "cpu"
        and (source.get("target") or {}).get("averageUtilization") is not None
    )


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def to_v1(stored: KubeObject) -> KubeObject:
    """The autoscaling/v1 view of a v2 HorizontalPodAutoscaler (a new object)."""
    obj = copy.deepcopy(stored)
    obj["apiVersion"] = V1
    metadata = obj.setdefault("metadata", {})
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in ROUND_TRIP_ANNOTATIONS
    }
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    metrics = list(spec.pop("metrics", None) or [])
    behavior = spec.pop("behavior", None)
    for metric in metrics:
        if metric.get("type") == "Resource" and (metric.get("resource") or {}).get("name") == "cpu":
            utilization = ((metric.get("resource") or {}).get("target") or {}).get(
                "averageUtilization"
            )
            if utilization is not None:
                spec["targetCPUUtilizationPercentage"] = utilization
            break
    others = [_metric_to_v1(m) for m in metrics if not _is_cpu_utilization(m)]
    if others:
        annotations[METRIC_SPECS_ANNOTATION] = _compact(others)
    if behavior is not None:
        annotations[BEHAVIOR_ANNOTATION] = _compact(behavior)
    if "status" in obj:
        current_metrics = list(status.pop("currentMetrics", None) or [])
        conditions = status.pop("conditions", None) or []
        for metric in current_metrics:
            source = metric.get("resource") or {}
            utilization = (source.get("current") or {}).get("averageUtilization")
            if (
                metric.get("type") == "Resource"
                and source.get("name") == "cpu"
                and utilization is not None
            ):
                status["currentCPUUtilizationPercentage"] = utilization
        if current_metrics:
            annotations[METRIC_STATUSES_ANNOTATION] = _compact(
                [_status_to_v1(m) for m in current_metrics]
            )
        if conditions:
            annotations[CONDITIONS_ANNOTATION] = _compact(conditions)
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return obj


def _annotation(annotations: KubeObject, key: str) -> Any:
    text = annotations.pop(key, None)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def to_v2(given: KubeObject) -> KubeObject:
    """The autoscaling/v2 form of a v1 HorizontalPodAutoscaler (a new object)."""
    obj = copy.deepcopy(given)
    obj["apiVersion"] = V2
    metadata = obj.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    spec = obj.get("spec")
    if isinstance(spec, dict):
        metrics: list[KubeObject] = []
        others = _annotation(annotations, METRIC_SPECS_ANNOTATION)
        if isinstance(others, list):
            metrics += [_metric_to_v2(m) for m in others if isinstance(m, dict)]
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        if cpu is not None:
            metrics.append(cpu_metric(cpu))
        if not metrics:
            metrics = [cpu_metric(DEFAULT_CPU_UTILIZATION)]
        spec["metrics"] = metrics
        behavior = _annotation(annotations, BEHAVIOR_ANNOTATION)
        if isinstance(behavior, dict):
            spec["behavior"] = behavior
    else:
        for key in (METRIC_SPECS_ANNOTATION, BEHAVIOR_ANNOTATION):
            annotations.pop(key, None)
    status = obj.get("status")
    current = _annotation(annotations, METRIC_STATUSES_ANNOTATION)
    conditions = _annotation(annotations, CONDITIONS_ANNOTATION)
    if isinstance(status, dict):
        cpu_now = status.pop("currentCPUUtilizationPercentage", None)
        if isinstance(current, list):
            status["currentMetrics"] = [_status_to_v2(m) for m in current if isinstance(m, dict)]
        elif cpu_now is not None:
            status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": cpu_now}},
                }
            ]
        if isinstance(conditions, list):
            status["conditions"] = conditions
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return obj
