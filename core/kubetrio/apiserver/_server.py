"""The Kubernetes API server: routes requests to discovery, OpenAPI and resource handlers.

Request path: HTTP (``_http``) → route (``_routes``) → authenticate → authorize (plugin
hooks) → decode and check the body (``_validation``) → admission hooks → registry
(``_registry``, over the store) → JSON, Table (``_tables``) or a watch stream.

Every failure leaves as a Kubernetes ``Status`` (``_status``); an unexpected exception is
a 500 Status and the server keeps serving.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from functools import partial
from typing import Any

import trio

import kubetrio
from kubetrio import prom, streams
from kubetrio.api import selectors
from kubetrio.api.scheme import METRICS_GROUP, ResourceInfo, Scheme
from kubetrio.handler import BadQueryParameter, Request, Response
from kubetrio.kubeobject import KubeObject
from kubetrio.plugins import AdmissionPluginFailed, PluginManager
from kubetrio.providers import (
    AdmissionDenied,
    AdmissionRequest,
    AuthorizationAttributes,
    AuthorizationDecision,
    AuthRequest,
    UserInfo,
)
from kubetrio.store import Store, StoreError, noted

from . import (
    _audit,
    _certificates,
    _corrupt,
    _crds,
    _eviction,
    _fairness,
    _history,
    _limits,
    _managed,
    _nodeproxy,
    _patch,
    _prom,
    _proxy,
    _reviews,
    _strategies,
    _tables,
    _validation,
)
from . import _objects as objects
from ._access import authenticated, forbidden, impersonate
from ._registry import (
    ListPage,
    ObjectFilter,
    Registry,
    WatchEvent,
    WatchProgress,
    bookmark,
    match_all,
)
from ._resourcemetrics import ResourceMetrics
from ._routes import ResourcePath, parse_resource_path
from ._services import ServiceAllocator
from ._status import ApiError, bad_request, conflict, invalid, qualified, status_body
from ._strategies import Strategies, keep_field
from ._tokens import BINDABLE_KINDS, JWKS_PATH, OPENID_CONFIGURATION_PATH, ServiceAccountTokens

log = logging.getLogger("kubetrio.apiserver")

KUBERNETES_VERSION = kubetrio.KUBERNETES_VERSION
"""The Kubernetes release whose API this server speaks (for /version and client checks)."""

ANONYMOUS = UserInfo(name="system:anonymous", groups=("system:unauthenticated",))
LOOPBACK = UserInfo(name="system:apiserver", groups=("system:masters",))
"""Who the server's own in-process loopback client is (its caches for plugins)."""
AUDIT_DECISION = "authorization.k8s.io/decision"
AUDIT_REASON = "authorization.k8s.io/reason"
"""The audit annotations of a request's authorization, as kube-apiserver's."""
AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
SCALE_DEFINITION = "io.k8s.api.autoscaling.v1.Scale"
NAMESPACE_CACHE_SECONDS = 1.0
WATCH_BOOKMARK_INTERVAL = 10.0
DEFAULT_WATCH_TIMEOUT = (1800, 3600)
"""Watches without timeoutSeconds end at a random point in this range, as kube-apiserver's."""
_ADMISSION_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "admission_warnings", default=None
)
"""Warnings admission plugins gave during the current request (``AdmissionRequest.warnings``),
sent as ``Warning`` headers on its answer, success or failure, as kube-apiserver does."""


