"""A whole cluster in one process: the composition root of kubetrio.

``async with open_cluster(store) as cluster:`` runs the API server, the controller
manager and the scheduler — and optionally simulated nodes and a real node agent — in
the caller's process, each in its own task, all talking through ``cluster.client``
exactly as they would over HTTP. This is what ``kubetrio server`` runs, and what a test
or a tool embeds::

    async with open_store("sqlite:///tmp/state.db") as store:
        async with open_cluster(store, simulated_nodes=3) as cluster:
            await cluster.client.create("apps/v1", "deployments", deployment,
                                        namespace="default")

The components are started in dependency order (API server, then the others with
``nursery.start``), and stopped together when the block ends.

``plugins=`` means the same for every component: the API server (resources,
authentication, admission), the controller manager, the scheduler and the node agent
all take their plugins from that one manager, and ``plugins=None`` means no plugins for
any of them. The cluster configures the manager (unless its owner did) and calls
``kubetrio_unconfigure`` when the block ends; a manager's plugin instances hold that
cluster's plugin state, so two clusters in one process need two managers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import trio

from kubetrio.apiserver import ApiServer, AuditLog, ConnectionGate, ServerLimits, open_apiserver
from kubetrio.client import Client, SharedInformers
from kubetrio.controllers import LEASE_NAME as CONTROLLER_MANAGER_LEASE
from kubetrio.controllers import USER as controllers_user
from kubetrio.controllers import (
    ControllerManager,
    KubernetesService,
    LeaderElector,
    LeaseTiming,
    QueueController,
    RootCACertPublisher,
    guarded_client,
)
from kubetrio.pki import AgentTLS, TLSConfig
from kubetrio.plugins import PluginManager
from kubetrio.plugins import load as load_plugins
from kubetrio.scheduler import USER as scheduler_user
from kubetrio.scheduler import Scheduler
from kubetrio.servicelb import IngressLoadBalancer, ServiceLBController
from kubetrio.simnode import SimulatedNodes
from kubetrio.store import Store

log = logging.getLogger("kubetrio.cluster")


class NodeAgentLike(Protocol):
    """What the cluster needs of its node agent."""

    async def shutdown(self, *, grace_period: float | None = None) -> None:
        """Stop every pod of the node."""
        ...


@dataclasses.dataclass
class Cluster:
    """A running in-process cluster."""

    url: str
    """Where the API server listens (for kubectl and other processes)."""
    client: Client
    """An in-process client with the admin identity."""
    api: ApiServer
    agent: NodeAgentLike | None = None
    """The real node agent, when the cluster runs one."""
    gate: ConnectionGate | None = None
    """The API server's connection limits and counts."""
    controller_manager: ControllerManager | None = None
    """The controller manager, when the cluster runs the controllers."""

    async def stop_pods(self, *, grace_period: float | None = 5.0) -> None:
        """Stop every pod this process's node agent runs (``kubetrio down``).

        Stopping the server alone leaves pods running, so a restarted agent adopts them;
        this is for taking the whole cluster down.
        """
        if self.agent is not None:
            await self.agent.shutdown(grace_period=grace_period)


def agent_can_run() -> str | None:
    """Why a real node agent can't run here (None when it can): root and runc are needed."""
    if os.geteuid() != 0:
        return "the node agent needs root (network namespaces, mounts, cgroups)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    return None


