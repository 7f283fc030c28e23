"""Deleting a corrupt object through the API (KEP-3926's unsafe delete).

An object whose stored bytes cannot be decoded (damaged on disk, written by something
else) or that is larger than any object this server writes cannot be read, updated or
deleted the normal way: every one of those decodes it first. Kubernetes 1.32 added the
delete option ``ignoreStoreReadErrorWithClusterBreakingPotential``: with it, a user
allowed the verb ``unsafe-delete-ignore-read-errors`` on the resource removes the key
from the store without decoding it: no finalizers, no preconditions, no grace period,
no cleanup hooks (hence the name). An object that *can* be decoded is refused: the
option is only for objects the normal path cannot handle.

Reads name corrupt objects instead (see :func:`._registry.corruption`), so the user can
find them: a GET answers 500 naming the key, a LIST 500 ``StorageReadError`` naming up
to 100 keys.
"""

from __future__ import annotations

from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject
from kubetrio.store import Conflict, NotFound

from ._registry import Registry, corruption
from ._status import conflict, invalid, not_found

OPTION = "ignoreStoreReadErrorWithClusterBreakingPotential"
"""The delete option (query parameter or DeleteOptions field)."""
VERB = "unsafe-delete-ignore-read-errors"
"""The verb a user must be allowed on the resource to use :data:`OPTION`."""
MAX_STORED_BYTES = 3 << 19
"""Values larger than this (1.5 MiB, etcd's request limit and this server's write cap)
count as corrupt: decoding them is what takes a server down."""
_NOT_WITH = ("dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents")


def check_options(info: ResourceInfo, name: str, options: KubeObject, dry_run: bool) -> None:
    """422 when the unsafe delete is combined with options it ignores."""
    given = [f for f in _NOT_WITH if options.get(f) not in (None, "", [])]
    if dry_run and "dryRun" not in given:
        given.insert(0, "dryRun")
    if options.get("preconditions"):
        given.append("preconditions")
    if given:
        raise invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: can not be set together with {OPTION}",
                }
                for field in given
            ],
        )


async def unsafe_delete(
    registry: Registry, info: ResourceInfo, namespace: str, name: str
) -> KubeObject:
    """Remove the corrupt object's key without decoding it; a success Status."""
    key = registry.key(info, namespace, name)
    found = await registry.store.get(key)
    if found is None:
        raise not_found(info.resource, info.group, name)
    if len(found.value) <= MAX_STORED_BYTES and corruption(found.value) is None:
        raise invalid(
            info.resource,
            info.group,
            name,
            [
                {
                    "reason": "FieldValueInvalid",
                    "field": OPTION,
                    "message": "Invalid value: true: it is exclusively used to delete "
                    "corrupt object(s), try again by removing this option",
                }
            ],
        )
    try:
        await registry.store.delete(key, expected_revision=found.mod_revision)
    except NotFound as exc:
        raise not_found(info.resource, info.group, name) from exc
    except Conflict as exc:
        raise conflict(info.resource, info.group, name) from exc
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": info.group, "kind": info.resource},
    }
