"""Running the API server: one async context manager for embedding, one entry for the CLI."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from kubetrio import store as kv
from kubetrio.api.scheme import Scheme
from kubetrio.plugins import PluginManager

from ._crds import CustomResources, info_of_definition
from ._http import serve_http
from ._kubeconfig import merge_kubeconfig
from ._namespaces import NamespaceFinalizer, ensure_system_namespaces
from ._server import ApiServer
from ._tokens import ServiceAccountTokens

log = logging.getLogger("kubetrio.apiserver")


@dataclasses.dataclass(frozen=True)
class RunningApiServer:
    """A serving API server: its URL and the server object."""

    url: str
    port: int
    api: ApiServer


@asynccontextmanager
async def open_apiserver(
    store: kv.Store,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    plugins: PluginManager | None = None,
    scheme: Scheme | None = None,
) -> AsyncIterator[RunningApiServer]:
    """Serve the Kubernetes API over ``store`` for the duration of the block.

    ``port=0`` picks a free port (tests); the URL is in the yielded value.
    """
    api = ApiServer(store, scheme, plugins=plugins, server_address=f"{host}:{port}")
    if plugins is not None:
        for registered in plugins.resources():
            api.scheme.register(info_of_definition(registered.provider))
    await ensure_system_namespaces(api.registry, api.scheme)
    finalizer = NamespaceFinalizer(api.registry, api.scheme)
    api.on_namespace_deleted = finalizer.poke
    async with trio.open_nursery() as nursery:
        await nursery.start(CustomResources(api.registry, api.scheme).run)
        await nursery.start(finalizer.run)
        listeners = await nursery.start(partial(serve_http, api.handle, host=host, port=port))
        bound = listeners[0].socket.getsockname()[1]
        api.server_address = f"{host}:{bound}"
        try:
            yield RunningApiServer(url=f"http://{host}:{bound}", port=bound, api=api)
        finally:
            nursery.cancel_scope.cancel()


def admin_token(data_dir: Path) -> str:
    """The admin bearer token of this data directory, made on first use (mode 0600)."""
    path = data_dir / "admin-token"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


async def run_server(
    *,
    data_dir: Path,
    store_url: str,
    host: str,
    port: int,
    kubeconfig: Path,
    plugins: PluginManager,
    context_name: str = "kubetrio",
    agent: bool = True,
    simulated_nodes: int = 0,
    registries: dict[str, Any] | None = None,
    node_name: str | None = None,
    node_ip: str | None = None,
    network: dict[str, Any] | None = None,
    lb_pool: str | None = None,
    ready: trio.Event | None = None,
) -> None:
    """Run the whole control plane (and a node) in the foreground until SIGTERM or SIGINT."""
    from kubetrio.cluster import agent_can_run, open_cluster  # the composition root

    data_dir.mkdir(parents=True, exist_ok=True)
    token = admin_token(data_dir)
    token_file = data_dir / "tokens.csv"
    token_file.write_text(f'{token},admin,admin,"system:masters"\n')
    token_file.chmod(0o600)
    plugins.configure(
        config={"auth": {"token_auth_file": str(token_file)}, "network": network or {}}
    )
    if agent and (why := agent_can_run()) is not None:
        log.warning("not running a node agent: %s", why)
        agent = False
    # SIGTERM/SIGINT stop the processes of the cluster and leave pods running (a restarted
    # agent adopts them); SIGUSR1 (``kubetrio down``) stops the pods first.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with (
            kv.open_store(store_url) as store,
            open_cluster(
                store,
                host=host,
                port=port,
                plugins=plugins,
                token=token,
                agent=agent,
                agent_dir=data_dir / "agent",
                simulated_nodes=simulated_nodes,
                registries=registries,
                node_name=node_name,
                node_ip=node_ip,
                lb_pool=lb_pool,
            ) as cluster,
        ):
            # Tokens from ``kubectl create token`` stay valid across restarts: one key per cluster.
            cluster.api.service_account_tokens = ServiceAccountTokens(
                data_dir / "service-account.key"
            )
            merge_kubeconfig(kubeconfig, name=context_name, server=cluster.url, token=token)
            log.info("API server listening on %s (store %s)", cluster.url, store_url)
            log.info(
                "controllers and scheduler running%s%s",
                "; node agent running" if agent else "",
                f"; {simulated_nodes} simulated nodes" if simulated_nodes else "",
            )
            log.info("kubeconfig: %s, context %r", kubeconfig, context_name)
            if ready is not None:
                ready.set()
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                if signum == signal.SIGUSR1:
                    with trio.move_on_after(60):
                        await cluster.stop_pods()
                break
