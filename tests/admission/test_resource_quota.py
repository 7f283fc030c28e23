"""ResourceQuota: objects over a quota are refused with upstream's message, pods must
state what a quota constrains, and the controller shows usage in kubectl describe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from kubetrio_auth.admission import quota

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client
from kubetrio.cluster import open_cluster
from kubetrio.store import open_store
from tests.apiserver.test_kubectl import Kubectl


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[tuple[Kubectl, Client]]:
    manager = plugins.load(only=["auth", "admission"])
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(store, plugins=manager, token="t", scheduler=False) as c,
    ):
        path = tmp_path / "kubeconfig"
        merge_kubeconfig(path, name="test", server=c.url, token="t")
        yield Kubectl(33, path, tmp_path), Client.in_process(c.api, token="t")


async def used(client: Client, namespace: str, name: str, key: str, value: str) -> None:
    """Wait until the controller shows ``key`` used as ``value``."""
    with trio.fail_after(20):
        while True:
            q = await client.get("v1", "resourcequotas", name, namespace=namespace)
            if (q.get("status") or {}).get("used", {}).get(key) == value:
                return
            await trio.sleep(0.1)


async def test_over_quota_is_refused_and_usage_is_shown(
    kubectl: tuple[Kubectl, Client],
) -> None:
    k, client = kubectl
    await k.run("create", "namespace", "team")
    await k.run("create", "quota", "q", "-n", "team", "--hard=pods=2,count/configmaps=5")
    await used(client, "team", "q", "pods", "0")
    for name in ("p1", "p2"):
        await k.run("run", name, "-n", "team", "--image=busybox:1.36")
    out = await k.run("run", "p3", "-n", "team", "--image=busybox:1.36", check=False)
    assert (
        'pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
        "limited: pods=2"
    ) in out
    await used(client, "team", "q", "pods", "2")
    described = await k.run("describe", "quota", "q", "-n", "team")
    lines = [line.split() for line in described.splitlines()]
    assert ["pods", "2", "2"] in lines
    # kube-root-ca.crt may or may not be published here: count what is there.
    present = len((await client.list("v1", "configmaps", namespace="team"))["items"])
    assert ["count/configmaps", str(present), "5"] in lines
    # Deleting a pod frees its share.
    await k.run("delete", "pod", "p1", "-n", "team", "--wait=false")
    with trio.fail_after(20):
        while "pod/p3 created" not in (
            out := await k.run("run", "p3", "-n", "team", "--image=busybox:1.36", check=False)
        ):
            assert "exceeded quota" in out
            await trio.sleep(0.2)


async def test_a_compute_quota_requires_containers_to_state_it(
    kubectl: tuple[Kubectl, Client],
) -> None:
    k, client = kubectl
    await k.run("create", "namespace", "calc")
    await k.run(
        "create", "quota", "compute", "-n", "calc", "--hard=limits.cpu=1,requests.memory=1Gi"
    )
    await used(client, "calc", "compute", "limits.cpu", "0")
    out = await k.run("run", "bare", "-n", "calc", "--image=busybox:1.36", check=False)
    assert (
        'pods "bare" is forbidden: failed quota: compute: must specify limits.cpu for: bare; '
        "requests.memory for: bare"
    ) in out
    pod: dict[str, Any] = {
        "metadata": {"name": "big"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "resources": {"limits": {"cpu": "600m", "memory": "512Mi"}},
                }
            ]
        },
    }
    await client.create("v1", "pods", pod, namespace="calc")
    pod["metadata"]["name"] = "bigger"
    with pytest.raises(Exception) as refused:
        await client.create("v1", "pods", pod, namespace="calc")
    assert (
        "exceeded quota: compute, requested: limits.cpu=600m, used: limits.cpu=600m, "
        "limited: limits.cpu=1"
    ) in str(refused.value)
    await used(client, "calc", "compute", "requests.memory", "512Mi")


def test_pod_usage_counts_the_larger_of_containers_and_init_containers() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "250m"}}},
            ],
        }
    }
    got = {k: v.canonical() for k, v in quota.usage("pods", "", pod).items()}
    assert got == {
        "pods": "1",
        "count/pods": "1",
        "cpu": "2",
        "requests.cpu": "2",
        "memory": "1Gi",
        "requests.memory": "1Gi",
        "limits.cpu": "250m",
    }
    assert quota.usage("pods", "", {"status": {"phase": "Succeeded"}}) == {}
    assert set(quota.usage("deployments", "apps", {})) == {"count/deployments.apps"}
