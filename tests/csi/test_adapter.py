"""The CSI adapter against a real gRPC CSI driver: each method is its RPC, with its fields.

The driver (tests/csi/dirdriver.py) records every request it receives, so each test checks
what went over the wire, not what the adapter meant to send.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import trio
from kubetrio_csi import csi_pb2 as csi
from kubetrio_csi.driver import CSIDriver
from kubetrio_storage.local import is_mount_point

from kubetrio.providers import (
    ACCESS_MODES_TO_CSI,
    CreateVolumeRequest,
    StorageDriverError,
    StorageNodeInfo,
    VolumeCapability,
    VolumeStats,
)
from tests.csi.dirdriver import NAME, NODE_ID, TOTAL_BYTES, ZONE_KEY, DirDriver
from tests.kit import wait_for

MiB = 1 << 20
RWO = VolumeCapability(access_mode=ACCESS_MODES_TO_CSI["ReadWriteOnce"], fs_type="ext4")


def cancelled(driver: DirDriver, rpc: str) -> Callable[[], Awaitable[bool]]:
    """A check for ``wait_for``: the driver saw its client give up on ``rpc``."""

    async def check() -> bool:
        return rpc in driver.cancelled

    return check


async def create(adapter: CSIDriver, name: str = "pvc-1", size: int = 4 * MiB) -> str:
    created = await adapter.create_volume(
        CreateVolumeRequest(name=name, capacity_bytes=size, capabilities=(RWO,))
    )
    return created.volume_id


async def test_identity_and_capabilities(adapter: CSIDriver, driver: DirDriver) -> None:
    info = await adapter.get_info()
    assert info.name == NAME
    assert info.vendor_version == "0.3.1"
    assert info.plugin_capabilities == {
        "CONTROLLER_SERVICE",
        "VOLUME_ACCESSIBILITY_CONSTRAINTS",
        "ONLINE",
    }
    assert info.controller_capabilities == {"CREATE_DELETE_VOLUME", "EXPAND_VOLUME", "GET_CAPACITY"}
    assert info.node_capabilities == {"STAGE_UNSTAGE_VOLUME", "EXPAND_VOLUME", "GET_VOLUME_STATS"}
    for rpc in ("GetPluginCapabilities", "ControllerGetCapabilities", "NodeGetCapabilities"):
        assert len(driver.requests(rpc)) == 1

    assert await adapter.probe() is True  # ready unset: ready, as CSI says
    driver.ready = False
    assert await adapter.probe() is False
    driver.ready = True
    assert await adapter.probe() is True
    assert len(driver.requests("Probe")) == 3


async def test_create_volume_sends_every_field(adapter: CSIDriver, driver: DirDriver) -> None:
    request = CreateVolumeRequest(
        name="pvc-0a1b",
        capacity_bytes=8 * MiB,
        limit_bytes=16 * MiB,
        parameters={"csi.storage.k8s.io/pvc/name": "data", "tier": "fast"},
        capabilities=(
            VolumeCapability(
                access_mode=ACCESS_MODES_TO_CSI["ReadWriteOncePod"],
                fs_type="xfs",
                mount_flags=("noatime", "nodiratime"),
            ),
            VolumeCapability(access_mode=ACCESS_MODES_TO_CSI["ReadOnlyMany"], block=True),
        ),
        requisite_topology=({ZONE_KEY: "zone-b"}, {ZONE_KEY: "zone-c"}),
        preferred_topology=({ZONE_KEY: "zone-b"},),
        secrets={"password": "s3cret"},
    )
    created = await adapter.create_volume(request)

    [sent] = driver.requests("CreateVolume")
    assert sent.name == "pvc-0a1b"
    assert (sent.capacity_range.required_bytes, sent.capacity_range.limit_bytes) == (
        8 * MiB,
        16 * MiB,
    )
    assert dict(sent.parameters) == {"csi.storage.k8s.io/pvc/name": "data", "tier": "fast"}
    assert dict(sent.secrets) == {"password": "s3cret"}
    mount, block = sent.volume_capabilities
    assert mount.WhichOneof("access_type") == "mount"
    assert mount.mount.fs_type == "xfs"
    assert list(mount.mount.mount_flags) == ["noatime", "nodiratime"]
    assert mount.access_mode.mode == csi.VolumeCapability.AccessMode.SINGLE_NODE_SINGLE_WRITER
    assert block.WhichOneof("access_type") == "block"
    assert block.access_mode.mode == csi.VolumeCapability.AccessMode.MULTI_NODE_READER_ONLY
    requirement = sent.accessibility_requirements
    assert [dict(t.segments) for t in requirement.requisite] == [
        {ZONE_KEY: "zone-b"},
        {ZONE_KEY: "zone-c"},
    ]
    assert [dict(t.segments) for t in requirement.preferred] == [{ZONE_KEY: "zone-b"}]

    assert created.volume_id == "vol-pvc-0a1b"
    assert created.capacity_bytes == 8 * MiB
    assert created.volume_context == {"dir": str(driver.volume_dir("vol-pvc-0a1b"))}
    assert created.accessible_topology == ({ZONE_KEY: "zone-b"},)
    assert driver.volume_dir(created.volume_id).is_dir()

    # Idempotent by name; the same name with another size is the driver's ALREADY_EXISTS.
    again = await adapter.create_volume(request)
    assert again.volume_id == created.volume_id
    with pytest.raises(StorageDriverError) as refused:
        await adapter.create_volume(CreateVolumeRequest(name="pvc-0a1b", capacity_bytes=MiB))
    assert refused.value.code == "ALREADY_EXISTS"
    assert "exists with another size" in refused.value.message


async def test_no_size_and_no_topology_leave_the_fields_unset(
    adapter: CSIDriver, driver: DirDriver
) -> None:
    created = await adapter.create_volume(CreateVolumeRequest(name="pvc-plain"))
    [sent] = driver.requests("CreateVolume")
    assert not sent.HasField("capacity_range")
    assert not sent.HasField("accessibility_requirements")
    assert created.capacity_bytes == MiB  # the driver's default size


async def test_capacity_expand_delete(adapter: CSIDriver, driver: DirDriver) -> None:
    volume_id = await create(adapter, size=4 * MiB)
    free = await adapter.get_capacity(parameters={"tier": "fast"}, topology={ZONE_KEY: "zone-a"})
    assert free == TOTAL_BYTES - 4 * MiB
    sent = driver.requests("GetCapacity")[-1]
    assert dict(sent.parameters) == {"tier": "fast"}
    assert dict(sent.accessible_topology.segments) == {ZONE_KEY: "zone-a"}
    assert await adapter.get_capacity(parameters={}, topology={ZONE_KEY: "zone-z"}) == 0
    await adapter.get_capacity(parameters={})
    assert not driver.requests("GetCapacity")[-1].HasField("accessible_topology")

    capability = VolumeCapability(access_mode="SINGLE_NODE_WRITER", fs_type="ext4")
    expanded = await adapter.expand_volume(
        volume_id=volume_id, capacity_bytes=12 * MiB, capability=capability
    )
    assert (expanded.capacity_bytes, expanded.node_expansion_required) == (12 * MiB, True)
    [sent] = driver.requests("ControllerExpandVolume")
    assert sent.volume_id == volume_id
    assert sent.capacity_range.required_bytes == 12 * MiB
    assert sent.volume_capability.mount.fs_type == "ext4"
    assert driver.size_of(volume_id) == 12 * MiB

    await adapter.delete_volume(volume_id=volume_id, secrets={"token": "t"})
    [sent] = driver.requests("DeleteVolume")
    assert (sent.volume_id, dict(sent.secrets)) == (volume_id, {"token": "t"})
    assert not driver.volume_dir(volume_id).exists()
    await adapter.delete_volume(volume_id=volume_id)  # gone already: success
    with pytest.raises(StorageDriverError) as missing:
        await adapter.expand_volume(volume_id=volume_id, capacity_bytes=MiB, capability=capability)
    assert missing.value.code == "NOT_FOUND"
    assert f"volume {volume_id} does not exist" in missing.value.message


async def test_node_side(adapter: CSIDriver, driver: DirDriver, tmp_path: Path) -> None:
    volume_id = await create(adapter, size=2 * MiB)
    assert await adapter.node_info(node_name="ignored") == StorageNodeInfo(
        node_id=NODE_ID, max_volumes_per_node=7, accessible_topology={ZONE_KEY: "zone-a"}
    )
    staging = tmp_path / "staging" / volume_id
    target = tmp_path / "pods" / "uid-1" / "volumes" / "data"
    context = {"dir": str(driver.volume_dir(volume_id))}

    with pytest.raises(StorageDriverError) as unstaged:
        await adapter.publish_volume(
            volume_id=volume_id,
            target_path=str(target),
            capability=RWO,
            read_only=False,
            volume_context=context,
            staging_path=str(staging),
        )
    assert unstaged.value.code == "FAILED_PRECONDITION"

    await adapter.stage_volume(
        volume_id=volume_id,
        staging_path=str(staging),
        capability=RWO,
        volume_context=context,
        publish_context={"device": "/dev/fake0"},
        secrets={"key": "k"},
    )
    [sent] = driver.requests("NodeStageVolume")
    assert sent.volume_id == volume_id
    assert sent.staging_target_path == str(staging)
    assert (
        sent.volume_capability.access_mode.mode
        == csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    )
    assert sent.volume_capability.mount.fs_type == "ext4"
    assert dict(sent.volume_context) == context
    assert dict(sent.publish_context) == {"device": "/dev/fake0"}
    assert dict(sent.secrets) == {"key": "k"}

    target.mkdir(parents=True)  # the kubelet makes the mount point
    await adapter.publish_volume(
        volume_id=volume_id,
        target_path=str(target),
        capability=RWO,
        read_only=True,
        volume_context=context,
        staging_path=str(staging),
        publish_context={"device": "/dev/fake0"},
    )
    sent = driver.requests("NodePublishVolume")[-1]
    assert (sent.target_path, sent.staging_target_path, sent.readonly) == (
        str(target),
        str(staging),
        True,
    )
    assert dict(sent.volume_context) == context
    (target / "hello.txt").write_text("x" * 1000)  # through the published path

    stats = await adapter.volume_stats(volume_id=volume_id, volume_path=str(target))
    assert stats == VolumeStats(
        total_bytes=2 * MiB,
        used_bytes=1000,
        available_bytes=2 * MiB - 1000,
        total_inodes=1000,
        used_inodes=1,
        available_inodes=999,
    )
    assert driver.requests("NodeGetVolumeStats")[-1].volume_path == str(target)

    await adapter.expand_volume(volume_id=volume_id, capacity_bytes=6 * MiB, capability=RWO)
    size = await adapter.expand_node_volume(
        volume_id=volume_id,
        volume_path=str(target),
        capacity_bytes=6 * MiB,
        staging_path=str(staging),
    )
    assert size == 6 * MiB
    [sent] = driver.requests("NodeExpandVolume")
    assert (sent.volume_path, sent.staging_target_path) == (str(target), str(staging))
    assert sent.capacity_range.required_bytes == 6 * MiB

    await adapter.unpublish_volume(volume_id=volume_id, target_path=str(target))
    assert not target.exists() and not target.is_symlink()
    await adapter.unpublish_volume(volume_id=volume_id, target_path=str(target))  # idempotent
    await adapter.unstage_volume(volume_id=volume_id, staging_path=str(staging))
    assert not (staging / ".staged").exists()
    sent = driver.requests("NodeUnstageVolume")[-1]
    assert (sent.volume_id, sent.staging_target_path) == (volume_id, str(staging))
    assert (driver.volume_dir(volume_id) / "hello.txt").read_text() == "x" * 1000


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
    ],
    ids=lambda code: code.name,
)
async def test_grpc_codes_become_storage_driver_errors(
    adapter: CSIDriver, driver: DirDriver, code: grpc.StatusCode
) -> None:
    driver.failures["CreateVolume"] = (code, "the array said no")
    with pytest.raises(StorageDriverError) as failed:
        await create(adapter)
    assert failed.value.code == code.name
    assert failed.value.message == "the array said no"  # the driver's words, as upstream


async def test_unknown_access_mode_is_refused_before_the_call(
    adapter: CSIDriver, driver: DirDriver
) -> None:
    bad = VolumeCapability(access_mode="ReadWriteOnce")  # a Kubernetes name, not CSI's
    with pytest.raises(StorageDriverError, match="unknown CSI access mode 'ReadWriteOnce'") as e:
        await adapter.create_volume(CreateVolumeRequest(name="pvc-x", capabilities=(bad,)))
    assert e.value.code == "INVALID_ARGUMENT"
    assert driver.requests("CreateVolume") == []


async def test_dead_socket_is_unavailable_at_once(sockets: Path) -> None:
    socket = sockets / "nobody.sock"
    adapter = CSIDriver(NAME, str(socket), timeout=600)
    try:
        # The guard is far below the call's 600 s deadline: the call must not wait for it.
        with trio.fail_after(60):
            with pytest.raises(StorageDriverError) as failed:
                await adapter.node_info(node_name="n")
            assert await adapter.probe() is False
    finally:
        adapter.close()
    assert failed.value.code == "UNAVAILABLE"
    assert failed.value.message.startswith(f"CSI driver {NAME} (unix://{socket}) GetPluginInfo: ")
    assert str(socket) in failed.value.message.removeprefix(f"CSI driver {NAME} (unix://{socket})")


async def test_driver_restart_is_reconnected(adapter: CSIDriver, driver: DirDriver) -> None:
    assert (await adapter.node_info(node_name="n")).node_id == NODE_ID
    driver.stop()
    with pytest.raises(StorageDriverError) as down:
        await adapter.node_info(node_name="n")
    assert down.value.code == "UNAVAILABLE"
    driver.start()

    async def answers() -> bool:
        try:
            return (await adapter.node_info(node_name="n")).node_id == NODE_ID
        except StorageDriverError:
            return False

    await wait_for(answers, timeout=30)


async def test_deadline_exceeded(driver: DirDriver) -> None:
    adapter = CSIDriver(NAME, str(driver.socket), timeout=0.5)
    driver.delays["CreateVolume"] = 20
    try:
        with pytest.raises(StorageDriverError) as late:
            await create(adapter)
    finally:
        adapter.close()
    assert late.value.code == "DEADLINE_EXCEEDED"
    # gRPC's words, after what was called: the driver and its socket
    prefix = f"CSI driver {NAME} (unix://{driver.socket}) CreateVolume: "
    assert late.value.message.startswith(prefix)
    await wait_for(cancelled(driver, "CreateVolume"), timeout=15)


async def test_cancelling_the_task_cancels_the_rpc(adapter: CSIDriver, driver: DirDriver) -> None:
    await adapter.probe()  # the name check is done: the next call goes straight out
    driver.delays["NodeGetInfo"] = 30
    with trio.move_on_after(0.5) as scope:
        await adapter.node_info(node_name="n")
    assert scope.cancelled_caught
    await wait_for(cancelled(driver, "NodeGetInfo"), timeout=15)


async def test_a_socket_serving_another_driver_is_refused(driver: DirDriver) -> None:
    adapter = CSIDriver("other.csi.example.com", str(driver.socket), timeout=10)
    try:
        with pytest.raises(StorageDriverError) as wrong:
            await create(adapter)
    finally:
        adapter.close()
    assert wrong.value.code == "FAILED_PRECONDITION"
    assert wrong.value.message == (
        f"the CSI driver at unix://{driver.socket} is named {NAME!r}, not "
        "'other.csi.example.com': check --csi-driver other.csi.example.com=…"
    )
    assert driver.requests("CreateVolume") == []


@pytest.mark.root
async def test_published_volume_is_a_read_only_bind_mount(tmp_path: Path, sockets: Path) -> None:
    """With real mounts (root): the pod's target is the volume's directory, read-only when
    asked, and unpublishing unmounts it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (bind mounts)")
    with DirDriver(tmp_path / "driver", sockets / "csi.sock", mounts=True) as driver:
        adapter = CSIDriver(NAME, str(driver.socket), timeout=10)
        target = tmp_path / "pod" / "data"
        staging = tmp_path / "staging"
        volume_id = await create(adapter)
        try:
            (driver.volume_dir(volume_id) / "seed.txt").write_text("from the driver")
            await adapter.stage_volume(
                volume_id=volume_id, staging_path=str(staging), capability=RWO, volume_context={}
            )
            await adapter.publish_volume(
                volume_id=volume_id,
                target_path=str(target),
                capability=RWO,
                read_only=True,
                volume_context={},
                staging_path=str(staging),
            )
            assert is_mount_point(str(target))
            assert (target / "seed.txt").read_text() == "from the driver"
            with pytest.raises(OSError) as refused:
                (target / "new.txt").write_text("x")
            assert refused.value.errno == errno.EROFS
            await adapter.unpublish_volume(volume_id=volume_id, target_path=str(target))
        finally:
            adapter.close()
            while is_mount_point(str(target)):  # a failed test leaves no mount behind
                subprocess.run(["umount", str(target)], check=True)
        assert not target.exists()
        assert (driver.volume_dir(volume_id) / "seed.txt").exists()
