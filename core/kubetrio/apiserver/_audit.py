"""The audit log: kube-apiserver's audit policy and ``audit.k8s.io/v1`` Events as JSON lines.

An :class:`AuditLog` wraps the server's request handler (:meth:`AuditLog.around`): for
each request it evaluates the :class:`AuditPolicy` — upstream's ``audit.k8s.io/v1``
Policy: the first rule matching the user, groups, verb, resource, namespace or
non-resource URL gives the level, no match means ``None`` — and writes an Event per stage
not omitted:

* ``RequestReceived`` once the user is known (the server calls :func:`note_user` right
  after authentication; a request that fails authentication is audited without a user);
* ``ResponseStarted`` for a streamed or upgraded response (watch, exec), whose
  ``ResponseComplete`` comes when the stream ends;
* ``ResponseComplete`` with ``responseStatus`` (the code, and for failures the Status);
* ``Panic`` when the handler raised (the HTTP layer answers 500).

The level decides what an Event carries, as upstream: ``Metadata`` the user, verb,
``objectRef``, source IPs, user agent, response status and timestamps; ``Request`` also the
``requestObject``; ``RequestResponse`` also the ``responseObject``. ``omitManagedFields``
drops ``metadata.managedFields`` from the objects logged.

Events go to a file (``--audit-log-path``), rotated when it passes ``--audit-log-maxsize``
megabytes into ``<name>-<timestamp>.<ext>`` files, ``--audit-log-maxbackup`` of them kept,
as upstream's lumberjack does; ``-`` writes to standard output. Writes are synchronous, as
upstream's default ``blocking`` mode: an Event is on disk before the response leaves.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import yaml

from kubetrio.api.scheme import Scheme
from kubetrio.handler import Request, Response
from kubetrio.providers import UserInfo

from . import _validation
from ._routes import ResourcePath, parse_resource_path
from ._status import ApiError

API_VERSION = "audit.k8s.io/v1"
LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
MUTATING_VERBS = ("create", "update", "patch", "delete", "deletecollection")

DEFAULT_POLICY_YAML = f"""\
# kubetrio's default audit policy: who changed what, with no request or response bodies.
apiVersion: {API_VERSION}
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [{", ".join(MUTATING_VERBS)}]
"""
"""The policy ``kubetrio server``/``up`` audit with when no ``--audit-policy-file`` is given:
every mutating request at ``Metadata``, nothing else."""


class AuditPolicyError(ValueError):
    """An audit policy that cannot be used; one line naming the file and the field."""


# --- the policy --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupResources:
    """A rule's resources in one API group (``""`` the core group)."""

    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PolicyRule:
    """One rule of a Policy; empty lists match anything."""

    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool | None = None


@dataclasses.dataclass(frozen=True)
class RequestAttributes:
    """What a rule is matched against (upstream's authorizer attributes)."""

    user: UserInfo | None
    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def _path_matches(path: str, spec: str) -> bool:
    return spec in ("*", path) or (spec.endswith("*") and path.startswith(spec.rstrip("*")))


def _resource_matches(rule: PolicyRule, attrs: RequestAttributes) -> bool:
    if not attrs.resource_request:
        return False
    if rule.namespaces and attrs.namespace not in rule.namespaces:
        return False  # cluster-scoped resources have the namespace ""
    if not rule.resources:
        return True
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for group in rule.resources:
        if group.group != attrs.api_group:
            continue
        if not group.resources:
            return True
        if group.resource_names and attrs.name not in group.resource_names:
            continue
        for resource in group.resources:
            if resource in (combined, "*"):
                return True
            if (
                attrs.subresource
                and resource.startswith("*/")
                and resource[2:] == attrs.subresource
            ):
                return True
            if resource.endswith("/*") and resource[:-2] == attrs.resource:
                return True
    return False


def rule_matches(rule: PolicyRule, attrs: RequestAttributes) -> bool:
    """Whether ``rule`` applies to a request, as upstream's policy checker decides."""
    user = attrs.user
    if rule.users and (user is None or user.name not in rule.users):
        return False
    if rule.user_groups and (user is None or not set(user.groups) & set(rule.user_groups)):
        return False
    if rule.verbs and attrs.verb not in rule.verbs:
        return False
    if rule.namespaces or rule.resources:
        return _resource_matches(rule, attrs)
    if rule.non_resource_urls:
        return not attrs.resource_request and any(
            _path_matches(attrs.path, spec) for spec in rule.non_resource_urls
        )
    return True


