"""API Priority and Fairness: bounded concurrency per priority level, fair queuing per flow.

A small, faithful subset of kube-apiserver's APF (KEP 1040, ``k8s.io/apiserver``'s
``pkg/util/flowcontrol``), configured by the same ``flowcontrol.apiserver.k8s.io/v1``
objects:

* **classification** — each request (after authentication and impersonation, as upstream)
  is matched against the FlowSchemas in order of ``matchingPrecedence`` (then name); the
  first whose rules match the user (User, Group, ServiceAccount subjects) and the request
  (resource rules: verb, API group, resource[/subresource], namespace or cluster scope;
  non-resource rules: verb and URL, ``*`` and ``/prefix/*``) names the priority level and
  the flow: the schema plus the distinguisher (``ByUser``: the user name, ``ByNamespace``:
  the namespace, none: one flow). A schema naming a missing level is skipped.
* **concurrency** — the server's seats (``--max-requests-inflight`` plus
  ``--max-mutating-requests-inflight``, as upstream) are shared among the Limited levels
  by their ``nominalConcurrencyShares``: ``ceil(seats * shares / Σ shares)``. The
  ``Exempt`` level (``system:masters``, health probes, the loopback client) is never held.
* **fair queuing** — a request finding its level full waits in one of the level's queues:
  shuffle sharding deals the flow a hand of ``handSize`` queues from a hash of the flow and
  takes the shortest, so a flooding flow fills only its own hand; freed seats go to the
  non-empty queues round robin, so every flow with waiting requests gets its turn.
* **rejection** — a full queue (``queueLengthLimit``), a level with ``limitResponse:
  Reject`` at its limit, or a wait past :data:`QUEUE_WAIT_SECONDS` (upstream: a quarter of
  the 60 s request timeout) is answered 429 ``TooManyRequests`` with ``Retry-After`` and a
  Status, as kube-apiserver's filter does.
* **long-running requests** — exec, attach, port-forward, proxy and ``log`` are not
  counted (upstream skips them); a watch holds its seat only while its handler sets it up,
  not while it streams (upstream's "watch initialization" seats).
* **in-process callers** — the cluster's own components calling the handler without a
  socket are not held, as the connection gate does not hold them (``_connlimits``).

Each classified response carries ``X-Kubernetes-PF-FlowSchema-UID`` and
``X-Kubernetes-PF-PriorityLevel-UID``. The configuration objects — upstream's mandatory and
suggested bootstrap objects — are created on start (:func:`ensure_bootstrap_configuration`)
and followed: objects users add, change or delete take effect at once (a deleted mandatory
object is recreated). The metrics are upstream's ``apiserver_flowcontrol_*`` (below).

Left out, as a subset: borrowing between levels (``lendablePercent`` and
``borrowingLimitPercent`` are stored, not used: each level has its nominal seats), the
work estimator (every request is one seat), per-queue virtual time (round robin of
non-empty queues is the same fairness for equal-cost requests), and status conditions.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any

import trio

from kubetrio import prom
from kubetrio.api.scheme import Scheme
from kubetrio.handler import Request
from kubetrio.providers import UserInfo

from . import _objects as objects
from ._connlimits import TOO_MANY_REQUESTS, is_long_running
from ._registry import Registry
from ._routes import ResourcePath
from ._status import ApiError

log = logging.getLogger("kubetrio.apiserver.fairness")

GROUP, VERSION = "flowcontrol.apiserver.k8s.io", "v1"
API_VERSION = f"{GROUP}/{VERSION}"
QUEUE_WAIT_SECONDS = 15.0
"""How long a request may wait in a queue (kube-apiserver: ``--request-timeout`` / 4)."""
RETRY_AFTER_SECONDS = 1
AUTOUPDATE = "apf.kubernetes.io/autoupdate-spec"
"""Upstream's annotation: "true" on bootstrap objects the server keeps as it defines them."""
FLOW_SCHEMA_UID = "x-kubernetes-pf-flowschema-uid"
PRIORITY_LEVEL_UID = "x-kubernetes-pf-prioritylevel-uid"
WAIT_BUCKETS = (0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30)
"""Upstream's buckets of ``apiserver_flowcontrol_request_wait_duration_seconds``."""