@asynccontextmanager
async def open_cluster(
    store: Store,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    plugins: PluginManager | None = None,
    token: str = "",
    controllers: bool = True,
    scheduler: bool = True,
    simulated_nodes: int = 0,
    agent: bool = False,
    agent_dir: Path | None = None,
    node_name: str | None = None,
    node_ip: str | None = None,
    registries: dict[str, Any] | None = None,
    proxy: bool = True,
    dns: bool = True,
    lb_pool: str | None = None,
    plugin_config: Mapping[str, Any] | None = None,
    network_plugin: str | None = "",
    runtime: str = "runc",
    proxy_mode: str = "nftables",
    audit: AuditLog | None = None,
    limits: ServerLimits | None = None,
    tls: TLSConfig | None = None,
    advertise_address: str | None = None,
    agent_tls: AgentTLS | None = None,
    ingress_ports: tuple[int, int] | None = None,
    lease_timing: LeaseTiming | None = None,
) -> AsyncIterator[Cluster]:
    """Run a cluster over ``store`` for the duration of the block.

    :param plugins: the loaded plugins (auth, admission, scheduling, network, storage);
        None runs with no plugins and allows every request.
    :param token: the bearer token the in-process client presents (the admin token when
        the auth plugin is configured).
    :param simulated_nodes: how many KWOK-style nodes to run (no processes).
    :param agent: run a real node agent (runc containers) for this host.
    :param node_ip: the node's InternalIP, where cluster DNS listens too (default: this
        host's first global IPv4 address).
    :param registries: registry mirrors for the agent's image pulls (k3s registries.yaml shape).
    :param proxy: with ``agent``, also run the nftables service proxy for this node.
    :param dns: with ``agent``, also run the cluster DNS behind the ``kube-dns`` Service.
    :param lb_pool: addresses for LoadBalancer Services (``CIDR`` or ``first-last``,
        comma-joined); None leaves them pending, as Kubernetes without a cloud does.
    :param plugin_config: the plugins' sections (``{"network": {"mode": "bgp"}}``)
        when the cluster configures ``plugins`` (a manager not configured yet); the
        core's own section, ``kubetrio``, gets ``admin_token``: ``token``.
    :param network_plugin: the agent's network plugin by name; ``""`` the only one
        registered; None none (pods get loopback only).
    :param runtime: the agent's container runtime: ``runc`` or one a plugin registered.
    :param proxy_mode: the service proxy's mode: ``nftables`` or ``maglev``.
    :param audit: the API server's audit log (None: no auditing).
    :param limits: the API server's connection deadlines and caps (default: their defaults).
    :param tls: serve HTTPS only with this certificate (:mod:`kubetrio.pki`); None: HTTP.
        Its ``ca_file`` is published in every namespace as ``kube-root-ca.crt``.
    :param advertise_address: the API server's address for pods: the ``kubernetes``
        Service in ``default`` points there (the server listens there too); None: no
        such Service.
    :param agent_tls: the API server reaches node agents over HTTPS with its client
        certificate, and the node agent serves with this certificate (else plain HTTP
        with the admin token).
    :param ingress_ports: with ``agent``, serve Ingresses with nginx on these HTTP and
        HTTPS ports of the node (``(80, 443)`` as upstream); None: no ingress controller.
    :param lease_timing: how the controller manager and the scheduler campaign for their
        Leases (upstream's 15/10/2 s by default).
    """
    # No plugins, for every component alike: the API server's None (no authenticator:
    # every request anonymous and allowed) and an empty manager for the others (which
    # would otherwise load the installed plugins).
    api_plugins = plugins
    if plugins is None:
        plugins = PluginManager()
    if not plugins.configured:
        config = {key: dict(value) for key, value in (plugin_config or {}).items()}
        config.setdefault("kubetrio", {}).setdefault("admin_token", token)
        plugins.configure(config=config)
    try:
        async with _run_cluster(
            store,
            host=host,
            port=port,
            plugins=plugins,
            api_plugins=api_plugins,
            token=token,
            controllers=controllers,
            scheduler=scheduler,
            simulated_nodes=simulated_nodes,
            agent=agent,
            agent_dir=agent_dir,
            node_name=node_name,
            node_ip=node_ip,
            registries=registries,
            proxy=proxy,
            dns=dns,
            lb_pool=lb_pool,
            network_plugin=network_plugin,
            runtime=runtime,
            proxy_mode=proxy_mode,
            audit=audit,
            limits=limits,
            tls=tls,
            advertise_address=advertise_address,
            agent_tls=agent_tls,
            ingress_ports=ingress_ports,
            lease_timing=lease_timing,
        ) as cluster:
            yield cluster
    finally:
        plugins.unconfigure()


