"""The API server's Prometheus metrics, with kube-apiserver's names, labels and buckets.

* ``apiserver_request_total`` and ``apiserver_request_duration_seconds``: every request
  once it is answered (a watch or an exec when it ends), by the verb as kube-apiserver
  reports it — ``GET``/``LIST``/``WATCH`` for reads, the HTTP method for writes
  (``POST``, ``PUT``, ``PATCH``, ``DELETE``), ``APPLY`` for server-side apply — the
  resource's group, version, resource and subresource, the scope (``resource`` for a
  named object or a create, ``namespace``, ``cluster``), ``dry_run`` and the code.
  Requests outside the resources (``/version``, discovery, ``/metrics``) have only the
  method and the path as the subresource — a path that answered, or one of the
  server's fixed paths; any other is ``other``, so random URLs add no series.
* ``apiserver_longrunning_requests``: watches and streams (logs followed, exec, attach,
  port-forward) open now; ``apiserver_registered_watchers``: watches open by kind;
  ``apiserver_watch_events_total``: events sent to watchers.
* ``apiserver_current_inflight_requests{request_kind}``: requests being answered now,
  ``readOnly`` or ``mutating`` (streams once their headers left are long-running, not
  in flight); upstream reports the last second's maximum, this the current count.
* ``etcd_request_duration_seconds{operation,type}``: the store's latency per call
  (:class:`TimedStore`, either backend), ``type`` the resource as upstream names it
  (``pods``, ``deployments.apps``).
* ``apiserver_storage_objects{resource}`` and ``apiserver_resource_objects{group,resource}``:
  objects stored per resource, counted when ``/metrics`` is read, at most once a
  :data:`OBJECT_COUNT_PERIOD` (upstream counts once a minute).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio
from prometheus_client import Gauge

from kubetrio import prom
from kubetrio.api.scheme import Scheme
from kubetrio.handler import Request, Response
from kubetrio.store import (
    Deleted,
    Event,
    HistoryPage,
    HistoryStore,
    Key,
    KeyValue,
    ListResult,
    Store,
)

from ._registry import Registry
from ._routes import ResourcePath
from ._validation import APPLY_PATCH

COMPONENT = "apiserver"
REQUEST_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0,
    8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
"""kube-apiserver's buckets of ``apiserver_request_duration_seconds`` and
``etcd_request_duration_seconds``."""
OBJECT_COUNT_PERIOD = 60.0
"""Seconds a count of stored objects is reused by later scrapes."""
REQUEST_LABELS = (
    "verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"
)  # fmt: skip
VERBS = frozenset({"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "APPLY", "DELETE"})
"""The verbs reported as they are; another method is ``other``, as upstream's."""
PATHS = frozenset(
    {
        "/",
        "/api",
        "/apis",
        "/healthz",
        "/livez",
        "/readyz",
        "/version",
        "/metrics",
        "/openapi/v2",
        "/openapi/v3",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
    }
)
"""Paths outside the resources named in the labels whatever the answer (others only
when they answered, so the served groups' discovery paths)."""
OTHER = "other"

