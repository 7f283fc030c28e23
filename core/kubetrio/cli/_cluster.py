"""Commands that run cluster processes: ``server``, ``agent``, ``up``, ``down``.

``server`` runs a whole cluster over the embedded store (or etcd); ``up``/``down`` run
one in the background (``_local``); ``agent`` joins this host to a server as a node.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml

from kubetrio.plugins import PluginManager

if TYPE_CHECKING:
    import ssl

    from kubetrio.pki import TLSConfig

from ._backup import (
    BACKUP_DIR_OPTION,
    BACKUP_RETENTION_OPTION,
    BACKUP_SCHEDULE_OPTION,
)
from ._backup import backup_schedule as backup_schedules
from ._checks import checked_lb_pool, checked_listen, checked_proxy_mode, checked_store_url
from ._console import err_console, setup_logging
from ._ha import balancer
from ._join import certificate_files, ensure_client_certificate, keep_renewed
from ._local import CLUSTERS_DIR, down, status, up
from ._options import (
    add_plugin_options,
    config_command,
    context_plugins,
    option_names,
    plugin_config,
)
from ._periods import HPA_SYNC_PERIOD_OPTION, METRIC_RESOLUTION_OPTION
from ._retention import (
    HISTORY_MAX_SIZE_OPTION,
    HISTORY_RETENTION_FOR_OPTION,
    HISTORY_RETENTION_OPTION,
    history_policy,
)
from ._security import (
    AUDIT_LOG_MAXBACKUP_OPTION,
    AUDIT_LOG_MAXSIZE_OPTION,
    AUDIT_LOG_PATH_OPTION,
    AUDIT_POLICY_OPTION,
    ENCRYPTION_CONFIG_OPTION,
    audit_log,
    encryption_config,
)
from ._token import is_bootstrap_token

DEFAULT_DATA_DIR = Path("~/.local/share/kubetrio").expanduser()
DEFAULT_AGENT_DIR = Path("/var/lib/kubetrio/agent")
DEFAULT_KUBECONFIG = Path("~/.kube/config").expanduser()

# Options both `server` and `agent` take (one definition, one help text).
NODE_IP_OPTION = typer.Option(
    "", help="The node's InternalIP (default: this host's first global IPv4 address)."
)
NETWORK_PLUGIN_OPTION = typer.Option(
    "",
    help="The network plugin pods are wired by, by name (`kubetrio plugins` lists them; "
    "default: the only one installed).",
)
RUNTIME_OPTION = typer.Option(
    "runc", help="The container runtime: runc, or one a plugin registers."
)
INGRESS_HTTP_PORT_OPTION = typer.Option(
    80, min=0, max=65535, help="The node's port for Ingresses over HTTP (nginx); 0: no ingress."
)
INGRESS_HTTPS_PORT_OPTION = typer.Option(
    443, min=1, max=65535, help="The node's port for Ingresses over HTTPS (nginx)."
)
PROXY_MODE_OPTION = typer.Option(
    "nftables",
    help="The service proxy: nftables (endpoints chosen at random) or maglev (consistent hashing).",
    callback=checked_proxy_mode,
)


def server(
    data_dir: Path = typer.Option(
        DEFAULT_DATA_DIR, help="Where the embedded store keeps its data."
    ),
    store: str = typer.Option(
        "", help="Use etcd instead of the embedded store: etcd://host:port,host:port."
    ),
    join: str = typer.Option(
        "",
        "--join",
        help="Join the running HA cluster (`up --servers`) at this URL as one more API "
        "server: the shared CAs, keys and store are fetched with --token; see docs/ha.md.",
    ),
    token: str = typer.Option(
        "",
        envvar="KUBETRIO_TOKEN",
        help="With --join: the cluster's admin token (a server's DATA_DIR/admin-token).",
    ),
    certificate_authority: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="With --join: the cluster CA (DATA_DIR/pki/ca.crt) to verify --join against.",
    ),
    etcd_cafile: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="The CA of the etcd members' certificates: reach --store etcd:// over TLS.",
    ),
    etcd_certfile: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="This server's client certificate for etcd."
    ),
    etcd_keyfile: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The key of --etcd-certfile."
    ),
    host: str = typer.Option("127.0.0.1", help="Address the API server listens on."),
    port: int = typer.Option(6443, help="Port the API server listens on."),
    advertise_address: str = typer.Option(
        "",
        help="The address pods reach the API server at: the endpoint of the kubernetes "
        "Service, served too (default: --host, or the node's address if --host is "
        "loopback or 0.0.0.0).",
    ),
    kubeconfig: Path = typer.Option(
        DEFAULT_KUBECONFIG,
        help="Merge the admin kubeconfig into this file, as context 'kubetrio'.",
    ),
    no_agent: bool = typer.Option(False, "--no-agent", help="Run only the control plane, no node."),
    simulated_nodes: int = typer.Option(
        0, min=0, help="Also run this many simulated nodes (status only, no processes)."
    ),
    node_name: str = typer.Option("", help="This node's name (default: the host name)."),
    node_ip: str = NODE_IP_OPTION,
    network_plugin: str = NETWORK_PLUGIN_OPTION,
    runtime: str = RUNTIME_OPTION,
    proxy_mode: str = PROXY_MODE_OPTION,
    ingress_http_port: int = INGRESS_HTTP_PORT_OPTION,
    ingress_https_port: int = INGRESS_HTTPS_PORT_OPTION,
    lb_pool: str = typer.Option(
        "",
        help="Addresses for LoadBalancer Services, announced on the node network: a CIDR "
        "or first-last range, comma-joined (default: none, such Services stay pending).",
    ),
    registries: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Registry mirrors for image pulls, in k3s' registries.yaml shape "
        "(mirrors: {docker.io: {endpoint: [http://127.0.0.1:5000]}}).",
    ),
    encryption_provider_config: Path | None = ENCRYPTION_CONFIG_OPTION,
    audit_policy_file: Path | None = AUDIT_POLICY_OPTION,
    audit_log_path: str | None = AUDIT_LOG_PATH_OPTION,
    audit_log_maxsize: int = AUDIT_LOG_MAXSIZE_OPTION,
    audit_log_maxbackup: int = AUDIT_LOG_MAXBACKUP_OPTION,
    history_retention: str = HISTORY_RETENTION_OPTION,
    history_retention_for: list[str] = HISTORY_RETENTION_FOR_OPTION,
    history_max_size: str = HISTORY_MAX_SIZE_OPTION,
    backup_schedule: str = BACKUP_SCHEDULE_OPTION,
    backup_retention: int = BACKUP_RETENTION_OPTION,
    backup_dir: Path | None = BACKUP_DIR_OPTION,
    metric_resolution: float = METRIC_RESOLUTION_OPTION,
    hpa_sync_period: float = HPA_SYNC_PERIOD_OPTION,
    request_header_timeout: float | None = typer.Option(
        None, min=0.1, show_default="10", help="Seconds a request's headers may take, else 408."
    ),
    request_body_timeout: float | None = typer.Option(
        None, min=0.1, show_default="60", help="Seconds a request's body may take, else 408."
    ),
    idle_connection_timeout: float | None = typer.Option(
        None,
        min=0.1,
        show_default="120",
        help="Seconds a kept-alive connection waits for a request.",
    ),
    max_connections: int | None = typer.Option(
        None,
        min=1,
        show_default="10000",
        help="Most client connections at once (lowered to fit the open-file limit); "
        "one more gets 503.",
    ),
    max_requests_inflight: int | None = typer.Option(
        None,
        min=0,
        show_default="400",
        help="Most non-mutating requests in flight, of all clients (watches and streams "
        "not counted); one more gets 429; 0: no limit. With priority and fairness, the "
        "sum of this and the next is shared among the priority levels.",
    ),
    max_mutating_requests_inflight: int | None = typer.Option(
        None,
        min=0,
        show_default="200",
        help="Most mutating requests in flight, of all clients; 0: no limit.",
    ),
    enable_priority_and_fairness: bool | None = typer.Option(
        None,
        "--enable-priority-and-fairness/--disable-priority-and-fairness",
        show_default="enabled",
        help="API Priority and Fairness: requests classified by the FlowSchemas, seats "
        "per priority level, fair queues per flow, 429 when a level's queues are full.",
    ),
    max_requests_inflight_per_client: int | None = typer.Option(
        None,
        min=0,
        show_default="200",
        help="Most requests in flight from one client address (watches and streams not "
        "counted); 0: no limit.",
    ),
    leader_elect_lease_duration: float = typer.Option(
        15.0,
        min=1,
        help="Seconds a standby waits on a leader Lease (controllers, scheduler) "
        "not renewed before taking it.",
    ),
    leader_elect_renew_deadline: float = typer.Option(
        10.0, min=0.5, help="Seconds the leader may fail to renew before it steps down."
    ),
    leader_elect_retry_period: float = typer.Option(
        2.0, min=0.1, help="Seconds between two attempts to take or renew a leader Lease."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Run a cluster in the foreground: API server, controllers, scheduler and this node.

    State lives in --data-dir (SQLite) unless --store names etcd. This host joins as a
    node running pods under runc (root needed; --no-agent to skip); --simulated-nodes
    adds status-only nodes for trying things at scale. The admin credentials are merged
    into --kubeconfig, so `kubectl get pods` works at once. Stop with Ctrl-C or SIGTERM.
    Options may also come from a YAML file (--config; DATA_DIR/config.yaml if there).
    """
    import dataclasses

    import trio

    from kubetrio.apiserver import ServerLimits
    from kubetrio.controllers import LeaseTiming

    from ._serve import run_server

    setup_logging(verbose)
    given: dict[str, Any] = {
        "request_header_timeout": request_header_timeout,
        "request_body_timeout": request_body_timeout,
        "idle_timeout": idle_connection_timeout,
        "max_connections": max_connections,
        "max_requests_inflight": max_requests_inflight,
        "max_mutating_requests_inflight": max_mutating_requests_inflight,
        "max_requests_inflight_per_client": max_requests_inflight_per_client,
        "enable_priority_and_fairness": enable_priority_and_fairness,
    }
    limits = dataclasses.replace(
        ServerLimits(), **{key: value for key, value in given.items() if value is not None}
    )
    checked_listen(host, port)
    store_tls: ssl.SSLContext | None = None
    if join:
        from ._ha import fetch_bootstrap, joined_store_tls

        if not token or certificate_authority is None:
            raise typer.BadParameter(
                "--join needs --token and --certificate-authority", param_hint="--join"
            )
        store = fetch_bootstrap(join, token, certificate_authority, data_dir)
        store_tls = joined_store_tls(data_dir)
    store_url = checked_store_url(store) or f"sqlite://{(data_dir / 'state.db').resolve()}"
    if not join:
        store_tls = _etcd_tls(etcd_cafile, etcd_certfile, etcd_keyfile)
    pool = checked_lb_pool(lb_pool)
    if not leader_elect_retry_period < leader_elect_renew_deadline < leader_elect_lease_duration:
        raise typer.BadParameter(
            "need retry period < renew deadline < lease duration",
            param_hint="--leader-elect-retry-period/--leader-elect-renew-deadline/"
            "--leader-elect-lease-duration",
        )
    plugins = context_plugins()
    config = plugin_config()
    encryption = encryption_config(encryption_provider_config, data_dir)
    history = history_policy(history_retention, history_retention_for, history_max_size)
    backups = backup_schedules(backup_schedule, backup_retention, backup_dir, data_dir)
    audit = audit_log(
        audit_policy_file,
        audit_log_path,
        data_dir,
        max_size_mb=audit_log_maxsize,
        max_backups=audit_log_maxbackup,
    )
    trio.run(
        lambda: run_server(
            data_dir=data_dir,
            encryption=encryption,
            audit=audit,
            history=history,
            store_url=store_url,
            store_tls=store_tls,
            host=host,
            port=port,
            kubeconfig=kubeconfig,
            plugins=plugins,
            agent=not no_agent,
            simulated_nodes=simulated_nodes,
            registries=yaml.safe_load(registries.read_text()) if registries else None,
            node_name=node_name or None,
            node_ip=node_ip or None,
            plugin_config=config,
            network_plugin=network_plugin,
            runtime=runtime,
            proxy_mode=proxy_mode,
            ingress_ports=(ingress_http_port, ingress_https_port) if ingress_http_port else None,
            lb_pool=pool,
            limits=limits,
            advertise_address=advertise_address or None,
            backups=backups,
            lease_timing=LeaseTiming(
                leader_elect_lease_duration, leader_elect_renew_deadline, leader_elect_retry_period
            ),
            periods=(metric_resolution, hpa_sync_period),
        )
    )


