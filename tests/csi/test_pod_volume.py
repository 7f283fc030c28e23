"""Pods on a real node (runc) use volumes of the gRPC test driver through the adapter: a
static PersistentVolume published with NodePublishVolume (a bind mount made by the driver),
and a claim provisioned with CreateVolume by the volume controllers, staged and published
by the node agent, then torn down and deleted."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio import plugins
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.images import RegistryConfig, build_image
from kubetrio.kubelet import NodeAgent
from kubetrio.providers import ACCESS_MODES_TO_CSI, CreateVolumeRequest, VolumeCapability
from tests.csi.dirdriver import NAME, DirDriver
from tests.kit import root_or_skip
from tests.kubelet.conftest import (
    NODE,
    apiserver,  # noqa: F401 - fixtures the client and registry below need
    client,  # noqa: F401
    leftovers,
    make_pod,
    registry,  # noqa: F401
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.runc]

RWO = VolumeCapability(access_mode=ACCESS_MODES_TO_CSI["ReadWriteOnce"])


async def test_pod_mounts_a_volume_of_a_grpc_csi_driver(
    registry: str,  # noqa: F811
    client: Client,  # noqa: F811
    tmp_path: Path,
    sockets: Path,
) -> None:
    root_or_skip()
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    tag = uuid.uuid4().hex[:6]
    cgroup_parent = f"/kubetrio-test-{tag}"
    mirrors = {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    await build_image("busybox:latest", None, registries=RegistryConfig.from_dict(mirrors))
    with DirDriver(tmp_path / "driver", sockets / "csi.sock", mounts=True, staging=False) as driver:
        manager = plugins.load(only=["storage", "csi"])
        manager.configure(
            config={
                "storage": {"root": str(tmp_path / "pvs")},
                "csi": {"drivers": f"{NAME}={driver.socket}"},
            }
        )
        try:
            [adapter] = [r.provider for r in manager.storage_drivers() if r.provider.name == NAME]
            created = await adapter.create_volume(
                CreateVolumeRequest(name="pvc-e2e", capacity_bytes=1 << 20, capabilities=(RWO,))
            )
            (driver.volume_dir(created.volume_id) / "seed").write_text("from the driver\n")
            await client.create(
                "v1",
                "persistentvolumes",
                {
                    "metadata": {"name": "pv-e2e"},
                    "spec": {
                        "capacity": {"storage": "1Mi"},
                        "accessModes": ["ReadWriteOnce"],
                        "csi": {
                            "driver": NAME,
                            "volumeHandle": created.volume_id,
                            "volumeAttributes": dict(created.volume_context),
                        },
                    },
                },
            )
            claim = {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "volumeName": "pv-e2e",
                    "resources": {"requests": {"storage": "1Mi"}},
                },
            }
            await client.create("v1", "persistentvolumeclaims", claim, namespace="default")
            await client.patch(
                "v1",
                "persistentvolumeclaims",
                "data",
                {"status": {"phase": "Bound"}},
                namespace="default",
                subresource="status",
            )
            pod = make_pod(
                "reader",
                [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", "cat /data/seed > /data/copy"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                restartPolicy="Never",
            )
            agent = NodeAgent(
                client,
                node_name=NODE,
                plugins=manager,
                network=None,  # the pod needs no network: loopback only
                root_dir=tmp_path / "agent",
                registries=mirrors,
                cgroup_parent=cgroup_parent,
                netns_prefix=f"kt{tag}-",
                address="127.0.0.1",
            )
            with trio.fail_after(90):
                async with trio.open_nursery() as nursery:
                    await nursery.start(agent.run)
                    try:
                        await client.create("v1", "pods", pod, namespace="default")
                        await wait_for(
                            client,
                            "reader",
                            lambda p: p.get("status", {}).get("phase") == "Succeeded",
                            timeout=60,
                        )
                        await client.delete("v1", "pods", "reader", namespace="default")
                        await wait_for(client, "reader", lambda p: not p)
                        while agent.workers:
                            await trio.sleep(0.05)
                    finally:
                        with trio.CancelScope(shield=True):
                            await agent.shutdown(grace_period=0)
                            await agent.runtime.cleanup()  # type: ignore[attr-defined]
                        nursery.cancel_scope.cancel()
        finally:
            manager.unconfigure()
    copy = driver.volume_dir(created.volume_id) / "copy"
    assert copy.read_text() == "from the driver\n"
    [published] = driver.requests("NodePublishVolume")
    assert published.volume_id == created.volume_id
    assert dict(published.volume_context) == dict(created.volume_context)
    assert published.volume_capability.access_mode.mode == 1  # SINGLE_NODE_WRITER
    [unpublished] = driver.requests("NodeUnpublishVolume")
    assert unpublished.target_path == published.target_path
    assert leftovers(f"kt{tag}-", tmp_path, cgroup_parent) == []


async def test_a_claim_is_provisioned_and_mounted_through_a_grpc_csi_driver(
    registry: str,  # noqa: F811
    client: Client,  # noqa: F811
    tmp_path: Path,
    sockets: Path,
) -> None:
    """The whole path through the adapter: a StorageClass naming the gRPC driver, the
    volume controllers' CreateVolume, the claim Bound, the node agent's NodeStageVolume and
    NodePublishVolume, a pod writing, then unpublish, unstage and DeleteVolume."""
    root_or_skip()
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    tag = uuid.uuid4().hex[:6]
    cgroup_parent = f"/kubetrio-test-{tag}"
    mirrors = {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    await build_image("busybox:latest", None, registries=RegistryConfig.from_dict(mirrors))
    with DirDriver(tmp_path / "driver", sockets / "csi.sock", mounts=True) as driver:
        manager = plugins.load(only=["storage", "csi"])
        manager.configure(
            config={
                "storage": {"root": str(tmp_path / "pvs")},
                "csi": {"drivers": f"{NAME}={driver.socket}"},
            }
        )
        try:
            await client.create(
                "storage.k8s.io/v1",
                "storageclasses",
                {
                    "metadata": {"name": "grpc"},
                    "provisioner": NAME,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                    "parameters": {"flavour": "test"},
                },
            )
            claim = {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "grpc",
                    "resources": {"requests": {"storage": "2Mi"}},
                },
            }
            pod = make_pod(
                "writer",
                [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", "echo written > /data/file"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                restartPolicy="Never",
            )
            controllers = ControllerManager(
                client,
                plugins=manager,
                controllers=["persistentvolume-binder"],
                leader_election=False,
            )
            agent = NodeAgent(
                client,
                node_name=NODE,
                plugins=manager,
                network=None,
                root_dir=tmp_path / "agent",
                registries=mirrors,
                cgroup_parent=cgroup_parent,
                netns_prefix=f"kt{tag}-",
                address="127.0.0.1",
            )
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    await nursery.start(controllers.run)
                    await nursery.start(agent.run)
                    try:
                        await client.create(
                            "v1", "persistentvolumeclaims", claim, namespace="default"
                        )
                        bound = await _claim_bound(client)
                        volume = await client.get(
                            "v1", "persistentvolumes", bound["spec"]["volumeName"]
                        )
                        handle = volume["spec"]["csi"]["volumeHandle"]
                        await client.create("v1", "pods", pod, namespace="default")
                        await wait_for(
                            client,
                            "writer",
                            lambda p: p.get("status", {}).get("phase") == "Succeeded",
                            timeout=60,
                        )
                        await client.delete("v1", "pods", "writer", namespace="default")
                        await wait_for(client, "writer", lambda p: not p)
                        while agent.workers:
                            await trio.sleep(0.05)
                        written = (driver.volume_dir(handle) / "file").read_text()
                        await client.delete(
                            "v1", "persistentvolumeclaims", "data", namespace="default"
                        )
                        while not driver.requests("DeleteVolume"):
                            await trio.sleep(0.1)
                    finally:
                        with trio.CancelScope(shield=True):
                            await agent.shutdown(grace_period=0)
                            await agent.runtime.cleanup()  # type: ignore[attr-defined]
                        nursery.cancel_scope.cancel()
        finally:
            manager.unconfigure()
    assert written == "written\n"
    [create] = driver.requests("CreateVolume")
    assert create.name == volume["metadata"]["name"] == f"pvc-{bound['metadata']['uid']}"
    assert create.capacity_range.required_bytes == 2 << 20
    assert create.parameters["flavour"] == "test"
    assert create.parameters["csi.storage.k8s.io/pvc/name"] == "data"
    [staged] = driver.requests("NodeStageVolume")
    [published] = driver.requests("NodePublishVolume")
    assert staged.volume_id == published.volume_id == handle
    assert published.staging_target_path == staged.staging_target_path
    assert [r.volume_id for r in driver.requests("NodeUnpublishVolume")] == [handle]
    assert [r.volume_id for r in driver.requests("NodeUnstageVolume")] == [handle]
    assert [r.volume_id for r in driver.requests("DeleteVolume")] == [handle]
    assert leftovers(f"kt{tag}-", tmp_path, cgroup_parent) == []


async def _claim_bound(api: Client) -> dict[str, Any]:
    while True:
        claim = await api.get("v1", "persistentvolumeclaims", "data", namespace="default")
        if (claim.get("status") or {}).get("phase") == "Bound":
            return claim
        await trio.sleep(0.1)
