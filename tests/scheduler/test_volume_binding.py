"""VolumeBinding against a real API server: claims, PVs and classes made through the client,
messages read back from ``FailedScheduling`` events (and ``kubectl describe``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from kubetrio_scheduler.volume_binding import SELECTED_NODE, VolumeBinding

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.providers import CycleState, NodeInfo
from kubetrio.scheduler import Scheduler, SchedulerConfig, pod_info
from tests.apiserver.test_kubectl import kubectl_binary

from .conftest import Cluster, make_node, make_pod

KUBECTL: str | None = kubectl_binary(33) if Path(kubectl_binary(33)).exists() else None
HOSTNAME = "kubernetes.io/hostname"


def claim(name: str, *, storage_class: str | None = None, volume: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name}, "spec": spec}


def local_pv(
    name: str, *, node: str, storage_class: str = "local", size: str = "2Gi"
) -> dict[str, Any]:
    """A static local PV reachable only from ``node`` (as local-storage PVs are)."""
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "local": {"path": f"/mnt/{name}"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": HOSTNAME, "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def storage_class(name: str, *, provisioner: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        "volumeBindingMode": mode,
        **extra,
    }


def with_claim(name: str, claim_name: str) -> dict[str, Any]:
    return make_pod(
        name, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    )


async def add(cluster: Cluster, pod: dict[str, Any]) -> None:
    await cluster.client.create("v1", "pods", pod, namespace="default")


async def set_status(client: Client, resource: str, name: str, status: dict[str, Any]) -> None:
    namespace = "default" if resource == "persistentvolumeclaims" else ""
    await client.patch(
        "v1", resource, name, {"status": status}, namespace=namespace, subresource="status"
    )


async def bind_by_hand(client: Client, pv: dict[str, Any], claim_name: str) -> None:
    """A bound pair without the PV controller: PV with claimRef, claim with volumeName,
    both phases Bound through the status subresource."""
    pv["spec"]["claimRef"] = {"namespace": "default", "name": claim_name}
    await client.create("v1", "persistentvolumes", pv)
    body = claim(claim_name, storage_class="local", volume=pv["metadata"]["name"])
    await client.create("v1", "persistentvolumeclaims", body, namespace="default")
    await set_status(client, "persistentvolumeclaims", claim_name, {"phase": "Bound"})
    await set_status(client, "persistentvolumes", pv["metadata"]["name"], {"phase": "Bound"})


async def test_a_missing_claim_keeps_the_pod_pending(cluster: Cluster) -> None:
    await cluster.add_node("n1")
    await add(cluster, with_claim("p", "nowhere"))
    message = await cluster.wait_event("p", "FailedScheduling")
    assert message == (
        '0/1 nodes are available: persistentvolumeclaim "nowhere" not found. '
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    )
    # The claim appears (bound): the pod is retried at once and placed.
    pv = local_pv("pv-1", node="n1")
    await bind_by_hand(cluster.client, pv, "nowhere")
    assert await cluster.wait_bound("p") == "n1"


async def test_bound_volume_node_affinity_picks_the_node(cluster: Cluster) -> None:
    for name in ("n1", "n2", "n3"):
        await cluster.add_node(name)
    await bind_by_hand(cluster.client, local_pv("pv-2", node="n2"), "data")
    for i in range(3):
        await add(cluster, with_claim(f"p{i}", "data"))
    assert [await cluster.wait_bound(f"p{i}") for i in range(3)] == ["n2"] * 3


async def test_bound_volume_on_a_missing_node_is_a_conflict(cluster: Cluster) -> None:
    await cluster.add_node("n1")
    await cluster.add_node("n2")
    await bind_by_hand(cluster.client, local_pv("pv-gone", node="gone"), "data")
    await add(cluster, with_claim("p", "data"))
    message = await cluster.wait_event("p", "FailedScheduling")
    assert message == (
        "0/2 nodes are available: 2 node(s) had volume node affinity conflict. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.."
    )
    assert not (await cluster.pod("p"))["spec"].get("nodeName")


async def test_unbound_immediate_claim(cluster: Cluster) -> None:
    await cluster.add_node("n1")
    await cluster.client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class("fast", provisioner="example.com/fast", mode="Immediate"),
    )
    await cluster.client.create(
        "v1", "persistentvolumeclaims", claim("c", storage_class="fast"), namespace="default"
    )
    await add(cluster, with_claim("p", "c"))
    message = await cluster.wait_event("p", "FailedScheduling")
    assert message.startswith(
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. "
    )


async def test_wait_for_first_consumer_static_pv(cluster: Cluster) -> None:
    """A WaitForFirstConsumer claim binds the static PV reachable from the chosen node:
    the scheduler writes the PV's claimRef, then binds the pod once the claim is bound."""
    for name in ("n1", "n2"):
        await cluster.add_node(name)
    await cluster.client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class(
            "local", provisioner="kubernetes.io/no-provisioner", mode="WaitForFirstConsumer"
        ),
    )
    for pv in (local_pv("small-n2", node="n2", size="1Gi"), local_pv("big-n2", node="n2")):
        await cluster.client.create("v1", "persistentvolumes", pv)
        await set_status(
            cluster.client, "persistentvolumes", pv["metadata"]["name"], {"phase": "Available"}
        )
    made = await cluster.client.create(
        "v1", "persistentvolumeclaims", claim("c", storage_class="local"), namespace="default"
    )
    await add(cluster, with_claim("p", "c"))
    # The scheduler pre-binds the smallest fitting PV on the only node that has one.
    with trio.fail_after(10):
        while True:
            pv = await cluster.client.get("v1", "persistentvolumes", "small-n2")
            ref = pv["spec"].get("claimRef")
            if ref:
                break
            await trio.sleep(0.02)
    assert (ref["name"], ref["uid"]) == ("c", made["metadata"]["uid"])
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert not (await cluster.pod("p"))["spec"].get("nodeName")  # waits for the claim
    # The PV controller's part, by hand: the claim is bound.
    await cluster.client.patch(
        "v1",
        "persistentvolumeclaims",
        "c",
        {"spec": {"volumeName": "small-n2"}},
        namespace="default",
    )
    await set_status(cluster.client, "persistentvolumeclaims", "c", {"phase": "Bound"})
    assert await cluster.wait_bound("p") == "n2"