# What every request updates: lock-free (prom.LoopCounter), read when scraped.
REQUESTS = prom.LoopCounter(
    "apiserver_request_total",
    "Counter of apiserver requests broken out for each verb, dry run value, group, "
    "version, resource, scope, component, and HTTP response code.",
    [*REQUEST_LABELS, "code"],
    prom.CONTROL_PLANE,
)
DURATIONS = prom.LoopHistogram(
    "apiserver_request_duration_seconds",
    "Response latency distribution in seconds for each verb, dry run value, group, "
    "version, resource, subresource, scope and component.",
    REQUEST_LABELS,
    prom.CONTROL_PLANE,
    REQUEST_BUCKETS,
)
LONGRUNNING = prom.Children(
    Gauge(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb, group, "
        "version, resource, scope and component. Not all requests are tracked this way.",
        ["verb", "group", "version", "resource", "subresource", "scope", "component"],
        registry=prom.CONTROL_PLANE,
    )
)
INFLIGHT = prom.LoopGauge(
    "apiserver_current_inflight_requests",
    "Number of requests this apiserver is answering now, per request kind (readOnly or "
    "mutating); long-running requests are not counted.",
    ["request_kind"],
    prom.CONTROL_PLANE,
)
READ_ONLY, MUTATING = ("readOnly",), ("mutating",)
INFLIGHT.values.update({READ_ONLY: 0.0, MUTATING: 0.0})
WATCHERS = prom.Children(
    Gauge(
        "apiserver_registered_watchers",
        "Number of currently registered watchers for a given resources",
        ["group", "version", "kind"],
        registry=prom.CONTROL_PLANE,
    )
)
WATCH_EVENTS = prom.LoopCounter(
    "apiserver_watch_events_total",
    "Number of events sent in watch clients",
    ["group", "version", "kind"],
    prom.CONTROL_PLANE,
)
STORAGE_OBJECTS = prom.Children(
    Gauge(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind. In case of a "
        "fetching error, the value will be -1.",
        ["resource"],
        registry=prom.CONTROL_PLANE,
    )
)
RESOURCE_OBJECTS = prom.Children(
    Gauge(
        "apiserver_resource_objects",
        "Number of stored objects at the time of last check split by kind. In case of a "
        "fetching error, the value will be -1.",
        ["group", "resource"],
        registry=prom.CONTROL_PLANE,
    )
)
STORE_DURATIONS = prom.LoopHistogram(
    "etcd_request_duration_seconds",
    "Etcd request latency in seconds for each operation and object type.",
    ["operation", "type"],
    prom.CONTROL_PLANE,
    REQUEST_BUCKETS,
)


class Noted:
    """What a request was, as the labels name it; filled in by the server once it knows
    the resource (:func:`note_resource`), else the request is a non-resource one."""

    __slots__ = ("kind", "labels")

    def __init__(self) -> None:
        self.labels: tuple[str, ...] | None = None
        """verb, dry_run, group, version, resource, subresource, scope, component."""
        self.kind = ""


_CURRENT: contextvars.ContextVar[Noted | None] = contextvars.ContextVar(
    "prom_request", default=None
)


def note_resource(request: Request, verb: str, target: ResourcePath) -> None:
    """Name the current request's resource in its labels (``verb`` as authorization names
    it: ``get``, ``list``, ``create`` …; empty for a method the resource does not take)."""
    noted = _CURRENT.get()
    if noted is None:
        return
    info = target.info
    if verb == "watch":
        reported = "WATCH"
    elif verb == "list":
        reported = "LIST"
    elif request.method == "PATCH" and _is_apply(request):
        reported = "APPLY"
    else:
        reported = request.method if request.method in VERBS else OTHER
    if target.name or verb == "create":
        scope = "resource"
    elif target.namespace:
        scope = "namespace"
    else:
        scope = "cluster"
    noted.labels = (
        reported,
        _dry_run(request),
        info.group,
        info.version,
        info.resource,
        target.subresource,
        scope,
        COMPONENT,
    )
    noted.kind = info.kind


def _is_apply(request: Request) -> bool:
    media = request.headers.get("content-type", "")
    return media.split(";")[0].strip().lower() == APPLY_PATCH


def _dry_run(request: Request) -> str:
    values = request.query.get("dryRun")
    if not values:
        return ""
    return "All" if all(v == "All" for v in values) else "invalid"


def _non_resource_labels(request: Request, code: int) -> tuple[str, ...]:
    path = request.path.rstrip("/") or "/"
    if path not in PATHS and (code >= 400 or not _discovery_path(path)):
        path = OTHER
    verb = request.method if request.method in VERBS else OTHER
    return (verb, "", "", "", "", path, "", COMPONENT)


def _discovery_path(path: str) -> bool:
    """``/api/<v>``, ``/apis/<g>``, ``/apis/<g>/<v>`` and ``/openapi/v3/…`` documents:
    one per served group version (the caller checks the request found one)."""
    parts = path.split("/")
    if parts[1] == "api":
        return len(parts) == 3
    if parts[1] == "apis":
        return len(parts) in (3, 4)
    return path.startswith("/openapi/v3/")


