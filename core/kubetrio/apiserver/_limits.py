"""What one request may cost: object size, nesting, YAML aliases, and work kept off the loop.

A hostile (or careless) body must not be able to store an object no one can read back, to
exhaust the server's memory, or to stall every other request while it is processed:

- **YAML aliases** are bounded as go-yaml bounds them (kube-apiserver decodes YAML with
  it): a document whose alias expansion is most of what it decodes is refused with
  ``yaml: document contains excessive aliasing`` before anything is expanded, an anchor
  that holds itself is refused, and a document that used aliases must fit the request
  body limit once expanded to JSON.
- **Nesting** of every body (JSON, YAML, protobuf) and of every stored object is bounded
  by :data:`MAX_DEPTH` (upstream allows 10000 for JSON, but its walkers are not recursive
  Python; ours are, so the bound is lower and leaves room for them).
- **Stored objects** are capped at :data:`MAX_OBJECT_BYTES` once encoded, whatever format
  they came in and whichever verb wrote them (etcd's default request limit, which
  kube-apiserver reaches as ``etcdserver: request is too large``; here a clean 413).
- **Heavy work** (decoding, typing, patching, managedFields of a large body or object)
  runs on worker threads (:func:`offload`, at most :data:`WORKERS` at a time) instead of
  on the trio loop, so health checks and every other request keep being answered. The
  cyclic garbage collector, whose full passes hold the GIL for every thread, is paused
  while that work runs, and the heap present at start is frozen out of its reach.
"""

from __future__ import annotations

import contextvars
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import msgspec
import trio
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.resolver import Resolver

from ._status import ApiError

T = TypeVar("T")

MAX_OBJECT_BYTES = 1536 * 1024
"""The largest object stored, encoded (etcd's default ``--max-request-bytes``, 1.5 MiB)."""
GRANDFATHERED_SLACK = 16 * 1024
"""How much an object already over :data:`MAX_OBJECT_BYTES` may still grow by (room for
the server's own metadata: deletion marks, managedFields entries)."""
MAX_DEPTH = 100
"""The deepest nesting of objects and arrays accepted in a request body. The server's
recursive steps (patches, managedFields, pruning) handle some 300 levels; a JSON patch
can put a body's value at the end of a path as deep, so twice this stays below that."""
MAX_STORED_DEPTH = MAX_DEPTH + 28
"""The deepest nesting stored: a body's, plus room for ``metadata.managedFields``, whose
``fieldsV1`` mirror the object four levels down."""
OFFLOAD_BYTES = 64 * 1024
"""Requests whose body (or the object they change) is at least this large do their heavy
steps on a worker thread; smaller ones stay on the loop, where a thread hop would cost
more than the work."""
WORKERS = 2
"""Worker threads doing heavy request work at once (the machine has few cores; more would
only queue on the GIL)."""

WEIGHT: contextvars.ContextVar[int] = contextvars.ContextVar("request_weight", default=0)
"""How many bytes the current request handles (its body, or the stored object it
changes): what :func:`offload` decides by. Set per request task by the server and raised
by the registry while a stored object is being changed."""

_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("offload_limiter")


def _limiter() -> trio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(WORKERS)
        _LIMITER.set(limiter)
        return limiter