def json_response(
    value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON response."""
    return Response(status=status, body=objects.encode(value), headers=headers or [])


class ApiServer:
    """Serves the Kubernetes API for one store and scheme.

    :param store: where objects live.
    :param scheme: the served resources (``Scheme.builtin()`` plus plugins' kinds).
    :param plugins: the plugin manager whose auth and admission hooks are called; when
        None, every request is allowed (an embedded, single-user control plane).
    :param allow_anonymous_admin: when no authorizer decides, allow the request. The
        default for a local cluster until RBAC is configured.
    """

    def __init__(
        self,
        store: Store,
        scheme: Scheme | None = None,
        *,
        plugins: PluginManager | None = None,
        allow_unauthorized: bool = True,
        server_address: str = "127.0.0.1:6443",
    ) -> None:
        self.scheme = scheme or Scheme.builtin()
        store = _prom.timed_store(store)  # etcd_request_duration_seconds
        self.registry = Registry(store)
        self.services = ServiceAllocator(store)
        self.registry.on_deleted[("", "services")] = self.services.release
        self.plugins = plugins
        self.allow_unauthorized = allow_unauthorized
        self.server_address = server_address
        self.external_address = server_address
        """``host:port`` where the cluster's pods reach this server (the advertised
        address): the host of the service account issuer's ``jwks_uri``."""
        self._open_namespaces: dict[str, float] = {}
        self.strategies = Strategies(self.registry, self.services, self._namespace_terminated)
        self.kubelet_token = ""
        """Bearer token the server presents to node agents (pods/log)."""
        self.kubelet_tls: ssl.SSLContext | None = None
        """TLS to node agents (HTTPS, this client certificate, their certificates verified);
        None: plain HTTP with :attr:`kubelet_token`."""
        self.service_account_tokens = ServiceAccountTokens()
        """Signs ``serviceaccounts/token`` requests (an in-memory key unless replaced)."""
        self.on_namespace_deleted: Callable[[], None] = lambda: None
        """Called after a namespace is marked Terminating (wakes the finalizer)."""
        self.ready = trio.Event()
        """Set when requests may be served. Whoever starts the server's plugin caches
        replaces it with an unset event and sets it once they synced: until then requests
        wait (the loopback client's pass) and ``/readyz`` says not ready."""
        self.ready.set()
        self.audit: _audit.AuditLog | None = None
        """Where requests are audited (``_audit``); None: not audited."""
        self.object_counts = _prom.ObjectCounts()
        """When ``/metrics`` counts the stored objects again."""
        self.fairness = _fairness.Fairness()
        """API Priority and Fairness (``_fairness``): seats per priority level, fair queues."""
        self.resource_metrics = ResourceMetrics(
            self.registry, self.scheme, lambda: (self.kubelet_tls, self.kubelet_token)
        )
        """``metrics.k8s.io``: the node agents' resource metrics, scraped by ``run``."""

    # --- entry point --------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one HTTP request (the ``_http`` handler), audited when ``audit`` is set,
        counted in the metrics (``_prom``) unless they are off."""
        if prom.switch.on:
            return await _prom.around(request, self._audited)
        return await self._audited(request)

    async def _audited(self, request: Request) -> Response:
        if self.audit is None:
            return await self._handle(request)
        return await self.audit.around(self.scheme, request, self._handle)

    async def _handle(self, request: Request) -> Response:
        # How heavy this request is decides whether its work leaves the loop (_limits).
        weight = _limits.WEIGHT.set(len(request.body))
        warnings: list[str] = []
        token = _ADMISSION_WARNINGS.set(warnings)
        flow_headers: list[tuple[str, str]] = []  # APF's (_fairness)
        flow_token = _fairness.HEADERS.set(flow_headers)
        try:
            try:
                try:
                    response = await self._dispatch(request)
                except BadQueryParameter as exc:
                    raise bad_request(str(exc)) from None
                except StoreError as exc:
                    # The store failed the request (a full disk, etcd's quota): say what it
                    # said, as kube-apiserver passes etcd's error on, not a bare 500.
                    raise ApiError(
                        500, f"Internal error occurred: {exc}", reason="InternalError"
                    ) from exc
            except ApiError as exc:
                # As kube-apiserver: Retry-After only when the Status says when. client-go
                # retries by itself on that header, so an eviction refused by a budget
                # (no delay given) reaches kubectl drain at once.
                retry = (exc.details or {}).get("retryAfterSeconds")
                headers = [("retry-after", str(retry))] if retry else []
                response = Response(
                    status=exc.code, body=objects.encode(exc.status()), headers=headers
                )
        finally:
            _ADMISSION_WARNINGS.reset(token)
            _fairness.HEADERS.reset(flow_token)
            _limits.WEIGHT.reset(weight)
            _validation.forget_predecoded()
        response.headers.extend(flow_headers)
        if warnings:
            response.headers.extend(_warning_headers(warnings))
        return response

    async def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez"):
            return Response(body=b"ok", content_type="text/plain; charset=utf-8")
        if path == "/readyz":
            if not self.ready.is_set():
                raise ApiError(503, "the API server's caches have not synced yet")
            return Response(body=b"ok", content_type="text/plain; charset=utf-8")
        if not request.loopback and not self.ready.is_set():
            await self.ready.wait()
        user = self._authenticate(request)
        _audit.note_user(user)
        target = parse_resource_path(self.scheme, path)
        async with self.fairness.seat(request, user, target, path):  # APF: may wait, or 429
            return await self._classified(request, path, user, target)

    async def _classified(
        self, request: Request, path: str, user: UserInfo, target: ResourcePath | None
    ) -> Response:
        if target is None:
            self._authorize(user, AuthorizationAttributes(verb=request.method.lower(), path=path))
            if path in (OPENID_CONFIGURATION_PATH, JWKS_PATH) and request.method == "GET":
                return await self._issuer_discovery(path)
            if path == "/metrics" and request.method == "GET":
                return await _prom.metrics_response(
                    self.registry.store, self.scheme, self.object_counts
                )
            return self._non_resource(request, path)
        return await self._resource(request, user, target)

    async def _issuer_discovery(self, path: str) -> Response:
        """The service account issuer's OIDC discovery document and key set (the key
        may be made now: off the event loop)."""
        tokens = self.service_account_tokens
        if path == JWKS_PATH:
            body, media = await trio.to_thread.run_sync(tokens.jwks), "application/jwk-set+json"
        else:
            body, media = tokens.openid_configuration(self.external_address), "application/json"
        return Response(
            body=objects.encode(body),
            content_type=media,
            headers=[("cache-control", "public, max-age=3600")],
        )

    # --- auth ---------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> UserInfo:
        if request.loopback:
            return LOOPBACK
        if request.user is not None:
            # An in-process component's own identity (only the client's in-process
            # transport sets it; the HTTP server never does): authorized like any user.
            component = authenticated(request.user) or request.user
            return impersonate(request.headers, component, self._decide)
        if self.plugins is None:
            return impersonate(request.headers, ANONYMOUS, self._decide)
        user = self.plugins.authenticate(
            request=AuthRequest(
                headers=request.headers,
                client_certificate=request.client_certificate,
                remote_address=request.remote,
            )
        )
        # Credentials nobody accepts are refused, as kube-apiserver refuses them; with no
        # authenticator at all a token is not a credential anyone checks (anonymous).
        if (
            user is None
            and "authorization" in request.headers
            and self.plugins.has_authenticators()
        ):
            raise ApiError(401, "Unauthorized")
        return impersonate(request.headers, authenticated(user) or ANONYMOUS, self._decide)

    def _decide(self, user: UserInfo, attributes: AuthorizationAttributes) -> AuthorizationDecision:
        """The authorizers' decision, with the server's default when none has an opinion."""
        if user is LOOPBACK:
            return AuthorizationDecision(allowed=True, reason="the API server's loopback client")
        decision = (
            self.plugins.authorize(user=user, attributes=attributes) if self.plugins else None
        )
        if decision is not None:
            return decision
        if self.plugins is None or self.allow_unauthorized:
            return AuthorizationDecision(
                allowed=True,
                reason="no authorizer has an opinion; this server allows such requests",
            )
        return AuthorizationDecision(allowed=False)

    def _authenticate_token(self, request: AuthRequest) -> UserInfo | None:
        return authenticated(self.plugins.authenticate(request=request)) if self.plugins else None

    def _authorize(self, user: UserInfo, attributes: AuthorizationAttributes) -> None:
        decision = self._decide(user, attributes)
        _audit.annotate(
            {
                AUDIT_DECISION: "allow" if decision.allowed else "forbid",
                AUDIT_REASON: decision.reason,
            }
        )
        if not decision.allowed:
            raise forbidden(user, attributes, decision.reason)

    def _rules_for(self, user: UserInfo, namespace: str) -> KubeObject | None:
        return self.plugins.rules_for(user=user, namespace=namespace) if self.plugins else None

    # --- non-resource paths -------------------------------------------------------------

    def _non_resource(self, request: Request, path: str) -> Response:
        accept = request.headers.get("accept", "")
        if path == "/version":
            major, minor, _patch = KUBERNETES_VERSION
            return json_response(
                {
                    "major": str(major),
                    "minor": str(minor),
                    "gitVersion": kubetrio.KUBERNETES_GIT_VERSION,
                    "gitCommit": f"kubetrio-{kubetrio.__version__}",
                    "gitTreeState": "clean",
                    "buildDate": "",
                    "goVersion": "",
                    "compiler": "kubetrio",
                    "platform": "linux/amd64",
                }
            )
        if path in ("/api", "/apis"):
            core = path == "/api"
            for media, version in ((AGGREGATED_V2, "v2"), (AGGREGATED_V2BETA1, "v2beta1")):
                if f"v={version};as=APIGroupDiscoveryList" in accept.replace(" ", ""):
                    body = self.scheme.aggregated_discovery(core=core, version=version)
                    return Response(
                        body=objects.encode(body), content_type=media, headers=[("vary", "Accept")]
                    )
            document = (
                self.scheme.api_versions(self.server_address)
                if core
                else self.scheme.api_group_list()
            )
            return Response(body=_encode_model(document), headers=[("vary", "Accept")])
        parts = [p for p in path.split("/") if p]
        if parts[0] == "api" and len(parts) == 2:
            found = self.scheme.api_resource_list("", parts[1])
            if found is not None:
                return Response(body=_encode_model(found))
        if parts[0] == "apis" and len(parts) == 2:
            group = self.scheme.api_group(parts[1])
            if group is not None:
                return Response(body=_encode_model(group))
        if parts[0] == "apis" and len(parts) == 3:
            found = self.scheme.api_resource_list(parts[1], parts[2])
            if found is not None:
                return Response(body=_encode_model(found))
        if path == "/openapi/v2":
            # The v3 documents as one Swagger 2.0 protobuf (explain's openapiv2 output,
            # kubectl 1.27/1.28's eager fetch); see _openapi_v2.
            from ._openapi import documents_of
            from ._openapi_v2 import openapi_v2_protobuf

            documents = documents_of(self.scheme, kubernetes_version=KUBERNETES_VERSION)
            return Response(body=openapi_v2_protobuf(documents), content_type=OPENAPI_V2_PROTOBUF)
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            # Generated from our models, for kubectl 1.29+ explain and field validation.
            from ._openapi import serve_openapi_v3

            return serve_openapi_v3(
                self.scheme, request, path, kubernetes_version=KUBERNETES_VERSION
            )
        raise ApiError(404, "the server could not find the requested resource")

    # --- resources ----------------------------------------------------------------------

    async def _resource(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        method = request.method
        watch = request.flag("watch")
        if target.name:
            verb = {
                "GET": "get",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
                "POST": "create",
            }.get(method, "")
            if watch and method == "GET":
                verb = "watch"
        else:
            verb = {
                "GET": "watch" if watch else "list",
                "POST": "create",
                "DELETE": "deletecollection",
            }.get(method, "")
        _prom.note_resource(request, verb, target)
        if not verb:
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        self._authorize(
            user,
            AuthorizationAttributes(
                verb=verb,
                api_group=info.group,
                api_version=info.version,
                resource=info.resource,
                subresource=target.subresource,
                namespace=target.namespace,
                name=target.name,
            ),
        )
        _validation.check_write_options(request, verb)
        await _validation.predecode(request)
        # Who writes, for the history of everything this request stores (_history).
        with noted(_history.write_note(request, user, verb, target.subresource)):
            if info.custom is not None and info.custom.deprecation_warning:
                # Every request to a deprecated CRD version carries the warning.
                response = await self._versioned(request, user, target, verb)
                response.headers.extend(_warning_headers([info.custom.deprecation_warning]))
                return response
            return await self._versioned(request, user, target, verb)

    async def _versioned(
        self, request: Request, user: UserInfo, target: ResourcePath, verb: str
    ) -> Response:
        info = target.info
        if info.group == METRICS_GROUP:  # served from the agents' figures, not stored
            if target.subresource:
                raise ApiError(404, "the server could not find the requested resource")
            return await self.resource_metrics.serve(
                request, info, target.namespace, target.name, verb, as_table=_wants_table(request)
            )
        if target.subresource:
            return await self._subresource(request, user, target, verb)
        if not info.has_verb(verb):
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        if info.namespaced and not target.namespace and verb not in ("list", "watch"):
            raise ApiError(404, "the server could not find the requested resource")
        handler: Callable[[Request, UserInfo, ResourcePath], Awaitable[Response]] = {
            "get": self._get,
            "list": self._list,
            "watch": self._watch,
            "create": self._create,
            "update": self._update,
            "patch": self._patch,
            "delete": self._delete,
            "deletecollection": self._delete_collection,
        }[verb]
        return await handler(request, user, target)

    async def _get(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        found = await self.registry.get(target.info, target.namespace, target.name)
        body = objects.with_resource_version(found.value, found.mod_revision)
        if _wants_table(request):
            obj = objects.decode(body)
            table = _tables.table(
                target.info,
                [obj],
                str(found.mod_revision),
                include_object=request.param("includeObject", "Metadata"),
            )
            return json_response(table)
        return Response(body=body)

    def _filter(self, request: Request, info: ResourceInfo, namespace: str) -> ObjectFilter:
        try:
            labels = selectors.parse_label_selector(request.param("labelSelector"))
            fields = selectors.parse_field_selector(request.param("fieldSelector"))
            fields.check_supported(info.group, info.resource)
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        if labels.is_empty() and fields.is_empty():
            return _everything
        group, resource = info.group, info.resource

        def matches(obj: KubeObject) -> bool:
            metadata = obj.get("metadata") or {}
            if not labels.matches(metadata.get("labels") or {}):
                return False
            return fields.is_empty() or fields.matches(
                selectors.object_fields(group, resource, obj)
            )

        return matches

    async def _list(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        limit = _int_param(request, "limit", 0)
        _int_param(request, "timeoutSeconds", 0)  # range-checked, as upstream's ListOptions
        page = await self.registry.list(
            info,
            target.namespace,
            matches=self._filter(request, info, target.namespace),
            limit=limit,
            continue_token=request.param("continue"),
            resource_version=request.param("resourceVersion"),
            resource_version_match=request.param("resourceVersionMatch"),
        )
        if _wants_table(request):
            # Decoding every item is the heavy part of a large list: off the loop.
            weight = _limits.weigh(sum(len(item) for item in page.items))
            try:
                body = await _limits.offload(
                    _table_of_page, info, page, request.param("includeObject", "Metadata")
                )
            finally:
                _limits.WEIGHT.reset(weight)
            return Response(body=body)
        metadata = f'"resourceVersion":"{page.revision}"'
        if page.continue_token:
            metadata += f',"continue":"{page.continue_token}"'
        body = b"".join(
            (
                b'{"kind":"',
                info.list_kind.encode(),
                b'","apiVersion":"',
                info.api_version.encode(),
                b'","metadata":{',
                metadata.encode(),
                b'},"items":[',
                b",".join(page.items),
                b"]}",
            )
        )
        return Response(body=body)

    async def _watch(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        matches = self._filter(request, info, target.namespace)
        if target.name:
            name = target.name
            inner = matches
            matches = lambda obj: (obj.get("metadata") or {}).get("name") == name and inner(obj)  # noqa: E731
        timeout = _int_param(request, "timeoutSeconds", 0) or random.randint(*DEFAULT_WATCH_TIMEOUT)
        bookmarks = request.flag("allowWatchBookmarks")
        as_table = _wants_table(request)
        initial_events = _watch_list_options(request)
        resource_version = request.param("resourceVersion")
        progress = WatchProgress()

        def events() -> AsyncGenerator[WatchEvent, None]:
            return self.registry.watch(
                info,
                target.namespace,
                matches=matches,
                resource_version=resource_version,
                initial_events=initial_events,
                progress=progress,
            )

        return Response(
            stream=partial(
                _watch_stream,
                info=info,
                events=events,
                timeout=timeout,
                bookmarks=bookmarks,
                as_table=as_table,
                # A quiet watch from a known version still gets bookmarks (at that version).
                start_revision=int(resource_version) if resource_version.isdigit() else 0,
                progress=progress.revision,
            )
        )

    async def _create(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        if target.name:
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        warnings: list[str] = []
        obj = await self._checked_body(request, info, warnings)
        if not self.strategies.of(info).stored:
            answered = _reviews.answer_review(
                info.resource,
                obj,
                user=user,
                namespace=target.namespace,
                authorize=self._decide,
                authenticate=self._authenticate_token,
                rules_for=self._rules_for,
            )
            return json_response(answered, 201, _warning_headers(warnings))
        body_namespace = (obj.get("metadata") or {}).get("namespace")
        if info.namespaced and body_namespace and body_namespace != target.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the "
                "namespace sent on the request"
            )
        created = await self._store_new(request, user, target, obj)
        return json_response(created, 201, _warning_headers(warnings))

    async def _store_new(
        self,
        request: Request,
        user: UserInfo,
        target: ResourcePath,
        obj: KubeObject,
        *,
        record_fields: bool = True,
    ) -> KubeObject:
        """The create path shared by POST and server-side apply of a new object.

        ``record_fields``: record the creator's ``Update`` managedFields (an apply has
        recorded its ``Apply`` entry already).
        """
        info = target.info
        metadata = obj.setdefault("metadata", {})
        if info.namespaced:
            metadata["namespace"] = target.namespace
        else:  # kube-apiserver clears a namespace given to a cluster-scoped object
            metadata.pop("namespace", None)
        _validation.validate_metadata(obj, info)
        if info.namespaced:
            await self._check_namespace_open(target.namespace)
        _crds.refuse_create_while_terminating(info)
        metadata["uid"] = objects.new_uid()  # server-set: a client's uid is never kept
        strategy = self.strategies.of(info)
        strategy.prepare_for_create(info, obj)
        strategy.record_requester(obj, user)
        if record_fields:
            await _limits.offload(_managed.record, request, info, None, obj)
        self._admit("CREATE", user, info, target, obj, None, request)
        dry_run = _dry_run(request)
        if not dry_run:
            await strategy.before_create(obj)
        try:
            return await self.registry.create(info, target.namespace, obj, dry_run=dry_run)
        except BaseException:
            if not dry_run:
                await strategy.create_failed(obj)
            raise

    async def _finish_update(
        self,
        request: Request,
        user: UserInfo,
        target: ResourcePath,
        current: KubeObject,
        new: KubeObject,
        *,
        record_fields: bool = True,
    ) -> KubeObject:
        """The steps every write of an existing object takes after its change is made."""
        info = target.info
        strategy = self.strategies.of(info)
        strategy.prepare_for_update(info, current, new)
        if record_fields:
            await _limits.offload(_managed.record, request, info, current, new)
        _validation.validate_metadata(new, info)
        strategy.validate_update(info, current, new)
        self._admit("UPDATE", user, info, target, new, current, request)
        return new

    async def _check_namespace_open(self, namespace: str) -> None:
        # Creates are the hot path: remember an open namespace for a second rather than
        # read it for every object (another API server's deletion shows within that time,
        # and the namespace finalizer removes anything created meanwhile).
        if self._open_namespaces.get(namespace, 0.0) > trio.current_time():
            return
        await self._read_namespace_open(namespace)
        self._open_namespaces[namespace] = trio.current_time() + NAMESPACE_CACHE_SECONDS

    async def _read_namespace_open(self, namespace: str) -> None:
        namespaces = self.scheme.resource("", "v1", "namespaces")
        assert namespaces is not None
        try:
            ns = await self.registry.get_object(namespaces, "", namespace)
        except ApiError as exc:
            raise ApiError(
                404,
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            ) from exc
        if (ns.get("status") or {}).get("phase") == "Terminating" or ns["metadata"].get(
            "deletionTimestamp"
        ):
            raise ApiError(
                403,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
                details={
                    "name": namespace,
                    "kind": "namespaces",
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {namespace} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    async def _checked_body(
        self, request: Request, info: ResourceInfo, warnings: list[str]
    ) -> KubeObject:
        obj: KubeObject = _validation.decode_body(request)
        _validation.check_kind(obj, info)
        return await _limits.offload(
            _validation.typed, obj, info, request.param("fieldValidation"), warnings
        )

    def _admit(
        self,
        operation: str,
        user: UserInfo,
        info: ResourceInfo,
        target: ResourcePath,
        obj: KubeObject | None,
        old: KubeObject | None,
        request: Request,
        *,
        kind: str = "",
        validate: bool = True,
    ) -> None:
        """Admission of a write; ``kind`` names a subresource's own body (``Eviction``,
        ``TokenRequest``), which is not validated as ``info``'s kind, nor is ``obj``
        without ``validate``."""
        validate = validate and not kind
        if self.plugins is None:
            if obj is not None and validate:
                _validation.validate_kind(info, obj, old)
            return
        name = target.name or ((obj or {}).get("metadata") or {}).get("name", "")
        admission = AdmissionRequest(
            operation=operation,  # type: ignore[arg-type]
            user=user,
            api_group=info.group,
            api_version=info.version,
            kind=kind or info.kind,
            resource=info.resource,
            subresource=target.subresource,
            namespace=target.namespace,
            name=name,
            object=obj,
            old_object=old,
            dry_run=_dry_run(request),
        )
        try:
            try:
                self.plugins.admission_mutate(request=admission)
                # Validated after mutating admission, so what a plugin changed is checked too.
                if obj is not None and validate:
                    _validation.validate_kind(info, obj, old)
                problems = self.plugins.admission_validate(request=admission)
            finally:
                collected = _ADMISSION_WARNINGS.get()
                if collected is not None:
                    collected.extend(admission.warnings)
                _audit.annotate(admission.audit_annotations)
        except AdmissionDenied as exc:
            raise _denied(info, name, exc) from exc
        except AdmissionPluginFailed as exc:
            # A plugin's bug: a 500 naming it, and the server goes on serving.
            raise ApiError(500, str(exc)) from exc
        if problems:
            raise ApiError(
                403,
                f'{_qualified(info)} "{name}" is forbidden: ' + "; ".join(problems),
                details={
                    "name": name,
                    "kind": info.resource,
                    **({"group": info.group} if info.group else {}),
                },
            )

    async def _update(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        warnings: list[str] = []
        obj = await self._checked_body(request, info, warnings)
        body_name = (obj.get("metadata") or {}).get("name")
        if body_name and body_name != target.name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on "
                f"the URL ({target.name})"
            )
        obj.setdefault("metadata", {})["name"] = target.name
        if info.namespaced:
            obj["metadata"]["namespace"] = target.namespace
        else:
            obj["metadata"].pop("namespace", None)
        _validation.validate_metadata(obj, info)

        async def replace(current: KubeObject) -> KubeObject:
            # A stale resourceVersion is a 409 before any validation of the change, as
            # upstream: the client re-reads and retries instead of seeing a 422 about
            # fields someone else changed meanwhile (a pod bound to a node).
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and str(wanted) != str(current["metadata"].get("resourceVersion")):
                raise conflict(info.resource, info.group, target.name)
            new = await _limits.offload(objects.deep_copy, obj)
            return await self._finish_update(request, user, target, current, new)

        updated = await self.registry.update(
            info, target.namespace, target.name, replace, dry_run=_dry_run(request)
        )
        return json_response(updated, 200, _warning_headers(warnings))

    async def _patch(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        warnings: list[str] = []
        kind = _validation.media_type(request)
        patch_body = _validation.decode_body(
            request, expect=list if kind == _validation.JSON_PATCH else dict
        )
        _managed.check_force(request, kind, _validation.APPLY_PATCH)
        if kind == _validation.APPLY_PATCH:
            return await self._apply(request, user, target, patch_body, warnings)

        async def patched(current: KubeObject) -> KubeObject:
            rv = current.get("metadata", {}).get("resourceVersion")
            if kind != _validation.JSON_PATCH:
                # A merge patch is a precondition only when it names a resourceVersion;
                # otherwise a concurrent write makes the registry re-apply it (no 409).
                current.get("metadata", {}).pop("resourceVersion", None)
            new = await _limits.offload(
                _patch.apply_patch, kind, current, patch_body, info.definition
            )
            _unless_patched(new, rv)
            _validation.check_kind(new, info)
            new = await _limits.offload(
                _validation.typed, new, info, request.param("fieldValidation"), warnings
            )
            return await self._finish_update(request, user, target, current, new)

        updated = await self.registry.update(
            info, target.namespace, target.name, patched, dry_run=_dry_run(request)
        )
        return json_response(updated, 200, _warning_headers(warnings))

    async def _apply(
        self,
        request: Request,
        user: UserInfo,
        target: ResourcePath,
        applied: KubeObject,
        warnings: list[str],
    ) -> Response:
        """Server-side apply: create when absent, else merge by field ownership (_managed)."""
        info = target.info
        _managed.manager_of(request, required=True)
        _validation.check_kind(applied, info)
        field_validation = request.param("fieldValidation")
        config = await _limits.offload(
            _managed.configuration, applied, info, field_validation, warnings
        )
        body_name = (config.get("metadata") or {}).get("name")
        if body_name and body_name != target.name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on "
                f"the URL ({target.name})"
            )
        try:
            await self.registry.get(info, target.namespace, target.name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            fresh = await _limits.offload(_managed.apply, request, info, None, config)
            obj = await _limits.offload(_validation.typed, fresh, info, field_validation, warnings)
            obj.setdefault("metadata", {})["name"] = target.name
            if fresh["metadata"].get("managedFields"):  # as recorded, not model-ordered
                obj["metadata"]["managedFields"] = fresh["metadata"]["managedFields"]
            created = await self._store_new(request, user, target, obj, record_fields=False)
            return json_response(created, 201, _warning_headers(warnings))

        applied_rv = (config.get("metadata") or {}).get("resourceVersion")

        async def merged(current: KubeObject) -> KubeObject:
            result = await _limits.offload(_managed.apply, request, info, current, config)
            managed = result["metadata"].get("managedFields")
            new = await _limits.offload(_validation.typed, result, info, field_validation, warnings)
            # A resourceVersion in the configuration is a precondition, as for any patch.
            new.setdefault("metadata", {})["resourceVersion"] = applied_rv or ""
            if managed is not None:  # as recorded (the model would reorder its keys)
                new["metadata"]["managedFields"] = managed
            return await self._finish_update(
                request, user, target, current, new, record_fields=False
            )

        updated = await self.registry.update(
            info, target.namespace, target.name, merged, dry_run=_dry_run(request)
        )
        return json_response(updated, 200, _warning_headers(warnings))

    def _delete_options(self, request: Request) -> KubeObject:
        options: KubeObject = {}
        if request.body.strip():
            options = _validation.decode_body(request)
        if request.param("propagationPolicy"):
            options["propagationPolicy"] = request.param("propagationPolicy")
        if request.param("gracePeriodSeconds"):
            # Negative is allowed: upstream treats it as "now" for pods (one second).
            options["gracePeriodSeconds"] = _int_param(
                request, "gracePeriodSeconds", 0, minimum=INT64_MIN
            )
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (
            not isinstance(grace, int)
            or isinstance(grace, bool)
            or not INT64_MIN <= grace <= INT64_MAX
        ):
            raise bad_request(f"gracePeriodSeconds must be a 64-bit integer, not {grace!r}")
        if "orphanDependents" in request.query:
            options["orphanDependents"] = request.flag("orphanDependents")
        if _corrupt.OPTION in request.query:
            options[_corrupt.OPTION] = request.flag(_corrupt.OPTION)
        policy = options.get("propagationPolicy")
        if policy not in (None, "", "Background", "Foreground", "Orphan"):
            raise bad_request(
                f'propagationPolicy must be Background, Foreground or Orphan, not "{policy}"'
            )
        return options

    async def _delete(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        info = target.info
        options = self._delete_options(request)
        if options.get(_corrupt.OPTION) is True:
            return await self._unsafe_delete(request, user, target, options)
        current = await self.registry.get_object(info, target.namespace, target.name)
        self._admit("DELETE", user, info, target, None, current, request)
        strategy = self.strategies.of(info)
        dry_run = _dry_run(request)
        if not dry_run:
            await strategy.before_delete(info, target.name)
        obj = await strategy.delete(info, target.namespace, target.name, options, dry_run=dry_run)
        return json_response(obj)

    async def _unsafe_delete(
        self, request: Request, user: UserInfo, target: ResourcePath, options: KubeObject
    ) -> Response:
        """Remove a corrupt object's key undecoded (see :mod:`._corrupt`)."""
        info = target.info
        attributes = AuthorizationAttributes(
            verb=_corrupt.VERB,
            api_group=info.group,
            api_version=info.version,
            resource=info.resource,
            namespace=target.namespace,
            name=target.name,
        )
        # system:masters, or an authorizer's explicit yes: "no authorizer has an opinion"
        # (which this server may allow) is not enough here. No plugins: no auth at all.
        if self.plugins is not None and "system:masters" not in user.groups:
            decision = self.plugins.authorize(user=user, attributes=attributes)
            if decision is None or not decision.allowed:
                scope = f' in the namespace "{target.namespace}"' if target.namespace else ""
                raise ApiError(
                    403,
                    f'{qualified(info.resource, info.group)} "{target.name}" is forbidden: '
                    f'User "{user.name}" cannot {_corrupt.VERB} resource{scope}',
                )
        _corrupt.check_options(info, target.name, options, _dry_run(request))
        return json_response(
            await _corrupt.unsafe_delete(self.registry, info, target.namespace, target.name)
        )

    def _namespace_terminated(self, name: str) -> None:
        """A namespace was marked Terminating: no more creates in it; wake its finalizer."""
        self._open_namespaces.pop(name, None)
        self.on_namespace_deleted()

    async def _delete_collection(
        self, request: Request, user: UserInfo, target: ResourcePath
    ) -> Response:
        info = target.info
        strategy = self.strategies.of(info)
        options = self._delete_options(request)
        page = await self.registry.list(
            info, target.namespace, matches=self._filter(request, info, target.namespace)
        )
        deleted = []
        for item in page.items:
            obj = objects.decode(item)
            meta = obj["metadata"]
            try:
                if not _dry_run(request):
                    await strategy.before_delete(info, meta["name"])
                gone = await strategy.delete(
                    info,
                    meta.get("namespace", ""),
                    meta["name"],
                    options,
                    dry_run=_dry_run(request),
                )
            except ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            deleted.append(gone)
        return json_response(
            {
                "kind": info.list_kind,
                "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(page.revision)},
                "items": deleted,
            }
        )

    # --- subresources -------------------------------------------------------------------

    async def _subresource(
        self, request: Request, user: UserInfo, target: ResourcePath, verb: str
    ) -> Response:
        info, sub = target.info, target.subresource
        if (info.group, info.resource) == _strategies.CERTIFICATE_SIGNING_REQUESTS and sub in (
            "status",
            "approval",
        ):
            finish = _certificates.finisher(info, sub, user, self._decide)
            return await self._status(request, user, target, verb, finish=finish)
        if sub == "history" and verb == "get":
            # Its history holds the object: reading it needs get on the object too.
            self._authorize(
                user,
                AuthorizationAttributes(
                    verb="get",
                    api_group=info.group,
                    api_version=info.version,
                    resource=info.resource,
                    namespace=target.namespace,
                    name=target.name,
                ),
            )
            return await _history.serve(
                self.registry, request, info, target.namespace, target.name, target.rest
            )
        if sub == "history":
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        if sub == "status":
            return await self._status(request, user, target, verb)
        if sub == "ephemeralcontainers" and (info.group, info.resource) == ("", "pods"):
            return await self._status(
                request,
                user,
                target,
                verb,
                field="spec.ephemeralContainers",
                finish=_strategies.check_ephemeral_containers,
            )
        if sub == "scale":
            return await self._scale(request, user, target, verb)
        if sub == "binding" and verb == "create":
            return await self._binding(request, user, target)
        if sub == "log" and verb == "get" and (info.group, info.resource) == ("", "pods"):
            return await self._pod_log(request, target)
        if sub in ("exec", "attach", "portforward") and (info.group, info.resource) == ("", "pods"):
            return await self._pod_stream(request, target, sub)
        if sub == "finalize" and verb == "update":
            return await self._status(request, user, target, verb, field="spec")
        if sub == "proxy" and (info.group, info.resource) in (("", "pods"), ("", "services")):
            return await self._proxy(request, target)
        if sub == "proxy" and (info.group, info.resource) == ("", "nodes"):
            return await self._node_proxy(request, target)
        if sub == "eviction" and verb == "create" and (info.group, info.resource) == ("", "pods"):
            budgets = self.scheme.resource("policy", "v1", "poddisruptionbudgets")
            assert budgets is not None
            eviction = _validation.decode_body(request)
            self._admit("CREATE", user, info, target, eviction, None, request, kind="Eviction")
            status = await _eviction.evict(
                self.registry,
                info,
                budgets,
                target.namespace,
                target.name,
                eviction,
                dry_run=_dry_run(request),
            )
            return json_response(status, 201)
        if sub == "token" and verb == "create" and info.resource == "serviceaccounts":
            tokens = _validation.decode_body(request)
            self._admit("CREATE", user, info, target, tokens, None, request, kind="TokenRequest")
            return await self._token_request(request, target)
        raise ApiError(
            404, f"the subresource {sub!r} of {info.resource} is not served yet", reason="NotFound"
        )

    async def _proxy(self, request: Request, target: ResourcePath) -> Response:
        """``pods/proxy`` and ``services/proxy``: the request forwarded to the pod."""
        info = target.info
        scheme, name, port = _proxy.split_name(target.name)
        obj = await self.registry.get_object(info, target.namespace, name)
        if info.resource == "pods":
            host, number = _proxy.pod_target(obj, port)
        else:
            endpoints_info = self.scheme.resource("", "v1", "endpoints")
            assert endpoints_info is not None
            try:
                endpoints = await self.registry.get_object(endpoints_info, target.namespace, name)
            except ApiError:
                endpoints = None
            host, number = _proxy.service_target(obj, endpoints, port)
        path = target.rest + ("/" if request.path.endswith("/") and target.rest else "")
        return await _proxy.forward(request, scheme, host, number, path)

    async def _node_proxy(self, request: Request, target: ResourcePath) -> Response:
        """``nodes/proxy``: the request forwarded to the node's agent (its ``/metrics``,
        ``/stats/summary`` …), with the server's credentials for agents."""
        node = await self.registry.get_object(target.info, "", target.name)
        url = _nodeproxy.agent_url(
            self.kubelet_tls, _nodeproxy.agent_endpoint(node), "/" + target.rest
        )
        params = tuple((name, value) for name, values in request.query.items() for value in values)
        status, content_type, body = await _nodeproxy.fetch(
            url=url,
            params=params,
            token=self.kubelet_token,
            tls=self.kubelet_tls,
            method=request.method,
            body=request.body,
        )
        return Response(status=status, body=body, content_type=content_type)

    async def _token_request(self, request: Request, target: ResourcePath) -> Response:
        """``serviceaccounts/token``: a signed token for the ServiceAccount (TokenRequest)."""
        body = _validation.decode_body(request)
        account = await self.registry.get_object(target.info, target.namespace, target.name)
        reference = (body.get("spec") or {}).get("boundObjectRef") or None
        bound = node = None
        if reference is not None:
            kind = str(reference.get("kind", ""))
            resource = BINDABLE_KINDS.get(kind)
            if resource is None:
                raise invalid(
                    "TokenRequest",
                    "authentication.k8s.io",
                    target.name,
                    [
                        {
                            "reason": "FieldValueNotSupported",
                            "field": "spec.boundObjectRef.kind",
                            "message": f"Unsupported value: {kind!r}: supported values: "
                            + ", ".join(f'"{k}"' for k in BINDABLE_KINDS),
                        }
                    ],
                )
            bound_info = self.scheme.resource("", "v1", resource)
            assert bound_info is not None
            namespace = target.namespace if bound_info.namespaced else ""
            bound = await self.registry.get_object(
                bound_info, namespace, str(reference.get("name", ""))
            )
            bound.setdefault("kind", kind)
            uid = reference.get("uid")
            if uid and uid != bound["metadata"].get("uid"):
                raise conflict(
                    resource,
                    "",
                    bound["metadata"]["name"],
                    f"the UID in the bound object reference ({uid}) does not match the UID "
                    f"in record. The object might have been deleted and then recreated",
                )
            node_name = (bound.get("spec") or {}).get("nodeName") if kind == "Pod" else None
            if node_name:
                nodes = self.scheme.resource("", "v1", "nodes")
                assert nodes is not None
                try:
                    node = await self.registry.get_object(nodes, "", node_name)
                except ApiError:
                    node = None  # the node left: the token is still bound to the pod
        answer = await trio.to_thread.run_sync(
            partial(self.service_account_tokens.issue, body, account, bound, node)
        )
        return json_response(answer, 201)

    async def _status(
        self,
        request: Request,
        user: UserInfo,
        target: ResourcePath,
        verb: str,
        *,
        field: str = "status",
        finish: Callable[[KubeObject, KubeObject], None] | None = None,
    ) -> Response:
        """GET, PUT, PATCH and apply of the subresource holding ``field``; ``finish(current,
        new)`` completes and checks each change (a kind's own rules)."""
        info = target.info
        if verb == "get":
            return await self._get(request, user, target)
        warnings: list[str] = []
        if verb == "update":
            body = await self._checked_body(request, info, warnings)

            async def change(current: KubeObject) -> KubeObject:
                new = objects.deep_copy(current)
                keep_field(new, body, field)
                await _limits.offload(
                    _managed.record, request, info, current, new, subresource=target.subresource
                )
                rv = (body.get("metadata") or {}).get("resourceVersion")
                new["metadata"]["resourceVersion"] = rv or ""
                return new
        elif verb == "patch" and _validation.media_type(request) == _validation.APPLY_PATCH:
            # Server-side apply of the subresource: only its field is applied and owned.
            _managed.manager_of(request, required=True)
            applied = _validation.decode_body(request)
            _validation.check_kind(applied, info)
            config = _managed.configuration(
                applied, info, request.param("fieldValidation"), warnings
            )

            async def change(current: KubeObject) -> KubeObject:
                merged = await _limits.offload(
                    _managed.apply, request, info, current, config, subresource=target.subresource
                )
                result = objects.deep_copy(current)
                keep_field(result, merged, field)
                result["metadata"].pop("resourceVersion", None)
                result["metadata"].pop("managedFields", None)
                if merged["metadata"].get("managedFields"):
                    result["metadata"]["managedFields"] = merged["metadata"]["managedFields"]
                return result
        elif verb == "patch":
            kind = _validation.media_type(request)
            _managed.check_force(request, kind, _validation.APPLY_PATCH)
            patch_body = _validation.decode_body(
                request, expect=list if kind == _validation.JSON_PATCH else dict
            )

            async def change(current: KubeObject) -> KubeObject:
                new = await _limits.offload(
                    _patch.apply_patch, kind, current, patch_body, info.definition
                )
                new = await _limits.offload(
                    _validation.typed, new, info, request.param("fieldValidation"), warnings
                )
                result = objects.deep_copy(current)
                keep_field(result, new, field)
                await _limits.offload(
                    _managed.record, request, info, current, result, subresource=target.subresource
                )
                result["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion", "")
                _unless_patched(result, current["metadata"].get("resourceVersion"))
                return result
        else:
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )

        async def admitted(current: KubeObject) -> KubeObject:
            # Status writes pass admission too (NodeRestriction: a node's pods only).
            new = await change(current)
            self._admit("UPDATE", user, info, target, new, current, request, validate=False)
            return new

        updated = await self.registry.update(
            info,
            target.namespace,
            target.name,
            admitted if finish is None else _then(admitted, finish),
            dry_run=_dry_run(request),
        )
        return json_response(updated, 200, _warning_headers(warnings))

    async def _scale(
        self, request: Request, user: UserInfo, target: ResourcePath, verb: str
    ) -> Response:
        info = target.info
        scale_of = partial(_crds.custom_scale, info) if info.custom else _scale_of
        if verb == "get":
            obj = await self.registry.get_object(info, target.namespace, target.name)
            return json_response(scale_of(obj))
        if verb not in ("update", "patch"):
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        kind = _validation.media_type(request)
        body = _validation.decode_body(
            request, expect=list if kind == _validation.JSON_PATCH else dict
        )

        async def change(current: KubeObject) -> KubeObject:
            scale = scale_of(current)
            new_scale = (
                body
                if verb == "update"
                else _patch.apply_patch(kind, scale, body, SCALE_DEFINITION)
            )
            _validation.typed_scale(new_scale, info)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    "Scale",
                    "autoscaling",
                    target.name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.replicas",
                            "message": f"Invalid value: {replicas!r}: "
                            "must be greater than or equal to 0",
                        }
                    ],
                )
            new = objects.deep_copy(current)
            if info.custom:
                _crds.set_custom_replicas(info, new, replicas)
            else:
                new.setdefault("spec", {})["replicas"] = replicas
            _managed.record(request, info, current, new, subresource="scale")
            rv = (
                (new_scale.get("metadata") or {}).get("resourceVersion")
                if verb == "update"
                else None
            )
            new["metadata"]["resourceVersion"] = rv or ""
            return new

        updated = await self.registry.update(
            info, target.namespace, target.name, change, dry_run=_dry_run(request)
        )
        return json_response(scale_of(updated))

    async def _pod_log(self, request: Request, target: ResourcePath) -> Response:
        """``pods/log``: read from the node agent that runs the pod."""
        pod = await self.registry.get_object(target.info, target.namespace, target.name)
        container = _nodeproxy.pick_container(pod, request.param("container"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        nodes = self.scheme.resource("", "v1", "nodes")
        assert nodes is not None
        node = await self.registry.get_object(nodes, "", node_name)
        url = _nodeproxy.agent_url(
            self.kubelet_tls,
            _nodeproxy.agent_endpoint(node),
            f"/containerLogs/{target.namespace}/{target.name}/{container}",
        )
        params = {k: request.param(k) for k in _nodeproxy.LOG_OPTIONS if request.param(k)}
        for flag in _nodeproxy.LOG_FLAGS:  # the agent gets them spelled one way
            if flag in params:
                params[flag] = "true" if request.flag(flag) else "false"
        if not request.flag("follow"):
            status, content_type, body = await _nodeproxy.fetch_log(
                url=url, params=params, token=self.kubelet_token, tls=self.kubelet_tls
            )
            if status >= 400:
                raise ApiError(status, body.decode(errors="replace").strip() or "log unavailable")
            return Response(body=body, content_type=content_type)
        # Following: the answer is streamed as it comes (an agent error becomes text).
        return Response(
            content_type="text/plain",
            stream=partial(
                _nodeproxy.stream_log,
                url=url,
                params=params,
                token=self.kubelet_token,
                tls=self.kubelet_tls,
            ),
        )

    async def _pod_stream(self, request: Request, target: ResourcePath, sub: str) -> Response:
        """``pods/exec``, ``attach``, ``portforward``: upgrade and relay to the pod's agent."""
        pod = await self.registry.get_object(target.info, target.namespace, target.name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        nodes = self.scheme.resource("", "v1", "nodes")
        assert nodes is not None
        endpoint = _nodeproxy.agent_endpoint(await self.registry.get_object(nodes, "", node_name))
        try:
            if sub in ("exec", "attach"):
                container = _nodeproxy.pick_container(pod, request.param("container"))
                path = f"/{sub}/{target.namespace}/{target.name}/{container}"
                headers, relay = await streams.exec_upgrade(
                    request.headers,
                    request.query,
                    endpoint=endpoint,
                    path=path,
                    token=self.kubelet_token,
                    tls=self.kubelet_tls,
                )
            else:
                path = f"/portForward/{target.namespace}/{target.name}"
                headers, relay = await streams.port_forward_upgrade(
                    request.headers,
                    request.query,
                    endpoint=endpoint,
                    path=path,
                    token=self.kubelet_token,
                    tls=self.kubelet_tls,
                )
        except streams.StreamRefused as exc:
            raise ApiError(exc.status, exc.message) from exc
        return Response(status=101, headers=headers, content_type=None, upgrade=relay)

    async def _binding(self, request: Request, user: UserInfo, target: ResourcePath) -> Response:
        """``pods/binding``: assign a pod to a node, once."""
        info = target.info
        binding = _validation.decode_body(request)
        node = (binding.get("target") or {}).get("name")
        if not node:
            raise invalid(
                "Binding",
                "",
                target.name,
                [
                    {
                        "reason": "FieldValueRequired",
                        "field": "target.name",
                        "message": "Required value",
                    }
                ],
            )

        async def bind(pod: KubeObject) -> KubeObject:
            spec = pod.setdefault("spec", {})
            if spec.get("nodeName"):
                raise ApiError(
                    409,
                    f'pod {target.name} is already assigned to node "{spec["nodeName"]}"',
                    reason="Conflict",
                )
            if pod["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    409,
                    f"pod {target.name} is being deleted, cannot be assigned to a host",
                    reason="Conflict",
                )
            spec["nodeName"] = node
            conditions = [
                c
                for c in (pod.setdefault("status", {}).get("conditions") or [])
                if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastTransitionTime": objects.now_rfc3339(),
                }
            )
            pod["status"]["conditions"] = conditions
            pod["metadata"].pop("resourceVersion", None)
            return pod

        await self.registry.update(
            info, target.namespace, target.name, bind, dry_run=_dry_run(request)
        )
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            201,
        )


# --- helpers ------------------------------------------------------------------------------


_everything = match_all
"""No selector: the registry's lists and watches pass stored bytes on undecoded."""


def _table_of_page(info: ResourceInfo, page: ListPage, include_object: str) -> bytes:
    """A list page as an encoded ``meta.k8s.io`` Table."""
    items = [objects.decode(item) for item in page.items]
    table = _tables.table(info, items, str(page.revision), include_object=include_object)
    if page.continue_token:
        table["metadata"]["continue"] = page.continue_token
    return objects.encode(table)


def _encode_model(model: Any) -> bytes:
    from kubetrio import api

    return api.encode(model)


def _wants_table(request: Request) -> bool:
    accept = request.headers.get("accept", "").replace(" ", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _dry_run(request: Request) -> bool:
    values = request.query.get("dryRun") or []
    for value in values:
        if value not in ("All", ""):
            raise bad_request(f'unsupported dryRun value "{value}": only "All" is supported')
    return "All" in values


def _int_param(request: Request, name: str, default: int, *, minimum: int = 0) -> int:
    """An int64 query parameter (as Go parses it) no smaller than ``minimum``; else 400."""
    value = request.param(name)
    if not value:
        return default
    if not _INT64.fullmatch(value) or not INT64_MIN <= int(value) <= INT64_MAX:
        raise bad_request(f'{name} must be a 64-bit integer, not "{value}"')
    number = int(value)
    if number < minimum:
        raise bad_request(f"{name} must not be negative")
    return number


_INT64 = re.compile(r"[+-]?[0-9]{1,20}")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    # An HTTP quoted-string, as kube-apiserver writes it; clients unescape it.
    return [
        ("warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"') for w in warnings
    ]


def _denied(info: ResourceInfo, name: str, exc: AdmissionDenied) -> ApiError:
    if exc.field:
        return invalid(
            info.kind,
            info.group,
            name,
            [{"reason": "FieldValueForbidden", "field": exc.field, "message": str(exc)}],
        )
    return ApiError(403, f'{_qualified(info)} "{name}" is forbidden: {exc}')


def _qualified(info: ResourceInfo) -> str:
    """``roles.rbac.authorization.k8s.io``: a resource as Forbidden messages name it."""
    return f"{info.resource}.{info.group}" if info.group else info.resource


def _scale_of(obj: KubeObject) -> KubeObject:
    """The ``autoscaling/v1`` Scale view of a scalable object."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector") or {}
    if isinstance(selector, dict) and ("matchLabels" in selector or "matchExpressions" in selector):
        selector_text = str(selectors.label_selector_from_struct(_selector_struct(selector)))
    elif isinstance(selector, dict):
        selector_text = str(selectors.selector_from_set(selector))
    else:
        selector_text = ""
    return objects.scale_view(
        obj,
        replicas=spec.get("replicas", 1),
        status_replicas=status.get("replicas", 0),
        selector=selector_text,
    )


def _watch_list_options(request: Request) -> bool | None:
    """``sendInitialEvents`` of a watch (None: not given), checked as upstream's
    ``validateWatchOptions`` checks it with ``resourceVersionMatch``."""
    given = request.param("sendInitialEvents")
    initial = request.flag("sendInitialEvents") if given else None
    match = request.param("resourceVersionMatch")
    causes = []
    if initial is not None and match != "NotOlderThan":
        causes.append(
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
        )
    if match and initial is None:
        causes.append(
            "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents "
            "is provided"
        )
    if match and match != "NotOlderThan":
        causes.append(f'Unsupported value: "{match}": supported values: "NotOlderThan"')
    if causes:
        raise invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            [
                {
                    "reason": "FieldValueNotSupported"
                    if c.startswith("Unsupported")
                    else "FieldValueForbidden",
                    "message": c,
                    "field": "resourceVersionMatch",
                }
                for c in causes
            ],
        )
    return initial


def _selector_struct(selector: KubeObject) -> Any:
    from kubetrio import api
    from kubetrio.api.generated import meta_v1

    return api.from_builtins(selector, meta_v1.LabelSelector)


async def _watch_stream(
    send: trio.MemorySendChannel[bytes],
    *,
    info: ResourceInfo,
    events: Callable[[], AsyncGenerator[WatchEvent, None]],
    timeout: float,
    bookmarks: bool,
    as_table: bool,
    start_revision: int = 0,
    progress: Callable[[], int | None] | None = None,
) -> None:
    """Send watch events as newline-delimited JSON, with bookmarks, until ``timeout``.

    A quiet watch's bookmark carries the store's progress (``progress``: how far the
    store's watch has handed over everything of its range), so a client resuming from it
    starts near the head instead of far behind, as kube-apiserver's progress bookmarks do.
    """
    last_revision = start_revision
    first_table = True
    sent = _prom.watch_events(info.group, info.version, info.kind)
    event_send, event_receive = trio.open_memory_channel[WatchEvent](0)

    async def pump() -> None:
        async with event_send, aclosing(events()) as stream:
            async for event in stream:
                await event_send.send(event)

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            while True:
                with trio.move_on_after(WATCH_BOOKMARK_INTERVAL) as idle:
                    try:
                        event = await event_receive.receive()
                    except trio.EndOfChannel:
                        break
                if idle.cancelled_caught:
                    # The store's progress is ours only when no event is in flight between
                    # it and here: the pump is not holding one (the generator in between
                    # hands events over without a checkpoint).
                    if progress is not None and not event_receive.statistics().tasks_waiting_send:
                        last_revision = max(last_revision, progress() or 0)
                    if bookmarks and last_revision:
                        await send.send(bookmark(info, last_revision))
                    continue
                last_revision = max(last_revision, event.revision)
                if event.type == "BOOKMARK" and not bookmarks:
                    continue
                if as_table and event.type not in ("ERROR", "BOOKMARK"):
                    table = _tables.table(
                        info,
                        [objects.decode(event.object)],
                        str(event.revision),
                        include_object="Metadata",
                        headers=first_table,
                    )
                    first_table = False
                    payload = objects.encode(table)
                else:
                    payload = event.object
                await send.send(
                    b'{"type":"' + event.type.encode() + b'","object":' + payload + b"}\n"
                )
                if sent is not None:
                    sent()
                if event.type == "ERROR":
                    break
            nursery.cancel_scope.cancel()


def _unless_patched(new: KubeObject, current_rv: str | None) -> None:
    """Drop the resourceVersion a patch left as it was: only one the patch set is a precondition.

    Without it, a concurrent write makes the registry re-apply the patch to the fresh
    object, as upstream does, instead of answering 409 to a patch that named no version
    (a JSON patch's ``test`` of the version still fails with 422 when it is stale).
    """
    metadata = new.get("metadata") or {}
    if current_rv and str(metadata.get("resourceVersion") or "") == str(current_rv):
        metadata.pop("resourceVersion", None)


def _then(
    change: Callable[[KubeObject], Awaitable[KubeObject]],
    finish: Callable[[KubeObject, KubeObject], None],
) -> Callable[[KubeObject], Awaitable[KubeObject]]:
    """``change`` followed by ``finish(current, new)``."""

    async def changed(current: KubeObject) -> KubeObject:
        new = await change(current)
        finish(current, new)
        return new

    return changed


__all__ = ["ApiServer", "json_response", "status_body"]