async def around(request: Request, handler: Callable[[Request], Awaitable[Response]]) -> Response:
    """Answer ``request`` with ``handler``, counting and timing it."""
    started = time.perf_counter()
    noted = Noted()
    token = _CURRENT.set(noted)
    kind = READ_ONLY if request.method in ("GET", "HEAD") else MUTATING
    inflight = INFLIGHT.values
    inflight[kind] += 1
    try:
        response = await handler(request)
    except Exception:
        _record(request, noted, 500, started)
        raise
    finally:
        inflight[kind] -= 1
        _CURRENT.reset(token)
    if response.stream is not None:
        producer = response.stream

        async def counted_stream(channel: Any) -> None:
            with _LongRunning(noted):
                try:
                    await producer(channel)
                finally:
                    _record(request, noted, response.status, started)

        response.stream = counted_stream
    elif response.upgrade is not None:
        upgrade = response.upgrade

        async def counted_upgrade(stream: Any, rest: bytes) -> None:
            with _LongRunning(noted):
                try:
                    await upgrade(stream, rest)
                finally:
                    _record(request, noted, response.status, started)

        response.upgrade = counted_upgrade
    else:
        _record(request, noted, response.status, started)
    return response


def _record(request: Request, noted: Noted, code: int, started: float) -> None:
    labels = noted.labels or _non_resource_labels(request, code)
    REQUESTS.inc((*labels, str(code)))
    DURATIONS.observe(labels, time.perf_counter() - started)


class _LongRunning:
    """Counts a stream in ``apiserver_longrunning_requests`` (and a watch in
    ``apiserver_registered_watchers``) while it runs."""

    def __init__(self, noted: Noted) -> None:
        labels = noted.labels or ("", "", "", "", "", "", "", COMPONENT)
        verb, _dry, group, version, resource, subresource, scope, component = labels
        self.gauge = LONGRUNNING(verb, group, version, resource, subresource, scope, component)
        self.watchers = WATCHERS(group, version, noted.kind) if verb == "WATCH" else None

    def __enter__(self) -> None:
        self.gauge.inc()
        if self.watchers is not None:
            self.watchers.inc()

    def __exit__(self, *_: object) -> None:
        self.gauge.dec()
        if self.watchers is not None:
            self.watchers.dec()


def watch_events(group: str, version: str, kind: str) -> Callable[[], None] | None:
    """Counts one event sent to a watcher of a kind (None: metrics are off)."""
    if not prom.switch.on:
        return None
    labels = (group, version, kind)
    return lambda: WATCH_EVENTS.inc(labels)


# --- the store ---------------------------------------------------------------------------


def store_type(key: Key) -> str:
    """A store key's resource as upstream's ``type`` label names it: ``pods``,
    ``deployments.apps`` (``/registry/<group or core>/<resource>/…``)."""
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    parts = text.split("/", 4)
    if len(parts) < 4 or parts[1] != "registry":
        return OTHER
    group, resource = parts[2], parts[3]
    return resource if group == "core" else f"{resource}.{group}"


