"""The generic REST storage behind every resource: Kubernetes' object semantics on the store.

One :class:`Registry` serves every resource. It owns the key layout
(``/registry/<group or core>/<resource>/<namespace>/<name>``), server-set metadata
(uid, creationTimestamp, generation, generateName), resourceVersion preconditions,
the status and scale subresources, graceful and finalizer-blocked deletion with
propagation policies, list paging at one revision, and watches with selector-aware
ADDED/MODIFIED/DELETED translation.

Objects are plain JSON dicts here; typed validation happens before (``_admission``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator

import msgspec

from kubetrio import store as kv
from kubetrio.api import autoscaling, structural
from kubetrio.api.scheme import ResourceInfo
from kubetrio.kubeobject import KubeObject

from . import _limits
from . import _objects as objects
from ._status import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    expired,
    not_found,
)

ObjectFilter = Callable[[KubeObject], bool]
"""Label and field selectors compiled into one predicate."""
Mutation = Callable[[KubeObject], None]
"""Changes an object in place (a strategy step: admission, defaults)."""

GENERATE_NAME_TRIES = 8
"""Names drawn for a generateName before a collision is reported (as upstream retries)."""
PAGE_BATCH = 500
"""Keys fetched from the store per round while filling a filtered page."""
CORRUPT_CAUSES = 100
"""Corrupt keys named in a list's StorageReadError (as upstream caps them)."""


class _Probe(msgspec.Struct):
    """Decoding into a struct without fields checks the JSON syntax, building nothing."""


_probe = msgspec.json.Decoder(_Probe)


def corruption(value: bytes) -> str | None:
    """Why a stored value cannot be decoded as an object (None: it can).

    Values reach the store only through this server's encoder, so a failure means the
    bytes were damaged (or written by something else): such an object is *corrupt*, as
    KEP-3926 calls it, and reads name it instead of failing obscurely.
    """
    try:
        _probe.decode(value)
    except msgspec.DecodeError as exc:
        return str(exc)
    return None


def corrupt_object(key: bytes | str, revision: int, reason: str) -> ApiError:
    """The 500 a read of one corrupt object answers (wording as kube-apiserver's)."""
    name = key.decode(errors="replace") if isinstance(key, bytes) else key
    return ApiError(
        500,
        f"Internal error occurred: StorageError: corrupt object, Key: {name}, "
        f"ResourceVersion: {revision}, AdditionalErrorMsg: {reason}",
    )


def match_all(obj: KubeObject) -> bool:
    """The filter of a list or watch without selectors: reads and watches recognise it
    and pass the stored bytes on without decoding them."""
    return True


_match_all = match_all


@dataclasses.dataclass(frozen=True)
class ListPage:
    """A page of a list at one revision."""

    items: list[bytes]
    """Objects as JSON bytes, resourceVersion spliced in."""
    revision: int
    continue_token: str = ""
    remaining: int | None = None


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    """One event of a watch as it goes to the client."""

    type: str
    """ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""
    object: bytes
    revision: int


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation of the bookmark that ends a watch's initial events (watch-list)."""


