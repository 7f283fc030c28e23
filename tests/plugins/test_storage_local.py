"""The local volume driver of plugins/storage, through the CSI-shaped driver protocol."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubetrio_storage.local import LocalVolumes, is_mount_point

from kubetrio.providers import (
    CreateVolumeRequest,
    StorageDriver,
    StorageDriverError,
    VolumeCapability,
)

REQUEST = CreateVolumeRequest(name="pvc-1234-abcd", capacity_bytes=1 << 20)


async def test_create_then_delete(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path)
    assert isinstance(driver, StorageDriver)
    created = await driver.create_volume(REQUEST)
    assert created.volume_id == "pvc-1234-abcd"
    assert created.capacity_bytes == 1 << 20
    assert (tmp_path / "pvc-1234-abcd").is_dir()
    (tmp_path / "pvc-1234-abcd" / "file").write_text("x")
    stats = await driver.volume_stats(volume_id=created.volume_id, volume_path="")
    assert stats.used_bytes > 0 and stats.total_bytes > stats.used_bytes
    await driver.delete_volume(volume_id=created.volume_id)
    assert not (tmp_path / "pvc-1234-abcd").exists()
    await driver.delete_volume(volume_id=created.volume_id)  # idempotent, as CSI requires


async def test_volume_id_cannot_escape_the_root(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path)
    with pytest.raises(StorageDriverError) as refused:
        await driver.delete_volume(volume_id="../etc")
    assert refused.value.code == "INVALID_ARGUMENT"


async def test_expansion_is_unimplemented(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path)
    info = await driver.get_info()
    assert "EXPAND_VOLUME" not in info.controller_capabilities
    with pytest.raises(StorageDriverError) as refused:
        await driver.expand_volume(
            volume_id="pvc-1", capacity_bytes=2, capability=VolumeCapability()
        )
    assert refused.value.code == "UNIMPLEMENTED"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
async def test_publish_bind_mounts_read_only(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path / "volumes")
    created = await driver.create_volume(REQUEST)
    (tmp_path / "volumes" / created.volume_id / "hello").write_text("hi")
    target = str(tmp_path / "pod" / "mnt")
    await driver.publish_volume(
        volume_id=created.volume_id,
        target_path=target,
        capability=VolumeCapability(),
        read_only=True,
        volume_context={},
    )
    try:
        assert is_mount_point(target)
        assert Path(target, "hello").read_text() == "hi"
        with pytest.raises(OSError, match="Read-only"):
            Path(target, "new").write_text("no")
    finally:
        await driver.unpublish_volume(volume_id=created.volume_id, target_path=target)
    assert not is_mount_point(target)