class TimedStore:
    """A :class:`~kubetrio.store.Store` whose calls are timed in
    ``etcd_request_duration_seconds`` (upstream's operations: ``get``, ``list``,
    ``listWithCount``, ``create``, ``update``, ``delete``, ``compact``); anything else
    is the wrapped store's."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def current_revision(self) -> int:
        """See :meth:`Store.current_revision`."""
        return await self.store.current_revision()

    async def get(self, key: Key, *, revision: int = 0) -> KeyValue | None:
        """See :meth:`Store.get`."""
        started = time.perf_counter()
        try:
            return await self.store.get(key, revision=revision)
        finally:
            STORE_DURATIONS.observe(("get", store_type(key)), time.perf_counter() - started)

    async def list(
        self,
        prefix: Key,
        *,
        revision: int = 0,
        limit: int = 0,
        continue_key: Key | None = None,
    ) -> ListResult:
        """See :meth:`Store.list`."""
        started = time.perf_counter()
        try:
            return await self.store.list(
                prefix, revision=revision, limit=limit, continue_key=continue_key
            )
        finally:
            STORE_DURATIONS.observe(("list", store_type(prefix)), time.perf_counter() - started)

    async def count(self, prefix: Key) -> int:
        """See :meth:`Store.count`."""
        started = time.perf_counter()
        try:
            return await self.store.count(prefix)
        finally:
            elapsed = time.perf_counter() - started
            STORE_DURATIONS.observe(("listWithCount", store_type(prefix)), elapsed)

    async def create(self, key: Key, value: bytes) -> KeyValue:
        """See :meth:`Store.create`."""
        started = time.perf_counter()
        try:
            return await self.store.create(key, value)
        finally:
            STORE_DURATIONS.observe(("create", store_type(key)), time.perf_counter() - started)

    async def update(self, key: Key, value: bytes, *, expected_revision: int) -> KeyValue:
        """See :meth:`Store.update`."""
        started = time.perf_counter()
        try:
            return await self.store.update(key, value, expected_revision=expected_revision)
        finally:
            STORE_DURATIONS.observe(("update", store_type(key)), time.perf_counter() - started)

    async def delete(self, key: Key, *, expected_revision: int | None = None) -> Deleted:
        """See :meth:`Store.delete`."""
        started = time.perf_counter()
        try:
            return await self.store.delete(key, expected_revision=expected_revision)
        finally:
            STORE_DURATIONS.observe(("delete", store_type(key)), time.perf_counter() - started)

    def watch(
        self, key: Key, *, prefix: bool = False, revision: int = 0
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """See :meth:`Store.watch` (not timed: it lasts as long as its watcher)."""
        return self.store.watch(key, prefix=prefix, revision=revision)

    async def compact(self, revision: int) -> None:
        """See :meth:`Store.compact`."""
        started = time.perf_counter()
        try:
            await self.store.compact(revision)
        finally:
            STORE_DURATIONS.observe(("compact", OTHER), time.perf_counter() - started)

    async def compact_revision(self) -> int:
        """See :meth:`Store.compact_revision`."""
        return await self.store.compact_revision()


class TimedHistoryStore(TimedStore):
    """A :class:`TimedStore` over a store that keeps history (``HistoryStore``)."""

    store: Any

    async def history(self, key: Key, *, before: int = 0, limit: int = 0) -> HistoryPage:
        """See :meth:`~kubetrio.store.HistoryStore.history`."""
        started = time.perf_counter()
        try:
            page: HistoryPage = await self.store.history(key, before=before, limit=limit)
            return page
        finally:
            STORE_DURATIONS.observe(("history", store_type(key)), time.perf_counter() - started)


def timed_store(store: Store) -> Store:
    """``store`` with its calls timed, when metrics are on."""
    if not prom.switch.on:
        return store
    if isinstance(store, HistoryStore):
        return TimedHistoryStore(store)
    return TimedStore(store)


# --- /metrics ----------------------------------------------------------------------------


class ObjectCounts:
    """Refreshes ``apiserver_storage_objects`` from the store, at most once a period."""

    def __init__(self, period: float = OBJECT_COUNT_PERIOD) -> None:
        self.period = period
        self._next = 0.0

    async def refresh(self, store: Store, scheme: Scheme) -> None:
        """Count the objects of every listable resource, unless counted lately."""
        now = trio.current_time()
        if now < self._next:
            return
        self._next = now + self.period
        seen: set[tuple[str, str]] = set()
        for info in list(scheme):
            if (info.group, info.resource) in seen or "list" not in info.verbs:
                continue
            seen.add((info.group, info.resource))
            try:
                count = await store.count(Registry.prefix(info))
            except Exception:  # the gauge says the count failed, as upstream's -1
                count = -1
            name = f"{info.resource}.{info.group}" if info.group else info.resource
            STORAGE_OBJECTS(name).set(count)
            RESOURCE_OBJECTS(info.group, info.resource).set(count)


async def metrics_response(store: Store, scheme: Scheme, counts: ObjectCounts) -> Response:
    """The answer to ``GET /metrics``: the control plane's registry as text."""
    await counts.refresh(store, scheme)
    # On the loop, not a thread: collectors read the components' state (queue lengths).
    return Response(body=prom.exposition(prom.CONTROL_PLANE), content_type=prom.CONTENT_TYPE)