@dataclasses.dataclass(frozen=True)
class AuditPolicy:
    """An ``audit.k8s.io/v1`` Policy: rules in order, the first match decides."""

    rules: tuple[PolicyRule, ...]
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool = False

    def evaluate(self, attrs: RequestAttributes) -> tuple[str, frozenset[str], bool]:
        """(level, stages omitted, whether managedFields are omitted) for a request."""
        for rule in self.rules:
            if rule_matches(rule, attrs):
                omit_fields = (
                    self.omit_managed_fields
                    if rule.omit_managed_fields is None
                    else rule.omit_managed_fields
                )
                return rule.level, frozenset(self.omit_stages + rule.omit_stages), omit_fields
        return "None", frozenset(self.omit_stages), self.omit_managed_fields


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuditPolicyError(f"{field}: Invalid value: must be a list of strings")
    return tuple(value)


def _stages(value: Any, field: str) -> tuple[str, ...]:
    stages = _strings(value, field)
    for i, stage in enumerate(stages):
        if stage not in STAGES:
            raise AuditPolicyError(
                f'{field}[{i}]: Unsupported value: "{stage}": supported values: '
                + ", ".join(f'"{s}"' for s in STAGES)
            )
    return stages


def _rule(raw: Any, field: str) -> PolicyRule:
    if not isinstance(raw, dict):
        raise AuditPolicyError(f"{field}: Invalid value: a rule must be an object")
    level = raw.get("level")
    if level not in LEVELS:
        raise AuditPolicyError(
            f'{field}.level: Unsupported value: "{level}": supported values: '
            + ", ".join(f'"{lv}"' for lv in LEVELS)
        )
    groups: list[GroupResources] = []
    for g, group in enumerate(raw.get("resources") or []):
        where = f"{field}.resources[{g}]"
        if not isinstance(group, dict):
            raise AuditPolicyError(f"{where}: Invalid value: must be an object")
        groups.append(
            GroupResources(
                group=str(group.get("group") or ""),
                resources=_strings(group.get("resources"), f"{where}.resources"),
                resource_names=_strings(group.get("resourceNames"), f"{where}.resourceNames"),
            )
        )
    rule = PolicyRule(
        level=level,
        users=_strings(raw.get("users"), f"{field}.users"),
        user_groups=_strings(raw.get("userGroups"), f"{field}.userGroups"),
        verbs=_strings(raw.get("verbs"), f"{field}.verbs"),
        resources=tuple(groups),
        namespaces=_strings(raw.get("namespaces"), f"{field}.namespaces"),
        non_resource_urls=_strings(raw.get("nonResourceURLs"), f"{field}.nonResourceURLs"),
        omit_stages=_stages(raw.get("omitStages"), f"{field}.omitStages"),
        omit_managed_fields=raw.get("omitManagedFields"),
    )
    if rule.non_resource_urls and (rule.resources or rule.namespaces):
        raise AuditPolicyError(
            f"{field}.nonResourceURLs: Invalid value: rules cannot apply to both regular "
            "resources and non-resource URLs"
        )
    return rule


