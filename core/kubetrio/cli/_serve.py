"""``kubetrio server``'s body: the whole control plane and a node in the foreground.

The composition root (:func:`kubetrio.cluster.open_cluster`) plus what only a command
line needs: the data directory's admin token (handed to the plugins in the
``kubetrio`` section of their configuration: the auth plugin accepts it), the
kubeconfig merged for the user, and signals (SIGTERM/SIGINT stop, SIGUSR1 from
``kubetrio down`` stops the pods first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import trio

from kubetrio import store as kv
from kubetrio.apiserver import (
    KUBERNETES_SERVICE_IP,
    AuditLog,
    ServerLimits,
    ServiceAccountTokens,
    merge_kubeconfig,
    raise_fd_limit,
)
from kubetrio.cluster import advertised_address, agent_can_run, open_cluster
from kubetrio.controllers import LeaseTiming
from kubetrio.pki import ClusterPKI, ensure_cluster_pki, local_addresses
from kubetrio.plugins import PluginManager

from ._admin import data_dir_lock
from ._backup import BackupSchedule, run_scheduled_backups
from ._periods import DEFAULT_PERIODS, apply_periods
from ._security import open_encrypted_store

log = logging.getLogger("kubetrio.server")


SECRET_FILES = ("admin-token", "service-account.key", "state.db", "state.db-wal", "state.db-shm")
"""Files of a data directory only its owner may read (kept 0600, fixed on every start)."""


def secure_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` (mode 0700) or tighten an existing one: the directory 0700 and
    its secrets (:data:`SECRET_FILES`) 0600, as a data directory of older versions had
    0755 and 0644 — readable by every local user."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for name in SECRET_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(data_dir / name, 0o600)


def admin_token(data_dir: Path) -> str:
    """The admin bearer token of this data directory, made on first use (mode 0600)."""
    path = data_dir / "admin-token"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def cluster_pki(data_dir: Path, host: str, advertise: str | None = None) -> ClusterPKI:
    """The data directory's CAs and certificates (made or renewed now): the serving
    certificate names this host, ``host``, the advertised address and the ``kubernetes``
    Service's ClusterIP."""
    addresses: list[str] = [str(a) for a in local_addresses()]
    for address in (host, advertise or ""):
        if address not in ("0.0.0.0", "::", "") and address not in addresses:
            addresses.append(address)
    addresses.append(KUBERNETES_SERVICE_IP)
    return ensure_cluster_pki(data_dir, ip_addresses=addresses, dns_names=[socket.gethostname()])


async def run_server(
    *,
    data_dir: Path,
    store_url: str,
    host: str,
    store_tls: ssl.SSLContext | None = None,
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
    ingress_ports: tuple[int, int] | None = None,
    lb_pool: str | None = None,
    limits: ServerLimits | None = None,
    ready: trio.Event | None = None,
    encryption: kv.EncryptionConfig | None = None,
    audit: AuditLog | None = None,
    history: kv.HistoryPolicy | None = None,
    advertise_address: str | None = None,
    backups: BackupSchedule | None = None,
    lease_timing: LeaseTiming | None = None,
    periods: tuple[float, float] = DEFAULT_PERIODS,
) -> None:
    """Run the whole control plane (and a node) in the foreground until SIGTERM or SIGINT.

    :param plugin_config: the plugins' sections, from their options and the
        configuration file; the cluster configures ``plugins`` with them (and the
        ``kubetrio`` section: command, data directory, admin token) and unconfigures
        them when it stops.
    :param store_tls: how to reach etcd over TLS (``--etcd-cafile`` ...; None: plain).
    :param encryption: which resources are encrypted in the store, with which keys.
    :param audit: where the API server's requests are audited.
    :param history: how long the store keeps old versions (the SQLite store's default: 7 days).
    :param limits: the API server's connection deadlines and caps.
    :param backups: scheduled backups of the store while it runs (none by default).
    :param lease_timing: the controllers' and scheduler's leader election timing.
    :param periods: the metric resolution and the HPA sync period (``_periods``).
    :param advertise_address: where pods reach the API (the ``kubernetes`` Service's
        endpoint; default :func:`~kubetrio.cluster.advertised_address`).
    """
    secure_data_dir(data_dir)
    token = admin_token(data_dir)
    before, after = raise_fd_limit()
    log.info(
        "open-file limit %d%s",
        after,
        f" (raised from {before})" if after != before else "",
    )
    advertise = advertise_address or await advertised_address(host, node_ip)
    if advertise is None:
        log.warning("no address pods can reach the API at: no kubernetes Service")
    pki = cluster_pki(data_dir, host, advertise)
    # This node's agent serves HTTPS with a certificate of the cluster CA for every
    # address it may be reached at; the API server calls it with its own client cert.
    node_addresses = [*local_addresses(), *([node_ip] if node_ip else [])]
    agent_tls = pki.agent_tls(
        pki.node_serving_certificate(node_name or socket.gethostname(), ip_addresses=node_addresses)
    )
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
            open_encrypted_store(store_url, encryption, history=history, tls=store_tls) as store,
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
                ingress_ports=ingress_ports,
                audit=audit,
                limits=limits,
                tls=pki.tls(),
                advertise_address=advertise,
                agent_tls=agent_tls,
                lease_timing=lease_timing,
            ) as cluster,
        ):
            # Tokens from ``kubectl create token`` stay valid across restarts: one key per
            # cluster, kept in the data directory.
            cluster.api.service_account_tokens = ServiceAccountTokens(
                data_dir / "service-account.key"
            )
            apply_periods(cluster, *periods)
            # Listening on every address: clients reach it at loopback, which the
            # certificate names (0.0.0.0 is no address to verify).
            server = cluster.url.replace("://0.0.0.0:", "://127.0.0.1:")
            # The admin's client certificate (system:masters), not the token: what
            # kubectl presents is an identity RBAC knows, as kubeadm's admin.conf.
            merge_kubeconfig(
                kubeconfig,
                name=context_name,
                server=server,
                certificate_authority=pki.ca.files.cert_file.read_bytes(),
                client_certificate=pki.admin.pem(),
            )
            log.info("API server listening on %s (store %s)", cluster.url, store_url)
            if cluster.gate is not None:
                limits = cluster.gate.limits
                log.info(
                    "connections: at most %d; in flight: %d reading, %d mutating, %d per "
                    "client; deadlines: headers %g s, body %g s, idle %g s",
                    cluster.gate.max_connections,
                    limits.max_requests_inflight,
                    limits.max_mutating_requests_inflight,
                    limits.max_requests_inflight_per_client,
                    limits.request_header_timeout,
                    limits.request_body_timeout,
                    limits.idle_timeout,
                )
            log.info(
                "controllers and scheduler running%s%s",
                "; node agent running" if agent else "",
                f"; {simulated_nodes} simulated nodes" if simulated_nodes else "",
            )
            log.info("kubeconfig: %s, context %r", kubeconfig, context_name)
            if ready is not None:
                ready.set()
            async with trio.open_nursery() as background:
                if backups is not None:
                    log.info(
                        "backing the store up every %g s into %s, keeping %d",
                        backups.interval,
                        backups.directory,
                        backups.retention,
                    )
                    background.start_soon(run_scheduled_backups, backups, store_url)
                async for signum in signals:
                    log.info("received %s, stopping", signal.Signals(signum).name)
                    if signum == signal.SIGUSR1:
                        with trio.move_on_after(60):
                            await cluster.stop_pods()
                    break
                background.cancel_scope.cancel()
