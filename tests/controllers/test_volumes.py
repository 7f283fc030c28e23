"""The volume controllers against a real API server, with a storage driver registered
through a plugin manager: binding, provisioning, reclaim, protection, expansion, and
StatefulSet claim retention."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, ClientError
from kubetrio.controllers import ControllerManager
from kubetrio.plugins import PluginManager, hookimpl
from kubetrio.providers import (
    CreatedVolume,
    CreateVolumeRequest,
    ExpandedVolume,
    StorageDriver,
    StorageDriverError,
    StorageDriverInfo,
    StorageNodeInfo,
    VolumeCapability,
    VolumeStats,
)
from kubetrio.simnode import SimulatedNodes
from tests.kit import wait_for

DRIVER = "memory.test.kubetrio.io"


class MemoryDriver:
    """A controller-side storage driver keeping its volumes in a dict."""

    name = DRIVER

    def __init__(self) -> None:
        self.volumes: dict[str, int] = {}
        self.requests: list[CreateVolumeRequest] = []
        self.create_failures = 0
        self.delete_failures = 0
        self.node_expansion = False
        self.deleted: list[str] = []

    async def get_info(self) -> StorageDriverInfo:
        return StorageDriverInfo(
            name=self.name,
            plugin_capabilities=frozenset({"CONTROLLER_SERVICE"}),
            controller_capabilities=frozenset({"CREATE_DELETE_VOLUME", "EXPAND_VOLUME"}),
        )

    async def probe(self) -> bool:
        return True

    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        self.requests.append(request)
        if self.create_failures:
            self.create_failures -= 1
            raise StorageDriverError("RESOURCE_EXHAUSTED", "the pool is full")
        self.volumes.setdefault(request.name, request.capacity_bytes)
        return CreatedVolume(
            volume_id=f"mem-{request.name}",
            capacity_bytes=request.capacity_bytes,
            volume_context={"pool": request.parameters.get("pool", "")},
            accessible_topology=tuple(request.requisite_topology),
        )

    async def delete_volume(
        self, *, volume_id: str, secrets: Mapping[str, str] | None = None
    ) -> None:
        if self.delete_failures:
            self.delete_failures -= 1
            raise StorageDriverError("FAILED_PRECONDITION", "volume is attached")
        self.deleted.append(volume_id)
        self.volumes.pop(volume_id.removeprefix("mem-"), None)

    async def expand_volume(
        self, *, volume_id: str, capacity_bytes: int, capability: VolumeCapability
    ) -> ExpandedVolume:
        self.volumes[volume_id.removeprefix("mem-")] = capacity_bytes
        return ExpandedVolume(
            capacity_bytes=capacity_bytes, node_expansion_required=self.node_expansion
        )

    async def get_capacity(
        self, *, parameters: Mapping[str, str], topology: Mapping[str, str] | None = None
    ) -> int | None:
        return None

    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
        return StorageNodeInfo(node_id=node_name)

    async def stage_volume(self, **_: Any) -> None:
        raise StorageDriverError("UNIMPLEMENTED", "")

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        raise StorageDriverError("UNIMPLEMENTED", "")

    async def publish_volume(self, **_: Any) -> None:
        raise StorageDriverError("UNIMPLEMENTED", "")

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        raise StorageDriverError("UNIMPLEMENTED", "")

    async def expand_node_volume(self, **_: Any) -> int:
        raise StorageDriverError("UNIMPLEMENTED", "")

    async def volume_stats(self, *, volume_id: str, volume_path: str) -> VolumeStats:
        return VolumeStats()


class MemoryStoragePlugin:
    """A test plugin registering one :class:`MemoryDriver`."""

    def __init__(self, driver: MemoryDriver) -> None:
        self.driver = driver

    @hookimpl
    def kubetrio_register_storage_drivers(self, register: Callable[[StorageDriver], None]) -> None:
        register(self.driver)


@dataclasses.dataclass
class VolumeCluster:
    client: Client
    driver: MemoryDriver


@asynccontextmanager
async def volume_cluster(
    server: RunningApiServer, controllers: tuple[str, ...] = ()
) -> AsyncIterator[VolumeCluster]:
    driver = MemoryDriver()
    plugins = PluginManager()
    plugins.register(MemoryStoragePlugin(driver), name="memory_storage")
    assert isinstance(driver, StorageDriver)
    client = Client.in_process(server.api)
    async with trio.open_nursery() as nursery:
        if controllers:
            sim = SimulatedNodes(client, count=2, bind_unscheduled=True)
            await nursery.start(sim.run)
        manager = ControllerManager(
            client,
            identity="volumes",
            plugins=plugins,
            leader_election=False,
            controllers=[
                "persistentvolume-binder",
                "persistentvolume-expander",
                "pvc-protection",
                "pv-protection",
                *controllers,
            ],
        )
        await nursery.start(manager.run)
        with trio.fail_after(10):
            await manager.leading.wait()
        yield VolumeCluster(client, driver)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def cluster(apiserver: RunningApiServer) -> AsyncIterator[VolumeCluster]:
    async with volume_cluster(apiserver) as made:
        yield made


def storage_class(name: str, provisioner: str = DRIVER, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner,
        **fields,
    }


def claim(name: str, size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            **spec,
        },
    }


def host_volume(
    name: str, size: str, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "hostPath": {"path": f"/tmp/{name}"},
            **spec,
        },
    }


async def get_claim(client: Client, name: str) -> dict[str, Any]:
    return await client.get("v1", "persistentvolumeclaims", name, namespace="default")


async def bound(client: Client, name: str) -> dict[str, Any] | None:
    obj = await get_claim(client, name)
    return obj if (obj.get("status") or {}).get("phase") == "Bound" else None


async def events_of(client: Client, name: str) -> list[tuple[str, str, str]]:
    events = await client.list("v1", "events", namespace="default")
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
        for e in events["items"]
        if e["involvedObject"]["name"] == name
    ]


async def event(client: Client, name: str, reason: str) -> tuple[str, str] | None:
    for type_, found, message in await events_of(client, name):
        if found == reason:
            return type_, message
    return None


async def gone(client: Client, resource: str, name: str, namespace: str = "") -> bool:
    try:
        await client.get("v1", resource, name, namespace=namespace)
    except ClientError as exc:
        return exc.not_found
    return False


# --- dynamic provisioning --------------------------------------------------------------------


async def test_immediate_class_provisions_and_binds(cluster: VolumeCluster) -> None:
    client = cluster.client
    await client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class(
            "fast", parameters={"pool": "gold"}, reclaimPolicy="Retain", mountOptions=["noatime"]
        ),
    )
    made = await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("data", "2Gi", storageClassName="fast"),
        namespace="default",
    )
    done = await wait_for(lambda: bound(client, "data"))
    pv_name = f"pvc-{made['metadata']['uid']}"
    assert done["spec"]["volumeName"] == pv_name
    assert done["status"]["capacity"] == {"storage": "2Gi"}
    assert done["status"]["accessModes"] == ["ReadWriteOnce"]
    notes = done["metadata"]["annotations"]
    assert notes["pv.kubernetes.io/bind-completed"] == "yes"
    assert notes["volume.kubernetes.io/storage-provisioner"] == DRIVER
    assert notes["volume.beta.kubernetes.io/storage-provisioner"] == DRIVER
    assert "kubernetes.io/pvc-protection" in done["metadata"]["finalizers"]

    pv = await client.get("v1", "persistentvolumes", pv_name)
    assert pv["spec"]["csi"] == {
        "driver": DRIVER,
        "volumeHandle": f"mem-{pv_name}",
        "volumeAttributes": {"pool": "gold"},
    }
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["storageClassName"] == "fast"
    assert pv["spec"]["mountOptions"] == ["noatime"]
    assert pv["spec"]["claimRef"]["uid"] == made["metadata"]["uid"]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == DRIVER
    assert "kubernetes.io/pv-protection" in pv["metadata"]["finalizers"]
    assert await wait_for(lambda: _phase(client, "persistentvolumes", pv_name, "Bound"))

    [request] = cluster.driver.requests
    assert request.name == pv_name
    assert request.capacity_bytes == 2 << 30
    assert request.parameters == {
        "pool": "gold",
        "csi.storage.k8s.io/pvc/name": "data",
        "csi.storage.k8s.io/pvc/namespace": "default",
        "csi.storage.k8s.io/pv/name": pv_name,
    }
    assert [c.access_mode for c in request.capabilities] == ["SINGLE_NODE_WRITER"]
    assert request.requisite_topology == ()
    assert await wait_for(lambda: event(client, "data", "ProvisioningSucceeded")) == (
        "Normal",
        f"Successfully provisioned volume {pv_name}",
    )


async def _phase(client: Client, resource: str, name: str, phase: str) -> bool:
    obj = await client.get("v1", resource, name, namespace="default" if "claim" in resource else "")
    return (obj.get("status") or {}).get("phase") == phase


async def test_driver_errors_are_retried_without_a_second_volume(cluster: VolumeCluster) -> None:
    client = cluster.client
    cluster.driver.create_failures = 2
    await client.create("storage.k8s.io/v1", "storageclasses", storage_class("fast"))
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="fast"), namespace="default"
    )
    failed = await wait_for(lambda: event(client, "data", "ProvisioningFailed"))
    assert failed == (
        "Warning",
        'failed to provision volume with StorageClass "fast": '
        "rpc error: code = ResourceExhausted desc = the pool is full",
    )
    await wait_for(lambda: bound(client, "data"), timeout=30)
    assert len(cluster.driver.requests) == 3
    assert len({r.name for r in cluster.driver.requests}) == 1
    assert len(cluster.driver.volumes) == 1
    volumes = await client.list("v1", "persistentvolumes")
    assert len(volumes["items"]) == 1


async def test_claims_are_provisioned_concurrently_and_each_binds_its_own_volume(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    driver = cluster.driver
    in_flight = 0
    all_in = trio.Event()
    plain_create = driver.create_volume

    async def create_when_all_are_in(request: CreateVolumeRequest) -> CreatedVolume:
        # Every CreateVolume waits until all three are running at once: a provisioner
        # doing one at a time never gets past the first.
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            all_in.set()
        await all_in.wait()
        return await plain_create(request)

    driver.create_volume = create_when_all_are_in  # type: ignore[method-assign]
    await client.create("storage.k8s.io/v1", "storageclasses", storage_class("fast"))
    made = {}
    for name in ("a", "b", "c"):
        made[name] = await client.create(
            "v1",
            "persistentvolumeclaims",
            claim(name, storageClassName="fast"),
            namespace="default",
        )
    for name, created in made.items():
        done = await wait_for(lambda name=name: bound(client, name))  # type: ignore[misc]
        pv_name = f"pvc-{created['metadata']['uid']}"
        assert done["spec"]["volumeName"] == pv_name
        pv = await client.get("v1", "persistentvolumes", pv_name)
        assert pv["spec"]["claimRef"]["name"] == name
        assert pv["spec"]["claimRef"]["uid"] == created["metadata"]["uid"]
    assert sorted(r.name for r in driver.requests) == sorted(
        f"pvc-{c['metadata']['uid']}" for c in made.values()
    )


async def test_a_write_to_the_claim_while_it_is_provisioned_is_kept(
    cluster: VolumeCluster,
) -> None:
    # Another writer changes the claim between the controller reading it and binding it
    # (as pvc-protection adding its finalizer does): the binding still lands, at once,
    # and what the other writer wrote stays.
    client = cluster.client
    driver = cluster.driver
    plain_create = driver.create_volume

    async def create_while_someone_writes(request: CreateVolumeRequest) -> CreatedVolume:
        await client.patch(
            "v1",
            "persistentvolumeclaims",
            "data",
            {"metadata": {"labels": {"team": "a"}, "finalizers": ["example.com/keep"]}},
            namespace="default",
        )
        return await plain_create(request)

    driver.create_volume = create_while_someone_writes  # type: ignore[method-assign]
    await client.create("storage.k8s.io/v1", "storageclasses", storage_class("fast"))
    made = await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="fast"), namespace="default"
    )
    done = await wait_for(lambda: bound(client, "data"))
    assert done["spec"]["volumeName"] == f"pvc-{made['metadata']['uid']}"
    assert done["metadata"]["labels"] == {"team": "a"}
    assert "example.com/keep" in done["metadata"]["finalizers"]
    notes = done["metadata"]["annotations"]
    assert notes["pv.kubernetes.io/bind-completed"] == "yes"
    assert notes["volume.kubernetes.io/storage-provisioner"] == DRIVER
    assert notes["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert len(driver.requests) == 1
    volumes = await client.list("v1", "persistentvolumes")
    assert len(volumes["items"]) == 1
    # The foreign finalizer would keep the claim after the test: let it go.
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        "data",
        [{"op": "remove", "path": "/metadata/finalizers/0"}],
        namespace="default",
        patch_type="json",
    )


async def test_wait_for_first_consumer_provisions_on_the_selected_node(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class("local", volumeBindingMode="WaitForFirstConsumer"),
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="local"), namespace="default"
    )
    assert await wait_for(lambda: event(client, "data", "WaitForFirstConsumer")) == (
        "Normal",
        "waiting for first consumer to be created before binding",
    )
    assert cluster.driver.requests == []
    assert (await get_claim(client, "data"))["status"]["phase"] == "Pending"
    # What the scheduler's VolumeBinding plugin does once it picked a node:
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        "data",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-7"}}},
        namespace="default",
    )
    done = await wait_for(lambda: bound(client, "data"))
    [request] = cluster.driver.requests
    assert request.requisite_topology == ({"kubernetes.io/hostname": "node-7"},)
    pv = await client.get("v1", "persistentvolumes", done["spec"]["volumeName"])
    assert pv["spec"]["nodeAffinity"] == {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-7"]}
                    ]
                }
            ]
        }
    }


async def test_unknown_class_leaves_the_claim_pending_with_an_event(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="nope"), namespace="default"
    )
    assert await wait_for(lambda: event(client, "data", "ProvisioningFailed")) == (
        "Warning",
        'storageclass.storage.k8s.io "nope" not found',
    )
    assert (await get_claim(client, "data"))["status"]["phase"] == "Pending"
    # The class appearing later is enough.
    await client.create("storage.k8s.io/v1", "storageclasses", storage_class("nope"))
    await wait_for(lambda: bound(client, "data"))


async def test_class_without_a_driver_waits_for_an_external_provisioner(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create(
        "storage.k8s.io/v1", "storageclasses", storage_class("ebs", provisioner="ebs.csi.aws.com")
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="ebs"), namespace="default"
    )
    assert await wait_for(lambda: event(client, "data", "ExternalProvisioning")) == (
        "Normal",
        "Waiting for a volume to be created either by the external provisioner "
        "'ebs.csi.aws.com' or manually by the system administrator. If volume creation is "
        "delayed, please verify that the provisioner is running and correctly registered.",
    )
    pending = await get_claim(client, "data")
    assert pending["status"]["phase"] == "Pending"
    assert pending["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == (
        "ebs.csi.aws.com"
    )


# --- static binding --------------------------------------------------------------------------


async def test_static_binding_takes_the_smallest_match(cluster: VolumeCluster) -> None:
    client = cluster.client
    for name, size in (("small", "1Gi"), ("medium", "5Gi"), ("large", "10Gi")):
        await client.create("v1", "persistentvolumes", host_volume(name, size))
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("data", "3Gi", storageClassName=""),
        namespace="default",
    )
    done = await wait_for(lambda: bound(client, "data"))
    assert done["spec"]["volumeName"] == "medium"
    assert done["status"]["capacity"] == {"storage": "5Gi"}
    assert done["status"]["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
    assert done["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    pv = await client.get("v1", "persistentvolumes", "medium")
    assert pv["spec"]["claimRef"]["name"] == "data"
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    await wait_for(lambda: _phase(client, "persistentvolumes", "medium", "Bound"))
    await wait_for(lambda: _phase(client, "persistentvolumes", "small", "Available"))
    # Nothing left that is large enough and free: the next claim waits, said so.
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("more", "20Gi", storageClassName=""),
        namespace="default",
    )
    assert await wait_for(lambda: event(client, "more", "FailedBinding")) == (
        "Normal",
        "no persistent volumes available for this claim and no storage class is set",
    )


async def test_static_binding_by_selector_volume_name_and_claim_ref(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create("v1", "persistentvolumes", host_volume("plain", "1Gi"))
    await client.create("v1", "persistentvolumes", host_volume("ssd", "8Gi", {"disk": "ssd"}))
    await client.create("v1", "persistentvolumes", host_volume("named", "2Gi"))
    await client.create(
        "v1",
        "persistentvolumes",
        host_volume("reserved", "1Gi", claimRef={"namespace": "default", "name": "mine"}),
    )
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("fast", storageClassName="", selector={"matchLabels": {"disk": "ssd"}}),
        namespace="default",
    )
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("byname", storageClassName="", volumeName="named"),
        namespace="default",
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("mine", storageClassName=""), namespace="default"
    )
    assert (await wait_for(lambda: bound(client, "fast")))["spec"]["volumeName"] == "ssd"
    byname = await wait_for(lambda: bound(client, "byname"))
    assert byname["spec"]["volumeName"] == "named"
    # The claim named its volume: the controller did not choose it.
    assert "pv.kubernetes.io/bound-by-controller" not in byname["metadata"]["annotations"]
    mine = await wait_for(lambda: bound(client, "mine"))
    assert mine["spec"]["volumeName"] == "reserved"
    reserved = await client.get("v1", "persistentvolumes", "reserved")
    assert "pv.kubernetes.io/bound-by-controller" not in (
        reserved["metadata"].get("annotations") or {}
    )
    plain = await client.get("v1", "persistentvolumes", "plain")
    assert "claimRef" not in plain["spec"]


async def test_volume_name_of_a_too_small_volume_is_a_mismatch(cluster: VolumeCluster) -> None:
    client = cluster.client
    await client.create("v1", "persistentvolumes", host_volume("tiny", "1Mi"))
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("data", storageClassName="", volumeName="tiny"),
        namespace="default",
    )
    assert await wait_for(lambda: event(client, "data", "VolumeMismatch")) == (
        "Warning",
        'Cannot bind to requested volume "tiny": requested PV is too small',
    )


# --- reclaim ---------------------------------------------------------------------------------


async def test_delete_reclaim_deletes_the_volume_and_retain_keeps_it(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create("storage.k8s.io/v1", "storageclasses", storage_class("gone"))
    await client.create(
        "storage.k8s.io/v1", "storageclasses", storage_class("kept", reclaimPolicy="Retain")
    )
    for name, cls in (("a", "gone"), ("b", "kept")):
        await client.create(
            "v1", "persistentvolumeclaims", claim(name, storageClassName=cls), namespace="default"
        )
    a = await wait_for(lambda: bound(client, "a"))
    b = await wait_for(lambda: bound(client, "b"))
    cluster.driver.delete_failures = 1
    for name in ("a", "b"):
        await client.delete("v1", "persistentvolumeclaims", name, namespace="default")
    deleted = a["spec"]["volumeName"]
    assert await wait_for(lambda: event(client, deleted, "VolumeFailedDelete")) == (
        "Warning",
        "rpc error: code = FailedPrecondition desc = volume is attached",
    )
    await wait_for(lambda: gone(client, "persistentvolumes", deleted), timeout=30)
    assert cluster.driver.deleted == [f"mem-{deleted}"]
    kept = b["spec"]["volumeName"]
    await wait_for(lambda: _phase(client, "persistentvolumes", kept, "Released"))
    assert kept in cluster.driver.volumes


async def test_delete_policy_on_a_static_volume_fails_it(cluster: VolumeCluster) -> None:
    client = cluster.client
    await client.create(
        "v1",
        "persistentvolumes",
        host_volume("static", "1Gi", persistentVolumeReclaimPolicy="Delete"),
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName=""), namespace="default"
    )
    await wait_for(lambda: bound(client, "data"))
    await client.delete("v1", "persistentvolumeclaims", "data", namespace="default")
    await wait_for(lambda: _phase(client, "persistentvolumes", "static", "Failed"))
    assert await wait_for(lambda: event(client, "static", "VolumeFailedDelete")) == (
        "Warning",
        'error getting deleter volume plugin for volume "static": '
        "no deletable volume plugin matched",
    )


# --- protection ------------------------------------------------------------------------------


async def test_claim_in_use_is_kept_until_the_pod_is_gone(cluster: VolumeCluster) -> None:
    client = cluster.client
    await client.create("v1", "persistentvolumes", host_volume("disk", "1Gi", storageClassName=""))
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName=""), namespace="default"
    )
    await wait_for(lambda: bound(client, "data"))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user"},
        "spec": {
            "nodeName": "node-0",
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    await client.create("v1", "pods", pod, namespace="default")
    await client.delete("v1", "persistentvolumeclaims", "data", namespace="default")
    # The volume too: Bound, so protected.
    await client.delete("v1", "persistentvolumes", "disk")
    await trio.sleep(1)  # give the controllers a chance to (wrongly) let go
    held = await get_claim(client, "data")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    volume = await client.get("v1", "persistentvolumes", "disk")
    assert volume["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    await client.delete("v1", "pods", "user", namespace="default", grace_period_seconds=0)
    await wait_for(lambda: gone(client, "persistentvolumeclaims", "data", "default"))
    await wait_for(lambda: gone(client, "persistentvolumes", "disk"))


# --- expansion -------------------------------------------------------------------------------


async def test_expansion_through_the_driver(cluster: VolumeCluster) -> None:
    client = cluster.client
    await client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class("grow", allowVolumeExpansion=True),
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="grow"), namespace="default"
    )
    first = await wait_for(lambda: bound(client, "data"))
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        "data",
        {"spec": {"resources": {"requests": {"storage": "3Gi"}}}},
        namespace="default",
    )

    async def grown() -> dict[str, Any] | None:
        obj = await get_claim(client, "data")
        return obj if obj["status"].get("capacity") == {"storage": "3Gi"} else None

    done = await wait_for(grown)
    assert done["status"]["allocatedResources"] == {"storage": "3Gi"}
    pv = await client.get("v1", "persistentvolumes", first["spec"]["volumeName"])
    assert pv["spec"]["capacity"] == {"storage": "3Gi"}
    assert cluster.driver.volumes[pv["metadata"]["name"]] == 3 << 30
    assert await wait_for(lambda: event(client, "data", "Resizing")) == (
        "Normal",
        f"External resizer is resizing volume {pv['metadata']['name']}",
    )
    assert await wait_for(lambda: event(client, "data", "VolumeResizeSuccessful")) == (
        "Normal",
        "Resize volume succeeded",
    )


async def test_expansion_needing_the_node_waits_in_file_system_resize_pending(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    cluster.driver.node_expansion = True
    await client.create(
        "storage.k8s.io/v1",
        "storageclasses",
        storage_class("grow", allowVolumeExpansion=True),
    )
    await client.create(
        "v1", "persistentvolumeclaims", claim("data", storageClassName="grow"), namespace="default"
    )
    first = await wait_for(lambda: bound(client, "data"))
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        "data",
        {"spec": {"resources": {"requests": {"storage": "2Gi"}}}},
        namespace="default",
    )

    async def pending() -> dict[str, Any] | None:
        obj = await get_claim(client, "data")
        types = [c["type"] for c in obj["status"].get("conditions") or []]
        return obj if types == ["FileSystemResizePending"] else None

    done = await wait_for(pending)
    assert done["status"]["capacity"] == {"storage": "1Gi"}  # the node finishes
    assert done["status"]["allocatedResources"] == {"storage": "2Gi"}
    pv = await client.get("v1", "persistentvolumes", first["spec"]["volumeName"])
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert await wait_for(lambda: event(client, "data", "FileSystemResizeRequired")) == (
        "Normal",
        "Require file system resize of volume on node",
    )


async def test_claim_validation_refuses_shrinking_and_resizing_unbound(
    cluster: VolumeCluster,
) -> None:
    client = cluster.client
    await client.create("v1", "persistentvolumes", host_volume("disk", "5Gi"))
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("data", "2Gi", storageClassName=""),
        namespace="default",
    )
    await client.create(
        "v1",
        "persistentvolumeclaims",
        claim("waiting", "9Gi", storageClassName=""),
        namespace="default",
    )
    await wait_for(lambda: bound(client, "data"))
    with pytest.raises(ClientError) as shrink:
        await client.patch(
            "v1",
            "persistentvolumeclaims",
            "data",
            {"spec": {"resources": {"requests": {"storage": "1Gi"}}}},
            namespace="default",
        )
    assert shrink.value.code == 422
    assert (
        "spec.resources.requests.storage: Forbidden: field can not be less than previous value"
        in shrink.value.message
    )
    with pytest.raises(ClientError) as unbound:
        await client.patch(
            "v1",
            "persistentvolumeclaims",
            "waiting",
            {"spec": {"resources": {"requests": {"storage": "10Gi"}}}},
            namespace="default",
        )
    assert unbound.value.code == 422
    assert "spec: Forbidden: spec is immutable after creation" in unbound.value.message


# --- StatefulSet claim retention -------------------------------------------------------------


def statefulset(name: str, replicas: int, policy: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "fast",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


async def claim_names(client: Client) -> set[str]:
    claims = await client.list("v1", "persistentvolumeclaims", namespace="default")
    return {c["metadata"]["name"] for c in claims["items"]}


async def test_statefulset_retention_policy_deletes_claims(apiserver: RunningApiServer) -> None:
    async with volume_cluster(apiserver, ("statefulset", "garbagecollector")) as made:
        client = made.client
        await client.create("storage.k8s.io/v1", "storageclasses", storage_class("fast"))
        await client.create(
            "apps/v1",
            "statefulsets",
            statefulset("db", 3, {"whenScaled": "Delete", "whenDeleted": "Retain"}),
            namespace="default",
        )
        await client.create(
            "apps/v1",
            "statefulsets",
            statefulset("kv", 2, {"whenScaled": "Retain", "whenDeleted": "Delete"}),
            namespace="default",
        )
        wanted = {"data-db-0", "data-db-1", "data-db-2", "data-kv-0", "data-kv-1"}

        async def all_bound() -> bool:
            claims = await client.list("v1", "persistentvolumeclaims", namespace="default")
            phases = {c["metadata"]["name"]: c["status"].get("phase") for c in claims["items"]}
            return set(phases) == wanted and set(phases.values()) == {"Bound"}

        await wait_for(all_bound, timeout=40)
        # whenScaled: Delete — scaling down removes the condemned pods' claims.
        await client.patch(
            "apps/v1", "statefulsets", "db", {"spec": {"replicas": 1}}, namespace="default"
        )
        # whenScaled: Retain — the kv set's claims stay.
        await client.patch(
            "apps/v1", "statefulsets", "kv", {"spec": {"replicas": 1}}, namespace="default"
        )

        async def scaled() -> bool:
            return await claim_names(client) == {"data-db-0", "data-kv-0", "data-kv-1"}

        await wait_for(scaled, timeout=40)
        # whenDeleted: Delete — the set's claims go with it; Retain keeps db's.
        await client.delete(
            "apps/v1", "statefulsets", "kv", namespace="default", propagation_policy="Background"
        )
        await client.delete(
            "apps/v1", "statefulsets", "db", namespace="default", propagation_policy="Background"
        )

        async def deleted() -> bool:
            return await claim_names(client) == {"data-db-0"}

        await wait_for(deleted, timeout=40)