def parse_audit_policy(text: str, source: str = "") -> AuditPolicy:
    """Parse an ``audit.k8s.io/v1`` Policy.

    :raises AuditPolicyError: naming ``source`` and the field that is wrong.
    """
    try:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AuditPolicyError(f"not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(doc, dict) or doc.get("kind") != "Policy":
            raise AuditPolicyError(f"expected an {API_VERSION} Policy")
        if doc.get("apiVersion") != API_VERSION:
            raise AuditPolicyError(
                f'apiVersion: Unsupported value: "{doc.get("apiVersion")}": '
                f'supported values: "{API_VERSION}"'
            )
        rules = doc.get("rules") or []
        if not isinstance(rules, list):
            raise AuditPolicyError("rules: Invalid value: must be a list")
        return AuditPolicy(
            rules=tuple(_rule(rule, f"rules[{i}]") for i, rule in enumerate(rules)),
            omit_stages=_stages(doc.get("omitStages"), "omitStages"),
            omit_managed_fields=bool(doc.get("omitManagedFields", False)),
        )
    except AuditPolicyError as exc:
        raise AuditPolicyError(f"{source}: {exc}" if source else str(exc)) from None


def load_audit_policy(path: Path | None) -> AuditPolicy:
    """The policy in ``path`` (``--audit-policy-file``); None: :data:`DEFAULT_POLICY_YAML`."""
    if path is None:
        return parse_audit_policy(DEFAULT_POLICY_YAML)
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuditPolicyError(f"audit policy file {path}: {exc.strerror or exc}") from None
    return parse_audit_policy(text, str(path))


# --- where Events go ---------------------------------------------------------------------

_log = logging.getLogger("kubetrio.apiserver.audit")


class AuditWriter:
    """Appends Event lines to a file, rotating by size; ``-`` is standard output.

    A line that cannot be written (the disk is full) is dropped and logged, as
    upstream's log backend does (``HandlePluginError``): auditing never fails the
    request it records, nor the server. ``dropped`` counts such lines.
    """

    def __init__(self, path: str, *, max_size_mb: int = 0, max_backups: int = 0) -> None:
        self.path = path
        self.max_bytes = max_size_mb * 1024 * 1024
        self.max_backups = max_backups
        self._out: BinaryIO
        self._size = 0
        self.dropped = 0
        self._failing = False  # the last write failed: the next good one says so
        self._torn = False  # a line was cut short: end it before the next one
        if path == "-":
            self._out = sys.stdout.buffer
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._out = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size

    def write(self, line: bytes) -> None:
        """Write one line (ends with a newline); a failure drops it (see the class)."""
        if self._torn:
            line = b"\n" + line
        try:
            if self.path == "-":
                self._out.write(line)
                self._out.flush()
                return
            if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            written = self._out.write(line) or 0
        except OSError as exc:
            self._dropped(exc)
            return
        self._size += written
        self._torn = written < len(line)
        if self._torn:  # a full disk takes part of a line and refuses the rest
            self._dropped(OSError(f"only {written} of {len(line)} bytes written"))
        elif self._failing:
            self._failing = False
            _log.warning("audit log %s writable again (%d events lost)", self.path, self.dropped)

    def _dropped(self, exc: OSError) -> None:
        self.dropped += 1
        if not self._failing:  # once per outage, not once per request
            _log.error("Error in audit plugin 'log' affecting 1 audit events: %s", exc)
            self._failing = True

    def _rotate(self) -> None:
        self._out.close()
        path = Path(self.path)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        os.replace(path, path.with_name(f"{path.stem}-{stamp}{path.suffix}"))
        if self.max_backups:
            old = sorted(path.parent.glob(f"{path.stem}-*{path.suffix}"))
            for stale in old[: -self.max_backups]:
                stale.unlink(missing_ok=True)
        self._open()

    def close(self) -> None:
        """Close the file (standard output stays open)."""
        if self.path != "-":
            self._out.close()


# --- one request's Events ----------------------------------------------------------------


class _MetaView(msgspec.Struct):
    name: str = ""
    namespace: str = ""


class _ObjectView(msgspec.Struct):
    metadata: _MetaView = msgspec.field(default_factory=_MetaView)
    details: _MetaView | None = None


_view_decoder = msgspec.json.Decoder(_ObjectView)
_encoder = msgspec.json.Encoder()
_current: contextvars.ContextVar[_Record | None] = contextvars.ContextVar(
    "kubetrio_audit_record", default=None
)


def _micro_time(at: datetime.datetime) -> str:
    """A MicroTime (``2006-01-02T15:04:05.000000Z``); isoformat is several times faster
    than strftime, which counts at one call per Event."""
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _without_managed_fields(obj: Any) -> Any:
    if isinstance(obj, dict):
        metadata = obj.get("metadata")
        if isinstance(metadata, dict) and "managedFields" in metadata:
            obj = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
        if isinstance(obj.get("items"), list):
            obj = {**obj, "items": [_without_managed_fields(item) for item in obj["items"]]}
    return obj


def request_attributes(
    scheme: Scheme, request: Request, user: UserInfo | None
) -> RequestAttributes:
    """The verb and what a request addresses, as the server's routing reads them."""
    path = request.path.rstrip("/") or "/"
    try:
        target = parse_resource_path(scheme, path)
    except ApiError:
        target = None
    if target is None:
        return RequestAttributes(user=user, verb=request.method.lower(), path=path)
    return RequestAttributes(
        user=user,
        verb=_verb(request, target),
        path=path,
        resource_request=True,
        api_group=target.info.group,
        api_version=target.info.version,
        resource=target.info.resource,
        subresource=target.subresource,
        namespace=target.namespace,
        name=target.name,
    )


def _verb(request: Request, target: ResourcePath) -> str:
    # The server's own mapping (ApiServer._resource); watch=<junk> counts as no watch here.
    watch = request.query.get("watch", [""])[0] in ("1", "t", "T", "TRUE", "true", "True")
    method = request.method
    if target.name:
        if method == "GET":
            return "watch" if watch else "get"
        return {"PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}.get(
            method, method.lower()
        )
    if method == "GET":
        return "watch" if watch else "list"
    return {"POST": "create", "DELETE": "deletecollection"}.get(method, method.lower())


class _Record:
    """The audit state of one request, from receipt to its last stage."""

    def __init__(self, log: AuditLog, scheme: Scheme, request: Request) -> None:
        self.log = log
        self.scheme = scheme
        self.request = request
        self.received = datetime.datetime.now(datetime.UTC)
        self.audit_id = request.headers.get("audit-id") or str(uuid.uuid4())
        self.user: UserInfo | None = None
        self.decided: tuple[str, frozenset[str], bool] | None = None
        self.attrs: RequestAttributes | None = None
        self.annotations: dict[str, str] = {}

    def authenticated(self, user: UserInfo) -> None:
        self.user = user
        self._decide()

    def _decide(self) -> tuple[str, frozenset[str], bool]:
        if self.decided is None:
            self.attrs = request_attributes(self.scheme, self.request, self.user)
            self.decided = self.log.policy.evaluate(self.attrs)
            self.emit("RequestReceived", None)
        return self.decided

    def emit(self, stage: str, response: Response | None, message: str = "") -> None:
        level, omitted, omit_fields = self._decide()
        if level == "None" or stage in omitted:
            return
        attrs = self.attrs
        assert attrs is not None
        request = self.request
        event: dict[str, Any] = {
            "kind": "Event",
            "apiVersion": API_VERSION,
            "level": level,
            "auditID": self.audit_id,
            "stage": stage,
            "requestURI": request.target,
            "verb": attrs.verb,
            "user": _user(self.user),
        }
        forwarded = [
            ip.strip() for ip in request.headers.get("x-forwarded-for", "").split(",") if ip.strip()
        ]
        remote = _source_ip(request.remote)
        sources = forwarded + ([remote] if remote and remote not in forwarded else [])
        if sources:
            event["sourceIPs"] = sources
        if "user-agent" in request.headers:
            event["userAgent"] = request.headers["user-agent"]
        if attrs.resource_request:
            event["objectRef"] = self._object_ref(attrs, response)
        if response is not None:
            event["responseStatus"] = _response_status(response)
        elif stage == "Panic":
            event["responseStatus"] = {
                "metadata": {},
                "status": "Failure",
                "message": f"APIServer panic'd: {message}",
                "reason": "InternalError",
                "code": 500,
            }
        if level in ("Request", "RequestResponse") and request.body and response is not None:
            try:
                body = _validation.decode_body(request, expect=object)
            except ApiError:
                body = None
            if body is not None:
                event["requestObject"] = _without_managed_fields(body) if omit_fields else body
        if (
            level == "RequestResponse"
            and response is not None
            and response.body
            and (response.content_type or "").startswith("application/json")
        ):
            try:
                answer = msgspec.json.decode(response.body)
            except msgspec.DecodeError:
                answer = None
            if answer is not None:
                event["responseObject"] = _without_managed_fields(answer) if omit_fields else answer
        event["requestReceivedTimestamp"] = _micro_time(self.received)
        event["stageTimestamp"] = _micro_time(datetime.datetime.now(datetime.UTC))
        if self.annotations:
            event["annotations"] = dict(self.annotations)
        self.log.writer.write(_encoder.encode(event) + b"\n")

    def _object_ref(self, attrs: RequestAttributes, response: Response | None) -> dict[str, Any]:
        namespace, name = attrs.namespace, attrs.name
        if not name and attrs.verb == "create":
            # A create names its object in the body: taken from the answer (the created
            # object, or a Status's details), else from the request.
            for body in (response.body if response is not None else b"", self.request.body):
                try:
                    view = _view_decoder.decode(body) if body else None
                except msgspec.DecodeError:
                    continue
                if view is not None:
                    name = view.metadata.name or (view.details.name if view.details else "")
                    if name:
                        break
        ref: dict[str, Any] = {"resource": attrs.resource}
        if namespace:
            ref["namespace"] = namespace
        if name:
            ref["name"] = name
        if attrs.api_group:
            ref["apiGroup"] = attrs.api_group
        ref["apiVersion"] = attrs.api_version
        if attrs.subresource:
            ref["subresource"] = attrs.subresource
        return ref


def _source_ip(remote: str) -> str:
    """The address of ``host:port`` as the HTTP server writes it; in-process requests
    (``in-process``) have none."""
    host = remote.rpartition(":")[0].strip("[]")
    return host if host[:1].isdigit() or ":" in host else ""


def _user(user: UserInfo | None) -> dict[str, Any]:
    if user is None:
        return {}
    found: dict[str, Any] = {"username": user.name}
    if user.uid:
        found["uid"] = user.uid
    if user.groups:
        found["groups"] = list(user.groups)
    if user.extra:
        found["extra"] = {k: list(v) for k, v in user.extra.items()}
    return found


def _response_status(response: Response) -> dict[str, Any]:
    status: dict[str, Any] = {"metadata": {}}
    if response.status >= 300 and response.body and response.stream is None:
        try:
            failure = msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            failure = None
        if isinstance(failure, dict) and failure.get("kind") == "Status":
            for key in ("status", "message", "reason", "details"):
                if key in failure:
                    status[key] = failure[key]
    status["code"] = response.status
    return status


def note_user(user: UserInfo) -> None:
    """Tell the audit record of the running request who made it (after authentication)."""
    record = _current.get()
    if record is not None:
        record.authenticated(user)


def annotate(annotations: Mapping[str, str]) -> None:
    """Add annotations to the audit Events of the running request from now on, as
    upstream's ``audit.AddAuditAnnotations`` (the authorization decision, what
    admission plugins report); a key set before keeps its first value, as upstream's."""
    record = _current.get()
    if record is not None:
        for key, value in annotations.items():
            record.annotations.setdefault(key, value)


class AuditLog:
    """Audits an API server's requests by a policy into a writer."""

    def __init__(self, policy: AuditPolicy, writer: AuditWriter) -> None:
        self.policy = policy
        self.writer = writer

    async def around(
        self, scheme: Scheme, request: Request, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Answer ``request`` with ``handler``, writing its Events (``scheme`` tells
        resources from other paths)."""
        record = _Record(self, scheme, request)
        token = _current.set(record)
        try:
            response = await handler(request)
        except Exception as exc:
            record.emit("Panic", None, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            _current.reset(token)
        response.headers.append(("audit-id", record.audit_id))
        if response.stream is not None:
            record.emit("ResponseStarted", response)
            producer = response.stream

            async def audited_stream(channel: Any) -> None:
                try:
                    await producer(channel)
                finally:
                    record.emit("ResponseComplete", response)

            response.stream = audited_stream
        elif response.upgrade is not None:
            record.emit("ResponseStarted", response)
            upgrade = response.upgrade

            async def audited_upgrade(stream: Any, rest: bytes) -> None:
                try:
                    await upgrade(stream, rest)
                finally:
                    record.emit("ResponseComplete", response)

            response.upgrade = audited_upgrade
        else:
            record.emit("ResponseComplete", response)
        return response

    def close(self) -> None:
        """Close the writer."""
        self.writer.close()


def open_audit_log(
    path: str,
    *,
    policy: AuditPolicy | None = None,
    max_size_mb: int = 0,
    max_backups: int = 0,
) -> AuditLog:
    """An :class:`AuditLog` writing to ``path`` (``-``: standard output), by ``policy``
    (None: :data:`DEFAULT_POLICY_YAML`)."""
    writer = AuditWriter(path, max_size_mb=max_size_mb, max_backups=max_backups)
    return AuditLog(policy or load_audit_policy(None), writer)