# --- metrics (upstream's names and labels) --------------------------------------------------

_PF = ["priority_level", "flow_schema"]
REJECTED = prom.LoopCounter(
    "apiserver_flowcontrol_rejected_requests_total",
    "Number of requests rejected by API Priority and Fairness subsystem",
    [*_PF, "reason"],
    prom.CONTROL_PLANE,
)
DISPATCHED = prom.LoopCounter(
    "apiserver_flowcontrol_dispatched_requests_total",
    "Number of requests executed by API Priority and Fairness subsystem",
    _PF,
    prom.CONTROL_PLANE,
)
INQUEUE = prom.LoopGauge(
    "apiserver_flowcontrol_current_inqueue_requests",
    "Number of requests currently pending in queues of the API Priority and Fairness subsystem",
    _PF,
    prom.CONTROL_PLANE,
)
EXECUTING = prom.LoopGauge(
    "apiserver_flowcontrol_current_executing_requests",
    "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution stage "
    "in the API Priority and Fairness subsystem",
    _PF,
    prom.CONTROL_PLANE,
)
WAIT_DURATION = prom.LoopHistogram(
    "apiserver_flowcontrol_request_wait_duration_seconds",
    "Length of time a request spent waiting in its queue",
    [*_PF, "execute"],
    prom.CONTROL_PLANE,
    WAIT_BUCKETS,
)
NOMINAL_LIMIT = prom.LoopGauge(
    "apiserver_flowcontrol_nominal_limit_seats",
    "Nominal number of execution seats configured for each priority level",
    ["priority_level"],
    prom.CONTROL_PLANE,
)
CURRENT_LIMIT = prom.LoopGauge(
    "apiserver_flowcontrol_current_limit_seats",
    "current derived number of execution seats available to each priority level",
    ["priority_level"],
    prom.CONTROL_PLANE,
)

# --- the bootstrap configuration (upstream's mandatory and suggested objects) -------------

_ALL_RESOURCES = {
    "verbs": ["*"],
    "apiGroups": ["*"],
    "resources": ["*"],
    "clusterScope": True,
    "namespaces": ["*"],
}
_ALL_NON_RESOURCES = {"verbs": ["*"], "nonResourceURLs": ["*"]}
_EVERYONE = [
    {"kind": "Group", "group": {"name": "system:unauthenticated"}},
    {"kind": "Group", "group": {"name": "system:authenticated"}},
]


def _group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "group": {"name": name}}


def _user(name: str) -> dict[str, Any]:
    return {"kind": "User", "user": {"name": name}}


def _kube_system_sa(name: str) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": name}}


def _queued(shares: int, lendable: int, queues: int, hand: int, length: int) -> dict[str, Any]:
    return {
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": shares,
            "lendablePercent": lendable,
            "limitResponse": {
                "type": "Queue",
                "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": length},
            },
        },
    }


MANDATORY_PRIORITY_LEVELS: dict[str, dict[str, Any]] = {
    "exempt": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}},
    "catch-all": {
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": 5,
            "lendablePercent": 0,
            "limitResponse": {"type": "Reject"},
        },
    },
}
SUGGESTED_PRIORITY_LEVELS: dict[str, dict[str, Any]] = {
    "system": _queued(30, 33, 64, 6, 50),
    "node-high": _queued(40, 25, 64, 6, 50),
    "leader-election": _queued(10, 0, 16, 4, 50),
    "workload-high": _queued(40, 50, 128, 6, 50),
    "workload-low": _queued(100, 90, 128, 6, 50),
    "global-default": _queued(20, 50, 128, 6, 50),
}


