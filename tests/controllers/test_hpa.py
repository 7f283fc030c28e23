"""The horizontal pod autoscaler on simulated nodes, its figures from a metrics source the
test feeds: scaling up and down through ``scale``, status, conditions, events, and bad
input reported (condition + event) while other autoscalers keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, ClientError, KubeObject
from kubetrio.controllers import ControllerManager, HorizontalController, MetricsError, PodMetric
from kubetrio.controllers._objects import wall_now
from tests.kit import crd, deployment, wait_for

from .conftest import Cluster, open_cluster

NS = "default"


class Load:
    """Milli-cores per pod, by the pod's ``app`` label (set by the test as it goes)."""

    def __init__(self) -> None:
        self.per_app: dict[str, int] = {}
        self.pods: dict[str, str] = {}

    async def resource_metric(
        self, resource: str, namespace: str, selector: str, container: str
    ) -> tuple[dict[str, PodMetric], float]:
        app = selector.partition("=")[2]
        if app not in self.per_app:
            raise MetricsError("no metrics returned from resource metrics API")
        now = wall_now()
        return {
            name: PodMetric(self.per_app[app], now, 1.0)
            for name, owner in self.pods.items()
            if owner == app
        }, now


@pytest.fixture
async def hpa_cluster(apiserver: RunningApiServer) -> AsyncIterator[tuple[Cluster, Load]]:
    load = Load()

    def configure(manager: ControllerManager) -> None:
        controller = manager.controller("horizontalpodautoscaling")
        assert isinstance(controller, HorizontalController)
        controller.metrics_source = load
        controller.sync_period = 0.3
        controller.cpu_initialization_period = 0.0

    async with open_cluster(apiserver, configure=configure) as made:
        yield made, load


def cpu_deployment(name: str, replicas: int, request: str | None = "100m") -> dict[str, Any]:
    made = deployment(name, replicas)
    if request is not None:
        container = made["spec"]["template"]["spec"]["containers"][0]
        container["resources"] = {"requests": {"cpu": request}}
    return made


def hpa(name: str, kind: str, target: str, **spec: Any) -> dict[str, Any]:
    api_version = {"ConfigMap": "v1", "Widget": "example.com/v1"}.get(kind, "apps/v1")
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
            **spec,
        },
    }


async def track_pods(client: Client, load: Load) -> None:
    listed = await client.list("v1", "pods", namespace=NS)
    load.pods = {p["metadata"]["name"]: p["metadata"]["labels"]["app"] for p in listed["items"]}


async def condition(client: Client, name: str, type_: str) -> KubeObject | None:
    found = await client.get("autoscaling/v2", "horizontalpodautoscalers", name, namespace=NS)
    for cond in (found.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


async def events_of(client: Client, name: str) -> list[KubeObject]:
    listed = await client.list(
        "v1", "events", namespace=NS, field_selector=f"involvedObject.name={name}"
    )
    return list(listed["items"])


async def wait_event(client: Client, name: str, reason: str) -> KubeObject:
    async def found() -> KubeObject | None:
        for event in await events_of(client, name):
            if event["reason"] == reason:
                return event
        return None

    event: KubeObject = await wait_for(found)
    return event


async def test_scales_a_deployment_up_and_down(hpa_cluster: tuple[Cluster, Load]) -> None:
    cluster, load = hpa_cluster
    client = cluster.client
    await client.create("apps/v1", "deployments", cpu_deployment("web", 2), namespace=NS)

    async def running(count: int) -> bool:
        await track_pods(client, load)
        return len(load.pods) == count

    await wait_for(lambda: running(2))
    load.per_app["web"] = 100  # 100% of the 100m request against a 50% target: 2 → 4
    await client.create(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        hpa("web", "Deployment", "web", behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}),
        namespace=NS,
    )

    async def replicas(count: int) -> bool:
        await track_pods(client, load)
        found = await client.get("apps/v1", "deployments", "web", namespace=NS)
        return bool(found["spec"]["replicas"] == count)

    await wait_for(lambda: replicas(4))
    event = await wait_event(client, "web", "SuccessfulRescale")
    assert event["message"] == (
        "New size: 4; reason: cpu resource utilization (percentage of request) above target"
    )
    assert event["source"]["component"] == "horizontal-pod-autoscaler"

    async def rescaled() -> KubeObject | None:
        got = await client.get("autoscaling/v2", "horizontalpodautoscalers", "web", namespace=NS)
        return got if (got.get("status") or {}).get("lastScaleTime") else None

    found = await wait_for(rescaled)  # the status is written after the scale
    # The behavior was defaulted by the API server as upstream's.
    assert found["spec"]["behavior"]["scaleUp"]["policies"][0] == {
        "type": "Pods",
        "value": 4,
        "periodSeconds": 15,
    }
    active = await condition(client, "web", "ScalingActive")
    assert active is not None and active["reason"] == "ValidMetricFound"
    assert active["message"] == (
        "the HPA was able to successfully calculate a replica count from cpu resource "
        "utilization (percentage of request)"
    )

    load.per_app["web"] = 10  # 10%: down to the minimum, one scale-down at 100% per 15 s

    async def settled() -> KubeObject | None:
        await track_pods(client, load)
        got = await client.get("autoscaling/v2", "horizontalpodautoscalers", "web", namespace=NS)
        st = got.get("status") or {}
        return st if st.get("currentReplicas") == 1 and st.get("desiredReplicas") == 1 else None

    status = await wait_for(settled, timeout=30)
    assert status["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "current": {"averageUtilization": 10, "averageValue": "10m"},
            },
        }
    ]
    downs = [e for e in await events_of(client, "web") if e["reason"] == "SuccessfulRescale"]
    assert any(e["message"] == "New size: 1; reason: All metrics below target" for e in downs)
    limited = await condition(client, "web", "ScalingLimited")
    assert limited is not None and limited["status"] == "False"


