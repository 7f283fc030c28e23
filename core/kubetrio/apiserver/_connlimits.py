"""The HTTP server's defences against slow and greedy clients: deadlines and caps.

A client that opens thousands of connections and trickles its request headers (the
"slowloris" attack) must neither exhaust the file descriptors nor slow other clients.
So:

* **header deadline** — a request's headers must be complete within
  ``request_header_timeout`` seconds (from the accept on a new connection, from the first
  byte on a kept-alive one); else 408 and the connection is closed. kube-apiserver's Go
  server has ``ReadHeaderTimeout`` 32 s; 10 s is plenty on the networks kubetrio serves and
  frees a slow connection's descriptor three times sooner.
* **body deadline** — the whole body within ``request_body_timeout`` seconds of the end of
  the headers (a total, so a body trickled a byte at a time cannot hold on), else 408.
  kube-apiserver bounds the same work by its 60 s ``--request-timeout``.
* **idle timeout** — a kept-alive connection with no new request for ``idle_timeout``
  seconds is closed silently (longer than client-go's 90 s ``IdleConnTimeout``, so a Go
  client drops its idle connections before the server does).
* **connection cap** — at most ``max_connections`` connections at once (clamped below the
  descriptor limit). At the cap, a new connection takes the place of the oldest one still
  sending its first headers (which gets 503 with ``Retry-After``): clients that send their
  request at once, as all real ones do, get in even while slow ones fill the cap. When
  no connection is in its headers, the new one gets that 503 and is closed at once.
* **in-flight caps** — upstream's ``--max-requests-inflight`` (non-mutating) and
  ``--max-mutating-requests-inflight``, over all clients (only with
  ``enable_priority_and_fairness`` off: else ``_fairness`` shares their sum), and
  ``max_requests_inflight_per_client`` per remote address; a request beyond any gets 429
  "Too many requests, please try again later." with ``Retry-After: 1``, as
  kube-apiserver's max-in-flight filter answers. 0 turns a cap off.

None of these touch long-running requests once they are answered: watches, ``log``,
``exec``/``attach``/``portforward`` and proxy streams (including connections taken over
after an ``Upgrade``) are exempt from the in-flight caps (as upstream's
``BasicLongRunningRequestCheck`` exempts them) and have no idle or body deadline while
they stream. They still hold a connection, so the connection cap bounds them.

In-process clients (controllers, scheduler, the node agent of ``kubetrio server``) call
the handler without a socket, so none of this applies to them.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from kubetrio.handler import Request, Response

from ._status import status_body

log = logging.getLogger("kubetrio.apiserver.http")

RETRY_AFTER_SECONDS = 1
"""What ``Retry-After`` says on 429 and 503, as kube-apiserver's max-in-flight filter."""
FD_RESERVE = 256
"""Descriptors kept for everything but client connections (store, pods, logs, watches)."""
EVICTION_SLACK = 64
"""How far evicted connections that are still closing may take the count past the cap."""
FD_LIMIT_MAX = 1 << 20
"""The most :func:`raise_fd_limit` raises the soft limit to (Linux's default ``nr_open``)."""

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})
"""Upstream's long-running subresources (``BasicLongRunningRequestCheck`` of kube-apiserver)."""


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """Deadlines (seconds) and caps of the HTTP server; every one a ``kubetrio server`` option."""

    request_header_timeout: float = 10.0
    request_body_timeout: float = 60.0
    idle_timeout: float = 120.0
    max_connections: int = 10_000
    """Clamped to what the descriptor limit allows, less :data:`FD_RESERVE`."""
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    max_requests_inflight_per_client: int = 200
    enable_priority_and_fairness: bool = True
    """API Priority and Fairness (``_fairness``) shares the two in-flight caps' sum among
    its priority levels, as kube-apiserver's ``--enable-priority-and-fairness``; this
    gate then leaves those two caps to it (the per-client cap stays)."""


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's open-file limit (``RLIMIT_NOFILE``) to its hard limit.

    Returns ``(old soft limit, new soft limit)``. Python starts with the soft limit it
    inherited, 1024 on most systems, which a few hundred clients exhaust; the hard limit
    is what the administrator allows. At most :data:`FD_LIMIT_MAX`: the processes we
    start inherit the limit, and some of them close every descriptor up to it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_LIMIT_MAX if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_MAX)
    if target <= soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # a container may forbid it; keep going
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    return soft, target


