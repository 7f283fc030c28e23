"""etcd backend: the same contract on etcd 3.4, through its JSON gRPC gateway, trio-native.

etcd serves its v3 API as JSON on the client port (``/v3/kv/range``, ``/v3/kv/txn``,
``/v3/kv/compaction``, ``/v3/watch``; bytes are base64, int64s are strings). A small
keep-alive HTTP/1.1 client on trio streams talks to it (see ``_http.py`` for why not httpx),
so no asyncio or gRPC library is involved. JSON is decoded with msgspec straight into
:class:`KeyValue` (its field names are etcd's).

Writes are single transactions, exactly as Kubernetes' etcd3 store does them::

    create:  if mod_revision(key) == 0        then put              else range(key)
    update:  if mod_revision(key) == expected then put (prev_kv)    else range(key)
    delete:  if mod_revision(key) == expected then delete (prev_kv) else range(key)

so a failed compare returns the current version in the same round trip (for ``Conflict``).

**Endpoints and failures.** Requests go to one endpoint at a time; when it refuses the
connection the next one is tried (always safe: nothing was sent). A read is also retried
after a broken or timed-out exchange or a "no leader" answer; a write is not — its outcome is
unknown, so it raises :class:`Unavailable` and the caller decides (re-read, then retry).

**Watches.** One upstream watch on the whole keyspace (``prev_kv`` on), opened at the first
watch, feeds a :class:`WatchHub`, so a thousand watchers cost one stream and one decode per
event. The hub's
ring serves watchers that start at or after the store opened (or fall behind, within the
ring); a watcher that needs older history switches to its own upstream watch from the exact
revision it has reached, so it still gets every event, and etcd reports compaction to it.
If the upstream watch breaks, it is reopened on the next endpoint from the last revision seen.

**History.** Every write also puts the key's *note* (``/kubetrio/notes/<key>``: the commit
time and who wrote it, see ``_history``) in the same transaction, so the note's versions
share the object's revisions. :meth:`EtcdStore.history` walks them back through etcd's
own multi-version store (one or two ranges per version) until etcd's compaction; notes are
never sent to watchers. Retention is etcd's compaction (``--auto-compaction-*``).
"""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import trio

from ._errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    FutureRevision,
    NotFound,
    StoreError,
    Unavailable,
    WatchClosed,
)
from ._history import WRITE_NOTE, HistoryEntry, HistoryPage
from ._http import ConnectFailed, GatewayClient, Lines, TransportFailed
from ._protocol import Deleted, Event, EventType, Key, KeyValue, ListResult, as_key, prefix_end
from ._watch import HistoryUnavailable, Subscription, WatchHub

# -- the gateway's JSON, as msgspec structs (unknown fields are ignored) ---------------------


class _Header(msgspec.Struct):
    revision: int = 0