@asynccontextmanager
async def _run_cluster(
    store: Store,
    *,
    host: str,
    port: int,
    plugins: PluginManager,
    api_plugins: PluginManager | None,
    token: str,
    controllers: bool,
    scheduler: bool,
    simulated_nodes: int,
    agent: bool,
    agent_dir: Path | None,
    node_name: str | None,
    node_ip: str | None,
    registries: dict[str, Any] | None,
    proxy: bool,
    dns: bool,
    lb_pool: str | None,
    network_plugin: str | None,
    runtime: str,
    proxy_mode: str,
    audit: AuditLog | None,
    limits: ServerLimits | None,
    tls: TLSConfig | None,
    advertise_address: str | None,
    agent_tls: AgentTLS | None = None,
    ingress_ports: tuple[int, int] | None = None,
    lease_timing: LeaseTiming | None = None,
) -> AsyncIterator[Cluster]:
    """The components of :func:`open_cluster`, all with the same ``plugins``."""
    async with open_apiserver(
        store,
        host=host,
        port=port,
        plugins=api_plugins,
        audit=audit,
        limits=limits,
        tls=tls,
        advertise_address=advertise_address,
    ) as running:
        client = Client.in_process(running.api, token=token)
        api = running.api
        running.api.kubelet_token = token
        if agent_tls is not None:
            running.api.kubelet_tls = agent_tls.client_context()
        cluster = Cluster(url=running.url, client=client, api=running.api, gate=running.gate)
        async with trio.open_nursery() as nursery:
            if api_plugins is not None:
                await _start_plugin_caches(nursery, running.api, api_plugins)
            if advertise_address:
                # Kept by the API server itself (every server, no Lease), as upstream.
                await nursery.start(
                    KubernetesService(
                        Client.in_process(running.api, loopback=True),
                        address=advertise_address,
                        port=running.port,
                        cluster_ip=running.api.services.api_server_ip,
                    ).run
                )
            if controllers:
                # Least privilege: each controller acts as its own ServiceAccount, the
                # manager as system:kube-controller-manager (kube-controller-manager with
                # --use-service-account-credentials), authorized like any user.
                extra: list[QueueController] = []
                if lb_pool is not None:
                    extra.append(ServiceLBController(lb_pool))
                    extra.append(IngressLoadBalancer())  # nginx behind a pool address
                if tls is not None and tls.ca_file is not None:
                    extra.append(RootCACertPublisher(tls.ca_file.read_text()))
                manager = ControllerManager(
                    Client.in_process(api, user=controllers_user),
                    plugins=plugins,
                    identity=f"{socket.gethostname()}-{os.getpid()}",
                    lease_name=CONTROLLER_MANAGER_LEASE,
                    **dataclasses.asdict(lease_timing or LeaseTiming()),
                    extra=extra,
                    credentials=lambda user: Client.in_process(api, user=user),
                )
                await nursery.start(manager.run)
                cluster.controller_manager = manager
            if scheduler:
                await _start_scheduler(nursery, api, plugins, lease_timing or LeaseTiming())
            if simulated_nodes:
                await nursery.start(SimulatedNodes(client, count=simulated_nodes).run)
            if agent:
                from kubetrio.dns import DNS_SERVICE_IP
                from kubetrio.kubelet import NodeAgent  # only a real node needs the runtime

                node_agent = NodeAgent(
                    client,
                    node_name=node_name or socket.gethostname(),
                    plugins=plugins,
                    runtime=runtime,
                    network=network_plugin,
                    root_dir=agent_dir or Path("/var/lib/kubetrio/agent"),
                    registries=registries,
                    address=node_ip,
                    kubelet_port=0,  # any free port, advertised in the Node's status
                    kubelet_token="" if agent_tls else token,
                    kubelet_tls=agent_tls.serving if agent_tls else None,
                    cluster_dns=[DNS_SERVICE_IP] if dns else [],
                )
                await nursery.start(node_agent.run)
                cluster.agent = node_agent
                if proxy:
                    await start_service_datapath(
                        nursery, client, node_agent.node_name, mode=proxy_mode
                    )
                if ingress_ports is not None:
                    await start_ingress(
                        nursery,
                        client,
                        node_agent.node_name,
                        (agent_dir or Path("/var/lib/kubetrio/agent")) / "ingress",
                        ingress_ports,
                        address=node_ip,
                    )
                if dns:
                    address = node_ip or await _pod_reachable_address()
                    if address is None:
                        log.warning("no global IPv4 address on this host: no cluster DNS")
                    else:
                        await nursery.start(_run_cluster_dns, client, address)
            try:
                yield cluster
            finally:
                nursery.cancel_scope.cancel()


async def _start_plugin_caches(
    nursery: trio.Nursery, api: ApiServer, plugins: PluginManager
) -> None:
    """Fill the caches the request-path plugins ask for (``kubetrio_api_caches``) through
    the server's loopback client; the server serves other requests once they synced."""
    loopback = Client.in_process(api, loopback=True)
    caches = SharedInformers(loopback)
    plugins.api_caches(caches=caches)
    api.ready = trio.Event()
    await nursery.start(caches.run)
    for registered in plugins.controllers():
        # The plugins' post-start hooks (the default RBAC policy the other components'
        # identities need), as kube-apiserver runs them before it is ready.
        if getattr(registered.provider, "in_apiserver", False):
            await nursery.start(registered.provider.run, loopback)
    api.ready.set()


@asynccontextmanager
async def open_local_node(
    work_dir: Path,
    *,
    node_name: str,
    block: str,
    proxy: bool = True,
    dns: bool = True,
    ingress_ports: tuple[int, int] | None = None,
) -> AsyncIterator[Cluster]:
    """One real node with everything local, for tests, benchmarks and trying things.

    A registry holding busybox (docker.io mirrored to it, so ``image: busybox`` pulls
    offline), a SQLite store under ``work_dir``, the calico and scheduler plugins with
    ``block`` as the node's pod block, and a node agent (root and runc needed). The
    node's pods are stopped when the block ends, so nothing of them outlives it.
    """
    from kubetrio.images import busybox_registry
    from kubetrio.store import open_store

    manager = load_plugins(only=["cni_calico", "scheduler"])
    async with (
        busybox_registry(work_dir / "registry") as mirrors,
        open_store(f"sqlite://{work_dir}/state.db") as store,
        open_cluster(
            store,
            plugins=manager,
            plugin_config={"network": {"block": block}},
            agent=True,
            agent_dir=work_dir / "agent",
            registries=mirrors,
            node_name=node_name,
            proxy=proxy,
            dns=dns,
            ingress_ports=ingress_ports,
        ) as cluster,
    ):
        try:
            yield cluster
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(60):
                await cluster.stop_pods(grace_period=1)