def connection_cap(configured: int) -> int:
    """``configured``, lowered to what the open-file limit leaves for connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    room = max(soft - FD_RESERVE, soft // 2)
    return min(configured, room) if configured > 0 else room


def is_long_running(request: Request) -> bool:
    """Whether a request may stream for long: a watch, an upgrade, or a long-running
    subresource (``log``, ``exec``, ``attach``, ``portforward``, ``proxy``)."""
    if "upgrade" in request.headers:
        return True
    try:
        if request.flag("watch"):
            return True
    except ValueError:  # a bad value: the handler answers 400, quickly
        return False
    parts = [part for part in request.path.split("/") if part]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return False
    if rest[:1] in (["watch"], ["proxy"]):
        return True
    # namespaces/NS/RESOURCE/NAME/SUB or RESOURCE/NAME/SUB (nodes/x/proxy)
    sub_at = 4 if rest[:1] == ["namespaces"] and len(rest) >= 5 else 2
    return len(rest) > sub_at and rest[sub_at] in LONG_RUNNING_SUBRESOURCES


def _refusal(status: int, message: str) -> Response:
    body = status_body(status, message, details={"retryAfterSeconds": RETRY_AFTER_SECONDS})
    return Response(status=status, body=body, headers=[("retry-after", str(RETRY_AFTER_SECONDS))])


TOO_MANY_REQUESTS = "Too many requests, please try again later."
"""kube-apiserver's wording (``tooManyRequests`` of its max-in-flight filter)."""


class ConnectionGate:
    """The counts behind the caps, shared by all connections of one server.

    :attr:`connections` is the open connections; :attr:`inflight` the short requests
    being served by client address (long-running ones in :attr:`long_running`).
    """

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.max_connections = connection_cap(limits.max_connections)
        self.connections = 0
        self.refused_connections = 0
        self.evicted_connections = 0
        self.heads: dict[trio.CancelScope, None] = {}
        """The connections reading a request's headers, oldest first (an ordered set)."""
        self.inflight: Counter[str] = Counter()
        self.long_running: Counter[str] = Counter()
        self.reading = 0
        self.mutating = 0

    def open_connection(self) -> bool:
        """Count a new connection; False (not counted) when it is one too many.

        At the cap, the oldest connection still reading its headers is cancelled to make
        room (it answers 503 and closes, uncounting itself).
        """
        if self.connections >= self.max_connections:
            if not self.heads or self.connections >= self.max_connections + EVICTION_SLACK:
                self.refused_connections += 1
                return False
            oldest = next(iter(self.heads))
            del self.heads[oldest]
            oldest.cancel()
            self.evicted_connections += 1
        self.connections += 1
        return True

    @contextmanager
    def reading_head(self) -> Iterator[trio.CancelScope]:
        """The block of reading a request's headers: cancelled when a new connection
        needs the place (see :meth:`open_connection`); check ``cancelled_caught``."""
        scope = trio.CancelScope()
        self.heads[scope] = None
        try:
            with scope:
                yield scope
        finally:
            self.heads.pop(scope, None)

    def close_connection(self) -> None:
        """Uncount a connection :meth:`open_connection` counted."""
        self.connections -= 1

    def too_many_connections(self) -> Response:
        """The answer to a connection beyond the cap."""
        return _refusal(
            503,
            f"the server has too many open connections (limit {self.max_connections}), "
            "please try again later.",
        )

    @contextmanager
    def admit(self, request: Request, client: str) -> Iterator[Response | None]:
        """Count ``request`` of ``client`` in flight for the block; yields None when
        admitted, or the 429 to answer instead (nothing counted)."""
        if is_long_running(request):
            self.long_running[client] += 1
            try:
                yield None
            finally:
                self._uncount(self.long_running, client)
            return
        limits = self.limits
        mutating = request.method in MUTATING_METHODS
        global_caps = not limits.enable_priority_and_fairness
        over = 0 < limits.max_requests_inflight_per_client <= self.inflight[client] or (
            global_caps
            and (
                (mutating and 0 < limits.max_mutating_requests_inflight <= self.mutating)
                or (not mutating and 0 < limits.max_requests_inflight <= self.reading)
            )
        )
        if over:
            yield _refusal(429, TOO_MANY_REQUESTS)
            return
        self.inflight[client] += 1
        if mutating:
            self.mutating += 1
        else:
            self.reading += 1
        try:
            yield None
        finally:
            self._uncount(self.inflight, client)
            if mutating:
                self.mutating -= 1
            else:
                self.reading -= 1

    @staticmethod
    def _uncount(counter: Counter[str], client: str) -> None:
        counter[client] -= 1
        if counter[client] <= 0:
            del counter[client]  # no entry per client ever seen