def bookmark_object(
    info: ResourceInfo, revision: int, *, initial_events_end: bool = False
) -> bytes:
    """A BOOKMARK event's object: only the kind and the resourceVersion, as upstream."""
    metadata: KubeObject = {"resourceVersion": str(revision)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return objects.encode({"kind": info.kind, "apiVersion": info.api_version, "metadata": metadata})


def bookmark(info: ResourceInfo, revision: int) -> bytes:
    """A BOOKMARK watch event line."""
    return b'{"type":"BOOKMARK","object":' + bookmark_object(info, revision) + b"}\n"


class WatchProgress:
    """How far a :meth:`Registry.watch` has got in the store, for progress bookmarks."""

    def __init__(self) -> None:
        self._events: AsyncIterator[kv.Event] | None = None

    def revision(self) -> int | None:
        """Every change of the watched range up to this revision has been handed over
        (None: not known now — the watch is listing, or events wait in the store's)."""
        return None if self._events is None else kv.watch_progress(self._events)


def encode_continue(revision: int, key: bytes) -> str:
    """A continue token: the revision of the list and the last key returned."""
    raw = json.dumps({"v": "kubetrio/1", "rv": revision, "start": key.decode("utf-8", "replace")})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_continue(token: str) -> tuple[int, bytes]:
    """The (revision, last key) of a continue token; 400 when it is not ours."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        if raw.get("v") != "kubetrio/1":
            raise ValueError("unknown version")
        return int(raw["rv"]), str(raw["start"]).encode()
    except (ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from exc


class Registry:
    """Kubernetes object semantics over a :class:`~kubetrio.store.Store`."""

    def __init__(self, store: kv.Store) -> None:
        self.store = store
        self.on_deleted: dict[tuple[str, str], Callable[[KubeObject], Awaitable[None]]] = {}
        """Called with an object's last state once it is gone, by (group, resource)."""

    # --- keys ---------------------------------------------------------------------------

    @staticmethod
    def key(info: ResourceInfo, namespace: str, name: str) -> str:
        """The store key of one object."""
        return f"{Registry.prefix(info, namespace)}{name}"

    @staticmethod
    def prefix(info: ResourceInfo, namespace: str = "") -> str:
        """The key prefix of a resource, in one namespace or all of them."""
        base = f"/registry/{info.group or 'core'}/{info.resource}/"
        return f"{base}{namespace}/" if info.namespaced and namespace else base

    # --- reads --------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str, name: str) -> kv.KeyValue:
        """The stored version of an object, as ``info``'s version serves it; 404 when absent."""
        found = await self._get_stored(info, namespace, name)
        if serves_converted(info):  # one storage, served in each of the versions
            found = msgspec.structs.replace(found, value=_served(info, found.value))
        return found

    async def _get_stored(self, info: ResourceInfo, namespace: str, name: str) -> kv.KeyValue:
        """The object as stored; 404 when absent."""
        with readable():
            found = await self.store.get(self.key(info, namespace, name))
        if found is None:
            raise not_found(info.resource, info.group, name)
        reason = corruption(found.value)
        if reason is not None:
            raise corrupt_object(found.key, found.mod_revision, reason)
        return found

    async def get_object(self, info: ResourceInfo, namespace: str, name: str) -> KubeObject:
        """An object as a dict with its resourceVersion."""
        found = await self.get(info, namespace, name)
        return objects.decode_stored(found.value, found.mod_revision)

    async def list(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        matches: ObjectFilter = _match_all,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListPage:
        """A page of matching objects, all read at one revision.

        resourceVersion semantics: unset → the latest; ``0`` → any (served latest);
        ``N`` with ``resourceVersionMatch=Exact`` → exactly at N; ``N`` otherwise → not
        older than N. A continue token carries its own revision.
        """
        prefix = self.prefix(info, namespace)
        revision = 0
        start: bytes | None = None
        if continue_token:
            revision, last_key = decode_continue(continue_token)
            start = last_key + b"\x00"
            if not last_key.startswith(prefix.encode()):
                raise bad_request("continue key does not belong to this list")
        elif resource_version not in ("", "0"):
            wanted = _parse_resource_version(resource_version)
            current = await self.store.current_revision()
            if resource_version_match == "Exact":
                revision = wanted
            elif wanted > current:
                raise ApiError(
                    504,
                    f"Too large resource version: {wanted}, current: {current}",
                    reason="Timeout",
                    details={
                        "causes": [
                            {
                                "reason": "ResourceVersionTooLarge",
                                "message": "Too large resource version",
                            }
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
        items: list[bytes] = []
        corrupt: list[tuple[bytes, str]] = []
        try:
            while True:
                batch = PAGE_BATCH if (limit or matches is not _match_all) else 0
                with readable():
                    page = await self.store.list(
                        prefix, revision=revision, limit=batch, continue_key=start
                    )
                revision = page.revision
                for entry in page.kvs:
                    reason = corruption(entry.value)
                    if reason is not None:
                        # Keep reading: the error names every corrupt key (up to a cap).
                        corrupt.append((entry.key, reason))
                        start = entry.key + b"\x00"
                        continue
                    if corrupt:
                        start = entry.key + b"\x00"
                        continue
                    if matches is not _match_all:
                        obj = objects.decode_stored(entry.value, entry.mod_revision)
                        if not matches(obj):
                            start = entry.key + b"\x00"
                            continue
                    value = entry.value
                    if serves_converted(info):
                        value = _served(info, value)
                    items.append(objects.with_resource_version(value, entry.mod_revision))
                    start = entry.key + b"\x00"
                    if limit and len(items) >= limit:
                        more = page.more or entry is not page.kvs[-1]
                        token = encode_continue(revision, entry.key) if more else ""
                        return ListPage(items, revision, token)
                if not page.more or len(corrupt) >= CORRUPT_CAUSES:
                    if corrupt:
                        raise store_read_error(info, prefix, corrupt)
                    return ListPage(items, revision)
        except kv.Compacted as exc:
            if continue_token:
                raise ApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                    reason="Expired",
                ) from exc
            raise expired(revision, exc.compact_revision) from exc
        except kv.FutureRevision as exc:
            raise ApiError(
                504,
                f"Too large resource version: {revision}",
                reason="Timeout",
                details={"retryAfterSeconds": 1},
            ) from exc

    async def current_revision(self) -> int:
        """The store's latest revision (a list's resourceVersion when it has no items)."""
        return await self.store.current_revision()

    # --- writes -------------------------------------------------------------------------

    async def create(
        self, info: ResourceInfo, namespace: str, obj: KubeObject, *, dry_run: bool = False
    ) -> KubeObject:
        """Store a new object; server-set metadata is filled in here."""
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = objects.generate_name(metadata["generateName"])
        name = metadata.get("name", "")
        # The server may have drawn the uid already (defaults that name it, like a Job's
        # selector); anything a client sent was dropped before this point.
        metadata["uid"] = metadata.get("uid") or objects.new_uid()
        metadata["creationTimestamp"] = objects.now_rfc3339()
        # Only objects with a spec track generations, as Kubernetes; custom ones all do.
        if "spec" in obj or info.custom is not None:
            metadata["generation"] = 1
        for server_only in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            metadata.pop(server_only, None)
        if info.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        value = objects.encode_for_store(_to_storage(info, obj))
        _limits.check_storable(obj, value, _what(info, name))
        if dry_run:
            if await self.store.get(self.key(info, namespace, name)) is not None:
                raise already_exists(info.resource, info.group, name)
            return _round_trip(info, obj)
        generated = bool(metadata.get("generateName")) and name.startswith(
            metadata.get("generateName", "")
        )
        for attempt in range(GENERATE_NAME_TRIES if generated else 1):
            try:
                created = await self.store.create(self.key(info, namespace, name), value)
                break
            except kv.AlreadyExists as exc:
                if attempt + 1 >= (GENERATE_NAME_TRIES if generated else 1):
                    raise already_exists(info.resource, info.group, name) from exc
                # A generated name collided (5 random characters): draw another one.
                name = metadata["name"] = objects.generate_name(metadata["generateName"])
                value = objects.encode_for_store(_to_storage(info, obj))
        metadata["resourceVersion"] = str(created.mod_revision)
        return _round_trip(info, obj)

    async def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        change: Callable[[KubeObject], Awaitable[KubeObject]],
        *,
        precondition_from_body: bool = True,
        dry_run: bool = False,
        server_fields: tuple[str, ...] = (),
    ) -> KubeObject:
        """Read-modify-write with compare-and-swap, as upstream's ``GuaranteedUpdate``.

        ``change`` gets the current object and returns the new one. When the new object
        carries a resourceVersion (and ``precondition_from_body``), it must match the
        stored one or the update fails with 409: that is the client's precondition.
        Otherwise a concurrent write never fails the update: it runs ``change`` again on
        the fresh object, as often as it takes (and ``change`` may raise to refuse).
        Server-owned metadata is kept from the stored object except ``server_fields``,
        which the server itself is changing (deletionTimestamp when marking a deletion;
        ``finalizers`` when it swaps the garbage collector's on a repeated delete).
        """
        key = self.key(info, namespace, name)
        while True:
            stored = await self._get_stored(info, namespace, name)
            current = stored
            if serves_converted(info):
                current = msgspec.structs.replace(stored, value=_served(info, stored.value))
            old = objects.decode_stored(current.value, current.mod_revision)
            # A large stored object makes the change heavy whatever the body's size.
            weight = _limits.weigh(len(current.value))
            try:
                # Decoded twice rather than deep-copied: msgspec is many times faster.
                new = await change(objects.decode_stored(current.value, current.mod_revision))
            finally:
                _limits.WEIGHT.reset(weight)
            wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
            body_rv_given = precondition_from_body and wanted_rv not in (None, "")
            if body_rv_given and str(wanted_rv) != str(current.mod_revision):
                raise conflict(info.resource, info.group, name)
            _keep_server_metadata(old, new, info, server_fields)
            if "generation" in old["metadata"] and _spec_changed(old, new, info):
                new["metadata"]["generation"] = int(old["metadata"]["generation"]) + 1
            if _finalized(old, new):
                # The last finalizer went away from an object being deleted: delete it.
                gone = await self._delete_now(info, namespace, name, current, dry_run=dry_run)
                if gone is None:
                    continue  # it changed meanwhile: look again
                return gone
            value = objects.encode_for_store(_to_storage(info, new))
            # Nothing changed: no new revision, as Kubernetes — unless the stored value is
            # encrypted with an older key, which a rewrite moves to the current one.
            baseline = stored.value if _converter(info) is not None else current.value
            if value == baseline and not isinstance(current, kv.StaleKeyValue):
                return old
            # An object stored before the limit (or under a larger one) may still lose
            # its finalizers, be marked deleted or shrink.
            _limits.check_storable(new, value, _what(info, name), stored=len(current.value))
            if dry_run:  # what would be stored, at the revision it would replace
                new["metadata"]["resourceVersion"] = str(current.mod_revision)
                return _round_trip(info, new)
            try:
                updated = await self.store.update(
                    key, value, expected_revision=current.mod_revision
                )
            except kv.Conflict:
                # Written meanwhile: run ``change`` on the fresh object; a client's
                # resourceVersion precondition is checked against it there.
                continue
            except kv.NotFound as exc:
                raise not_found(info.resource, info.group, name) from exc
            except kv.Undecryptable as exc:
                raise undecryptable(exc) from None
            new["metadata"]["resourceVersion"] = str(updated.mod_revision)
            return _round_trip(info, new)

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        *,
        options: KubeObject,
        dry_run: bool = False,
    ) -> tuple[KubeObject, bool]:
        """Delete an object; return (its last state, whether it is gone now).

        Objects with finalizers, or deleted with ``Foreground``/``Orphan`` propagation, get
        a deletionTimestamp and stay until their finalizers are removed. Pods bound to a
        node with a grace period stay until the node agent confirms they stopped.

        Only ``options.preconditions`` (uid, resourceVersion) can make a delete fail with
        409: a write that lands between our read and our delete makes it look again.
        """
        preconditions = options.get("preconditions") or {}
        while True:
            current = await self.get(info, namespace, name)
            obj = objects.decode_stored(current.value, current.mod_revision)
            check_preconditions(info, name, obj, preconditions)
            metadata = obj["metadata"]
            policy = options.get("propagationPolicy") or ""
            if options.get("orphanDependents") is True:
                policy = "Orphan"
            finalizers = list(metadata.get("finalizers") or [])
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            grace = _grace_period(info, obj, options)
            if finalizers or grace:
                break
            gone = await self._delete_now(info, namespace, name, current, dry_run=dry_run)
            if gone is not None:
                return gone, True
        if metadata.get("deletionTimestamp"):
            # Already being deleted: only an explicit propagation policy changes anything,
            # swapping the garbage collector's finalizers as upstream's
            # shouldUpdateFinalizers does (e.g. ``kubectl delete --cascade=orphan`` again).
            if not policy:
                return obj, False
            wanted = [f for f in finalizers if f not in GC_FINALIZERS.get(policy, ())]
            if wanted == list(metadata.get("finalizers") or []):
                return obj, False

            async def swap(latest: KubeObject) -> KubeObject:
                check_preconditions(info, name, latest, preconditions)
                present = list(latest["metadata"].get("finalizers") or [])
                present = [f for f in present if f not in GC_FINALIZERS.get(policy, ())]
                present += [f for f in wanted if f not in present]
                latest["metadata"]["finalizers"] = present
                latest["metadata"].pop("resourceVersion", None)
                return latest

            swapped = await self.update(
                info,
                namespace,
                name,
                swap,
                precondition_from_body=False,
                dry_run=dry_run,
                server_fields=("finalizers",),  # the server's own GC finalizers may be added
            )
            return swapped, False

        async def mark(latest: KubeObject) -> KubeObject:
            check_preconditions(info, name, latest, preconditions)
            latest_meta = latest["metadata"]
            latest_meta["deletionTimestamp"] = objects.now_rfc3339()
            latest_meta["deletionGracePeriodSeconds"] = grace or 0
            present = list(latest_meta.get("finalizers") or [])
            present += [f for f in finalizers if f not in present]
            if present:
                latest_meta["finalizers"] = present
            latest_meta.pop("resourceVersion", None)
            return latest

        marked = await self.update(
            info,
            namespace,
            name,
            mark,
            precondition_from_body=False,
            dry_run=dry_run,
            server_fields=("deletionTimestamp", "deletionGracePeriodSeconds"),
        )
        return marked, False

    async def _delete_now(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        current: kv.KeyValue,
        *,
        dry_run: bool,
    ) -> KubeObject | None:
        """Remove exactly the version ``current``; None when it changed meanwhile."""
        obj = objects.decode_stored(current.value, current.mod_revision)
        if dry_run:
            return obj
        try:
            deleted = await self.store.delete(
                self.key(info, namespace, name), expected_revision=current.mod_revision
            )
        except kv.NotFound as exc:
            raise not_found(info.resource, info.group, name) from exc
        except kv.Conflict:
            return None  # written meanwhile: the caller reads it again and decides anew
        obj["metadata"]["resourceVersion"] = str(deleted.revision)
        hook = self.on_deleted.get((info.group, info.resource))
        if hook is not None:
            await hook(obj)
        return obj

    # --- watch --------------------------------------------------------------------------

    async def watch(
        self,
        info: ResourceInfo,
        namespace: str,
        *,
        matches: ObjectFilter = _match_all,
        resource_version: str = "",
        initial_events: bool | None = None,
        progress: WatchProgress | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events of a resource in order, translated through the selectors.

        With resourceVersion unset or ``0`` the watch starts with an ADDED event for each
        matching object (a list at one revision), then goes on from that revision. With
        ``N``, every change after ``N``. A compacted ``N`` yields one ERROR event (410
        Expired) and ends, as kube-apiserver's watch cache does.

        ``initial_events`` is ``sendInitialEvents`` (watch-list, resourceVersionMatch
        NotOlderThan): True lists the state at the newest revision (not older than ``N``),
        sends it as ADDED events and then a BOOKMARK annotated
        ``k8s.io/initial-events-end``; False starts at ``N`` (or now) without them.
        ``progress`` learns the store's watch once it is open.
        """
        prefix = self.prefix(info, namespace)
        start = 0
        if initial_events or (initial_events is None and resource_version in ("", "0")):
            try:
                page = await self.list(info, namespace, matches=matches)
            except ApiError as exc:  # headers are sent: the stream says it, in an ERROR event
                yield WatchEvent("ERROR", objects.encode(exc.status()), 0)
                return
            for item in page.items:
                yield WatchEvent("ADDED", item, page.revision)
            if initial_events:
                end = bookmark_object(info, page.revision, initial_events_end=True)
                yield WatchEvent("BOOKMARK", end, page.revision)
            start = page.revision + 1
        elif resource_version not in ("", "0"):
            start = _parse_resource_version(resource_version) + 1
        try:
            async with self.store.watch(prefix, prefix=True, revision=start) as events:
                if progress is not None:
                    progress._events = events
                async for event in events:
                    translated = _translate(event, matches)
                    if translated is not None:
                        if serves_converted(info):
                            translated = WatchEvent(
                                translated.type,
                                _served(info, translated.object),
                                translated.revision,
                            )
                        yield translated
        except kv.Compacted as exc:
            yield WatchEvent(
                "ERROR",
                objects.encode(expired(start - 1, exc.compact_revision).status()),
                exc.current_revision,
            )
        except kv.Undecryptable as exc:  # the watch ends with the error, as upstream's
            yield WatchEvent("ERROR", objects.encode(undecryptable(exc).status()), start)
        finally:
            if progress is not None:
                progress._events = None


def undecryptable(exc: kv.Undecryptable) -> ApiError:
    """A stored value no configured key decrypts, as a 500 naming the object."""
    parts = exc.key.decode(errors="replace").split("/")  # /registry/<group>/<resource>/...
    what = f"{parts[3]}{'' if parts[2] == 'core' else '.' + parts[2]}" if len(parts) > 4 else ""
    name = parts[-1]
    scope = f' in the namespace "{parts[4]}"' if len(parts) > 5 else ""
    return ApiError(
        500,
        f'Internal error occurred: {what} "{name}"{scope} cannot be decrypted '
        f"(store key {'/'.join(parts)}): {exc.reason}",
        details={"name": name, "kind": parts[3] if len(parts) > 4 else ""},
    )


@contextlib.contextmanager
def readable() -> Iterator[None]:
    """Turns :class:`~kubetrio.store.Undecryptable` into that 500."""
    try:
        yield
    except kv.Undecryptable as exc:
        raise undecryptable(exc) from None


def store_read_error(info: ResourceInfo, prefix: str, corrupt: list[tuple[bytes, str]]) -> ApiError:
    """The 500 ``StorageReadError`` of a list that met corrupt objects, naming their keys."""
    return ApiError(
        500,
        f"failed to read one or more {info.resource} from the storage",
        reason="StorageReadError",
        details={
            "name": prefix,
            "kind": info.resource,
            "causes": [
                {
                    "reason": "UnexpectedServerResponse",
                    "message": reason,
                    "field": key.decode(errors="replace"),
                }
                for key, reason in corrupt[:CORRUPT_CAUSES]
            ],
        },
    )


_CONVERTERS: dict[
    tuple[str, str, str],
    tuple[Callable[[KubeObject], KubeObject], Callable[[KubeObject], KubeObject]],
] = {
    ("autoscaling", "v1", "horizontalpodautoscalers"): (autoscaling.to_v1, autoscaling.to_v2),
}
"""Built-in versions served by conversion from the stored one: (group, version, resource)
→ (stored → served, served → stored). HPAs are stored as autoscaling/v2, as upstream."""


def _converter(
    info: ResourceInfo,
) -> tuple[Callable[[KubeObject], KubeObject], Callable[[KubeObject], KubeObject]] | None:
    return _CONVERTERS.get((info.group, info.version, info.resource))


def serves_converted(info: ResourceInfo) -> bool:
    """Whether objects are served otherwise than stored (custom resources in each of
    their versions, autoscaling/v1 HorizontalPodAutoscalers)."""
    return info.custom is not None or _converter(info) is not None


def _to_storage(info: ResourceInfo, obj: KubeObject) -> KubeObject:
    """An object in the form it is stored in (converted to the storage version)."""
    converter = _converter(info)
    return obj if converter is None else converter[1](obj)


def _round_trip(info: ResourceInfo, obj: KubeObject) -> KubeObject:
    """A written object as a read would serve it (through the storage version and back,
    as upstream answers a write with the stored object in the request's version)."""
    converter = _converter(info)
    return obj if converter is None else converter[0](converter[1](obj))


def _served(info: ResourceInfo, data: bytes) -> bytes:
    """An object as ``info``'s version serves it. A built-in version served by conversion
    is converted; a custom resource gets that version's ``apiVersion`` (conversion None)
    and, when its schema has defaults, those filled in, as apiextensions-apiserver also
    defaults objects read from storage."""
    converter = _converter(info)
    if converter is not None:
        return objects.encode(converter[0](objects.decode(data)))
    data = objects.with_api_version(data, info.api_version)
    if info.custom is not None and info.custom.defaulted and info.schema is not None:
        obj = objects.decode(data)
        structural.default(obj, info.schema)
        data = objects.encode(obj)
    return data


def _what(info: ResourceInfo, name: str) -> str:
    """How size and depth refusals name the object: ``configmaps "big"``."""
    resource = f"{info.resource}.{info.group}" if info.group else info.resource
    return f'{resource} "{name}"'


def check_preconditions(
    info: ResourceInfo, name: str, obj: KubeObject, preconditions: KubeObject
) -> None:
    """A client's DeleteOptions.preconditions against the object as it is now; 409 if unmet."""
    metadata = obj.get("metadata") or {}
    uid = preconditions.get("uid")
    if uid and uid != metadata.get("uid"):
        raise conflict(
            info.resource,
            info.group,
            name,
            f"Precondition failed: UID in precondition: {uid}, "
            f"UID in object meta: {metadata.get('uid')}",
        )
    rv = preconditions.get("resourceVersion")
    if rv and str(rv) != str(metadata.get("resourceVersion")):
        raise conflict(
            info.resource,
            info.group,
            name,
            f"Precondition failed: resourceVersion in precondition: {rv}, "
            f"resourceVersion in object meta: {metadata.get('resourceVersion')}",
        )


def _translate(event: kv.Event, matches: ObjectFilter) -> WatchEvent | None:
    """A store event as a client sees it through its selectors.

    The object goes out as its stored bytes with the resourceVersion spliced in (as reads
    send it), not decoded and encoded again: every watcher of a resource translates every
    event, so this runs (watchers x writes) times. An unfiltered watch decodes nothing; a
    filtered one decodes to match, through :func:`_decoded`, which all watchers share.
    """
    revision = event.revision
    if event.type == kv.EventType.DELETE:
        prev = event.prev_kv
        if prev is None:
            return None
        if corruption(prev.value) is not None:
            # A corrupt object was deleted (unsafe delete): there is no last state to
            # send; an ERROR makes clients list again, as kube-apiserver's watch does.
            key = prev.key.decode(errors="replace")
            error = ApiError(
                500,
                f"saw a DELETED event, but object data is corrupt - key: {key}",
                reason="StorageReadError",
            )
            return WatchEvent("ERROR", objects.encode(error.status()), revision)
        if matches is _match_all or matches(_decoded(prev.value)):
            return WatchEvent(
                "DELETED", objects.with_resource_version(prev.value, revision), revision
            )
        return None
    now_bytes = objects.with_resource_version(event.kv.value, revision)
    if matches is _match_all:
        return WatchEvent("ADDED" if event.prev_kv is None else "MODIFIED", now_bytes, revision)
    now_matches = matches(_decoded(event.kv.value))
    if event.prev_kv is None:
        return WatchEvent("ADDED", now_bytes, revision) if now_matches else None
    before_matches = matches(_decoded(event.prev_kv.value))
    if now_matches:
        return WatchEvent("MODIFIED" if before_matches else "ADDED", now_bytes, revision)
    if before_matches:  # it left the selection: to this watcher, it is gone
        return WatchEvent("DELETED", now_bytes, revision)
    return None


_DECODED_KEPT = 256
"""Stored values whose decoding :func:`_decoded` keeps (a few batches of events)."""
_decoded_values: dict[int, tuple[bytes, KubeObject]] = {}


def _decoded(value: bytes) -> KubeObject:
    """``value`` decoded for a selector to read (without its resourceVersion, which no
    selector looks at), once for all watchers: the store hands every watcher of a range
    the same event, so its bytes are the same object. The bytes are kept beside their
    decoding, so their ``id`` cannot be reused while the entry lives. Callers must not
    change what they get."""
    kept = _decoded_values.get(id(value))
    if kept is not None and kept[0] is value:
        return kept[1]
    obj: KubeObject = objects.decode(value)
    _decoded_values[id(value)] = (value, obj)
    if len(_decoded_values) > _DECODED_KEPT:
        del _decoded_values[next(iter(_decoded_values))]
    return obj


def _parse_resource_version(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f'invalid resource version "{text}"') from None
    if value < 0:
        raise bad_request(f'invalid resource version "{text}"')
    return value


_IMMUTABLE_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
)


GC_FINALIZERS = {
    "Orphan": ("foregroundDeletion",),
    "Foreground": ("orphan",),
    "Background": ("orphan", "foregroundDeletion"),
}
"""The garbage collector's finalizers a propagation policy removes from an object that is
already being deleted (the one it asks for is added)."""


def _keep_server_metadata(
    old: KubeObject, new: KubeObject, info: ResourceInfo, server_fields: tuple[str, ...]
) -> None:
    """Server-owned metadata survives any client write; clients can't forge it."""
    new_meta = new.setdefault("metadata", {})
    old_meta = old["metadata"]
    for field in _IMMUTABLE_METADATA:
        if field in server_fields:
            continue
        if field in old_meta:
            new_meta[field] = old_meta[field]
        else:
            new_meta.pop(field, None)
    new_meta.pop("resourceVersion", None)
    new["apiVersion"] = old.get("apiVersion", new.get("apiVersion"))
    new["kind"] = old.get("kind", new.get("kind"))
    if old_meta.get("deletionTimestamp") and "finalizers" not in server_fields:
        added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            raise ApiError(
                422,
                f'{info.kind} "{old_meta.get("name")}" is invalid: metadata.finalizers: '
                f"Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {sorted(added)}",
                reason="Invalid",
            )


def _spec_changed(old: KubeObject, new: KubeObject, info: ResourceInfo | None = None) -> bool:
    """Whether anything but metadata and status changed (what bumps ``generation``); a
    custom resource without a status subresource counts its status too, as upstream."""
    ignored = {"metadata", "status", "apiVersion", "kind"}
    if info is not None and info.custom is not None and "status" not in info.subresources:
        ignored.discard("status")
    keys = (set(old) | set(new)) - ignored
    return any(old.get(k) != new.get(k) for k in keys)


def _finalized(old: KubeObject, new: KubeObject) -> bool:
    """Whether a write removed the last finalizer of an object being deleted."""
    old_meta = old.get("metadata") or {}
    new_meta = new.get("metadata") or {}
    return (
        bool(old_meta.get("deletionTimestamp"))
        and bool(old_meta.get("finalizers"))
        and not new_meta.get("finalizers")
    )


def _grace_period(info: ResourceInfo, obj: KubeObject, options: KubeObject) -> int:
    """Seconds a deletion waits for the workload to stop: only bound, running pods wait."""
    if info.group != "" or info.resource != "pods":
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0  # nothing runs it: gone at once, as Kubernetes does
    grace = options.get("gracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    try:
        return max(int(grace), 0)
    except (TypeError, ValueError):
        raise bad_request("gracePeriodSeconds must be an integer") from None
