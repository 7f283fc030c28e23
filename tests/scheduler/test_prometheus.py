"""The scheduler's and the controller manager's metrics, which the API server serves on
``/metrics`` (they run in its process), read with kubectl: scheduling attempts by result,
the end-to-end latency, pending pods by queue, and the controllers' work queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.store import open_store
from tests.compat.kit import KUBECTL_VERSIONS
from tests.kit.polling import wait_for
from tests.kit.prom import Series, scrape, value

ATTEMPTS = "scheduler_schedule_attempts_total"
PROFILE = "default-scheduler"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(store, plugins=plugins.load(only=["scheduler"]), simulated_nodes=1) as made,
    ):
        yield made


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    merge_kubeconfig(path, name="test", server=cluster.url)
    return path


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


async def test_scheduling_attempts_are_counted(cluster: Cluster, kubeconfig: Path) -> None:
    version = KUBECTL_VERSIONS[-1]
    before = await scrape(version, kubeconfig)
    await cluster.client.create("v1", "pods", pod("fits"), namespace="default")
    await cluster.client.create(
        "v1", "pods", pod("nowhere", nodeSelector={"no": "such-node"}), namespace="default"
    )

    async def counted() -> dict[Series, float] | None:
        now = await scrape(version, kubeconfig)
        for result in ("scheduled", "unschedulable"):
            if value(now, ATTEMPTS, result=result, profile=PROFILE) <= value(
                before, ATTEMPTS, result=result, profile=PROFILE
            ):
                return None
        return now

    after: dict[Series, float] = await wait_for(counted)
    bound = await cluster.client.get("v1", "pods", "fits", namespace="default")
    assert bound["spec"]["nodeName"]
    scheduled = {"result": "scheduled", "profile": PROFILE}
    assert value(after, ATTEMPTS, **scheduled) == value(before, ATTEMPTS, **scheduled) + 1
    durations = "scheduler_scheduling_attempt_duration_seconds_count"
    assert value(after, durations, **scheduled) == value(before, durations, **scheduled) + 1
    sli = "scheduler_pod_scheduling_sli_duration_seconds_count"
    assert value(after, sli, attempts="1") == value(before, sli, attempts="1") + 1
    assert value(after, ATTEMPTS, result="error") == value(before, ATTEMPTS, result="error")

    async def pending() -> bool:
        now = await scrape(version, kubeconfig)
        return value(now, "scheduler_pending_pods", queue="unschedulable") == 1

    await wait_for(pending)


async def test_controller_work_queues_are_measured(cluster: Cluster, kubeconfig: Path) -> None:
    version = KUBECTL_VERSIONS[0]
    before = await scrape(version, kubeconfig)
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await cluster.client.create("apps/v1", "deployments", deployment, namespace="default")

    async def worked() -> dict[Series, float] | None:
        now = await scrape(version, kubeconfig)
        done = "workqueue_work_duration_seconds_count"
        for name in ("deployment", "replicaset"):
            if value(now, done, name=name) <= value(before, done, name=name):
                return None
        return now

    after: dict[Series, float] = await wait_for(worked)
    for name in ("deployment", "replicaset"):
        adds = "workqueue_adds_total"
        assert value(after, adds, name=name) > value(before, adds, name=name)
        waited = "workqueue_queue_duration_seconds_count"
        assert value(after, waited, name=name) > value(before, waited, name=name)
        assert (("workqueue_depth", frozenset({("name", name)}))) in after
