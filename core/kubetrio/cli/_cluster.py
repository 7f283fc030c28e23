"""Commands that run cluster processes: ``server``, ``agent``, ``up``, ``down``.

``server`` runs a whole cluster over the embedded store (or etcd); ``up``/``down`` run
one in the background (``_local``); ``agent`` joins this host to a server as a node.
"""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from ._checks import checked_lb_pool, checked_listen, checked_network_mode, checked_store_url
from ._console import err_console, load_plugins_or_exit, setup_logging
from ._local import down, status, up

DEFAULT_DATA_DIR = Path("~/.local/share/kubetrio").expanduser()
DEFAULT_KUBECONFIG = Path("~/.kube/config").expanduser()


def _network_config(mode: str, pod_cidr: str) -> dict[str, str]:
    """The network plugin's settings from the command line (empty: the plugin's defaults)."""
    settings = {"mode": mode} if checked_network_mode(mode) else {}
    if pod_cidr:
        settings["pool"] = pod_cidr
    return settings


# Options both `server` and `agent` take (one definition, one help text).
NODE_IP_OPTION = typer.Option(
    "", help="The node's InternalIP (default: this host's first global IPv4 address)."
)
NETWORK_MODE_OPTION = typer.Option(
    "",
    "--network-mode",
    help="How pod traffic crosses nodes, for the cluster's default IP pool: "
    "vxlan (kernel VXLAN), ipip (the userspace IPIP tunnel) or bgp (routes via bird).",
)


def server(
    data_dir: Path = typer.Option(
        DEFAULT_DATA_DIR, help="Where the embedded store keeps its data."
    ),
    store: str = typer.Option(
        "", help="Use etcd instead of the embedded store: etcd://host:port,host:port."
    ),
    host: str = typer.Option("127.0.0.1", help="Address the API server listens on."),
    port: int = typer.Option(6443, help="Port the API server listens on."),
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
    network_mode: str = NETWORK_MODE_OPTION,
    pod_cidr: str = typer.Option("", help="The pod network (default 10.244.0.0/16)."),
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
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Run a cluster in the foreground: API server, controllers, scheduler and this node.

    State lives in --data-dir (SQLite) unless --store names etcd. This host joins as a
    node running pods under runc (root needed; --no-agent to skip); --simulated-nodes
    adds status-only nodes for trying things at scale. The admin credentials are merged
    into --kubeconfig, so `kubectl get pods` works at once. Stop with Ctrl-C or SIGTERM.
    """
    import trio

    from ._serve import run_server

    setup_logging(verbose)
    checked_listen(host, port)
    store_url = checked_store_url(store) or f"sqlite://{(data_dir / 'state.db').resolve()}"
    network = _network_config(network_mode, pod_cidr)
    pool = checked_lb_pool(lb_pool)
    trio.run(
        lambda: run_server(
            data_dir=data_dir,
            store_url=store_url,
            host=host,
            port=port,
            kubeconfig=kubeconfig,
            plugins=load_plugins_or_exit(),
            agent=not no_agent,
            simulated_nodes=simulated_nodes,
            registries=yaml.safe_load(registries.read_text()) if registries else None,
            node_name=node_name or None,
            node_ip=node_ip or None,
            network=network,
            lb_pool=pool,
        )
    )


def agent(
    server_url: str = typer.Option(..., "--server", help="URL of the API server to join."),
    token: str = typer.Option(
        ...,
        envvar="KUBETRIO_TOKEN",
        help="The cluster's admin token (the admin-token file in the server's --data-dir).",
    ),
    node_name: str = typer.Option("", help="Node name (default: the host name)."),
    data_dir: Path = typer.Option(
        Path("/var/lib/kubetrio/agent"), help="The agent's state: images, pods, logs."
    ),
    registries: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Registry mirrors (k3s registries.yaml shape)."
    ),
    node_ip: str = NODE_IP_OPTION,
    network_mode: str = NETWORK_MODE_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run a node agent that joins a server: this host runs pods under runc (needs root).

    The node runs its pods, the nftables service proxy and the network plugin's node
    services (routes, policy). --network-mode matters only if no node created the
    cluster's IP pool yet. SIGTERM/Ctrl-C stop the agent and leave the pods running (a
    restarted agent adopts them); SIGUSR1 stops the pods first.
    """
    import logging
    import signal
    import socket

    import trio

    from kubetrio.client import Client
    from kubetrio.cluster import agent_can_run

    setup_logging(verbose)
    why = agent_can_run()
    if why is not None:
        err_console.print(f"[bold red]error:[/] {why}")
        raise typer.Exit(code=1)
    mirrors = yaml.safe_load(registries.read_text()) if registries else None
    plugins = load_plugins_or_exit()
    plugins.configure(config={"network": _network_config(network_mode, "")})

    async def run() -> None:
        from kubetrio.cluster import start_service_datapath
        from kubetrio.dns import DNS_SERVICE_IP
        from kubetrio.kubelet import NodeAgent

        async with Client.connect(server_url, token=token) as client:
            node = NodeAgent(
                client,
                node_name=node_name or socket.gethostname(),
                plugins=plugins,
                root_dir=data_dir,
                registries=mirrors,
                address=node_ip or None,
                kubelet_port=0,
                kubelet_token=token,
                cluster_dns=[DNS_SERVICE_IP],
            )
            stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
            with trio.open_signal_receiver(*stop_signals) as signals:
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.run)
                    await start_service_datapath(nursery, client, node.node_name)
                    log = logging.getLogger("kubetrio")
                    log.info("node %s joined %s", node.node_name, server_url)
                    async for signum in signals:
                        log.info("received %s, stopping", signal.Signals(signum).name)
                        if signum == signal.SIGUSR1:
                            with trio.move_on_after(60):
                                await node.shutdown(grace_period=5.0)
                        break
                    nursery.cancel_scope.cancel()

    trio.run(run)


def register_cluster_commands(app: typer.Typer) -> None:
    """Add the cluster process commands to the root application."""
    for command in (server, agent, up, down, status):
        app.command()(command)
