"""The node volume bookkeeping without containers: CSI call order and paths, the disk
records an agent restart relies on, fsGroup ownership, subPathExpr, error wording."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kubetrio.client import Client
from kubetrio.kubelet._csi import NodeVolumes, PublishError
from kubetrio.kubelet._volumes import PodVolumes, VolumeError, set_volume_ownership
from kubetrio.providers import (
    StorageDriverError,
    StorageDriverInfo,
    VolumeCapability,
)


class FakeDriver:
    """Node calls only, recorded; publish makes the target directory (no mounts)."""

    name = "fake.csi"

    def __init__(self, *, stages: bool = True, fail_publish: bool = False) -> None:
        self.stages = stages
        self.fail_publish = fail_publish
        self.calls: list[tuple[str, str]] = []

    async def get_info(self) -> StorageDriverInfo:
        caps = {"STAGE_UNSTAGE_VOLUME"} if self.stages else set()
        return StorageDriverInfo(name=self.name, node_capabilities=frozenset(caps))

    async def stage_volume(
        self,
        *,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability,
        volume_context: Mapping[str, str],
        **_: Any,
    ) -> None:
        self.calls.append(("stage", staging_path))

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        self.calls.append(("unstage", staging_path))

    async def publish_volume(self, *, volume_id: str, target_path: str, **_: Any) -> None:
        self.calls.append(("publish", target_path))
        if self.fail_publish:
            raise StorageDriverError("UNAVAILABLE", "the array is away")
        os.makedirs(target_path, exist_ok=True)

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        self.calls.append(("unpublish", target_path))


def pv(name: str = "pv-1", handle: str = "h-1", driver: str = "fake.csi") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": driver, "volumeHandle": handle},
        },
    }


def node(tmp_path: Path, driver: FakeDriver) -> NodeVolumes:
    return NodeVolumes(
        {driver.name: driver},  # type: ignore[dict-item]
        root_dir=tmp_path,
        pods_dir=tmp_path / "pods",
    )


async def test_staged_once_unstaged_after_the_last_pod(tmp_path: Path) -> None:
    driver = FakeDriver()
    volumes = node(tmp_path, driver)
    first = await volumes.publish("uid-a", pv(), read_only=False)
    second = await volumes.publish("uid-b", pv(), read_only=False)
    staging = tmp_path / "plugins/kubernetes.io/csi/fake.csi" / hashlib.sha256(b"h-1").hexdigest()
    assert first == tmp_path / "pods/uid-a/volumes/kubernetes.io~csi/pv-1/mount"
    assert driver.calls == [
        ("stage", str(staging / "globalmount")),
        ("publish", str(first)),
        ("publish", str(second)),
    ]
    await volumes.release_pod("uid-a")
    assert driver.calls[-1] == ("unpublish", str(first))
    assert not first.parent.exists()
    # A restarted agent has no memory of what it did: the disk records suffice.
    restarted = node(tmp_path, driver)
    await restarted.release_pod("uid-b")
    assert driver.calls[-2:] == [
        ("unpublish", str(second)),
        ("unstage", str(staging / "globalmount")),
    ]
    assert not staging.exists()


async def test_drivers_without_staging_are_only_published(tmp_path: Path) -> None:
    driver = FakeDriver(stages=False)
    volumes = node(tmp_path, driver)
    target = await volumes.publish("uid-a", pv(), read_only=True)
    await volumes.release_pod("uid-a")
    assert [c[0] for c in driver.calls] == ["publish", "unpublish"]
    assert not target.exists()


async def test_publish_failures_are_worded_as_kubelet(tmp_path: Path) -> None:
    volumes = node(tmp_path, FakeDriver(fail_publish=True))
    with pytest.raises(PublishError) as failed:
        await volumes.publish("uid-a", pv(), read_only=False)
    assert str(failed.value) == (
        'MountVolume.SetUp failed for volume "pv-1" : UNAVAILABLE: the array is away'
    )
    with pytest.raises(PublishError) as missing:
        await volumes.publish("uid-a", pv(driver="nowhere.csi"), read_only=False)
    assert str(missing.value) == (
        'MountVolume.MountDevice failed for volume "pv-1" : kubernetes.io/csi: '
        "attacher.MountDevice failed to create newCsiDriverClient: driver name nowhere.csi "
        "not found in the list of registered CSI drivers"
    )


def test_fs_group_ownership_as_set_volume_ownership(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "sub").mkdir(parents=True)
    (root / "sub/file").write_text("x")
    os.chmod(root / "sub/file", 0o600)
    os.chmod(root, 0o755)
    os.symlink("sub/file", root / "link")
    set_volume_ownership(root, 4321, "Always", False)
    for path in (root, root / "sub", root / "sub/file"):
        assert os.stat(path).st_gid == 4321
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o2775
    assert stat.S_IMODE(os.stat(root / "sub/file").st_mode) == 0o660
    assert os.lstat(root / "link").st_gid == 4321
    # OnRootMismatch: the root fits, so a file changed meanwhile is left alone.
    os.chmod(root / "sub/file", 0o600)
    set_volume_ownership(root, 4321, "OnRootMismatch", False)
    assert stat.S_IMODE(os.stat(root / "sub/file").st_mode) == 0o600
    set_volume_ownership(root, 99, "OnRootMismatch", True)  # another group: walked again
    assert os.stat(root / "sub/file").st_gid == 99
    assert stat.S_IMODE(os.stat(root / "sub/file").st_mode) == 0o640


def test_sub_path_expr(tmp_path: Path) -> None:
    pod = {"metadata": {"name": "p", "uid": "u"}, "spec": {}}
    volumes = PodVolumes(Client.__new__(Client), pod, tmp_path / "pods/u")
    volumes.paths["data"] = tmp_path / "data"
    container: dict[str, Any] = {
        "name": "c",
        "volumeMounts": [{"name": "data", "mountPath": "/d", "subPathExpr": "logs/$(POD)"}],
    }
    [mount] = volumes.mounts_for(container, [("POD", "web-0")])
    assert mount.host_path == str(tmp_path / "data/logs/web-0")
    assert (tmp_path / "data/logs/web-0").is_dir()
    with pytest.raises(VolumeError, match=r"logs/\$\(POD\) uses an undefined variable"):
        volumes.mounts_for(container, [])
    container["volumeMounts"][0]["subPathExpr"] = "../$(POD)"
    with pytest.raises(VolumeError, match="invalid path"):
        volumes.mounts_for(container, [("POD", "x")])
