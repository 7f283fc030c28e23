"""HorizontalPodAutoscalers through clients we did not write: ``kubectl autoscale`` and
``kubectl get hpa`` (1.27 and 1.33), and the same object in autoscaling/v1 and v2 through
the official kubernetes Python client (v2 stored, v1 served by upstream's conversion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.api import autoscaling
from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, ClientError

from .test_kubectl import Kubectl

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: nginx:1.25
        resources: {requests: {cpu: 100m}}
"""


@pytest.fixture(params=[27, 33], ids=["kubectl-1.27", "kubectl-1.33"])
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(request.param, kubeconfig, tmp_path)


async def test_kubectl_autoscale_and_get_hpa(kubectl: Kubectl, apiserver: RunningApiServer) -> None:
    await kubectl.run("apply", "-f", "-", stdin=DEPLOYMENT.encode())
    out = await kubectl.run(
        "autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=5"
    )
    assert "horizontalpodautoscaler.autoscaling/web autoscaled" in out
    table = await kubectl.run("get", "hpa")
    header, row = table.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ]
    assert row.split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "5", "0"]

    # A status as the controller writes it shows in TARGETS (and in the v1 view).
    client = Client.in_process(apiserver.api)
    found = await client.get(
        "autoscaling/v2", "horizontalpodautoscalers", "web", namespace="default"
    )
    found["status"] = {
        "currentReplicas": 2,
        "desiredReplicas": 2,
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": 73, "averageValue": "73m"},
                },
            }
        ],
    }
    await client.update(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        found,
        namespace="default",
        subresource="status",
    )
    cells = (await kubectl.run("get", "hpa", "web", "--no-headers")).split()
    assert cells[:7] == ["web", "Deployment/web", "cpu:", "73%/50%", "1", "5", "2"]
    v1 = await kubectl.json("get", "horizontalpodautoscalers.v1.autoscaling", "web")
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 73
    described = await kubectl.run("describe", "hpa", "web")
    assert "resource cpu on pods  (as a percentage of request):  73% (73m) / 50%" in described


async def test_v1_and_v2_views_of_one_object(kubeconfig: Path, apiserver: RunningApiServer) -> None:
    """Created in v1 with the official client, read in v2 with its CPU metric (and the
    default ``minReplicas``); a v2 memory metric and behavior survive a v1 round trip in
    upstream's annotations."""
    from kubernetes import client, config

    def exercise() -> tuple[Any, Any, Any]:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        with api:
            v1 = client.AutoscalingV1Api(api)
            v2 = client.AutoscalingV2Api(api)
            v1.create_namespaced_horizontal_pod_autoscaler(
                "default",
                client.V1HorizontalPodAutoscaler(
                    metadata=client.V1ObjectMeta(name="web"),
                    spec=client.V1HorizontalPodAutoscalerSpec(
                        scale_target_ref=client.V1CrossVersionObjectReference(
                            api_version="apps/v1", kind="Deployment", name="web"
                        ),
                        max_replicas=4,
                        target_cpu_utilization_percentage=60,
                    ),
                ),
            )
            as_v2 = v2.read_namespaced_horizontal_pod_autoscaler("web", "default")
            as_v2.spec.metrics.append(
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="memory",
                        target=client.V2MetricTarget(type="AverageValue", average_value="100Mi"),
                    ),
                )
            )
            as_v2.spec.behavior = client.V2HorizontalPodAutoscalerBehavior(
                scale_down=client.V2HPAScalingRules(stabilization_window_seconds=30)
            )
            v2.replace_namespaced_horizontal_pod_autoscaler("web", "default", as_v2)
            seen_v1 = v1.read_namespaced_horizontal_pod_autoscaler("web", "default")
            seen_v1.spec.max_replicas = 6  # a v1 client edits what it knows of
            v1.replace_namespaced_horizontal_pod_autoscaler("web", "default", seen_v1)
            after = v2.read_namespaced_horizontal_pod_autoscaler("web", "default")
            return as_v2, seen_v1, after

    as_v2, seen_v1, after = await trio.to_thread.run_sync(exercise)
    assert as_v2.api_version == "autoscaling/v2"
    assert as_v2.spec.min_replicas == 1
    assert [m.resource.name for m in as_v2.spec.metrics] == ["cpu", "memory"]
    assert as_v2.spec.metrics[0].resource.target.average_utilization == 60
    assert seen_v1.spec.target_cpu_utilization_percentage == 60
    annotations = seen_v1.metadata.annotations
    assert json.loads(annotations[autoscaling.METRIC_SPECS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}
    ]
    assert (
        json.loads(annotations[autoscaling.BEHAVIOR_ANNOTATION])["scaleDown"][
            "stabilizationWindowSeconds"
        ]
        == 30
    )
    # After the v1 edit, v2 still has both metrics (the CPU target last, where upstream's
    # conversion puts it) and the behavior, and no annotations.
    assert after.spec.max_replicas == 6
    assert [m.resource.name for m in after.spec.metrics] == ["memory", "cpu"]
    assert after.spec.behavior.scale_down.stabilization_window_seconds == 30
    assert after.spec.behavior.scale_up.policies[0].type == "Pods"
    assert not (after.metadata.annotations or {})


async def test_validation_names_the_field(apiserver: RunningApiServer) -> None:
    client = Client.in_process(apiserver.api)
    bad = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 3,
            "maxReplicas": 2,
        },
    }
    try:
        await client.create("autoscaling/v2", "horizontalpodautoscalers", bad, namespace="default")
    except ClientError as exc:
        assert exc.code == 422
        assert (
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
            in exc.message
        )
    else:
        raise AssertionError("an HPA with maxReplicas < minReplicas was accepted")
