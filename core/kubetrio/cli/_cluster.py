"""Commands that run cluster processes: ``server``, ``agent``, ``up``, ``down``.

Each command's options are the ones users will rely on; the processes behind them land
with their issues (API server: #4, node agent: #7, multi-node ``up``: #9). Until a
component exists its command says so and exits with status 2, instead of pretending.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err_console = Console(stderr=True)

DEFAULT_DATA_DIR = Path("~/.local/share/kubetrio").expanduser()


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
    port: int = typer.Option(6443, help="Port the API server listens on."),
    kubeconfig: Path | None = typer.Option(
        None,
        help="Write the admin kubeconfig here "
        "(default: merge into ~/.kube/config as context 'kubetrio').",
    ),
    no_agent: bool = typer.Option(False, "--no-agent", help="Run only the control plane, no node."),
) -> None:
    """Run the control plane (API server, controllers, scheduler) and, by default, a node."""
    _not_built("server", 4)


def agent(
    server_url: str = typer.Option(..., "--server", help="URL of the API server to join."),
    token: str = typer.Option(..., help="Join token printed by `kubetrio server`."),
    node_name: str = typer.Option("", help="Node name (default: the host name)."),
) -> None:
    """Run a node agent (kubelet, service proxy, network plugin) that joins a server."""
    _not_built("agent", 7)


def up(
    nodes: int = typer.Option(2, min=1, help="Number of nodes, each in its own network namespace."),
    name: str = typer.Option("kubetrio", help="Cluster name, used for the kubeconfig context."),
) -> None:
    """Start a local multi-node cluster with a local OCI registry, and point kubectl at it."""
    _not_built("up", 9)


def down(
    name: str = typer.Option("kubetrio", help="Cluster name given to `kubetrio up`."),
) -> None:
    """Stop the local cluster started by `kubetrio up` and remove what it created."""
    _not_built("down", 9)


def register_cluster_commands(app: typer.Typer) -> None:
    """Add the cluster process commands to the root application."""
    for command in (server, agent, up, down):
        app.command()(command)
