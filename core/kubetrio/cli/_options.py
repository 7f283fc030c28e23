"""Plugins' options and the configuration file of ``kubetrio server``, ``agent`` and ``up``.

Plugins declare options through ``kubetrio_add_options``
(:class:`~kubetrio.providers.PluginOptions`); :func:`add_plugin_options` adds each to the
commands it names as a real Click option — shown in ``--help`` under a panel per plugin,
type-checked and choice-checked by the parser — and :func:`plugin_config` hands the
command their values as sections (``config[section][key]``) for ``kubetrio_configure``.

:class:`ConfigFileCommand` reads a YAML configuration file before the flags, like k3s'
``/etc/rancher/k3s/config.yaml``: its keys are the command's long option names
(``port: 6443``, ``network-mode: bgp``) or a plugin's section holding that plugin's
options (``network: {network-mode: bgp}``). The file is ``--config PATH``, else
``<data-dir>/config.yaml`` when it exists. File values become Click's ``default_map``, so
flags win over the file, and the file over the built-in defaults. A bad key or value is
one line naming the file and the key.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
import yaml
from typer.core import TyperCommand

from kubetrio.plugins import PluginManager
from kubetrio.providers import PluginOption

from ._console import err_console

CONFIG_FILE = "config.yaml"
_VALUES = "kubetrio.plugin_values"
_MANAGER = "kubetrio.plugins"
_OPTIONS = "kubetrio.plugin_options"
_CTX = "kubetrio_context"
_current: list[typer.Context] = []
"""The contexts of the commands running (Typer's Click has no public way to ask)."""


def _meta() -> dict[str, Any]:
    return _current[-1].meta if _current else {}


def option_names(command: Callable[..., Any]) -> set[str]:
    """The long option names (without dashes) of a Typer command function."""
    names: set[str] = set()
    for param in inspect.signature(command).parameters.values():
        info = param.default
        decls = [d for d in (getattr(info, "param_decls", None) or ()) if d.startswith("--")]
        names.update(d[2:] for d in decls)
        if not decls:
            names.add(param.name.replace("_", "-"))
    return names


def add_plugin_options(
    command: Callable[..., Any], name: str, manager: PluginManager, options: Sequence[PluginOption]
) -> Callable[..., Any]:
    """``command`` with ``--config`` and the plugin options for the command ``name``.

    The wrapper takes the plugin options' values out of the keyword arguments and keeps
    them (and ``manager``) in the Click context, where :func:`plugin_config` and
    :func:`context_plugins` find them.
    """
    mine = [option for option in options if name in option.commands]
    signature = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--config",
                help=f"A YAML file of options (keys: the long option names, or a plugin's "
                f"section); default: {CONFIG_FILE} in the data directory, if there. "
                "Flags win over the file.",
            ),
            annotation=Optional[Path],  # noqa: UP045 - Typer reads the annotation at run time
        )
    ]
    for option in mine:
        decls = [f"--{option.name}", *option.aliases]
        if option.type is bool:
            decls = [f"--{option.name}/--no-{option.name}"]
        extra.append(
            inspect.Parameter(
                option.param_name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    option.default,
                    *decls,
                    help=option.help,
                    rich_help_panel=f"Options of plugin {option.plugin}",
                    callback=_checker(option),
                    show_default=option.default not in (None, ""),
                ),
                annotation=Optional[option.type],  # noqa: UP045
            )
        )
    extra.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
    parameters = [*signature.parameters.values(), *extra]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        ctx: typer.Context = kwargs.pop(_CTX)
        _current.append(ctx)
        kwargs.pop("config", None)
        ctx.meta[_VALUES] = {option.name: kwargs.pop(option.param_name) for option in mine}
        ctx.meta[_OPTIONS] = mine
        ctx.meta[_MANAGER] = manager
        try:
            return command(**kwargs)
        finally:
            _current.pop()

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _checker(option: PluginOption) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        try:
            return option.check(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return check


def context_plugins() -> PluginManager:
    """The plugin manager the running command was built with."""
    manager: PluginManager = _meta()[_MANAGER]
    return manager


def plugin_values() -> dict[str, Any]:
    """The running command's plugin option values by option name (None: not given)."""
    values: dict[str, Any] = _meta().get(_VALUES, {})
    return values


def plugin_config() -> dict[str, dict[str, Any]]:
    """The running command's plugin options as configuration sections: each given
    option (or one with a default) as ``config[section][key]``."""
    options: list[PluginOption] = _meta().get(_OPTIONS, [])
    values = plugin_values()
    config: dict[str, dict[str, Any]] = {}
    for option in options:
        value = values.get(option.name)
        if value is not None:
            config.setdefault(option.section, {})[option.key] = value
    return config


def forwarded(command: str) -> list[str]:
    """The running command's plugin options as arguments for ``kubetrio <command>``
    (what ``up`` passes to the server and agents it starts)."""
    options: list[PluginOption] = _meta().get(_OPTIONS, [])
    values = plugin_values()
    args: list[str] = []
    for option in options:
        value = values.get(option.name)
        if command not in option.commands or value is None or value == option.default:
            continue
        if option.type is bool:
            args.append(f"--{option.name}" if value else f"--no-{option.name}")
        else:
            args += [f"--{option.name}", str(value)]
    return args


class ConfigFileCommand(TyperCommand):
    """A Typer command that reads its configuration file before parsing the flags.

    ``default_data_dir(args)`` (a class attribute set per command by
    :func:`config_command`) says where the data directory is when ``--data-dir`` is not
    among ``args``.
    """

    default_data_dir: Callable[[dict[str, str]], Path | None] = staticmethod(lambda args: None)
    plugin_sections: dict[str, list[PluginOption]] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Set ``ctx.default_map`` from the configuration file, then parse as usual."""
        scanned = _scan(args, ("--config", "--data-dir", "--name"))
        if "--help" not in args:
            path: Path | None
            if "--config" in scanned:
                path = Path(scanned["--config"]).expanduser()
                if not path.is_file():
                    _fail(f"{path}: no such configuration file (--config)")
            else:
                data_dir = scanned.get("--data-dir")
                home = Path(data_dir).expanduser() if data_dir else self.default_data_dir(scanned)
                path = home / CONFIG_FILE if home is not None else None
                if path is not None and not path.is_file():
                    path = None
            if path is not None:
                ctx.default_map = {**(ctx.default_map or {}), **self._read(ctx, path)}
        return super().parse_args(ctx, args)

    def _read(self, ctx: Any, path: Path) -> dict[str, Any]:
        """The file's values by parameter name; one line and exit 2 on a bad key or value."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            _fail(f"{path}: cannot be read as YAML: {' '.join(str(exc).split())}")
        if not isinstance(data, dict):
            _fail(f"{path}: expected a mapping of option names to values")
        by_name: dict[str, Any] = {}
        for declared in self.params:
            for opt in getattr(declared, "opts", ()):
                if opt.startswith("--"):
                    by_name.setdefault(opt[2:], declared)
        defaults: dict[str, Any] = {}
        for key, value in data.items():
            if key in self.plugin_sections and isinstance(value, dict):
                allowed = {o.name: o for o in self.plugin_sections[key]}
                allowed |= {o.key: o for o in self.plugin_sections[key]}
                for inner, inner_value in value.items():
                    found = allowed.get(str(inner))
                    if found is None:
                        names = ", ".join(sorted(o.name for o in self.plugin_sections[key]))
                        _fail(f"{path}: {key}.{inner}: not an option of section {key} ({names})")
                    defaults[found.param_name] = self._checked(
                        ctx, path, f"{key}.{inner}", by_name[found.name], inner_value
                    )
                continue
            param = by_name.get(str(key))
            if param is None or key in ("config", "help"):
                _fail(
                    f"{path}: {key}: not an option of `kubetrio {ctx.info_name}` "
                    "(keys are long option names, or a plugin's section)"
                )
            defaults[param.name] = self._checked(ctx, path, str(key), param, value)
        return defaults

    @staticmethod
    def _checked(ctx: Any, path: Path, key: str, param: Any, value: Any) -> Any:
        try:
            param.process_value(ctx, value)  # converts and runs the option's check
        except typer.BadParameter as exc:
            _fail(f"{path}: {key}: {' '.join(exc.format_message().split())}")
        return value


def config_command(
    default_data_dir: Callable[[dict[str, str]], Path | None], options: Collection[PluginOption]
) -> type[ConfigFileCommand]:
    """A :class:`ConfigFileCommand` class for one command."""
    sections: dict[str, list[PluginOption]] = {}
    for option in options:
        sections.setdefault(option.section, []).append(option)
    return type(
        "ConfigFileCommand",
        (ConfigFileCommand,),
        {"default_data_dir": staticmethod(default_data_dir), "plugin_sections": sections},
    )


def _scan(args: Sequence[str], names: Collection[str]) -> dict[str, str]:
    """The values of ``--name value`` / ``--name=value`` in ``args`` (no full parse)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(args):
        name, sep, value = arg.partition("=")
        if name in names:
            if sep:
                found[name] = value
            elif i + 1 < len(args):
                found[name] = args[i + 1]
    return found


def _fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)
