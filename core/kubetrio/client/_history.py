"""Object history from the client side: reading it, the object as of a time, restoring a
revision, and a field-aware diff of two revisions (what ``kubetrio history`` and the
``kubectl history`` plugin show).

The server answers ``GET …/{name}/history`` with a ``RevisionList`` (newest first, paged)
and ``GET …/{name}/history/{revision}`` with one ``Revision``; see the API server's
``_history`` module for the shape.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ._errors import ClientError

if TYPE_CHECKING:
    from ._client import Client, KubeObject

RESTORE_MANAGER = "kubetrio-history"
"""The field manager a restore writes as."""

NOISE = (
    ("metadata", "managedFields"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("status", "observedGeneration"),
)
"""Fields every write changes that no diff or summary shows."""

_SERVER_METADATA = (
    "resourceVersion",
    "managedFields",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (``2026-12-07T15:00:00Z``; a time without a zone is UTC)."""
    stamp = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.UTC)


def _flatten(
    value: Any, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], Any]
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, (*path, k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten(v, (*path, i), out)
    else:
        out[path] = value


def _noise(path: tuple[str | int, ...]) -> bool:
    return any(path[: len(n)] == n for n in NOISE)


def field_path(path: tuple[str | int, ...]) -> str:
    """``("spec", "containers", 0, "image")`` → ``spec.containers[0].image``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def diff_revisions(
    old: KubeObject | None, new: KubeObject | None
) -> list[tuple[str, str, Any, Any]]:
    """The leaf fields that differ, as (op, path, old, new) with op ``+``, ``-`` or ``~``;
    managedFields, resourceVersion and generation left out."""
    before: dict[tuple[str | int, ...], Any] = {}
    after: dict[tuple[str | int, ...], Any] = {}
    _flatten(old or {}, (), before)
    _flatten(new or {}, (), after)
    changes = []
    for path in sorted(set(before) | set(after), key=lambda p: [str(x) for x in p]):
        if _noise(path):
            continue
        if path not in after:
            changes.append(("-", field_path(path), before[path], None))
        elif path not in before:
            changes.append(("+", field_path(path), None, after[path]))
        elif before[path] != after[path]:
            changes.append(("~", field_path(path), before[path], after[path]))
    return changes


def summarize_change(old: KubeObject | None, new: KubeObject | None, *, most: int = 3) -> str:
    """The changed fields in one line (``spec.replicas, spec.template…image``)."""
    if old is None:
        return "created"
    paths = [p for _, p, _, _ in diff_revisions(old, new)]
    if not paths:
        return "(no field changes)"
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


async def entries(
    client: Client, api_version: str, resource: str, name: str, *, namespace: str = ""
) -> AsyncIterator[KubeObject]:
    """Every kept revision, newest first, reading the pages as they are needed."""
    token = ""
    while True:
        page = await client.history(
            api_version, resource, name, namespace=namespace, limit=100, continue_token=token
        )
        for item in page.get("items") or []:
            yield item
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return


async def at_time(
    client: Client,
    api_version: str,
    resource: str,
    name: str,
    when: datetime.datetime,
    *,
    namespace: str = "",
) -> KubeObject:
    """The revision live at ``when``: the newest written at or before it.

    :raises ClientError: 404 when the object did not exist then (deleted, or not yet
        created), 410 when that is older than the history kept.
    """
    oldest = None
    async for item in entries(client, api_version, resource, name, namespace=namespace):
        oldest = item
        if parse_time(item["time"]) <= when:
            if item["type"] == "DELETED":
                break
            return item
    what = f'{resource} "{name}"'
    if oldest is not None and oldest["type"] != "ADDED" and parse_time(oldest["time"]) > when:
        raise ClientError(
            {
                "code": 410,
                "reason": "Expired",
                "message": f"{what} at {when.isoformat()} is older than the history kept; "
                f"the oldest kept revision is {oldest['revision']} of {oldest['time']}",
            }
        )
    raise ClientError(
        {
            "code": 404,
            "reason": "NotFound",
            "message": f"{what} did not exist at {when.isoformat()}",
        }
    )


def restorable(obj: KubeObject) -> KubeObject:
    """An object of a revision, made ready to be written again: server-set metadata and
    the status left out (the server sets them)."""
    obj = dict(obj)
    obj["metadata"] = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_METADATA
    }
    obj.pop("status", None)
    return obj


async def restore(
    client: Client,
    api_version: str,
    resource: str,
    name: str,
    revision: str | int,
    *,
    namespace: str = "",
    resource_version: str = "",
) -> KubeObject:
    """Write revision ``revision`` back: an update conditional on ``resource_version``
    (default: the object's current one, read just before), or a create when the object is
    gone. Both are ordinary, audited writes; a changed object answers 409."""
    entry = await client.history_revision(
        api_version, resource, name, revision, namespace=namespace
    )
    obj = restorable(entry["object"])
    current: KubeObject | None
    try:
        current = await client.get(api_version, resource, name, namespace=namespace)
    except ClientError as exc:
        if exc.code != 404:
            raise
        current = None
    if current is None and not resource_version:
        return await client.create(
            api_version, resource, obj, namespace=namespace, field_manager=RESTORE_MANAGER
        )
    expected = resource_version or (current or {}).get("metadata", {}).get("resourceVersion")
    obj["metadata"]["resourceVersion"] = str(expected)
    return await client.update(
        api_version, resource, obj, namespace=namespace, field_manager=RESTORE_MANAGER
    )


async def resolve(client: Client, name: str) -> tuple[str, str, bool]:
    """What kubectl would make of a resource name (``deploy``, ``deployment``,
    ``deployments.apps``, ``cm``, a kind): (apiVersion, plural resource, namespaced),
    from the preferred versions' discovery documents.

    :raises ClientError: 404 when nothing served has that name.
    """
    wanted = name.lower()
    plural, _, group = wanted.partition(".")
    lists = [await client.get_path("/api/v1")]
    for api_group in (await client.get_path("/apis")).get("groups") or []:
        preferred = (api_group.get("preferredVersion") or {}).get("groupVersion")
        if preferred and (not group or api_group.get("name") == group):
            try:
                lists.append(await client.get_path(f"/apis/{preferred}"))
            except ClientError:
                continue  # a group whose document cannot be read: kubectl skips it too
    for resource_list in lists:
        version = resource_list.get("groupVersion") or "v1"
        if group and version.rpartition("/")[0] != group:
            continue
        for r in resource_list.get("resources") or []:
            if "/" in r.get("name", ""):
                continue  # a subresource
            names = {r["name"], r.get("singularName", ""), r.get("kind", "").lower()}
            names |= set(r.get("shortNames") or [])
            if (plural if group else wanted) in names:
                return version, r["name"], bool(r.get("namespaced"))
    raise ClientError(
        {
            "code": 404,
            "reason": "NotFound",
            "message": f'the server doesn\'t have a resource type "{name}"',
        }
    )
