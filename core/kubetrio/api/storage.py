"""Readings of PersistentVolumes and their claims that the PV binder and the scheduler's
VolumeBinding share, as upstream's ``storagehelpers`` (``GetPersistentVolumeClaimClass``,
``IsVolumeBoundToClaim``, ``FindMatchingVolume``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kubetrio.kubeobject import KubeObject

from .quantity import Quantity
from .selectors import label_selector_from_struct

BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
"""The storage class annotation that predates ``storageClassName``; it still wins."""


def storage_bytes(resources: Mapping[str, Any] | None) -> int:
    """Bytes of a ``storage`` quantity in a capacity or requests map (0 when absent or bad)."""
    value = (resources or {}).get("storage")
    if value is None:
        return 0
    try:
        return Quantity(value).value()
    except ValueError:
        return 0


def requested_bytes(claim: KubeObject) -> int:
    """The claim's ``spec.resources.requests.storage`` in bytes."""
    return storage_bytes(((claim.get("spec") or {}).get("resources") or {}).get("requests"))


def capacity_bytes(volume: KubeObject) -> int:
    """The volume's ``spec.capacity.storage`` in bytes."""
    return storage_bytes((volume.get("spec") or {}).get("capacity"))


def storage_class(obj: KubeObject) -> str:
    """A claim's or a volume's class: the beta annotation if present (as upstream reads
    it first), else ``spec.storageClassName``."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if BETA_STORAGE_CLASS in annotations:
        return str(annotations[BETA_STORAGE_CLASS])
    return str((obj.get("spec") or {}).get("storageClassName") or "")


def is_bound_to(volume: KubeObject, claim: KubeObject) -> bool:
    """Whether the volume's ``claimRef`` names the claim (and its uid, when it has one)."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    meta = claim["metadata"]
    if not ref or ref.get("name") != meta["name"] or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def find_matching_volume(
    claim: KubeObject,
    volumes: Iterable[KubeObject],
    *,
    reachable: Callable[[KubeObject], bool] | None = None,
    phases: Collection[str | None] = ("Available",),
    skip: Callable[[KubeObject], bool] | None = None,
) -> KubeObject | None:
    """The volume a claim binds to: the one pre-bound to it, else the smallest match.

    Upstream's ``FindMatchingVolume``: capacity, volume mode, not being deleted; a volume
    whose ``claimRef`` names the claim wins at once (or, if ``reachable`` says the node
    cannot reach it, nothing does); otherwise an unclaimed volume in one of ``phases``
    that matches the claim's ``selector``, class and access modes (a superset), and that
    the node can reach. ``skip`` leaves volumes out (the scheduler's assumed ones).

    :raises LabelSelectorError: the claim's selector is invalid.
    """
    spec = claim.get("spec") or {}
    wanted = requested_bytes(claim)
    wanted_class = storage_class(claim)
    wanted_mode = spec.get("volumeMode") or "Filesystem"
    wanted_access = set(spec.get("accessModes") or [])
    selector = label_selector_from_struct(spec["selector"]) if spec.get("selector") else None
    best: KubeObject | None = None
    best_size = 0
    for volume in volumes:
        vspec = volume.get("spec") or {}
        if skip is not None and skip(volume):
            continue
        if vspec.get("claimRef") and not is_bound_to(volume, claim):
            continue
        size = capacity_bytes(volume)
        if size < wanted or (vspec.get("volumeMode") or "Filesystem") != wanted_mode:
            continue
        if (volume.get("metadata") or {}).get("deletionTimestamp"):
            continue
        node_ok = reachable is None or reachable(volume)
        if vspec.get("claimRef"):  # pre-bound to this claim
            return volume if node_ok else None
        if (volume.get("status") or {}).get("phase") not in phases:
            continue
        labels = (volume.get("metadata") or {}).get("labels") or {}
        if selector is not None and not selector.matches(labels):
            continue
        if storage_class(volume) != wanted_class or not node_ok:
            continue
        if not wanted_access <= set(vspec.get("accessModes") or []):
            continue
        if best is None or size < best_size:
            best, best_size = volume, size
    return best
