"""What every command shares: the consoles it prints to and loading plugins or exiting."""

from __future__ import annotations

import sys

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


def setup_logging(verbose: bool) -> None:
    """Log records to standard error: rich columns on a terminal, plain lines otherwise.

    A log file (``kubetrio up`` sends the server's output to ``server.log``) gets one
    line per record — time, level, logger, message — that grep and tail can read.
    """
    import logging

    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err_console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:  # one line per HTTP request is noise, not progress
        logging.getLogger("httpx").setLevel(logging.WARNING)