def _schema(level: str, precedence: int, method: str, *rules: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
    }
    if method:
        spec["distinguisherMethod"] = {"type": method}
    spec["rules"] = list(rules)
    return spec


def _everything(subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "subjects": subjects,
        "resourceRules": [_ALL_RESOURCES],
        "nonResourceRules": [_ALL_NON_RESOURCES],
    }


def _election(namespaces: list[str]) -> list[dict[str, Any]]:
    verbs = ["get", "create", "update"]
    return [
        {"verbs": verbs, "apiGroups": [""], "resources": ["endpoints", "configmaps"],
         "namespaces": namespaces},
        {"verbs": verbs, "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "namespaces": ["*"]},
    ]  # fmt: skip


MANDATORY_FLOW_SCHEMAS: dict[str, dict[str, Any]] = {
    "exempt": _schema("exempt", 1, "", _everything([_group("system:masters")])),
    "catch-all": _schema("catch-all", 10000, "ByUser", _everything(_EVERYONE)),
}
SUGGESTED_FLOW_SCHEMAS: dict[str, dict[str, Any]] = {
    "probes": _schema(
        "exempt",
        2,
        "",
        {
            "subjects": _EVERYONE,
            "nonResourceRules": [
                {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}
            ],
        },
    ),
    "system-leader-election": _schema(
        "leader-election",
        100,
        "ByUser",
        {
            "subjects": [
                _user("system:kube-controller-manager"),
                _user("system:kube-scheduler"),
                _kube_system_sa("*"),
            ],
            "resourceRules": _election(["kube-system"]),
        },
    ),
    "endpoint-controller": _schema(
        "workload-high",
        150,
        "ByUser",
        {
            "subjects": [
                _user("system:kube-controller-manager"),
                _kube_system_sa("endpoint-controller"),
            ],
            "resourceRules": [
                {
                    "verbs": ["get", "create", "update"],
                    "apiGroups": [""],
                    "resources": ["endpoints"],
                    "namespaces": ["*"],
                }
            ],
        },
    ),
    "workload-leader-election": _schema(
        "leader-election",
        200,
        "ByUser",
        {"subjects": [_kube_system_sa("*")], "resourceRules": _election(["*"])},
    ),
    "system-node-high": _schema(
        "node-high",
        400,
        "ByUser",
        {
            "subjects": [_group("system:nodes")],
            "resourceRules": [
                {
                    "verbs": ["*"],
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/status"],
                    "clusterScope": True,
                    "namespaces": ["*"],
                },
                {
                    "verbs": ["*"],
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "namespaces": ["*"],
                },
            ],
        },
    ),
    "system-nodes": _schema("system", 500, "ByUser", _everything([_group("system:nodes")])),
    "kube-controller-manager": _schema(
        "workload-high", 800, "ByNamespace", _everything([_user("system:kube-controller-manager")])
    ),
    "kube-scheduler": _schema(
        "workload-high", 800, "ByNamespace", _everything([_user("system:kube-scheduler")])
    ),
    "kube-system-service-accounts": _schema(
        "workload-high", 900, "ByNamespace", _everything([_kube_system_sa("*")])
    ),
    "service-accounts": _schema(
        "workload-low", 9000, "ByUser", _everything([_group("system:serviceaccounts")])
    ),
    "global-default": _schema("global-default", 9900, "ByUser", _everything(_EVERYONE)),
}


def bootstrap_objects() -> list[tuple[str, bool, dict[str, Any]]]:
    """Upstream's bootstrap objects as ``(resource, mandatory, object)``, priority levels
    first (the schemas refer to them)."""
    out: list[tuple[str, bool, dict[str, Any]]] = []
    for kind, resource, mandatory, suggested in (
        (
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            MANDATORY_PRIORITY_LEVELS,
            SUGGESTED_PRIORITY_LEVELS,
        ),
        ("FlowSchema", "flowschemas", MANDATORY_FLOW_SCHEMAS, SUGGESTED_FLOW_SCHEMAS),
    ):
        for is_mandatory, specs in ((True, mandatory), (False, suggested)):
            for name, spec in specs.items():
                obj = {
                    "apiVersion": API_VERSION,
                    "kind": kind,
                    "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"}},
                    "spec": copy.deepcopy(spec),
                }
                out.append((resource, is_mandatory, obj))
    return out


