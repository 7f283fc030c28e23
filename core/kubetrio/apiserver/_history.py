"""Object history as a read-only subresource: ``…/{resource}/{name}/history[/{revision}]``.

``GET …/history`` answers a ``RevisionList`` (group ``history.kubetrio.io/v1``), newest
first, paged with ``limit`` and ``continue``: one ``Revision`` per kept version with its
``revision``, ``type`` (ADDED, MODIFIED, DELETED), ``time``, ``user`` (username, groups),
``verb``, ``subresource``, ``fieldManager``, ``userAgent`` and the ``object`` as it was
(for a deletion, its last state). ``GET …/history/{revision}`` answers the one
``Revision`` live at that revision: the object as it was then. Deleted objects keep their
history (the store keeps their tombstones).

Who wrote a version is the store's *note* (``kubetrio.store.noted``), which
:func:`write_note` makes for every request before the registry writes.

Authorization: ``get`` on ``<resource>/history`` (upstream's convention: a subresource
needs its own rule) *and* ``get`` on the object itself, since its history holds it.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import msgspec

from kubetrio import store as kv
from kubetrio.api.scheme import ResourceInfo
from kubetrio.handler import Request, Response
from kubetrio.kubeobject import KubeObject
from kubetrio.providers import UserInfo

from . import _managed
from . import _objects as objects
from ._registry import (
    Registry,
    _served,
    corrupt_object,
    corruption,
    readable,
    serves_converted,
)
from ._status import ApiError, bad_request, not_found, qualified

API_VERSION = "history.kubetrio.io/v1"
LIST_KIND = "RevisionList"
KIND = "Revision"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
DEFAULT_LIMIT = 500
"""Revisions per page when the request names no ``limit`` (history can be long: a page
never is; the rest follows with ``continue``)."""


class Note(msgspec.Struct, omit_defaults=True):
    """Who wrote a version and how, as stored beside it."""

    user: str = ""
    groups: list[str] = msgspec.field(default_factory=list)
    verb: str = ""
    subresource: str = ""
    manager: str = ""
    userAgent: str = ""


_note_decoder = msgspec.json.Decoder(Note)


def write_note(request: Request, user: UserInfo, verb: str, subresource: str) -> bytes:
    """The note of a request's writes (empty for reads, which write nothing)."""
    if verb not in WRITE_VERBS:
        return b""
    try:
        manager = _managed.manager_of(request)
    except ApiError:  # refused later, with its own message
        manager = ""
    return msgspec.json.encode(
        Note(
            user=user.name,
            groups=list(user.groups),
            verb=verb,
            subresource=subresource,
            manager=manager,
            userAgent=request.headers.get("user-agent", ""),
        )
    )


def _time(seconds: float) -> str:
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _item(info: ResourceInfo, entry: kv.HistoryEntry) -> KubeObject:
    value = entry.kv.value
    reason = corruption(value)
    if reason is not None:
        raise corrupt_object(entry.kv.key, entry.revision, reason)
    if serves_converted(info):
        value = _served(info, value)
    note = Note()
    if entry.note:
        try:
            note = _note_decoder.decode(entry.note)
        except msgspec.DecodeError:
            note = Note(user=entry.note.decode(errors="replace"))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "revision": str(entry.revision),
        "type": entry.type,
        "time": _time(entry.time) if entry.time else None,
        "user": {"username": note.user, "groups": note.groups},
        "verb": note.verb,
        "subresource": note.subresource,
        "fieldManager": note.manager,
        "userAgent": note.userAgent,
        "object": objects.decode_stored(value, entry.revision),
    }


def _encode_continue(before: int) -> str:
    raw = json.dumps({"v": "kubetrio-history/1", "before": before}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> int:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        if raw.get("v") != "kubetrio-history/1":
            raise ValueError("unknown version")
        return int(raw["before"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from exc


def _history_store(registry: Registry) -> kv.HistoryStore:
    store = registry.store
    if not isinstance(store, kv.HistoryStore):
        raise ApiError(
            501,
            f"this server's store ({type(store).__name__}) keeps no object history",
            reason="NotImplemented",
        )
    return store


async def _page(registry: Registry, key: str, *, before: int = 0, limit: int = 0) -> kv.HistoryPage:
    try:
        with readable():
            return await _history_store(registry).history(key, before=before, limit=limit)
    except kv.HistoryUnsupported as exc:
        raise ApiError(501, str(exc), reason="NotImplemented") from None


async def serve(
    registry: Registry,
    request: Request,
    info: ResourceInfo,
    namespace: str,
    name: str,
    revision: str,
) -> Response:
    """Answer ``GET …/history`` (``revision`` empty) or ``GET …/history/{revision}``."""
    key = registry.key(info, namespace, name)
    if revision:
        return await _one(registry, info, key, name, revision)
    limit = request.param("limit")
    try:
        asked = int(limit) if limit else 0
    except ValueError:
        asked = -1
    if asked < 0:
        raise bad_request(f'invalid limit "{limit}"')
    page_size = min(asked, DEFAULT_LIMIT) if asked else DEFAULT_LIMIT
    token = request.param("continue")
    before = _decode_continue(token) if token else 0
    page = await _page(registry, key, before=before, limit=page_size)
    if not page.entries and not before:
        raise not_found(info.resource, info.group, name)
    metadata: dict[str, Any] = {"resourceVersion": str(await registry.current_revision())}
    if page.next_before:
        metadata["continue"] = _encode_continue(page.next_before)
    body = {
        "apiVersion": API_VERSION,
        "kind": LIST_KIND,
        "metadata": metadata,
        "items": [_item(info, e) for e in page.entries],
    }
    return Response(body=objects.encode(body))


async def _one(
    registry: Registry, info: ResourceInfo, key: str, name: str, revision: str
) -> Response:
    try:
        wanted = int(revision)
    except ValueError:
        wanted = -1
    if wanted <= 0:
        raise bad_request(f'invalid revision "{revision}": must be a positive resourceVersion')
    page = await _page(registry, key, before=wanted + 1, limit=1)
    what = f'{qualified(info.resource, info.group)} "{name}"'
    if not page.entries:
        if page.oldest == 0:
            raise not_found(info.resource, info.group, name)
        raise ApiError(
            410,
            f"revision {wanted} of {what} is no longer kept (history retention); "
            f"the oldest kept revision is {page.oldest}",
            reason="Expired",
            details={"name": name, "kind": info.resource, "group": info.group},
        )
    entry = page.entries[0]
    if entry.type == "DELETED" and entry.revision < wanted:
        raise ApiError(
            404,
            f"{what} did not exist at revision {wanted} (deleted at {entry.revision})",
            reason="NotFound",
            details={"name": name, "kind": info.resource, "group": info.group},
        )
    return Response(body=objects.encode(_item(info, entry)))
