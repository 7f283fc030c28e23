"""What every command shares: the consoles it prints to and loading plugins or exiting."""

from __future__ import annotations

import typer
from rich.console import Console

from kubetrio import plugins as plugin_loading

console = Console()
"""Standard output: results and progress."""
err_console = Console(stderr=True)
"""Standard error: errors and logs."""


def load_plugins_or_exit(block: list[str] | None = None) -> plugin_loading.PluginManager:
    """The installed plugins (less ``block``), or a one-line error and exit code 1."""
    try:
        return plugin_loading.load(block=block or ())
    except plugin_loading.PluginError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from exc