async def test_bad_targets_are_reported_and_others_still_scale(
    hpa_cluster: tuple[Cluster, Load],
) -> None:
    cluster, load = hpa_cluster
    client = cluster.client
    await client.create("v1", "configmaps", {"metadata": {"name": "cfg"}}, namespace=NS)
    await client.create(
        "apps/v1", "deployments", cpu_deployment("bare", 1, request=None), namespace=NS
    )
    await client.create("apps/v1", "deployments", cpu_deployment("good", 1), namespace=NS)
    load.per_app.update(bare=500, good=100)

    async def running(count: int) -> bool:
        await track_pods(client, load)
        return len(load.pods) == count

    await wait_for(lambda: running(2))
    for made in (
        hpa("no-scale", "ConfigMap", "cfg"),
        hpa("missing", "Deployment", "nope"),
        hpa("bare", "Deployment", "bare"),
        hpa("good", "Deployment", "good"),
    ):
        await client.create("autoscaling/v2", "horizontalpodautoscalers", made, namespace=NS)

    # A target without a scale subresource, and one that does not exist.
    for name, message in (
        ("no-scale", "the server could not find the requested resource"),
        ("missing", 'deployments.apps "nope" not found'),
    ):
        event = await wait_event(client, name, "FailedGetScale")
        assert event["type"] == "Warning" and message in event["message"]
        able = await wait_for(partial(condition, client, name, "AbleToScale"))
        assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
        assert able["message"].startswith(
            "the HPA controller was unable to get the target's current scale: "
        )

    # Pods without a CPU request: ScalingActive False, upstream's reason and events.
    failed = await wait_event(client, "bare", "FailedComputeMetricsReplicas")
    assert failed["message"].startswith("invalid metrics (1 invalid out of 1), first error is: ")
    assert "missing request for cpu in container main of Pod bare-" in failed["message"]
    metric = await wait_event(client, "bare", "FailedGetResourceMetric")
    assert metric["message"].startswith("failed to get cpu utilization: missing request for cpu")
    active = await wait_for(lambda: condition(client, "bare", "ScalingActive"))
    assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
    assert active["message"].startswith("the HPA was unable to compute the replica count: ")

    # The controller kept serving: the good one scaled (100% of a 50% target: 1 → 2).
    async def scaled() -> bool:
        await track_pods(client, load)
        found = await client.get("apps/v1", "deployments", "good", namespace=NS)
        return bool(found["spec"]["replicas"] == 2)

    await wait_for(scaled)


async def test_target_at_zero_replicas_disables_scaling(hpa_cluster: tuple[Cluster, Load]) -> None:
    cluster, _ = hpa_cluster
    client = cluster.client
    await client.create("apps/v1", "deployments", cpu_deployment("idle", 0), namespace=NS)
    await client.create(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        hpa("idle", "Deployment", "idle"),
        namespace=NS,
    )
    active = await wait_for(lambda: condition(client, "idle", "ScalingActive"))
    assert (active["status"], active["reason"], active["message"]) == (
        "False",
        "ScalingDisabled",
        "scaling is disabled since the replica count of the target is zero",
    )


async def test_scales_a_custom_resource_through_its_scale_subresource(
    hpa_cluster: tuple[Cluster, Load],
) -> None:
    """A kind the controller was not built with: found through discovery, its ``scale``
    read (the selector from ``labelSelectorPath``) and written."""
    cluster, load = hpa_cluster
    client = cluster.client
    scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    await client.create(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        crd("example.com", "widgets", "Widget", subresources={"scale": scale, "status": {}}),
    )

    async def served() -> bool:
        try:
            await client.list("example.com/v1", "widgets", namespace=NS)
        except ClientError:
            return False
        return True

    await wait_for(served)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"replicas": 1},
    }
    created = await client.create("example.com/v1", "widgets", widget, namespace=NS)
    created["status"] = {"replicas": 1, "selector": "app=widget"}
    await client.update("example.com/v1", "widgets", created, namespace=NS, subresource="status")
    pod = cpu_deployment("widget", 1)["spec"]["template"]
    await client.create(
        "v1", "pods", {**pod, "metadata": {"name": "w-0", **pod["metadata"]}}, namespace=NS
    )
    load.per_app["widget"] = 100

    async def scaled() -> bool:
        await track_pods(client, load)
        found = await client.get("example.com/v1", "widgets", "w", namespace=NS)
        return bool(found["spec"]["replicas"] == 2)

    await client.create(
        "autoscaling/v2", "horizontalpodautoscalers", hpa("w", "Widget", "w"), namespace=NS
    )
    await wait_for(scaled)
    event = await wait_event(client, "w", "SuccessfulRescale")
    assert event["message"].startswith("New size: 2; reason: cpu resource utilization")
