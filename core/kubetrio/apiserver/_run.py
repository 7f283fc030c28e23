"""Running the API server: ``open_apiserver``, an async context manager for embedding."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from kubetrio import store as kv
from kubetrio.api.scheme import Scheme
from kubetrio.pki import TLSConfig
from kubetrio.plugins import PluginManager

from ._apiservices import ensure_local_api_services
from ._audit import AuditLog
from ._connlimits import ConnectionGate, ServerLimits
from ._crds import CustomResources, info_of_definition
from ._fairness import ensure_bootstrap_configuration
from ._http import serve_http
from ._limits import freeze_heap
from ._namespaces import NamespaceFinalizer, ensure_system_namespaces
from ._priorityclasses import ensure_builtin_ingress_class, ensure_system_priority_classes
from ._server import ApiServer


@dataclasses.dataclass(frozen=True)
class RunningApiServer:
    """A serving API server: its URL and the server object."""

    url: str
    port: int
    api: ApiServer
    gate: ConnectionGate | None = None
    """The HTTP server's limits and its counts of connections and requests in flight."""


@asynccontextmanager
async def open_apiserver(
    store: kv.Store,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    plugins: PluginManager | None = None,
    scheme: Scheme | None = None,
    audit: AuditLog | None = None,
    limits: ServerLimits | None = None,
    tls: TLSConfig | None = None,
    advertise_address: str | None = None,
) -> AsyncIterator[RunningApiServer]:
    """Serve the Kubernetes API over ``store`` for the duration of the block.

    ``port=0`` picks a free port (tests); the URL is in the yielded value. ``audit``
    audits every request (the in-process client's too). ``limits``: the HTTP server's
    deadlines and caps (default: :class:`ServerLimits`' defaults). With ``tls``, HTTPS
    only (client certificates verified against its client CA); plain HTTP without.
    ``advertise_address``: where the cluster's pods reach this server (kube-apiserver's
    ``--advertise-address``, the ``kubernetes`` Service's endpoint and the JWKS URL's
    host); the server listens there too when ``host`` is a single other address.
    """
    api = ApiServer(store, scheme, plugins=plugins, server_address=f"{host}:{port}")
    api.audit = audit
    if plugins is not None:
        for registered in plugins.resources():
            api.scheme.register(info_of_definition(registered.provider))
    await ensure_system_namespaces(api.registry, api.scheme)
    await ensure_local_api_services(api.registry, api.scheme)
    await ensure_system_priority_classes(api.registry, api.scheme)
    await ensure_builtin_ingress_class(api.registry, api.scheme)
    await ensure_bootstrap_configuration(api.registry, api.scheme)
    limits = limits or ServerLimits()
    seats = limits.max_requests_inflight + limits.max_mutating_requests_inflight
    api.fairness.enabled = limits.enable_priority_and_fairness and seats > 0
    api.fairness.resize(seats)
    finalizer = NamespaceFinalizer(api.registry, api.scheme)
    api.on_namespace_deleted = finalizer.poke
    async with trio.open_nursery() as nursery:
        await nursery.start(CustomResources(api.registry, api.scheme).run)
        await nursery.start(finalizer.run)
        await nursery.start(api.resource_metrics.run)
        await nursery.start(api.fairness.run, api.registry, api.scheme)
        gate = ConnectionGate(limits)
        context = tls.server_context() if tls is not None else None
        listeners = await nursery.start(
            partial(serve_http, api.handle, host=host, port=port, gate=gate, ssl_context=context)
        )
        bound = listeners[0].socket.getsockname()[1]
        api.server_address = f"{host}:{bound}"
        if advertise_address and advertise_address != host and host not in ("0.0.0.0", "::"):
            # Pods cannot reach a loopback listener: serve the advertised address too.
            await nursery.start(
                partial(
                    serve_http,
                    api.handle,
                    host=advertise_address,
                    port=bound,
                    gate=gate,
                    ssl_context=context,
                )
            )
        external = advertise_address or host
        api.external_address = f"[{external}]:{bound}" if ":" in external else f"{external}:{bound}"
        freeze_heap()
        try:
            scheme_name = "https" if tls is not None else "http"
            yield RunningApiServer(
                url=f"{scheme_name}://{host}:{bound}", port=bound, api=api, gate=gate
            )
        finally:
            nursery.cancel_scope.cancel()
