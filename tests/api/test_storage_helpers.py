"""``kubetrio.api.storage``: the PV matching rules the binder and the scheduler share,
checked against upstream's ``FindMatchingVolume`` and storage-class reading."""

from __future__ import annotations

from typing import Any

import pytest

from kubetrio.api.selectors import LabelSelectorError
from kubetrio.api.storage import find_matching_volume, is_bound_to, storage_class


def claim(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "fast",
            **spec,
        },
    }


def volume(name: str, size: str, *, phase: str = "Available", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"tier": name}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "storageClassName": "fast",
            **spec,
        },
        "status": {"phase": phase},
    }


def test_the_smallest_volume_that_fits_wins() -> None:
    volumes = [volume("big", "10Gi"), volume("small", "1Gi"), volume("tiny", "500Mi")]
    assert find_matching_volume(claim(), volumes)["metadata"]["name"] == "small"  # type: ignore[index]


def test_class_modes_selector_phase_and_deletion_rule_volumes_out() -> None:
    volumes = [
        volume("other-class", "1Gi", storageClassName="slow"),
        volume("block", "1Gi", volumeMode="Block"),
        volume("rwx-only", "1Gi", accessModes=["ReadWriteMany"]),
        volume("released", "1Gi", phase="Released"),
        {**volume("going", "1Gi"), "metadata": {"name": "going", "deletionTimestamp": "x"}},
        volume("claimed", "1Gi", claimRef={"name": "else", "namespace": "ns"}),
    ]
    assert find_matching_volume(claim(), volumes) is None
    wanted = volume("wanted", "2Gi")
    selected = claim(selector={"matchLabels": {"tier": "wanted"}})
    assert find_matching_volume(selected, [volume("small", "1Gi"), wanted]) is wanted


def test_a_prebound_volume_wins_even_of_another_class_unless_unreachable() -> None:
    prebound = volume(
        "mine", "5Gi", storageClassName="slow", claimRef={"name": "data", "namespace": "ns"}
    )
    volumes = [volume("small", "1Gi"), prebound]
    assert find_matching_volume(claim(), volumes) is prebound
    assert find_matching_volume(claim(), volumes, reachable=lambda v: v is not prebound) is None
    assert find_matching_volume(claim(), volumes, skip=lambda v: v is prebound) is volumes[0]


def test_phases_the_binder_also_takes() -> None:
    fresh = volume("fresh", "1Gi")
    del fresh["status"]
    assert find_matching_volume(claim(), [fresh]) is None
    assert find_matching_volume(claim(), [fresh], phases=(None, "Available")) is fresh


def test_the_beta_annotation_names_the_class_first() -> None:
    annotated = claim()
    annotated["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "old"}
    assert storage_class(annotated) == "old" and storage_class(claim()) == "fast"


def test_binding_by_uid_and_a_bad_selector() -> None:
    other_uid = volume("v", "1Gi", claimRef={"name": "data", "namespace": "ns", "uid": "u2"})
    assert not is_bound_to(other_uid, claim())
    bad = claim(selector={"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
    with pytest.raises(LabelSelectorError):
        find_matching_volume(bad, [volume("v", "1Gi")])
