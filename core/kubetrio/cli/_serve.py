"""``kubetrio server``'s body: the whole control plane and a node in the foreground.

The composition root (:func:`kubetrio.cluster.open_cluster`) plus what only a command
line needs: the data directory's admin token (handed to the plugins in the
``kubetrio`` section of their configuration: the auth plugin accepts it), the
kubeconfig merged for the user, and signals (SIGTERM/SIGINT stop, SIGUSR1 from
``kubetrio down`` stops the pods first).
"""

from __future__ import annotations

import logging
import secrets
import signal
from pathlib import Path
from typing import Any

import trio

from kubetrio import store as kv
from kubetrio.apiserver import ServiceAccountTokens, merge_kubeconfig
from kubetrio.cluster import agent_can_run, open_cluster
from kubetrio.plugins import PluginManager

from ._admin import data_dir_lock

log = logging.getLogger("kubetrio.server")


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
    plugin_config: dict[str, Any] | None = None,
    network_plugin: str | None = "",
    runtime: str = "runc",
    proxy_mode: str = "nftables",
    lb_pool: str | None = None,
    ready: trio.Event | None = None,
) -> None:
    """Run the whole control plane (and a node) in the foreground until SIGTERM or SIGINT.

    :param plugin_config: the plugins' sections, from their options and the
        configuration file; the cluster configures ``plugins`` with them (and the
        ``kubetrio`` section: command, data directory, admin token) and unconfigures
        them when it stops.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    token = admin_token(data_dir)
    config: dict[str, Any] = dict(plugin_config or {})
    config["kubetrio"] = {"command": "server", "data_dir": str(data_dir), "admin_token": token}
    if agent and (why := agent_can_run()) is not None:
        log.warning("not running a node agent: %s", why)
        agent = False
    # SIGTERM/SIGINT stop the processes of the cluster and leave pods running (a restarted
    # agent adopts them); SIGUSR1 (``kubetrio down``) stops the pods first. The data
    # directory's lock keeps `kubetrio admin` (and a second server) off its store.
    with (
        data_dir_lock(data_dir, what="stop it or choose another --data-dir"),
        trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals,
    ):
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
                plugin_config=config,
                network_plugin=network_plugin,
                runtime=runtime,
                proxy_mode=proxy_mode,
            ) as cluster,
        ):
            # Tokens from ``kubectl create token`` stay valid across restarts: one key per
            # cluster, kept in the data directory.
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
