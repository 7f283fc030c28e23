"""The ``local-path`` driver (per-node directories with node topology) and the storage
admission plugins (DefaultStorageClass, StorageObjectInUseProtection,
PersistentVolumeClaimResize), without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from kubetrio_auth.admission import storage as admission
from kubetrio_storage.localpath import DefaultStorageClass, LocalPathVolumes, local_path_class

from kubetrio.providers import (
    AdmissionRequest,
    CreateVolumeRequest,
    StorageDriver,
    StorageDriverError,
    UserInfo,
)

ON_NODE_A = CreateVolumeRequest(
    name="pvc-1234", capacity_bytes=1 << 20, requisite_topology=({"kubernetes.io/hostname": "a"},)
)


async def test_volumes_are_directories_per_node_with_their_topology(tmp_path: Path) -> None:
    driver = LocalPathVolumes(tmp_path)
    assert isinstance(driver, StorageDriver)
    assert driver.name == "rancher.io/local-path"
    info = await driver.get_info()
    assert "VOLUME_ACCESSIBILITY_CONSTRAINTS" in info.plugin_capabilities
    created = await driver.create_volume(ON_NODE_A)
    assert created.volume_id == "a/pvc-1234"
    assert created.accessible_topology == ({"kubernetes.io/hostname": "a"},)
    assert created.volume_context["path"] == str(tmp_path / "a" / "pvc-1234")
    assert (tmp_path / "a" / "pvc-1234").is_dir()
    assert await driver.create_volume(ON_NODE_A) == created  # idempotent
    await driver.delete_volume(volume_id=created.volume_id)
    assert not (tmp_path / "a" / "pvc-1234").exists()
    node = await driver.node_info(node_name="a")
    assert node.accessible_topology == {"kubernetes.io/hostname": "a"}


async def test_a_volume_needs_a_node_and_ids_stay_under_the_root(tmp_path: Path) -> None:
    driver = LocalPathVolumes(tmp_path)
    with pytest.raises(StorageDriverError) as no_node:
        await driver.create_volume(CreateVolumeRequest(name="pvc-1"))
    assert no_node.value.code == "INVALID_ARGUMENT"
    assert "no node was specified" in no_node.value.message
    for bad in ("../pvc-1", "a/..", "pvc-1", "a/b/c"):
        with pytest.raises(StorageDriverError):
            await driver.delete_volume(volume_id=bad)


class FakeClient:
    """Records creates; answers 409 when told the class exists."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.created: list[dict[str, Any]] = []

    async def create(self, api_version: str, resource: str, body: dict[str, Any]) -> Any:
        from kubetrio.client import ClientError

        if self.exists:
            raise ClientError({"code": 409, "reason": "AlreadyExists", "message": "exists"})
        self.created.append(body)
        return body


@pytest.mark.parametrize("exists", [False, True])
async def test_the_default_class_is_created_once_and_never_overwritten(exists: bool) -> None:
    fake = FakeClient(exists)
    with trio.move_on_after(0.5):
        await DefaultStorageClass().run(fake)
    assert fake.created == ([] if exists else [local_path_class()])
    made = local_path_class()
    assert made["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert made["volumeBindingMode"] == "WaitForFirstConsumer"
    assert made["reclaimPolicy"] == "Delete"


class Classes:
    """An ObjectCache of StorageClasses."""

    def __init__(self, *classes: dict[str, Any]) -> None:
        self.classes = {c["metadata"]["name"]: c for c in classes}

    def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.classes.get(name)

    def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return list(self.classes.values())


def sc(name: str, created: str, default: bool = False, **fields: Any) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "metadata": {"name": name, "creationTimestamp": created, "annotations": annotations},
        **fields,
    }


def claim_request(
    operation: str, spec: dict[str, Any], old_spec: dict[str, Any] | None = None
) -> AdmissionRequest:
    return AdmissionRequest(
        operation=operation,  # type: ignore[arg-type]
        user=UserInfo(name="u"),
        api_group="",
        api_version="v1",
        kind="PersistentVolumeClaim",
        resource="persistentvolumeclaims",
        namespace="default",
        name="c",
        object={"metadata": {"name": "c"}, "spec": spec},
        old_object={"metadata": {"name": "c"}, "spec": old_spec} if old_spec else None,
    )


def test_default_class_and_protection_finalizer_on_new_claims() -> None:
    classes = Classes(
        sc("old", "2026-01-01T00:00:00Z", default=True),
        sc("new", "2026-06-01T00:00:00Z", default=True),
        sc("other", "2026-12-01T00:00:00Z"),
    )
    request = claim_request("CREATE", {})
    admission.mutate(request, classes)  # type: ignore[arg-type]
    assert request.object is not None
    assert request.object["spec"]["storageClassName"] == "new"  # the newest default
    assert request.object["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    explicit = claim_request("CREATE", {"storageClassName": ""})
    admission.mutate(explicit, classes)  # type: ignore[arg-type]
    assert explicit.object is not None and explicit.object["spec"]["storageClassName"] == ""
    none = claim_request("CREATE", {})
    admission.mutate(none, Classes(sc("other", "2026-12-01T00:00:00Z")))  # type: ignore[arg-type]
    assert none.object is not None and "storageClassName" not in none.object["spec"]


def test_growing_a_claim_needs_a_class_allowing_expansion() -> None:
    classes = Classes(
        sc("grow", "2026-01-01T00:00:00Z", allowVolumeExpansion=True),
        sc("fixed", "2026-01-01T00:00:00Z"),
    )

    def resize(cls: str, old: str, new: str) -> list[str] | None:
        spec = {"storageClassName": cls, "resources": {"requests": {"storage": new}}}
        old_spec = {"storageClassName": cls, "resources": {"requests": {"storage": old}}}
        return admission.validate(claim_request("UPDATE", spec, old_spec), classes)  # type: ignore[arg-type]

    assert resize("grow", "1Gi", "2Gi") is None
    assert resize("fixed", "1Gi", "1024Mi") is None  # the same size
    refused = [
        "only dynamically provisioned pvc can be resized and the storageclass that "
        "provisions the pvc must support resize"
    ]
    assert resize("fixed", "1Gi", "2Gi") == refused
    assert resize("missing", "1Gi", "2Gi") == refused