async def test_wait_for_first_consumer_pv_on_no_node(cluster: Cluster) -> None:
    """Static local PV pinned to a node that does not exist, class without provisioner."""
    await cluster.add_node("n1")
    await cluster.client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class(
            "local", provisioner="kubernetes.io/no-provisioner", mode="WaitForFirstConsumer"
        ),
    )
    await cluster.client.create("v1", "persistentvolumes", local_pv("pv-x", node="ghost"))
    await set_status(cluster.client, "persistentvolumes", "pv-x", {"phase": "Available"})
    await cluster.client.create(
        "v1", "persistentvolumeclaims", claim("c", storage_class="local"), namespace="default"
    )
    await add(cluster, with_claim("p", "c"))
    message = await cluster.wait_event("p", "FailedScheduling")
    assert message == (
        "0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    )
    pv = await cluster.client.get("v1", "persistentvolumes", "pv-x")
    assert not pv["spec"].get("claimRef")


async def test_wait_for_first_consumer_provisioning_selects_the_node(cluster: Cluster) -> None:
    """A provisioning class: the claim gets the selected-node annotation of a node in its
    allowedTopologies; the pod is bound when the (simulated) provisioner bound the claim."""
    await cluster.add_node("n1", labels={"zone": "a"})
    await cluster.add_node("n2", labels={"zone": "b"})
    topology = [{"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}]
    await cluster.client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class(
            "lp",
            provisioner="rancher.io/local-path",
            mode="WaitForFirstConsumer",
            allowedTopologies=topology,
        ),
    )
    await cluster.client.create(
        "v1", "persistentvolumeclaims", claim("c", storage_class="lp"), namespace="default"
    )
    await add(cluster, with_claim("p", "c"))
    with trio.fail_after(10):
        while True:
            made = await cluster.client.get(
                "v1", "persistentvolumeclaims", "c", namespace="default"
            )
            selected = (made["metadata"].get("annotations") or {}).get(SELECTED_NODE)
            if selected:
                break
            await trio.sleep(0.02)
    assert selected == "n2"
    pv = local_pv("pvc-c", node="n2", storage_class="lp")
    pv["spec"]["claimRef"] = {"namespace": "default", "name": "c", "uid": made["metadata"]["uid"]}
    await cluster.client.create("v1", "persistentvolumes", pv)
    await cluster.client.patch(
        "v1", "persistentvolumeclaims", "c", {"spec": {"volumeName": "pvc-c"}}, namespace="default"
    )
    await set_status(cluster.client, "persistentvolumeclaims", "c", {"phase": "Bound"})
    assert await cluster.wait_bound("p") == "n2"


async def test_provisioner_giving_up_fails_the_binding_and_retries(
    apiserver: RunningApiServer,
) -> None:
    """The provisioner removes selected-node (it could not provision there): PreBind
    fails with upstream's words, the pod is retried and the node selected again."""
    from kubetrio import plugins

    manager = plugins.load(only=["scheduler"])
    config = SchedulerConfig(pod_initial_backoff_seconds=0.05, pod_max_backoff_seconds=0.2)
    async with Client.in_process(apiserver.api) as client, trio.open_nursery() as nursery:
        scheduler = Scheduler(client, plugins=manager, config=config)
        for framework in scheduler.frameworks.values():
            plugin = framework.plugins["VolumeBinding"]
            assert isinstance(plugin, VolumeBinding)
            plugin.poll_interval = 0.02
        await nursery.start(scheduler.run)
        cluster = Cluster(client, scheduler)
        await cluster.add_node("n1")
        await client.create(
            "storage.k8s.io/v1",
            "storageclasses",
            storage_class("lp", provisioner="rancher.io/local-path", mode="WaitForFirstConsumer"),
        )
        await client.create(
            "v1", "persistentvolumeclaims", claim("c", storage_class="lp"), namespace="default"
        )
        await add(cluster, with_claim("p", "c"))
        annotations: dict[str, str] = {}
        with trio.fail_after(10):
            while SELECTED_NODE not in annotations:
                got = await client.get("v1", "persistentvolumeclaims", "c", namespace="default")
                annotations = got["metadata"].get("annotations") or {}
                await trio.sleep(0.02)
            await trio.sleep(0.1)  # the plugin's cache has seen it
            await client.patch(
                "v1",
                "persistentvolumeclaims",
                "c",
                {"metadata": {"annotations": {SELECTED_NODE: None}}},
                namespace="default",
            )
        message = await cluster.wait_event("p", "FailedScheduling")
        assert message == (
            'running PreBind plugin "VolumeBinding": binding volumes: '
            'provisioning failed for PVC "c"'
        )
        # Retried: the annotation comes back.
        with trio.fail_after(10):
            while True:
                got = await client.get("v1", "persistentvolumeclaims", "c", namespace="default")
                if SELECTED_NODE in (got["metadata"].get("annotations") or {}):
                    break
                await trio.sleep(0.02)
        assert not (await cluster.pod("p"))["spec"].get("nodeName")
        nursery.cancel_scope.cancel()


def test_filter_reasons_without_a_server() -> None:
    """The plugin alone over hand-filled caches: a bound PV elsewhere and a missing PV."""

    class Cache:
        def __init__(self, objects: list[dict[str, Any]]) -> None:
            self.objects = objects
            self.synced = trio.Event()

        def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
            return next(
                (
                    o
                    for o in self.objects
                    if o["metadata"]["name"] == name
                    and (o["metadata"].get("namespace") or "") == namespace
                ),
                None,
            )

        def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
            return list(self.objects)

        def add_handler(self, handler: Any) -> None:
            pass

    bound = claim("a", volume="pv-a")
    bound["metadata"]["namespace"] = "default"
    bound["status"] = {"phase": "Bound"}
    dangling = claim("b", volume="pv-missing")
    dangling["metadata"]["namespace"] = "default"
    dangling["status"] = {"phase": "Bound"}
    plugin = VolumeBinding()
    plugin.claims = Cache([bound, dangling])
    plugin.volumes = Cache([local_pv("pv-a", node="n2")])
    plugin.classes = Cache([])
    pod = make_pod(
        "p",
        volumes=[
            {"name": "a", "persistentVolumeClaim": {"claimName": "a"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "b"}},
        ],
    )
    info = pod_info(pod)
    state = CycleState(info, None, "default-scheduler")  # type: ignore[arg-type]
    assert plugin.pre_filter(state, info) is None
    node = NodeInfo(make_node("n1"))
    assert plugin.filter(pod, node, state) == [
        "node(s) had volume node affinity conflict",
        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
    ]


def kubeconfig_for(apiserver: RunningApiServer, tmp_path: Path) -> Path:
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


@pytest.mark.skipif(KUBECTL is None, reason="kubectl.1.33 not installed")
async def test_kubectl_describe_shows_the_missing_claim(
    cluster: Cluster, apiserver: RunningApiServer, tmp_path: Path
) -> None:
    await cluster.add_node("n1")
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(with_claim("web", "web-data")))
    kubeconfig = kubeconfig_for(apiserver, tmp_path)

    async def kubectl(*args: str) -> str:
        assert KUBECTL is not None
        result = await trio.run_process(
            [KUBECTL, f"--kubeconfig={kubeconfig}", *args], capture_stdout=True, check=True
        )
        return result.stdout.decode()

    await kubectl("apply", "-f", str(manifest))
    await cluster.wait_event("web", "FailedScheduling")
    described = await kubectl("describe", "pod", "web")
    assert 'persistentvolumeclaim "web-data" not found' in described
    assert "Pending" in await kubectl("get", "pod", "web", "--no-headers")


def _python_client_story(url: str) -> dict[str, Any]:
    """What a user of the official client does and sees: a WaitForFirstConsumer class, a
    local PV pinned to a node that does not exist, a claim, a pod using it."""
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = url
    with k8s.ApiClient(configuration) as api:
        # Plain dicts as bodies, as users of the client often pass them.
        core: Any = k8s.CoreV1Api(api)
        storage: Any = k8s.StorageV1Api(api)
        storage.create_storage_class(
            storage_class(
                "local-storage",
                provisioner="kubernetes.io/no-provisioner",
                mode="WaitForFirstConsumer",
            )
        )
        core.create_persistent_volume(
            local_pv("local-ghost", node="ghost", storage_class="local-storage")
        )
        core.patch_persistent_volume_status("local-ghost", {"status": {"phase": "Available"}})
        core.create_namespaced_persistent_volume_claim(
            "default", claim("cache", storage_class="local-storage")
        )
        core.create_namespaced_pod("default", with_claim("reader", "cache"))
        seen: dict[str, Any] = {}
        for _ in range(200):
            events = core.list_namespaced_event(
                "default", field_selector="involvedObject.name=reader"
            ).items
            failed = [e.message for e in events if e.reason == "FailedScheduling"]
            pod = core.read_namespaced_pod("reader", "default")
            conditions = pod.status.conditions or []
            if failed and conditions:
                seen["event"] = failed[-1]
                seen["phase"] = pod.status.phase
                [scheduled] = [c for c in conditions if c.type == "PodScheduled"]
                seen["condition"] = (scheduled.status, scheduled.reason, scheduled.message)
                seen["claim"] = core.read_namespaced_persistent_volume_claim(
                    "cache", "default"
                ).spec.volume_name
                return seen
            time.sleep(0.05)
    raise AssertionError("no FailedScheduling event seen")


async def test_python_client_sees_the_pod_pending(
    cluster: Cluster, apiserver: RunningApiServer
) -> None:
    await cluster.add_node("worker-1")
    seen = await trio.to_thread.run_sync(_python_client_story, apiserver.url)
    message = (
        "0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    )
    assert seen == {
        "event": message,
        "phase": "Pending",
        "condition": ("False", "Unschedulable", message),
        "claim": None,
    }


async def test_bind_timeout_from_the_profile_fails_the_binding(
    apiserver: RunningApiServer,
) -> None:
    """Nobody provisions: after ``bindTimeoutSeconds`` PreBind gives up as upstream words it."""
    from kubetrio import plugins

    config = SchedulerConfig.from_dict(
        {
            "podInitialBackoffSeconds": 30,
            "profiles": [
                {"pluginConfig": [{"name": "VolumeBinding", "args": {"bindTimeoutSeconds": 1}}]}
            ],
        }
    )
    async with Client.in_process(apiserver.api) as client, trio.open_nursery() as nursery:
        scheduler = Scheduler(client, plugins=plugins.load(only=["scheduler"]), config=config)
        [plugin] = [f.plugins["VolumeBinding"] for f in scheduler.frameworks.values()]
        assert isinstance(plugin, VolumeBinding) and plugin.bind_timeout == 1
        plugin.poll_interval = 0.05
        await nursery.start(scheduler.run)
        cluster = Cluster(client, scheduler)
        await cluster.add_node("n1")
        await client.create(
            "storage.k8s.io/v1",
            "storageclasses",
            storage_class("slow", provisioner="example.com/slow", mode="WaitForFirstConsumer"),
        )
        await client.create(
            "v1", "persistentvolumeclaims", claim("c", storage_class="slow"), namespace="default"
        )
        await add(cluster, with_claim("p", "c"))
        message = await cluster.wait_event("p", "FailedScheduling")
        assert message == (
            'running PreBind plugin "VolumeBinding": binding volumes: '
            "timed out waiting for the condition"
        )
        pod = await cluster.pod("p")
        assert not pod["spec"].get("nodeName")
        nursery.cancel_scope.cancel()
