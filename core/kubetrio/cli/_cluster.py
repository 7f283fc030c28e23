"""Commands that run cluster processes: ``server``, ``agent``, ``up``, ``down``.

``server`` runs the control plane over the embedded store (or etcd); ``up``/``down``
run one in the background (``_local``). The node agent (#7) lands with its issue; until
then ``agent`` says so and exits with status 2, instead of pretending.
"""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

from ._local import down, up

err_console = Console(stderr=True)

DEFAULT_DATA_DIR = Path("~/.local/share/kubetrio").expanduser()
DEFAULT_KUBECONFIG = Path("~/.kube/config").expanduser()


def _not_built(component: str, issue: int) -> None:
    err_console.print(
        f"[bold yellow]kubetrio {component}[/] is not part of this build yet "
        f"(tracked in issue #{issue}); nothing was started."
    )
    raise typer.Exit(code=2)


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
    import logging

    import trio
    from rich.logging import RichHandler

    from kubetrio.apiserver import run_server

    from ._app import _load_plugins

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )
    store_url = store or f"sqlite://{(data_dir / 'state.db').resolve()}"
    try:
        trio.run(
            lambda: run_server(
                data_dir=data_dir,
                store_url=store_url,
                host=host,
                port=port,
                kubeconfig=kubeconfig,
                plugins=_load_plugins(),
                agent=not no_agent,
                simulated_nodes=simulated_nodes,
                registries=yaml.safe_load(registries.read_text()) if registries else None,
            )
        )
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from exc


def agent(
    server_url: str = typer.Option(..., "--server", help="URL of the API server to join."),
    token: str = typer.Option(..., help="Join token printed by `kubetrio server`."),
    node_name: str = typer.Option("", help="Node name (default: the host name)."),
) -> None:
    """Run a node agent (kubelet, service proxy, network plugin) that joins a server."""
    _not_built("agent", 7)


def register_cluster_commands(app: typer.Typer) -> None:
    """Add the cluster process commands to the root application."""
    for command in (server, agent, up, down):
        app.command()(command)
