"""kube-apiserver's storage admission plugins, worded as upstream's.

* **DefaultStorageClass** — a new claim without ``spec.storageClassName`` (and without
  the beta annotation) gets the default class: the StorageClass annotated
  ``storageclass.kubernetes.io/is-default-class: "true"`` (the newest when several are,
  as upstream since 1.28). An explicit ``""`` asks for no class and is kept.
* **StorageObjectInUseProtection** — new claims get the ``kubernetes.io/pvc-protection``
  finalizer and new volumes ``kubernetes.io/pv-protection``; the core's protection
  controllers remove them when the object is no longer in use.
* **PersistentVolumeClaimResize** — a claim may ask for more storage only when its
  class has ``allowVolumeExpansion: true``.
"""

from __future__ import annotations

from typing import Any

from kubetrio.api.quantity import Quantity
from kubetrio.providers import AdmissionRequest, ObjectCache

from ._default_class import newest_default

DEFAULT_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
FINALIZERS = {
    "persistentvolumeclaims": "kubernetes.io/pvc-protection",
    "persistentvolumes": "kubernetes.io/pv-protection",
}
RESIZE_REFUSED = (
    "only dynamically provisioned pvc can be resized and the storageclass that provisions "
    "the pvc must support resize"
)


def _is_main(request: AdmissionRequest, resource: str) -> bool:
    return (
        request.api_group == ""
        and request.resource == resource
        and not request.subresource
        and request.object is not None
    )


def default_class(classes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The default StorageClass: the newest of those annotated default (then by name)."""
    return newest_default(classes, DEFAULT_ANNOTATIONS)


def mutate(request: AdmissionRequest, classes: ObjectCache | None) -> None:
    """DefaultStorageClass and StorageObjectInUseProtection on creation."""
    if request.operation != "CREATE":
        return
    for resource, finalizer in FINALIZERS.items():
        if _is_main(request, resource):
            assert request.object is not None
            metadata = request.object.setdefault("metadata", {})
            finalizers = metadata.setdefault("finalizers", [])
            if finalizer not in finalizers:
                finalizers.append(finalizer)
    if not _is_main(request, "persistentvolumeclaims") or classes is None:
        return
    assert request.object is not None
    spec = request.object.setdefault("spec", {})
    annotations = (request.object.get("metadata") or {}).get("annotations") or {}
    if spec.get("storageClassName") is not None or BETA_CLASS_ANNOTATION in annotations:
        return
    chosen = default_class(classes.list())
    if chosen is not None:
        spec["storageClassName"] = chosen["metadata"]["name"]


def _requested(claim: dict[str, Any] | None) -> Quantity | None:
    storage = (((claim or {}).get("spec") or {}).get("resources") or {}).get("requests") or {}
    try:
        return Quantity(storage["storage"]) if "storage" in storage else None
    except ValueError:
        return None


def validate(request: AdmissionRequest, classes: ObjectCache | None) -> list[str] | None:
    """PersistentVolumeClaimResize: growing a claim needs a class that allows it."""
    if request.operation != "UPDATE" or not _is_main(request, "persistentvolumeclaims"):
        return None
    new, old = _requested(request.object), _requested(request.old_object)
    if new is None or old is None or new <= old:
        return None
    spec = (request.object or {}).get("spec") or {}
    name = spec.get("storageClassName") or (
        ((request.object or {}).get("metadata") or {}).get("annotations") or {}
    ).get(BETA_CLASS_ANNOTATION)
    storage_class = classes.get(str(name)) if classes is not None and name else None
    if storage_class is None or storage_class.get("allowVolumeExpansion") is not True:
        return [RESIZE_REFUSED]
    return None
