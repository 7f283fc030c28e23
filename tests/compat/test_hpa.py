"""The horizontal pod autoscaler on a real node, its figures from ``metrics.k8s.io``: a
CPU-burning Deployment is scaled up, and back down once the load stops (short
stabilization windows through ``behavior``); ``kubectl get hpa`` shows the utilization.

The load is switched on and off from the host through a ``hostPath`` file the pods poll,
so the same pods burn and then idle."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.kit import CompatCluster
from tests.kit import wait_until


def manifest(trigger: Path) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burn}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burn}}}}
  template:
    metadata: {{labels: {{app: burn}}}}
    spec:
      terminationGracePeriodSeconds: 1
      volumes:
      - name: trigger
        hostPath: {{path: {trigger}, type: Directory}}
      containers:
      - name: spin
        image: busybox
        command: [sh, -c, "while :; do if [ -f /trigger/go ]; then :; else sleep 0.5; fi; done"]
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 200m}}}}
        volumeMounts: [{{name: trigger, mountPath: /trigger}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: burn}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burn}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 5}}
"""


@pytest.fixture
def trigger() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="kubetrio-hpa-") as folder:
        yield Path(folder)


def test_hpa_scales_a_cpu_burning_deployment_up_and_down(
    cluster: CompatCluster, namespace: str, trigger: Path
) -> None:
    ns = ["-n", namespace]
    cluster.kubectl("apply", *ns, "-f", "-", input=manifest(trigger))
    cluster.kubectl("rollout", "status", *ns, "deployment/burn", "--timeout=90s")

    def deployment() -> dict[str, int]:
        found = json.loads(cluster.kubectl("get", *ns, "deployment/burn", "-o", "json").stdout)
        return {
            "replicas": found["spec"]["replicas"],
            "ready": (found.get("status") or {}).get("readyReplicas", 0),
        }

    def reasons() -> list[str]:
        listed = json.loads(
            cluster.kubectl(
                "get", *ns, "events", "--field-selector=involvedObject.name=burn", "-o", "json"
            ).stdout
        )
        return [
            f"{e['reason']}: {e['message']}"
            for e in listed["items"]
            if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
        ]

    # The idle pod is measured first (the HPA is able to scale, and sees low use).
    wait_until(
        lambda: re.search(
            r"cpu: \d+%/50%", cluster.kubectl("get", *ns, "hpa", "burn").stdout.splitlines()[-1]
        ),
        timeout=120,
        what="kubectl get hpa to show the CPU utilization",
    )
    assert deployment()["replicas"] == 1

    (trigger / "go").touch()  # load on: 200m of a 100m request, 200% of a 50% target
    wait_until(
        lambda: deployment() == {"replicas": 3, "ready": 3},
        timeout=150,
        what="the HPA to scale the burning Deployment to 3 ready replicas",
    )
    up = [r for r in reasons() if r.startswith("SuccessfulRescale: ")]
    assert any(
        re.fullmatch(
            r"SuccessfulRescale: New size: [23]; reason: cpu resource utilization "
            r"\(percentage of request\) above target",
            r,
        )
        for r in up
    ), up
    for version in ("1.27", "1.33"):
        row = cluster.kubectl("get", *ns, "hpa", "burn", "--no-headers", version=version).stdout
        cells = row.split()
        assert cells[:2] == ["burn", "Deployment/burn"] and cells[4:6] == ["1", "3"], row

    (trigger / "go").unlink()  # load off: back to the minimum after the 5 s window
    wait_until(
        lambda: deployment()["replicas"] == 1,
        timeout=150,
        what="the HPA to scale the idle Deployment back to 1",
    )
    assert "SuccessfulRescale: New size: 1; reason: All metrics below target" in reasons()
    hpa = json.loads(
        cluster.kubectl(
            "get", *ns, "horizontalpodautoscalers.v2.autoscaling", "burn", "-o", "json"
        ).stdout
    )
    conditions = {c["type"]: c for c in hpa["status"]["conditions"]}
    assert conditions["AbleToScale"]["status"] == "True"
    assert conditions["ScalingActive"]["reason"] == "ValidMetricFound"
    assert hpa["status"]["lastScaleTime"]