def agent(
    server_url: str = typer.Option(..., "--server", help="URL of the API server to join."),
    token: str = typer.Option(
        "",
        envvar="KUBETRIO_TOKEN",
        help="A bootstrap token (`kubetrio token create`) to join with: the node asks for "
        "its client certificate with it, then uses only the certificate (kept in "
        "DATA_DIR/pki). Or the cluster's admin token (the server's DATA_DIR/admin-token).",
    ),
    kubelet_token: str = typer.Option(
        "",
        envvar="KUBETRIO_KUBELET_TOKEN",
        help="The bearer token the API server presents when it reaches this node (logs, "
        "exec): its admin token (default: --token when that is not a bootstrap token).",
    ),
    certificate_authority: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="The cluster CA's certificate (the server's DATA_DIR/pki/ca.crt) to verify "
        "an https --server against (default: the system's CAs).",
    ),
    client_certificate: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The node's client certificate (PEM)."
    ),
    client_key: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The key of --client-certificate (PEM)."
    ),
    tls_cert_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="The certificate the agent's HTTPS endpoint (logs, exec, port-forward) serves, "
        "signed by the cluster CA for the node's addresses (PEM).",
    ),
    tls_private_key_file: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="The key of --tls-cert-file (PEM)."
    ),
    client_ca_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="The CA whose client certificates the agent's endpoint accepts (the server's "
        "DATA_DIR/pki/client-ca.crt); callers are then authorized by SubjectAccessReview.",
    ),
    node_name: str = typer.Option("", help="Node name (default: the host name)."),
    data_dir: Path = typer.Option(DEFAULT_AGENT_DIR, help="The agent's state: images, pods, logs."),
    registries: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Registry mirrors (k3s registries.yaml shape)."
    ),
    node_ip: str = NODE_IP_OPTION,
    network_plugin: str = NETWORK_PLUGIN_OPTION,
    runtime: str = RUNTIME_OPTION,
    proxy_mode: str = PROXY_MODE_OPTION,
    ingress_http_port: int = INGRESS_HTTP_PORT_OPTION,
    ingress_https_port: int = INGRESS_HTTPS_PORT_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run a node agent that joins a server: this host runs pods under runc (needs root).

    The node runs its pods, the nftables service proxy, nginx for Ingresses and the
    network plugin's node services (routes, policy). Options may also come from a YAML
    file (--config; DATA_DIR/config.yaml if there). SIGTERM/Ctrl-C stop the agent and
    leave the pods running (a restarted agent adopts them); SIGUSR1 stops the pods first.
    """
    import logging
    import signal
    import socket
    import ssl

    import trio

    from kubetrio.client import Client
    from kubetrio.cluster import agent_can_run

    setup_logging(verbose)
    why = agent_can_run()
    if why is not None:
        err_console.print(f"[bold red]error:[/] {why}")
        raise typer.Exit(code=1)
    if (client_certificate is None) != (client_key is None):
        raise typer.BadParameter(
            "give both or neither", param_hint="--client-certificate/--client-key"
        )
    node_name = node_name or socket.gethostname()
    api_token = token
    if client_certificate is None and (
        is_bootstrap_token(token) or certificate_files(data_dir)[0].exists()
    ):
        # TLS bootstrap: the token only asks for the certificate (or the stored one is
        # used, renewed when old); the API sees the node by its certificate alone.
        client_certificate, client_key = ensure_client_certificate(
            server_url,
            node_name,
            data_dir,
            token=token if is_bootstrap_token(token) else "",
            certificate_authority=certificate_authority,
        )
        api_token = ""
    bootstrapped = api_token == "" and client_certificate == certificate_files(data_dir)[0]
    kubelet_token = kubelet_token or ("" if is_bootstrap_token(token) else token)
    verify: ssl.SSLContext | bool = True
    if certificate_authority is not None or client_certificate is not None:
        verify = ssl.create_default_context(
            cafile=str(certificate_authority) if certificate_authority else None
        )
        if client_certificate is not None:
            verify.load_cert_chain(client_certificate, client_key)
    kubelet_tls = _agent_tls(tls_cert_file, tls_private_key_file, client_ca_file)
    mirrors = yaml.safe_load(registries.read_text()) if registries else None
    plugins = context_plugins()
    config: dict[str, Any] = dict(plugin_config())
    config["kubetrio"] = {
        "command": "agent",
        "data_dir": str(data_dir),
        "admin_token": kubelet_token,
    }
    plugins.configure(config=config)

    async def run() -> None:
        from kubetrio.cluster import start_ingress, start_service_datapath
        from kubetrio.dns import DNS_SERVICE_IP
        from kubetrio.kubelet import NodeAgent

        async with Client.connect(server_url, token=api_token, verify=verify) as client:
            node = NodeAgent(
                client,
                node_name=node_name,
                plugins=plugins,
                runtime=runtime,
                network=network_plugin,
                root_dir=data_dir,
                registries=mirrors,
                address=node_ip or None,
                kubelet_port=0,
                kubelet_token="" if kubelet_tls else kubelet_token,
                kubelet_tls=kubelet_tls,
                cluster_dns=[DNS_SERVICE_IP],
            )
            stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
            with trio.open_signal_receiver(*stop_signals) as signals:
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.run)
                    if bootstrapped and isinstance(verify, ssl.SSLContext):
                        nursery.start_soon(
                            partial(
                                keep_renewed,
                                server_url,
                                node_name,
                                data_dir,
                                verify,
                                certificate_authority=certificate_authority,
                            )
                        )
                    await start_service_datapath(nursery, client, node.node_name, mode=proxy_mode)
                    if ingress_http_port:
                        await start_ingress(
                            nursery,
                            client,
                            node.node_name,
                            data_dir / "ingress",
                            (ingress_http_port, ingress_https_port),
                            address=node_ip or None,
                        )
                    log = logging.getLogger("kubetrio")
                    log.info("node %s joined %s", node.node_name, server_url)
                    async for signum in signals:
                        log.info("received %s, stopping", signal.Signals(signum).name)
                        if signum == signal.SIGUSR1:
                            with trio.move_on_after(60):
                                await node.shutdown(grace_period=5.0)
                        break
                    nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    finally:
        plugins.unconfigure()


def _etcd_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context to reach etcd with, from ``server``'s ``--etcd-*`` flags (None: plain
    HTTP); the certificate and key go together and need the CA."""
    import ssl

    if ca is None and cert is None and key is None:
        return None
    if ca is None or (cert is None) != (key is None):
        raise typer.BadParameter(
            "give --etcd-cafile, and --etcd-certfile with --etcd-keyfile",
            param_hint="--etcd-cafile/--etcd-certfile/--etcd-keyfile",
        )
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _agent_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TLSConfig | None:
    """The agent endpoint's TLS from ``agent``'s flags (None: plain HTTP and the token);
    the flags go together."""
    from kubetrio.pki import TLSConfig

    if cert is None and key is None and client_ca is None:
        import logging

        logging.getLogger("kubetrio").warning(
            "no --tls-cert-file: the node agent's endpoint is plain HTTP guarded by the admin token"
        )
        return None
    if cert is None or key is None or client_ca is None:
        raise typer.BadParameter(
            "give all three or none",
            param_hint="--tls-cert-file/--tls-private-key-file/--client-ca-file",
        )
    return TLSConfig(cert_file=cert, key_file=key, client_ca_file=client_ca)


def _up_home(args: dict[str, str]) -> Path:
    return CLUSTERS_DIR / args.get("--name", "kubetrio")


DATA_DIRS: dict[str, Callable[[dict[str, str]], Path | None]] = {
    "server": lambda args: DEFAULT_DATA_DIR,
    "agent": lambda args: DEFAULT_AGENT_DIR,
    "up": _up_home,
}
"""Where each command's configuration file is looked for without --data-dir."""


def register_cluster_commands(app: typer.Typer, manager: PluginManager) -> None:
    """Add the cluster process commands to the root application, with the options of
    ``manager``'s plugins and a configuration file."""
    commands: dict[str, Callable[..., Any]] = {"server": server, "agent": agent, "up": up}
    reserved = set().union(*(option_names(command) for command in commands.values()))
    options = manager.options(reserved=reserved | {"config"})
    for name, command in commands.items():
        mine = [option for option in options if name in option.commands]
        app.command(name, cls=config_command(DATA_DIRS[name], mine))(
            add_plugin_options(command, name, manager, mine)
        )
    app.command()(down)
    app.command()(status)
    app.command()(balancer)