PROXY_MODES = ("nftables", "maglev")
"""The service proxy's modes (``--proxy-mode``)."""


async def start_service_datapath(
    nursery: trio.Nursery, client: Client, node_name: str, *, mode: str = "nftables"
) -> None:
    """Start a node's part of Services: the nftables proxy (in ``mode``, one of
    :data:`PROXY_MODES`, recorded on the Node) and the LoadBalancer announcer."""
    from kubetrio.proxy import ServiceProxy, announce_mode
    from kubetrio.servicelb import ServiceLBAnnouncer

    await nursery.start(ServiceProxy(client, node_name=node_name, mode=mode).run)
    await announce_mode(client, node_name, mode)
    await nursery.start(ServiceLBAnnouncer(client, node_name).run)


async def start_ingress(
    nursery: trio.Nursery,
    client: Client,
    node_name: str,
    state_dir: Path,
    ports: tuple[int, int],
    *,
    address: str | None = None,
) -> None:
    """Start a node's ingress controller (nginx on ``ports``, HTTP and HTTPS, its files in
    ``state_dir``); a node where nginx cannot run logs why and goes on without it."""
    from kubetrio.ingress import NGINX, IngressController, NginxError

    if not os.access(NGINX, os.X_OK):
        log.warning("%s is missing (apt-get install nginx-light): no ingress controller", NGINX)
        return
    controller = IngressController(
        client, node_name, state_dir, http_port=ports[0], https_port=ports[1], address=address
    )
    try:
        await nursery.start(controller.run)
    except NginxError as exc:
        log.error("no ingress controller on %s: %s", node_name, exc)


async def _run_cluster_dns(
    client: Client, address: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve cluster DNS on the node's address and publish it as ``kube-dns``."""
    from kubetrio.dns import ClusterDNS, publish_dns_service

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(ClusterDNS(client, listen=(address, 53)).run)
        await publish_dns_service(client, address=host, port=port)
        task_status.started()


SCHEDULER_LEASE = "kube-scheduler"
"""The Lease in kube-system the schedulers of several API servers elect one leader on
(kube-scheduler's ``--leader-elect``, on by default upstream too)."""


async def _start_scheduler(
    nursery: trio.Nursery, api: ApiServer, plugins: PluginManager | None, timing: LeaseTiming
) -> None:
    """Run the scheduler while this server holds :data:`SCHEDULER_LEASE`, its writes
    guarded by the Lease as the controllers' are. As before leader election, a lone
    server returns once its scheduler has synced; a standby returns at once."""
    client = Client.in_process(api, user=scheduler_user)
    identity = f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(
        client, identity=identity, name=SCHEDULER_LEASE, **dataclasses.asdict(timing)
    )
    synced = trio.Event()

    async def schedule() -> None:
        async with trio.open_nursery() as inner:
            await inner.start(Scheduler(guarded_client(client, elector), plugins=plugins).run)
            synced.set()

    await nursery.start(elector.run, schedule)
    while not synced.is_set() and elector.holder in ("", identity):
        await trio.sleep(0.01)


async def advertised_address(host: str, node_ip: str | None = None) -> str | None:
    """Where pods reach an API server listening on ``host`` (``--advertise-address``'s
    default): ``host`` itself unless loopback or every address, else the node's address
    (``node_ip`` or :func:`_pod_reachable_address`), as kube-apiserver advertises its
    default interface's address. None when this host has no such address."""
    try:
        own = ipaddress.ip_address(host)
    except ValueError:  # a name such as localhost
        own = None
    if own is not None and not own.is_loopback and not own.is_unspecified:
        return host
    return node_ip or await _pod_reachable_address()


async def _pod_reachable_address() -> str | None:
    """A global IPv4 address of this host that pods can reach: the one of the link the
    default route leaves by, else the first global one (whatever a network plugin names
    its pod links, they carry no default route)."""

    async def ip_json(*args: str) -> list[Any]:
        result = await trio.run_process(["ip", "-j", "-4", *args], capture_stdout=True, check=False)
        return list(json.loads(result.stdout or b"[]")) if result.returncode == 0 else []

    links = await ip_json("addr", "show", "scope", "global")
    default_links = {str(route.get("dev")) for route in await ip_json("route", "show", "default")}
    ordered = sorted(links, key=lambda link: link.get("ifname") not in default_links)
    for link in ordered:
        if link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet" and info.get("local"):
                return str(info["local"])
    return None