# --- the compiled configuration -----------------------------------------------------------


class _Waiter:
    __slots__ = ("dispatched", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.dispatched = False


class PriorityLevel:
    """One priority level's seats and queues (the state requests wait on)."""

    def __init__(self, name: str, uid: str, spec: dict[str, Any], seats: int) -> None:
        self.name, self.uid = name, uid
        self.exempt = spec.get("type") == "Exempt"
        self.limit = seats
        limited = spec.get("limited") or {}
        response = limited.get("limitResponse") or {}
        queuing = response.get("queuing") or {} if response.get("type") == "Queue" else None
        self.queuing = queuing is not None
        queuing = queuing or {}
        count = max(1, int(queuing.get("queues") or 64))
        self.hand_size = max(1, min(count, int(queuing.get("handSize") or 8)))
        self.queue_length_limit = max(1, int(queuing.get("queueLengthLimit") or 50))
        self.queues: list[collections.deque[_Waiter]] = [
            collections.deque() for _ in range(count if self.queuing else 0)
        ]
        self.active: collections.deque[int] = collections.deque()
        """Non-empty queues' indexes, in their round-robin order (each at most once)."""
        self.in_active: set[int] = set()
        self.executing = 0
        self.waiting = 0

    def queue_for(self, flow: bytes) -> int:
        """The shortest queue of the flow's hand (shuffle sharding)."""
        number = int.from_bytes(hashlib.blake2b(flow, digest_size=8).digest(), "big")
        deck = list(range(len(self.queues)))
        best, best_length = -1, math.inf
        for _ in range(self.hand_size):
            number, pick = divmod(number, len(deck))
            index = deck.pop(pick)
            length = len(self.queues[index])
            if length < best_length:
                best, best_length = index, length
            if not deck:
                break
        return best

    def release(self) -> None:
        """Give a seat back, and to the next waiting request (round robin over queues)."""
        self.executing -= 1
        while self.waiting and self.executing < self.limit:
            index = self.active.popleft()
            self.in_active.discard(index)
            queue = self.queues[index]
            if not queue:  # emptied by requests that gave up
                continue
            waiter = queue.popleft()
            if queue:
                self.active.append(index)
                self.in_active.add(index)
            self.waiting -= 1
            self.executing += 1
            waiter.dispatched = True
            waiter.event.set()


@dataclasses.dataclass(frozen=True)
class Schema:
    """A FlowSchema as matched: its rules, compiled to sets."""

    name: str
    uid: str
    precedence: int
    level: str
    distinguisher: str
    rules: tuple[dict[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What classification looks at: the request as upstream's ``RequestInfo`` has it."""

    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    namespace: str = ""
    path: str = ""


def _subject_matches(subject: dict[str, Any], user: UserInfo) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        name = (subject.get("user") or {}).get("name")
        return name in ("*", user.name)
    if kind == "Group":
        name = (subject.get("group") or {}).get("name")
        return name == "*" or name in user.groups
    if kind == "ServiceAccount":
        account = subject.get("serviceAccount") or {}
        prefix = f"system:serviceaccount:{account.get('namespace')}:"
        if not user.name.startswith(prefix):
            return False
        return account.get("name") in ("*", user.name[len(prefix) :])
    return False


def _has(values: Iterable[str] | None, value: str) -> bool:
    values = values or ()
    return "*" in values or value in values


def _rule_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    if attrs.resource_request:
        for resource_rule in rule.get("resourceRules") or ():
            if not (
                _has(resource_rule.get("verbs"), attrs.verb)
                and _has(resource_rule.get("apiGroups"), attrs.group)
                and _has(resource_rule.get("resources"), attrs.resource)
            ):
                continue
            if not attrs.namespace:
                if resource_rule.get("clusterScope"):
                    return True
            elif _has(resource_rule.get("namespaces"), attrs.namespace):
                return True
        return False
    for url_rule in rule.get("nonResourceRules") or ():
        if not _has(url_rule.get("verbs"), attrs.verb):
            continue
        for url in url_rule.get("nonResourceURLs") or ():
            if url == "*" or url == attrs.path:
                return True
            if url.endswith("/*") and attrs.path.startswith(url[:-1]):
                return True
    return False


CLASSIFIED_KEPT = 4096
"""Classifications a :class:`Configuration` remembers before it starts over."""


class Configuration:
    """The schemas in matching order and the levels with their seats."""

    def __init__(
        self,
        schemas: Sequence[dict[str, Any]],
        levels: Sequence[dict[str, Any]],
        total_seats: int,
        previous: Configuration | None = None,
    ) -> None:
        self._classified: dict[tuple[str, tuple[str, ...], Attributes], Schema] = {}
        by_name = {obj["metadata"]["name"]: obj for obj in levels}
        # The mandatory objects apply even while missing from the store (recreated soon).
        for name, spec in MANDATORY_PRIORITY_LEVELS.items():
            by_name.setdefault(name, {"metadata": {"name": name}, "spec": spec})
        shares = {name: _shares(obj.get("spec") or {}) for name, obj in by_name.items()}
        total_shares = sum(shares.values()) or 1
        self.levels: dict[str, PriorityLevel] = {}
        for name, obj in by_name.items():
            spec = obj.get("spec") or {}
            seats = math.ceil(total_seats * shares[name] / total_shares)
            old = previous.levels.get(name) if previous is not None else None
            uid = obj["metadata"].get("uid", "")
            if old is not None and _same_shape(old, spec, seats):
                old.uid = uid
                self.levels[name] = old  # keeps its queues and counts
            else:
                self.levels[name] = PriorityLevel(name, uid, spec, seats)
            NOMINAL_LIMIT.values[(name,)] = float(seats)
            CURRENT_LIMIT.values[(name,)] = float(seats)
        schema_objs = {obj["metadata"]["name"]: obj for obj in schemas}
        for name, spec in MANDATORY_FLOW_SCHEMAS.items():
            schema_objs.setdefault(name, {"metadata": {"name": name}, "spec": spec})
        compiled = []
        for name, obj in schema_objs.items():
            spec = obj.get("spec") or {}
            level = (spec.get("priorityLevelConfiguration") or {}).get("name", "")
            if level not in self.levels:
                continue  # dangling: never matches, as upstream
            compiled.append(
                Schema(
                    name=name,
                    uid=obj["metadata"].get("uid", ""),
                    precedence=int(spec.get("matchingPrecedence") or 1000),
                    level=level,
                    distinguisher=(spec.get("distinguisherMethod") or {}).get("type", ""),
                    rules=tuple(spec.get("rules") or ()),
                )
            )
        compiled.sort(key=lambda schema: (schema.precedence, schema.name))
        self.schemas = tuple(compiled)

    def classify(self, user: UserInfo, attrs: Attributes) -> Schema:
        """The first schema matching; the catch-all one when none does.

        Remembered per user, groups and request attributes (what matching reads): every
        request is classified, matching walks every schema's rules and subjects, and a
        configuration change makes a new :class:`Configuration`, so nothing goes stale.
        """
        key = (user.name, tuple(user.groups), attrs)
        memo = self._classified
        found = memo.get(key)
        if found is None:
            if len(memo) >= CLASSIFIED_KEPT:
                memo.clear()
            found = memo[key] = self._classify(user, attrs)
        return found

    def _classify(self, user: UserInfo, attrs: Attributes) -> Schema:
        for schema in self.schemas:
            for rule in schema.rules:
                subjects = rule.get("subjects") or ()
                if any(_subject_matches(s, user) for s in subjects) and _rule_matches(rule, attrs):
                    return schema
        return next(s for s in self.schemas if s.name == "catch-all")


def _shares(spec: dict[str, Any]) -> int:
    if spec.get("type") == "Exempt":
        return int((spec.get("exempt") or {}).get("nominalConcurrencyShares") or 0)
    value = (spec.get("limited") or {}).get("nominalConcurrencyShares")
    return 30 if value is None else int(value)  # upstream's default


def _same_shape(level: PriorityLevel, spec: dict[str, Any], seats: int) -> bool:
    fresh = PriorityLevel(level.name, level.uid, spec, seats)
    return (
        fresh.exempt == level.exempt
        and fresh.limit == level.limit
        and fresh.queuing == level.queuing
        and len(fresh.queues) == len(level.queues)
        and fresh.hand_size == level.hand_size
        and fresh.queue_length_limit == level.queue_length_limit
    )


# --- the filter ---------------------------------------------------------------------------

HEADERS: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "pf_headers", default=None
)
"""The current request's APF response headers (set by ``ApiServer._handle``)."""


def attributes_of(request: Request, target: ResourcePath | None, path: str) -> Attributes:
    """The request's verb and target as upstream's ``RequestInfo`` names them."""
    method = request.method
    if target is None:
        return Attributes(verb=method.lower(), resource_request=False, path=path)
    try:
        watch = request.flag("watch")
    except ValueError:  # the handler answers 400
        watch = False
    if target.name:
        verb = {"GET": "watch" if watch else "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete", "POST": "create"}.get(method, method.lower())  # fmt: skip
    else:
        verb = {"GET": "watch" if watch else "list", "POST": "create",
                "DELETE": "deletecollection"}.get(method, method.lower())  # fmt: skip
    if target.rest.startswith("watch"):
        verb = "watch"
    resource = target.info.resource
    if target.subresource:
        resource = f"{resource}/{target.subresource}"
    return Attributes(
        verb=verb,
        resource_request=True,
        group=target.info.group,
        resource=resource,
        namespace=target.namespace,
    )


def too_many_requests() -> ApiError:
    """kube-apiserver's 429 (its ``tooManyRequests``), as a Status with ``retryAfterSeconds``."""
    return ApiError(
        429,
        TOO_MANY_REQUESTS,
        reason="TooManyRequests",
        details={"retryAfterSeconds": RETRY_AFTER_SECONDS},
    )


class Fairness:
    """The APF filter of one API server: :meth:`seat` around each request's work."""

    def __init__(self, total_seats: int = 600, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.total_seats = total_seats
        self.queue_wait = QUEUE_WAIT_SECONDS
        # Until the stored objects are read (``run``): the bootstrap ones, without uids.
        bootstrap = bootstrap_objects()
        self._schemas = [obj for resource, _, obj in bootstrap if resource == "flowschemas"]
        self._levels = [obj for resource, _, obj in bootstrap if resource != "flowschemas"]
        self.config = Configuration(self._schemas, self._levels, total_seats)

    def configure(
        self, schemas: Sequence[dict[str, Any]], levels: Sequence[dict[str, Any]]
    ) -> None:
        """Take a new set of FlowSchemas and PriorityLevelConfigurations."""
        self._schemas, self._levels = list(schemas), list(levels)
        self.config = Configuration(schemas, levels, self.total_seats, self.config)

    def resize(self, total_seats: int) -> None:
        """Share ``total_seats`` among the levels (the server's flags)."""
        self.total_seats = total_seats
        self.config = Configuration(self._schemas, self._levels, total_seats, self.config)

    @asynccontextmanager
    async def seat(
        self, request: Request, user: UserInfo, target: ResourcePath | None, path: str
    ) -> AsyncIterator[None]:
        """Hold a seat of the request's priority level for the block (waiting in its
        flow's queue when the level is busy); raises the 429 when refused."""
        if not self.enabled or request.loopback or request.user is not None:
            # In-process callers (the loopback client, the cluster's own controllers,
            # scheduler and nodes) use no socket: like the connection gate, APF is for
            # clients from outside. They would otherwise get 429s the in-process client
            # does not retry, and holding them back frees nothing they do not also use.
            yield
            return
        attrs = attributes_of(request, target, path)
        if attrs.verb != "watch" and is_long_running(request):
            yield
            return
        config = self.config
        schema = config.classify(user, attrs)
        level = config.levels[schema.level]
        headers = HEADERS.get()
        if headers is not None:
            if schema.uid:
                headers.append((FLOW_SCHEMA_UID, schema.uid))
            if level.uid:
                headers.append((PRIORITY_LEVEL_UID, level.uid))
        labels = (level.name, schema.name)
        started = time.monotonic()
        if level.exempt or (level.executing < level.limit and not level.waiting):
            level.executing += 1
        else:
            await self._queue(level, schema, user, attrs, labels, started)
        WAIT_DURATION.observe((*labels, "true"), time.monotonic() - started)
        DISPATCHED.inc(labels)
        EXECUTING.inc(labels)
        try:
            yield
        finally:
            EXECUTING.inc(labels, -1)
            if level.exempt:
                level.executing -= 1
            else:
                level.release()

    async def _queue(
        self,
        level: PriorityLevel,
        schema: Schema,
        user: UserInfo,
        attrs: Attributes,
        labels: tuple[str, str],
        started: float,
    ) -> None:
        if not level.queuing:
            self._reject(labels, "concurrency-limit", started)
        if schema.distinguisher == "ByUser":
            flow = user.name
        elif schema.distinguisher == "ByNamespace":
            flow = attrs.namespace
        else:
            flow = ""
        index = level.queue_for(f"{schema.name}\0{flow}".encode())
        queue = level.queues[index]
        if len(queue) >= level.queue_length_limit:
            self._reject(labels, "queue-full", started)
        waiter = _Waiter()
        queue.append(waiter)
        if index not in level.in_active:
            level.active.append(index)
            level.in_active.add(index)
        level.waiting += 1
        INQUEUE.inc(labels)
        try:
            with trio.move_on_after(self.queue_wait):
                await waiter.event.wait()
        except BaseException:
            if waiter.dispatched:
                level.release()
            else:
                queue.remove(waiter)
                level.waiting -= 1
            raise
        finally:
            INQUEUE.inc(labels, -1)
        if not waiter.dispatched:
            queue.remove(waiter)
            level.waiting -= 1
            self._reject(labels, "time-out", started)

    @staticmethod
    def _reject(labels: tuple[str, str], reason: str, started: float) -> None:
        REJECTED.inc((*labels, reason))
        WAIT_DURATION.observe((*labels, "false"), time.monotonic() - started)
        raise too_many_requests()

    # --- the configuration objects ------------------------------------------------------

    async def run(
        self,
        registry: Registry,
        scheme: Scheme,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Load the stored configuration, then follow its changes until cancelled."""
        schemas = scheme.resource(GROUP, VERSION, "flowschemas")
        levels = scheme.resource(GROUP, VERSION, "prioritylevelconfigurations")
        if schemas is None or levels is None:
            task_status.started()
            return
        start = str(await registry.current_revision())
        await self._reload(registry, scheme)
        task_status.started()
        changed = trio.Event()

        async def follow(info: Any) -> None:
            revision = start
            while True:
                try:
                    async with aclosing(
                        registry.watch(info, "", resource_version=revision)
                    ) as events:
                        async for event in events:
                            if event.type == "ERROR":
                                break
                            changed.set()
                except Exception:
                    log.exception("following %s failed; retrying", info.resource)
                await trio.sleep(1)
                revision = str(await registry.current_revision())
                changed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, schemas)
            nursery.start_soon(follow, levels)
            while True:
                await changed.wait()
                changed = trio.Event()
                try:
                    await self._reload(registry, scheme)
                except Exception:
                    log.exception("reloading the flow-control configuration failed")

    async def _reload(self, registry: Registry, scheme: Scheme) -> None:
        await ensure_bootstrap_configuration(registry, scheme, mandatory_only=True)
        found: dict[str, list[dict[str, Any]]] = {}
        for resource in ("flowschemas", "prioritylevelconfigurations"):
            info = scheme.resource(GROUP, VERSION, resource)
            assert info is not None
            page = await registry.list(info, "")
            found[resource] = [objects.decode(raw) for raw in page.items]
        self.configure(found["flowschemas"], found["prioritylevelconfigurations"])
        info = scheme.resource(GROUP, VERSION, "flowschemas")
        assert info is not None
        for schema in found["flowschemas"]:
            condition = dangling_condition(schema, self.config.levels)
            if condition is not None:
                name = schema["metadata"]["name"]
                try:
                    await registry.update(info, "", name, _with_condition(condition))
                except ApiError as exc:
                    if exc.code != 404:  # deleted meanwhile
                        raise


def dangling_condition(
    schema: dict[str, Any], levels: dict[str, PriorityLevel]
) -> dict[str, Any] | None:
    """The ``Dangling`` condition a FlowSchema should have, as upstream's configuration
    controller writes it; None when its status already says so."""
    level = ((schema.get("spec") or {}).get("priorityLevelConfiguration") or {}).get("name", "")
    missing = level not in levels
    status = "True" if missing else "False"
    for condition in (schema.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Dangling" and condition.get("status") == status:
            return None
    return {
        "type": "Dangling",
        "status": status,
        "lastTransitionTime": objects.now_rfc3339(),
        "reason": "NotFound" if missing else "Found",
        "message": f"This FlowSchema references the PriorityLevelConfiguration object named "
        f"{json.dumps(level)} " + ("but there is no such object" if missing else "and it exists"),
    }


def _with_condition(condition: dict[str, Any]) -> Any:
    async def change(current: dict[str, Any]) -> dict[str, Any]:
        status = current.setdefault("status", {})
        others = [c for c in status.get("conditions") or () if c.get("type") != "Dangling"]
        status["conditions"] = [*others, condition]
        return current

    return change


async def ensure_bootstrap_configuration(
    registry: Registry, scheme: Scheme, *, mandatory_only: bool = False
) -> None:
    """Create upstream's bootstrap FlowSchemas and PriorityLevelConfigurations that are
    missing (``mandatory_only``: only the mandatory ones, recreated when deleted), and put
    back the spec of a mandatory one still marked ``apf.kubernetes.io/autoupdate-spec``."""
    for resource, mandatory, obj in bootstrap_objects():
        if mandatory_only and not mandatory:
            continue
        info = scheme.resource(GROUP, VERSION, resource)
        if info is None:
            return
        name = obj["metadata"]["name"]
        try:
            await registry.create(info, "", obj)
            continue
        except ApiError as exc:
            if exc.code != 409:
                raise
        if not mandatory:
            continue
        current = await registry.get_object(info, "", name)
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get(AUTOUPDATE) == "true" and current.get("spec") != obj["spec"]:
            await registry.update(info, "", name, _with_spec(obj["spec"]))


def _with_spec(spec: dict[str, Any]) -> Any:
    async def change(current: dict[str, Any]) -> dict[str, Any]:
        current["spec"] = copy.deepcopy(spec)
        return current

    return change
