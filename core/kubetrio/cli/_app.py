"""Builds the ``kubetrio`` Typer application: built-in commands plus plugins' commands."""

from __future__ import annotations

import json
import sys

import typer
from rich.markup import escape
from rich.table import Table

import kubetrio
from kubetrio import plugins as plugin_loading

from ._admin import admin_app
from ._backup import backup, migrate, restore
from ._cluster import register_cluster_commands
from ._console import console, err_console, load_plugins_or_exit
from ._errors import explain
from ._history import history
from ._image import image_app
from ._token import token_app


def version() -> None:
    """Print kubetrio's version and the Rust datapath extension's version."""
    try:
        from kubetrio import _datapath

        datapath = _datapath.__version__
    except ImportError:  # a source tree whose extension was never built
        datapath = "not built"
    console.print(
        f"kubetrio {kubetrio.__version__} (datapath {datapath}, Python {sys.version.split()[0]})"
    )


def list_plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    block: list[str] = typer.Option(
        [],
        "--block",
        "-b",
        help="Leave this plugin out (repeatable); see also KUBETRIO_BLOCKED_PLUGINS.",
    ),
) -> None:
    """List the plugins found through the `kubetrio` entry-point group and the hooks they implement.

    Set KUBETRIO_PLUGINS=a,b to load only those plugins, KUBETRIO_BLOCKED_PLUGINS=a,b to
    leave some out. A plugin that fails to load or start is listed as broken, with why.
    """
    manager = load_plugins_or_exit(block)
    options: dict[str, list[str]] = {}
    for option in manager.options():
        options.setdefault(option.plugin, []).append(f"--{option.name}")
    infos = manager.plugins()  # after options(): a plugin failing there is broken too
    drivers = _storage_drivers(manager)
    if as_json:
        console.print_json(
            json.dumps(
                [
                    info.__dict__
                    | {"hooks": list(info.hooks), "options": options.get(info.name, [])}
                    | ({"storage_drivers": drivers[info.name]} if info.name in drivers else {})
                    for info in infos
                ]
            )
        )
        return
    table = Table(title="kubetrio plugins")
    for column in ("name", "distribution", "version"):
        table.add_column(column)
    table.add_column("hooks implemented", no_wrap=True)
    table.add_column("options", no_wrap=True)
    for info in infos:
        hooks = "\n".join(info.hooks) if not info.error else f"[red]broken:[/] {info.error}"
        table.add_row(
            info.name, info.distribution, info.version, hooks, "\n".join(options.get(info.name, []))
        )
    console.print(table)
    if drivers:
        served = Table(title="storage drivers (StorageClass provisioner names)")
        served.add_column("plugin")
        served.add_column("provisioner", no_wrap=True)
        for plugin, names in drivers.items():
            served.add_row(plugin, "\n".join(names))
        console.print(served)
    if not infos:
        console.print("No plugins installed. Run `make setup` to install the built-in ones.")


def _storage_drivers(manager: plugin_loading.PluginManager) -> dict[str, list[str]]:
    """Each plugin's storage drivers by name (the provisioner names they serve)."""
    drivers: dict[str, list[str]] = {}
    try:
        for registered in manager.storage_drivers():
            drivers.setdefault(registered.plugin, []).append(registered.provider.name)
    except Exception:  # a broken driver hook is the plugin's problem, not the listing's
        pass
    return drivers


def build_app(
    manager: plugin_loading.PluginManager | None = None, *, pretty_exceptions: bool = False
) -> typer.Typer:
    """The CLI application with built-in commands and the commands plugins add.

    :param manager: the plugin manager whose plugins may add commands; loaded from the
        installed entry points when None.
    :param pretty_exceptions: let Typer print rich tracebacks (``--debug``); otherwise
        failures reach :func:`main`, which tells expected ones in one line.
    """
    app = typer.Typer(
        name="kubetrio",
        help="kubetrio: a small, hackable, Kubernetes-compatible orchestrator. "
        "Drive the cluster with kubectl; use these commands to run and inspect it. "
        "Add --debug to any command to see the traceback of a failure.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=pretty_exceptions,
        pretty_exceptions_show_locals=False,
    )
    manager = manager or load_plugins_or_exit()
    app.command()(version)
    app.command("plugins")(list_plugins)
    app.command("history")(history)
    app.command()(backup)
    app.command()(restore)
    app.command()(migrate)
    register_cluster_commands(app, manager)
    app.add_typer(image_app)
    app.add_typer(admin_app)
    app.add_typer(token_app)
    manager.add_commands(cli=app)
    return app


def main() -> None:
    """Entry point of the ``kubetrio`` console script.

    ``--debug`` anywhere on the command line shows the traceback of a failure; without
    it, an expected failure is one line (:mod:`._errors`) and exit status 1.
    """
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    app = build_app(pretty_exceptions=debug)
    try:
        app(standalone_mode=True)
    except Exception as exc:
        sentence = None if debug else explain(exc)
        if sentence is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(sentence)}", soft_wrap=True)
        raise SystemExit(1) from None
