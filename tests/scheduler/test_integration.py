"""The scheduler against a real in-process API server: nodes and pods made through the
client, bindings through ``pods/binding``, events and conditions read back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.scheduler import Scheduler

HOSTNAME = "kubernetes.io/hostname"


async def test_binds_a_pod_and_records_events(cluster: Any) -> None:
    await cluster.add_node("n1")
    await cluster.add_pod("p", cpu="100m")
    assert await cluster.wait_bound("p") == "n1"
    pod = await cluster.pod("p")
    [condition] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert condition["status"] == "True"
    assert await cluster.wait_event("p", "Scheduled") == "Successfully assigned default/p to n1"


async def test_unmet_required_anti_affinity_stays_pending(cluster: Any) -> None:
    for name in ("n1", "n2"):
        await cluster.add_node(name)
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME}
            ]
        }
    }
    for i in range(2):
        await cluster.add_pod(f"web-{i}", labels={"app": "web"}, affinity=anti)
    assert {await cluster.wait_bound("web-0"), await cluster.wait_bound("web-1")} == {"n1", "n2"}
    await cluster.add_pod("web-2", labels={"app": "web"}, affinity=anti)
    message = await cluster.wait_event("web-2", "FailedScheduling")
    assert message == (
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. "
        "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.."
    )
    with trio.fail_after(10):
        while True:
            pod = await cluster.pod("web-2")
            conditions = (pod.get("status") or {}).get("conditions") or []
            if conditions:
                break
            await trio.sleep(0.02)
    [condition] = [c for c in conditions if c["type"] == "PodScheduled"]
    assert (condition["status"], condition["reason"]) == ("False", "Unschedulable")
    assert condition["message"] == message
    assert not pod["spec"].get("nodeName")
    # A third node is a cluster change: the pending pod is retried and lands there.
    await cluster.add_node("n3")
    assert await cluster.wait_bound("web-2") == "n3"


async def test_a_tainted_node_gets_only_tolerating_pods(cluster: Any) -> None:
    await cluster.add_node("plain", cpu="1")
    await cluster.add_node(
        "gpu", cpu="64", taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    )
    toleration = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    for i in range(4):
        await cluster.add_pod(f"plain-{i}", cpu="200m")
        await cluster.add_pod(f"tolerant-{i}", cpu="200m", tolerations=toleration)
    for i in range(4):
        assert await cluster.wait_bound(f"plain-{i}") == "plain"
    # The emptier gpu node wins the tolerant pods' scores (least allocated).
    assert [await cluster.wait_bound(f"tolerant-{i}") for i in range(4)] == ["gpu"] * 4
    # plain is now 800m/1 full: a fifth intolerant pod fits nowhere.
    await cluster.add_pod("plain-4", cpu="300m")
    message = await cluster.wait_event("plain-4", "FailedScheduling")
    assert message.startswith(
        "0/2 nodes are available: 1 Insufficient cpu, "
        "1 node(s) had untolerated taint {gpu: true}. preemption:"
    )
    # Deleting a pod frees room: the pending pod is retried.
    await cluster.client.delete(
        "v1", "pods", "plain-0", namespace="default", grace_period_seconds=0
    )
    assert await cluster.wait_bound("plain-4") == "plain"


async def test_preferred_affinity_shifts_placement(cluster: Any) -> None:
    await cluster.add_node("big", cpu="32", labels={"zone": "a"})
    await cluster.add_node("small", cpu="4", labels={"zone": "b"})
    await cluster.add_pod("neutral", cpu="100m")
    assert await cluster.wait_bound("neutral") == "big"  # least allocated
    prefer_b = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]
                    },
                }
            ]
        }
    }
    await cluster.add_pod("zone-b", cpu="100m", affinity=prefer_b)
    assert await cluster.wait_bound("zone-b") == "small"


async def test_pods_of_other_schedulers_are_left_alone(cluster: Any) -> None:
    await cluster.add_node("n1")
    await cluster.add_pod("theirs", schedulerName="someone-else")
    await cluster.add_pod("ours")
    assert await cluster.wait_bound("ours") == "n1"
    await cluster.settle()
    assert not (await cluster.pod("theirs"))["spec"].get("nodeName")
    assert await cluster.events("theirs", "FailedScheduling") == []


async def test_pods_naming_a_node_are_bound_there_and_counted(cluster: Any) -> None:
    await cluster.add_node("n1", cpu="1")
    await cluster.add_node("n2", cpu="1")
    await cluster.add_pod("pinned", cpu="800m", node_name="n1")  # bound by its creator
    await cluster.add_pod("next", cpu="500m")
    assert await cluster.wait_bound("next") == "n2"


async def test_cordoned_nodes_and_higher_priority_first(cluster: Any) -> None:
    await cluster.add_node("cordoned", unschedulable=True)
    await cluster.add_pod("p")
    message = await cluster.wait_event("p", "FailedScheduling")
    assert message.startswith("0/1 nodes are available: 1 node(s) were unschedulable.")
    await cluster.client.patch("v1", "nodes", "cordoned", {"spec": {"unschedulable": False}})
    assert await cluster.wait_bound("p") == "cordoned"


# --- kubectl taint ------------------------------------------------------------------------------


def _kubectl_133() -> Path | None:
    found = shutil.which("kubectl")
    if found is None:
        return None
    path = Path(os.path.realpath(found)).parent / "kubectl.1.33"
    return path if path.exists() else None


KUBECTL = _kubectl_133()


@pytest.fixture
def kubeconfig(apiserver: RunningApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "u", "user": {"token": "any-token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


async def kubectl(kubeconfig: Path, *args: str) -> str:
    assert KUBECTL is not None
    with trio.fail_after(30):
        result = await trio.run_process(
            [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl.1.33 not installed")
async def test_kubectl_taint_then_schedule(cluster: Any, kubeconfig: Path) -> None:
    await cluster.add_node("n1")
    await cluster.add_node("n2")
    out = await kubectl(kubeconfig, "taint", "nodes", "n1", "k=v:NoSchedule")
    assert out.strip() == "node/n1 tainted"
    await cluster.settle()  # the scheduler's informer sees the taint
    for i in range(3):
        await cluster.add_pod(f"p{i}")
    assert [await cluster.wait_bound(f"p{i}") for i in range(3)] == ["n2"] * 3
    await kubectl(kubeconfig, "taint", "nodes", "n2", "k=v:NoSchedule")
    await cluster.add_pod("stuck")
    message = await cluster.wait_event("stuck", "FailedScheduling")
    assert message.startswith("0/2 nodes are available: 2 node(s) had untolerated taint {k: v}.")
    await kubectl(kubeconfig, "taint", "nodes", "n1", "k=v:NoSchedule-")  # untaint
    assert await cluster.wait_bound("stuck") == "n1"
    described = await kubectl(kubeconfig, "describe", "pod", "stuck")
    assert "FailedScheduling" in described and "Successfully assigned default/stuck to n1" in (
        described
    )


# --- configuration from YAML, through the service ------------------------------------------------


async def test_profiles_from_a_yaml_file(apiserver: RunningApiServer, tmp_path: Path) -> None:
    config_file = tmp_path / "scheduler.yaml"
    config_file.write_text(
        "kind: KubeSchedulerConfiguration\n"
        "profiles:\n"
        "  - schedulerName: default-scheduler\n"
        "  - schedulerName: packer\n"
        "    pluginConfig:\n"
        "      - name: NodeResourcesFit\n"
        "        args: {scoringStrategy: {type: MostAllocated}}\n"
        "    plugins:\n"
        "      score:\n"
        "        disabled: [{name: NodeResourcesBalancedAllocation}]\n"
    )
    from kubetrio import plugins

    async with Client.in_process(apiserver.api) as client, trio.open_nursery() as nursery:
        scheduler = Scheduler(client, plugins=plugins.load(only=["scheduler"]), config=config_file)
        assert set(scheduler.frameworks) == {"default-scheduler", "packer"}
        await nursery.start(scheduler.run)
        for name in ("n1", "n2"):
            await client.create("v1", "nodes", _node(name))
        pods = [("spread-0", None), ("packed-0", "packer"), ("packed-1", "packer")]
        for name, scheduler_name in pods:
            spec: dict[str, Any] = {
                "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]
            }
            if scheduler_name:
                spec["schedulerName"] = scheduler_name
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
            await client.create("v1", "pods", body, namespace="default")
            await _wait_bound(client, name)
        placed = {n: await _wait_bound(client, n) for n, _ in pods}
        # MostAllocated packs the two "packer" pods onto the node already in use.
        assert placed["packed-0"] == placed["packed-1"] == placed["spread-0"]
        nursery.cancel_scope.cancel()


def _node(name: str) -> dict[str, Any]:
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"capacity": resources, "allocatable": resources},
    }


async def _wait_bound(client: Client, name: str) -> str:
    with trio.fail_after(10):
        while True:
            pod = await client.get("v1", "pods", name, namespace="default")
            if pod["spec"].get("nodeName"):
                return str(pod["spec"]["nodeName"])
            await trio.sleep(0.02)


async def test_a_pod_waiting_for_affinity_follows_its_target(cluster: Any) -> None:
    await cluster.add_node("n1", labels={"zone": "a"})
    await cluster.add_node("n2", labels={"zone": "b"})
    near_db = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
            ]
        }
    }
    await cluster.add_pod("web", affinity=near_db)
    message = await cluster.wait_event("web", "FailedScheduling")
    assert message.startswith("0/2 nodes are available: 2 node(s) didn't match pod affinity rules.")
    # The scheduler binding "db" (a PodAdd) is what lets "web" be retried.
    await cluster.add_pod("db", labels={"app": "db"}, nodeSelector={"zone": "b"})
    assert await cluster.wait_bound("db") == "n2"
    assert await cluster.wait_bound("web") == "n2"


async def test_gated_pods_wait_for_their_gates(cluster: Any) -> None:
    await cluster.add_node("n1")
    await cluster.add_pod("gated", schedulingGates=[{"name": "example.com/quota"}])
    await cluster.settle()
    assert not (await cluster.pod("gated"))["spec"].get("nodeName")
    await cluster.client.patch(
        "v1", "pods", "gated", {"spec": {"schedulingGates": None}}, namespace="default"
    )
    assert await cluster.wait_bound("gated") == "n1"
