"""Preemption on a real node, read back with real kubectl (1.27 and 1.33).

The node's free cpu (allocatable minus what its pods request) is split between three
low-priority pods; a high-priority pod asking for two thirds of it preempts the two it
needs — sparing the one a PodDisruptionBudget protects — gets ``nominatedNodeName`` and
runs; a pod of the same priority with ``preemptionPolicy: Never`` stays Pending. The
events read as kube-scheduler's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubetrio.api import Quantity
from tests.compat.kit import KUBECTL_VERSIONS, CompatCluster
from tests.kit import wait_until


def _millicpu(value: Any) -> int:
    return int(Quantity(str(value)).milli_value())


def _free_cpu(cluster: CompatCluster) -> tuple[str, int]:
    """The node's name and its allocatable cpu not requested by pods, in millicores."""
    [node] = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    name = node["metadata"]["name"]
    free = _millicpu(node["status"]["allocatable"]["cpu"])
    pods = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    for pod in pods:
        if pod["spec"].get("nodeName") != name:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod["spec"]["containers"]:
            requests = (container.get("resources") or {}).get("requests") or {}
            free -= _millicpu(requests.get("cpu", "0"))
    return name, free


def _pod(
    name: str, cpu: int, priority_class: str, labels: dict[str, str] | None = None, grace: int = 1
) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {
                "priorityClassName": priority_class,
                "terminationGracePeriodSeconds": grace,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "resources": {"requests": {"cpu": f"{cpu}m"}},
                    }
                ],
            },
        }
    )


def _priority_class(name: str, value: int, policy: str = "PreemptLowerPriority") -> str:
    return json.dumps(
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "preemptionPolicy": policy,
        }
    )


def test_preemption_on_a_full_node(cluster: CompatCluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    low, high, never = f"{namespace}-low", f"{namespace}-high", f"{namespace}-never"
    for manifest in (
        _priority_class(low, 10),
        _priority_class(high, 1_000_000),
        _priority_class(never, 1_000_000, "Never"),
    ):
        k("apply", "-f", "-", input=manifest)
    try:
        node, free = _free_cpu(cluster)
        share = free // 3
        assert share >= 50, f"node {node} has only {free}m cpu free"

        def phase(name: str) -> str:
            return k("get", "pod", name, *n, "-o", "jsonpath={.status.phase}", check=False).stdout

        # Started one after another: the earlier a pod started, the more important it is.
        for name in ("guarded", "l1", "l2"):
            labels = {"app": "db"} if name == "guarded" else None
            # sleep as PID 1 ignores SIGTERM: victims stay terminating for their grace.
            k("apply", *n, "-f", "-", input=_pod(name, share, low, labels, grace=10))
            wait_until(lambda name=name: phase(name) == "Running", timeout=60, what=name)
        k("create", "poddisruptionbudget", "db", *n, "--selector=app=db", "--min-available=1")
        wait_until(
            lambda: (
                k("get", "pdb", "db", *n, "-o", "jsonpath={.status.currentHealthy}").stdout == "1"
            ),
            what="the PDB's status",
        )

        # Fits only if two of the three go; the guarded one's budget allows no disruption.
        k("apply", *n, "-f", "-", input=_pod("high", free - share, high))
        wait_until(
            lambda: (
                k("get", "pod", "high", *n, "-o", "jsonpath={.status.nominatedNodeName}").stdout
                == node
            ),
            what="high's nominatedNodeName",
        )
        # While the victims terminate, the kubelet's status updates keep their condition.
        for version in KUBECTL_VERSIONS:
            described = k("describe", "pod", "l1", *n, version=version).stdout
            assert re.search(r"DisruptionTarget\s+True", described), described
        victim = json.loads(k("get", "pod", "l2", *n, "-o", "json").stdout)
        assert victim["metadata"]["deletionGracePeriodSeconds"] == 10
        [condition] = [c for c in victim["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert (condition["reason"], condition["message"]) == (
            "PreemptionByScheduler",
            "default-scheduler: preempting to accommodate a higher priority pod",
        )
        assert phase("guarded") == "Running"
        wait_until(lambda: phase("high") == "Running", timeout=60, what="high running")
        gone = k("get", "pods", *n, "-o", "name").stdout.split()
        assert sorted(gone) == ["pod/guarded", "pod/high"]
        uid = k("get", "pod", "high", *n, "-o", "jsonpath={.metadata.uid}").stdout
        events = json.loads(
            k("get", "events", *n, "--field-selector", "reason=Preempted", "-o", "json").stdout
        )["items"]
        assert sorted((e["involvedObject"]["name"], e["message"]) for e in events) == [
            ("l1", f"Preempted by pod {uid} on node {node}"),
            ("l2", f"Preempted by pod {uid} on node {node}"),
        ]
        for version in KUBECTL_VERSIONS:
            listed = k("get", "events", *n, version=version).stdout
            assert f"Preempted by pod {uid} on node {node}" in listed, listed
            described = k("describe", "pod", "high", *n, version=version).stdout
            assert "0/1 nodes are available: 1 Insufficient cpu." in described, described

        # Same priority, but it may not preempt: it waits.
        k("apply", *n, "-f", "-", input=_pod("polite", share, never))
        message = (
            "0/1 nodes are available: 1 Insufficient cpu. "
            "preemption: not eligible due to preemptionPolicy=Never.."
        )
        for version in KUBECTL_VERSIONS:
            wait_until(
                lambda version=version: (
                    message in k("describe", "pod", "polite", *n, version=version).stdout
                ),
                what=f"polite's FailedScheduling in kubectl {version} describe",
            )
        assert phase("polite") == "Pending"
        assert phase("guarded") == phase("high") == "Running"
        spec = json.loads(k("get", "pod", "polite", *n, "-o", "json").stdout)["spec"]
        assert spec["preemptionPolicy"] == "Never"
    finally:
        # The pods hold the node's cpu: gone before the next test needs it. The guarded
        # pod's sleep ignores SIGTERM: a short grace, or the delete waits its 10 s.
        k("delete", "pods", "--all", *n, "--grace-period=1", "--wait", "--timeout=60s", check=False)
        k("delete", "priorityclass", low, high, never, check=False)
