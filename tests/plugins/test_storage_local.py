"""The local volume driver of plugins/storage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubetrio_storage.local import LocalVolumes, is_mount_point

CLAIM = {"metadata": {"name": "data", "namespace": "default", "uid": "1234-abcd"}}


async def test_provision_then_delete(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path)
    source = await driver.provision(claim=CLAIM, parameters={})
    assert source == {"driver": "kubetrio.io/local", "volumeHandle": "pvc-1234-abcd"}
    assert (tmp_path / "pvc-1234-abcd").is_dir()
    (tmp_path / "pvc-1234-abcd" / "file").write_text("x")
    await driver.delete(volume={"spec": {"csi": source}})
    assert not (tmp_path / "pvc-1234-abcd").exists()


async def test_handle_cannot_escape_the_root(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path)
    with pytest.raises(ValueError, match="volumeHandle"):
        await driver.delete(volume={"spec": {"csi": {"volumeHandle": "../etc"}}})


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
async def test_publish_bind_mounts_read_only(tmp_path: Path) -> None:
    driver = LocalVolumes(tmp_path / "volumes")
    source = await driver.provision(claim=CLAIM, parameters={})
    volume = {"spec": {"csi": source}}
    (tmp_path / "volumes" / source["volumeHandle"] / "hello").write_text("hi")
    target = str(tmp_path / "pod" / "mnt")
    await driver.publish(volume=volume, target_path=target, read_only=True)
    try:
        assert is_mount_point(target)
        assert Path(target, "hello").read_text() == "hi"
        with pytest.raises(OSError, match="Read-only"):
            Path(target, "new").write_text("no")
    finally:
        await driver.unpublish(volume=volume, target_path=target)
    assert not is_mount_point(target)