async def offload(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, on a worker thread when the request is heavy (see
    :data:`WEIGHT`), else right here. ``fn`` must not touch trio or shared state."""
    if WEIGHT.get() < OFFLOAD_BYTES:
        return fn(*args, **kwargs)
    return await trio.to_thread.run_sync(
        partial(_without_collector, fn, *args, **kwargs), limiter=_limiter()
    )


def _without_collector(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _collector_paused():
        return fn(*args, **kwargs)


def weigh(size: int) -> contextvars.Token[int]:
    """Raise the current request's weight to at least ``size`` (reset with the token)."""
    return WEIGHT.set(max(WEIGHT.get(), size))


_FROZEN = False


def freeze_heap() -> None:
    """Move what the process holds at start (modules, models, the scheme) out of the
    garbage collector's reach, once per process.

    A full collection walks every tracked object while holding the GIL, stalling the
    loop as well as the worker threads; a large body allocates enough to trigger one.
    Objects made at start live for the whole process, so walking them is wasted.
    """
    global _FROZEN
    if not _FROZEN:
        _FROZEN = True
        gc.collect()
        gc.freeze()


# --- sizes --------------------------------------------------------------------------------


def too_large(what: str, size: int, limit: int) -> ApiError:
    """413 RequestEntityTooLarge naming the size and the limit, in upstream's words."""
    return ApiError(
        413, f"Request entity too large: {what} is {size} bytes, the limit is {limit} bytes"
    )


def check_storable(obj: Any, value: bytes, what: str, *, stored: int = 0) -> None:
    """Refuse to store ``obj`` (encoded as ``value``) when it is too large or too deep.

    ``stored``: the size of the version it replaces. An object already over the limit
    (stored before it, or under a larger one) may still change by up to
    :data:`GRANDFATHERED_SLACK` bytes, so it can be marked deleted, lose its finalizers
    and go.

    :raises ApiError: 413 over :data:`MAX_OBJECT_BYTES`, 400 deeper than
        :data:`MAX_STORED_DEPTH`.
    """
    size = len(value)
    grandfathered = stored > MAX_OBJECT_BYTES and size <= stored + GRANDFATHERED_SLACK
    if size > MAX_OBJECT_BYTES and not grandfathered:
        raise too_large(what, size, MAX_OBJECT_BYTES)
    # Brackets bound the depth from above (those in strings count too): a cheap count in
    # C spares the walk for all but objects with many nested values.
    if value.count(b"{") + value.count(b"[") > MAX_STORED_DEPTH and too_deep(obj, MAX_STORED_DEPTH):
        raise too_deep_error(what, MAX_STORED_DEPTH)


# --- nesting ------------------------------------------------------------------------------


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` in ``value`` (a JSON value)."""
    if type(value) is not dict and type(value) is not list:
        return False
    return limit < 1 or _nests_deeper(value, limit - 1)


def _nests_deeper(node: dict[str, Any] | list[Any], levels: int) -> bool:
    # Recursion rather than a stack of (node, depth) pairs: every stored pod with its
    # managedFields has enough brackets to be walked on each write, and building a tuple
    # per value was most of the walk's cost. The depth is bounded by ``levels`` (at most
    # MAX_STORED_DEPTH frames), far below Python's recursion limit.
    for child in node.values() if type(node) is dict else node:
        if (type(child) is dict or type(child) is list) and (
            levels <= 0 or _nests_deeper(child, levels - 1)
        ):
            return True
    return False


def too_deep_error(what: str, limit: int = MAX_DEPTH) -> ApiError:
    """400 BadRequest for a value nested deeper than ``limit``."""
    return ApiError(400, f"{what} is nested too deeply: exceeded max depth of {limit}")


def check_body_depth(value: Any, body: bytes | None = None) -> None:
    """Refuse a decoded body nested deeper than :data:`MAX_DEPTH`; a JSON ``body`` with
    few brackets is known to be shallow without walking ``value``."""
    if body is not None and body.count(b"{") + body.count(b"[") <= MAX_DEPTH:
        return
    if too_deep(value):
        raise too_deep_error("the request body")


# --- YAML ---------------------------------------------------------------------------------


class YAMLLimitError(yaml.YAMLError):
    """A YAML document refused for its aliases or nesting (go-yaml's messages)."""


_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000


def _allowed_alias_ratio(decoded: int) -> float:
    # go-yaml's allowedAliasRatio: 99% of decodes may come from aliases in small and
    # medium documents, scaling down to 10% at four million decodes.
    if decoded <= _ALIAS_RATIO_LOW:
        return 0.99
    if decoded >= _ALIAS_RATIO_HIGH:
        return 0.10
    span = _ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW
    return 0.99 - 0.89 * (decoded - _ALIAS_RATIO_LOW) / span


class _BoundedComposer(Composer):
    """PyYAML's composer counting what decoding the document would do, as go-yaml counts.

    go-yaml decodes an alias by decoding its anchor's node again; it counts every node
    decoded and those decoded under an alias, and fails once aliases are too much of
    the whole. Nodes are composed in decoding order, so counting the anchored node's
    decodes once (when it is composed) and adding them at each alias gives go-yaml's
    counts without expanding anything.
    """

    def __init__(self) -> None:
        super().__init__()
        self._decoded = 1  # the document node
        self._aliased = 0
        self._depth = 0
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()
        self.used_aliases = False

    def _count(self, decoded: int, aliased: int) -> None:
        self._decoded += decoded
        self._aliased += aliased
        if (
            self._aliased > 100
            and self._decoded > 1000
            and self._aliased / self._decoded > _allowed_alias_ratio(self._decoded)
        ):
            raise YAMLLimitError("yaml: document contains excessive aliasing")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser's
        anchor = event.anchor
        if isinstance(event, AliasEvent):
            if anchor in self._open:
                raise YAMLLimitError(f"yaml: anchor '{anchor}' value contains itself")
            self.used_aliases = True
            size = self._sizes.get(anchor, 0)
            self._count(1 + size, size)
            return super().compose_node(parent, index)
        start = self._decoded
        self._count(1, 0)
        nests = isinstance(event, SequenceStartEvent | MappingStartEvent)
        if nests:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise YAMLLimitError(f"yaml: exceeded max depth of {MAX_DEPTH}")
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = self._decoded - start
        if nests:
            self._depth -= 1
        return node


try:  # libyaml's parser (in PyYAML's wheels) is some ten times faster than PyYAML's own
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - a PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: bytes) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _BoundedLoader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
    """``yaml.SafeLoader``'s result, parsed by libyaml, composed with go-yaml's bounds."""

    def __init__(self, stream: bytes) -> None:
        _Parser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        _BoundedComposer.__init__(self)


_GC_LOCK = threading.Lock()
_gc_pausers = 0


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while heavy request work runs (counted across
    threads).

    Composing YAML allocates two marks and a node per value, typing and managedFields a
    few objects per field: enough to trigger collections that walk all of it with the
    GIL held, stalling the loop for a quarter second on a 3 MiB body. That work makes
    no cycles worth collecting meanwhile; reference counting frees it.
    """
    global _gc_pausers
    with _GC_LOCK:
        if _gc_pausers == 0 and not gc.isenabled():
            paused = False  # someone else turned it off: leave it to them
        else:
            paused = True
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _GC_LOCK:
                _gc_pausers -= 1
                if _gc_pausers == 0:
                    gc.enable()


def load_yaml(data: bytes, *, max_json_bytes: int) -> Any:
    """One YAML document as ``yaml.safe_load`` reads it, refusing what go-yaml refuses.

    A document that used aliases is returned as its JSON expansion (no shared values
    for later steps to change twice), which must fit ``max_json_bytes``.

    :raises yaml.YAMLError: malformed, excessive aliasing, too deep.
    :raises ApiError: 413 when the aliases expand past ``max_json_bytes``.
    """
    with _collector_paused():
        loader = _BoundedLoader(data)
        try:
            node = loader.get_single_node()
            value = None if node is None else loader.construct_document(node)
            used_aliases = loader.used_aliases
        finally:
            loader.dispose()
        del loader, node
    if not used_aliases:
        return value
    try:
        expanded = msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise yaml.YAMLError(f"the document has a value JSON cannot hold: {exc}") from exc
    if len(expanded) > max_json_bytes:
        raise too_large(
            "the request body with its YAML aliases expanded", len(expanded), max_json_bytes
        )
    return msgspec.json.decode(expanded)