class _RangeResponse(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    kvs: list[KeyValue] = msgspec.field(default_factory=list)
    more: bool = False
    count: int = 0


class _PutResponse(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    prev_kv: KeyValue | None = None


class _DeleteResponse(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    deleted: int = 0
    prev_kvs: list[KeyValue] = msgspec.field(default_factory=list)


class _ResponseOp(msgspec.Struct):
    response_range: _RangeResponse | None = None
    response_put: _PutResponse | None = None
    response_delete_range: _DeleteResponse | None = None


class _TxnResponse(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    succeeded: bool = False
    responses: list[_ResponseOp] = msgspec.field(default_factory=list)


class _WatchEvent(msgspec.Struct):
    kv: KeyValue
    type: str = "PUT"
    prev_kv: KeyValue | None = None


class _WatchResult(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[_WatchEvent] = msgspec.field(default_factory=list)


class _WatchMessage(msgspec.Struct):
    result: _WatchResult | None = None
    error: dict[str, Any] | None = None


class _GatewayError(msgspec.Struct):
    code: int = 0
    message: str = ""
    error: str = ""


# int64s arrive as strings: strict=False lets msgspec convert them.
_range_decoder = msgspec.json.Decoder(_RangeResponse, strict=False)
_txn_decoder = msgspec.json.Decoder(_TxnResponse, strict=False)
_watch_decoder = msgspec.json.Decoder(_WatchMessage, strict=False)
_error_decoder = msgspec.json.Decoder(_GatewayError, strict=False)
_encode = msgspec.json.Encoder().encode  # bytes become base64, as the gateway wants

# As range_end: "every key >= key"; as key too (etcd refuses an empty one): with that
# range_end, every key there is — what an empty prefix means in the Store contract.
_ALL_KEYS = b"\x00"
_RETRYABLE_MESSAGES = ("no leader", "leader changed", "timed out", "not capable", "unavailable")


def _b(data: bytes) -> bytes:
    """bytes for the JSON encoder (it base64-encodes bytes)."""
    return data


NOTES = b"/kubetrio/notes"
"""Prefix of the note keys (outside ``/registry/``: no list or registry watch meets them)."""


def _note_put(key: bytes) -> dict[str, Any]:
    """The request that records who writes ``key`` now, for the write's transaction."""
    value = b"%.6f\n" % time.time() + WRITE_NOTE.get()
    return {"request_put": {"key": _b(NOTES + key), "value": _b(value)}}


def _is_note(e: _WatchEvent) -> bool:
    return e.kv.key.startswith(NOTES)


def _to_event(e: _WatchEvent) -> Event:
    if e.type == "DELETE":
        return Event(EventType.DELETE, KeyValue(e.kv.key, b"", 0, e.kv.mod_revision), e.prev_kv)
    return Event(EventType.PUT, e.kv, e.prev_kv)


class _WatchResults:
    """Decoded results of one upstream watch stream."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def __aiter__(self) -> _WatchResults:
        return self

    @staticmethod
    def _decode(line: bytes) -> _WatchResult | None:
        msg = _watch_decoder.decode(line)
        if msg.error is not None:
            raise Unavailable(f"etcd watch: {msg.error}")
        return msg.result

    async def __anext__(self) -> _WatchResult:
        while True:
            result = self._decode(await self._lines.__anext__())
            if result is not None:
                return result

    def drain_nowait(self) -> list[_WatchResult]:
        """The results already received, without waiting (to publish them as one batch)."""
        results = [self._decode(line) for line in self._lines.drain_nowait()]
        return [r for r in results if r is not None]


class _EtcdError(StoreError):
    def __init__(self, status: int, err: _GatewayError) -> None:
        super().__init__(f"etcd: HTTP {status}: {err.message or err.error}")
        self.status = status
        self.message = err.message or err.error


class EtcdStore:
    """The :class:`~kubetrio.store.Store` on an etcd 3.4 cluster; open with :func:`open_etcd_store`.

    Run it with ``async with open_etcd_store(endpoints) as store``, or in your own nursery
    with ``await nursery.start(store.run)`` and :meth:`aclose` afterwards.

    :param endpoints: ``host:port`` (or ``http://host:port``) client URLs of the members.
    :param request_timeout: seconds before a request is given up (reads are retried on
        other members within it; a write that times out raises :class:`Unavailable`).
    :param watch_ring: recent events kept in memory for watch replay.
    :param watch_max_pending: events buffered per watcher before it resyncs.
    :param max_connections: idle keep-alive connections kept per member.
    :param tls: reach the members over TLS with this context (their CA, this client's
        certificate); endpoints without a scheme are then ``https://``.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        request_timeout: float = 10.0,
        watch_ring: int = 10_000,
        watch_max_pending: int = 10_000,
        max_connections: int = 256,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd store needs at least one endpoint")
        scheme = "https" if tls is not None else "http"
        self.endpoints = [e if "://" in e else f"{scheme}://{e}" for e in endpoints]
        self._current = 0
        self._timeout = request_timeout
        self._client = GatewayClient(max_idle=max_connections, tls=tls)
        self._watch_ring = watch_ring
        self._watch_max_pending = watch_max_pending
        self.hub: WatchHub | None = None
        self._upstream_wanted = trio.Event()
        self._hub_ready = trio.Event()
        self._closed = False

    async def aclose(self) -> None:
        """End the watches and close the connections (after :meth:`run` has been cancelled)."""
        self._closed = True
        if self.hub is not None:
            self.hub.close()
        await self._client.aclose()

    # -- transport --------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], *, idempotent: bool) -> bytes:
        data = _encode(body)
        deadline = trio.current_time() + self._timeout
        delay = 0.05
        for attempt in itertools.count():
            current = self._current
            base = self.endpoints[current % len(self.endpoints)]
            # A member cut off by the network stalls instead of refusing: a read gets at most
            # half its time on one member, so it is tried on another within the deadline.
            wait = self._timeout / 2 if idempotent and len(self.endpoints) > 1 else self._timeout
            wait = max(min(wait, deadline - trio.current_time()), 0.1)
            try:
                status, content = await self._client.post(base, path, data, wait)
            except ConnectFailed as exc:
                # Nothing reached the server: safe to try the next member for any request.
                failure: Exception = exc
            except TransportFailed as exc:
                if not idempotent:
                    # A member that broke or stalled an exchange is suspect: the next
                    # request goes to another one.
                    self._rotate(current)
                    raise Unavailable(f"etcd {base}: {exc} (write outcome unknown)") from exc
                failure = exc
            else:
                if status == 200:
                    return content
                try:
                    err = _error_decoder.decode(content)
                except msgspec.DecodeError:
                    err = _GatewayError(message=content[:200].decode(errors="replace"))
                error = _EtcdError(status, err)
                # "no leader" is refused before the proposal: safe to retry, even a write.
                retry = "no leader" in error.message or (
                    idempotent and any(m in error.message for m in _RETRYABLE_MESSAGES)
                )
                if not retry:
                    raise error
                failure = error
            self._rotate(current)
            if trio.current_time() + delay > deadline:
                raise Unavailable(f"etcd: all endpoints failed: {failure!r}") from failure
            if attempt % len(self.endpoints) == len(self.endpoints) - 1:
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _rotate(self, failed: int) -> None:
        """Move on from member ``failed`` to the next — once, however many requests in
        flight failed on it (each advancing would bring some back to the failed one)."""
        if self._current == failed:
            self._current += 1

    async def _range(self, body: dict[str, Any]) -> _RangeResponse:
        try:
            return _range_decoder.decode(await self._post("/v3/kv/range", body, idempotent=True))
        except _EtcdError as exc:
            await self._raise_revision_error(exc, int(body.get("revision", 0)))
            raise

    async def _raise_revision_error(self, exc: _EtcdError, revision: int) -> None:
        if "compacted" in exc.message:
            current = await self.current_revision()
            raise Compacted(await self.compact_revision(), current) from exc
        if "future revision" in exc.message:
            raise FutureRevision(revision, await self.current_revision()) from exc

    async def _txn(self, body: dict[str, Any]) -> _TxnResponse:
        return _txn_decoder.decode(await self._post("/v3/kv/txn", body, idempotent=False))

    # -- reads ------------------------------------------------------------------------------

    async def current_revision(self) -> int:
        """See :meth:`Store.current_revision`."""
        resp = await self._range({"key": _b(b"\x00"), "count_only": True})
        return resp.header.revision

    async def compact_revision(self) -> int:
        """See :meth:`Store.compact_revision`.

        etcd 3.4 has no call for it, so it is found by bisection: the oldest revision a range
        can still be read at (a few dozen tiny requests; used on error paths).
        """
        hi = await self.current_revision()
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                await self._post(
                    "/v3/kv/range",
                    {"key": _b(b"\x00"), "count_only": True, "revision": mid},
                    idempotent=True,
                )
            except _EtcdError as exc:
                if "compacted" not in exc.message:
                    raise
                lo = mid + 1
            else:
                hi = mid
        return lo if lo > 1 else 0

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """See :meth:`Store.get`."""
        body: dict[str, Any] = {"key": _b(as_key(key))}
        if revision > 0:
            body["revision"] = revision
        resp = await self._range(body)
        return resp.kvs[0] if resp.kvs else None

    async def list(
        self,
        prefix: Key,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_key: Key | None = None,
    ) -> ListResult:
        """See :meth:`Store.list`."""
        start = as_key(prefix)
        end = prefix_end(start)
        key = start if continue_key is None else max(start, as_key(continue_key))
        body: dict[str, Any] = {
            "key": _b(key or _ALL_KEYS),
            "range_end": _b(end if end else _ALL_KEYS),
        }
        if revision > 0:
            body["revision"] = revision
        if limit > 0:
            body["limit"] = limit
        resp = await self._range(body)
        rev = revision if revision > 0 else resp.header.revision
        cont = resp.kvs[-1].key + b"\x00" if resp.more and resp.kvs else None
        return ListResult(resp.kvs, rev, resp.more and bool(resp.kvs), cont)

    async def count(self, prefix: Key) -> int:
        """See :meth:`Store.count`."""
        start = as_key(prefix)
        end = prefix_end(start)
        resp = await self._range(
            {
                "key": _b(start or _ALL_KEYS),
                "range_end": _b(end if end else _ALL_KEYS),
                "count_only": True,
            }
        )
        return resp.count

    # -- writes -----------------------------------------------------------------------------

    async def create(self, key: Key, value: bytes) -> KeyValue:
        """See :meth:`Store.create`."""
        k = as_key(key)
        resp = await self._txn(
            {
                "compare": [{"key": _b(k), "target": "MOD", "result": "EQUAL", "mod_revision": 0}],
                "success": [
                    {"request_put": {"key": _b(k), "value": _b(bytes(value))}},
                    _note_put(k),
                ],
                "failure": [{"request_range": {"key": _b(k)}}],
            }
        )
        if not resp.succeeded:
            rng = resp.responses[0].response_range
            raise AlreadyExists(k, rng.kvs[0] if rng and rng.kvs else None)
        put = resp.responses[0].response_put
        rev = put.header.revision if put else resp.header.revision
        return KeyValue(k, bytes(value), rev, rev)

    async def update(self, key: Key, value: bytes, *, expected_revision: int) -> KeyValue:
        """See :meth:`Store.update`."""
        k = as_key(key)
        if expected_revision <= 0:  # "compare with absent" would turn this into a create
            current = await self.get(k)
            if current is None:
                raise NotFound(k)
            raise Conflict(k, expected_revision, current)
        resp = await self._txn(
            {
                "compare": [
                    {
                        "key": _b(k),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": expected_revision,
                    }
                ],
                "success": [
                    {"request_put": {"key": _b(k), "value": _b(bytes(value)), "prev_kv": True}},
                    _note_put(k),
                ],
                "failure": [{"request_range": {"key": _b(k)}}],
            }
        )
        if not resp.succeeded:
            self._raise_cas_failure(k, expected_revision, resp)
        put = resp.responses[0].response_put
        assert put is not None and put.prev_kv is not None
        return KeyValue(k, bytes(value), put.prev_kv.create_revision, put.header.revision)

    async def delete(self, key: Key, *, expected_revision: int | None = None) -> Deleted:
        """See :meth:`Store.delete`."""
        k = as_key(key)
        compare = []
        if expected_revision is not None:
            if expected_revision <= 0:
                current = await self.get(k)
                if current is None:
                    raise NotFound(k)
                raise Conflict(k, expected_revision, current)
            compare = [
                {
                    "key": _b(k),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": expected_revision,
                }
            ]
        resp = await self._txn(
            {
                "compare": compare,
                "success": [
                    {"request_delete_range": {"key": _b(k), "prev_kv": True}},
                    _note_put(k),
                ],
                "failure": [{"request_range": {"key": _b(k)}}],
            }
        )
        if not resp.succeeded:
            self._raise_cas_failure(k, expected_revision or 0, resp)
        dele = resp.responses[0].response_delete_range
        if dele is None or not dele.prev_kvs:
            raise NotFound(k)
        return Deleted(dele.header.revision, dele.prev_kvs[0])

    @staticmethod
    def _raise_cas_failure(key: bytes, expected: int, resp: _TxnResponse) -> None:
        rng = resp.responses[0].response_range if resp.responses else None
        if rng is None or not rng.kvs:
            raise NotFound(key)
        raise Conflict(key, expected, rng.kvs[0])

    async def compact(self, revision: int) -> None:
        """See :meth:`Store.compact` (logical compaction; etcd reclaims space itself)."""
        try:
            await self._post("/v3/kv/compaction", {"revision": revision}, idempotent=True)
        except _EtcdError as exc:
            await self._raise_revision_error(exc, revision)
            raise
        if self.hub is not None:
            self.hub.compact_revision = max(self.hub.compact_revision, revision)

    # -- history ----------------------------------------------------------------------------

    async def history(self, key: Key, *, before: int = 0, limit: int = 0) -> HistoryPage:
        """See :meth:`HistoryStore.history`: the note key's versions walked back through
        etcd's revisions, each with the object's version at that revision, until etcd's
        compaction (writes made before notes existed are not found)."""
        k = as_key(key)
        entries: list[HistoryEntry] = []
        oldest = 0
        try:
            at = min(before - 1, await self.current_revision()) if before > 1 else 0
            note = await self.get(NOTES + k, revision=at)
            while note is not None:
                rev = note.mod_revision
                if limit and len(entries) == limit:
                    return HistoryPage(entries, entries[-1].revision, oldest)
                stamp, _, who = note.value.partition(b"\n")
                now = await self.get(k, revision=rev)
                if now is not None and now.mod_revision == rev:
                    kind = "ADDED" if now.create_revision == rev else "MODIFIED"
                    version: KeyValue | None = now
                else:
                    kind = "DELETED"
                    last = await self.get(k, revision=rev - 1)
                    version = (
                        None if last is None else KeyValue(k, last.value, last.create_revision, rev)
                    )
                if version is not None:
                    entries.append(HistoryEntry(rev, kind, version, float(stamp or 0), who))
                    oldest = rev
                note = await self.get(NOTES + k, revision=rev - 1) if rev > 1 else None
        except Compacted:
            # etcd keeps nothing older; with nothing found, its compaction point is the
            # oldest revision that can be asked for.
            if not entries:
                oldest = await self.compact_revision()
        return HistoryPage(entries, 0, oldest)

    # -- watch ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _stream(
        self, start: bytes, end: bytes | None, from_revision: int
    ) -> AsyncIterator[_WatchResults]:
        """One upstream watch (on the current endpoint), as an iterator of results."""
        create: dict[str, Any] = {
            "key": _b(start or _ALL_KEYS),
            "range_end": _b(end if end is not None else _ALL_KEYS),
            "prev_kv": True,
        }
        if from_revision > 0:
            create["start_revision"] = from_revision
        body = _encode({"create_request": create})
        base = self.endpoints[self._current % len(self.endpoints)]
        # The request body ends after the create request; etcd keeps the stream open.
        async with self._client.stream_lines(base, "/v3/watch", body) as lines:
            yield _WatchResults(lines)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the store: check etcd answers, then feed the watch hub once it is needed.

        The upstream watch opens at the first :meth:`watch` (a store nobody watches costs
        etcd no event stream) and is reopened where it broke. ``task_status.started()`` is
        called once etcd has answered.
        """
        await self.current_revision()
        task_status.started()
        await self._upstream_wanted.wait()
        await self._upstream()

    async def _upstream(self) -> None:
        delay = 0.05
        while True:  # one hub per unbroken history
            try:
                start_rev = await self.current_revision()
            except Unavailable:
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            hub = WatchHub(
                live_revision=start_rev,
                ring_size=self._watch_ring,
                max_pending=self._watch_max_pending,
            )
            if self.hub is not None:
                hub.compact_revision = self.hub.compact_revision
            self.hub = hub
            await self._feed(hub)

    async def _feed(self, hub: WatchHub) -> None:
        """Feed ``hub`` until its history breaks (compacted while we were disconnected)."""
        delay = 0.05
        while True:
            try:
                async with self._stream(b"\x00", None, hub.live_revision + 1) as results:
                    async for first in results:
                        # Everything already received goes to the hub as one batch: one
                        # wake-up per watcher per batch, not per event.
                        events: list[Event] = []
                        for result in [first, *results.drain_nowait()]:
                            if result.canceled:
                                if result.compact_revision:
                                    # Our resume point was compacted away: this hub cannot
                                    # go on without a gap, so its watchers end with an
                                    # error, and a new hub starts from now.
                                    if events:
                                        hub.publish(events)
                                    hub.close(
                                        Compacted(result.compact_revision, result.header.revision)
                                    )
                                    return
                                raise Unavailable(f"etcd watch canceled: {result.cancel_reason}")
                            if result.created:
                                self._hub_ready.set()
                            events.extend(_to_event(e) for e in result.events if not _is_note(e))
                        if events:
                            hub.publish(events)
                        delay = 0.05
            except (ConnectFailed, TransportFailed, Unavailable):
                self._current += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @asynccontextmanager
    async def watch(
        self, key: Key, *, prefix: bool = False, revision: int = 0
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """See :meth:`Store.watch`."""
        if self._closed:
            raise WatchClosed("store is closed")
        if not self._hub_ready.is_set():
            self._upstream_wanted.set()
            await self._hub_ready.wait()
        assert self.hub is not None
        start = as_key(key)
        end = prefix_end(start) if prefix else start + b"\x00"
        if revision <= 0:
            # "From now" must mean after every write acknowledged before this call, which
            # the hub (fed asynchronously) may not have seen yet: ask etcd.
            revision = await self.current_revision() + 1
        watch = _EtcdWatch(self, self.hub.subscribe(start, end, revision), start, end)
        try:
            yield watch
        finally:
            await watch.aclose()


class _EtcdWatch:
    """A hub subscription that falls back to its own upstream watch for old history."""

    def __init__(
        self, store: EtcdStore, sub: Subscription, start: bytes, end: bytes | None
    ) -> None:
        self._store = store
        self._sub: Subscription | None = sub
        self._start = start
        self._end = end
        self._direct: AsyncIterator[_WatchResult] | None = None
        self._direct_stack: AsyncExitStack | None = None
        self._pending: list[Event] = []
        self._next = 0

    async def aclose(self) -> None:
        if self._sub is not None:
            await self._sub.aclose()
            self._sub = None
        await self._close_direct()

    async def _close_direct(self) -> None:
        stack, self._direct_stack, self._direct = self._direct_stack, None, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                await stack.aclose()

    def progress(self) -> int | None:
        """The hub subscription's progress (none while on a dedicated upstream stream)."""
        if self._sub is None or self._pending:
            return None
        return self._sub.progress()

    def __aiter__(self) -> _EtcdWatch:
        return self

    async def __anext__(self) -> Event:
        if self._sub is not None:
            try:
                ev = await self._sub.__anext__()
            except HistoryUnavailable as exc:
                self._next = exc.after + 1
                await self._sub.aclose()
                self._sub = None
            else:
                return ev
        delay = 0.05
        while not self._pending:
            try:
                if self._direct is None:
                    self._direct_stack = AsyncExitStack()
                    self._direct = await self._direct_stack.enter_async_context(
                        self._store._stream(self._start, self._end, self._next)
                    )
                result = await self._direct.__anext__()
            except (ConnectFailed, TransportFailed, Unavailable):
                # The member went away: resume on the next one from the exact revision.
                await self._close_direct()
                if self._store._closed:
                    raise WatchClosed("store is closed") from None
                self._store._current += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if result.canceled:
                if result.compact_revision:
                    raise Compacted(result.compact_revision, result.header.revision)
                raise WatchClosed(f"etcd watch canceled: {result.cancel_reason}")
            self._pending = [
                _to_event(e)
                for e in result.events
                if e.kv.mod_revision >= self._next and not _is_note(e)
            ]
            self._pending.reverse()
        ev = self._pending.pop()
        self._next = ev.kv.mod_revision + 1
        return ev


@asynccontextmanager
async def open_etcd_store(endpoints: Sequence[str], **options: Any) -> AsyncIterator[EtcdStore]:
    """Connect to etcd at ``endpoints`` and run the store (its upstream watch) in the block."""
    store = EtcdStore(endpoints, **options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
