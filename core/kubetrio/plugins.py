"""Finding, loading and calling plugins.

Built-in plugins (``plugins/scheduler``, ``plugins/cni_calico``, ``plugins/storage``,
``plugins/auth``) are separate distributions found through the ``kubetrio`` entry-point
group, exactly like a third-party plugin: the core never imports them.

Core code never touches ``pm.hook``: it calls the typed, keyword-only methods of
:class:`PluginManager`, which also enforce the rules of :mod:`kubetrio.hookspecs`:

* a hook implementation must match a spec (``check_pending``) — a misspelt hook is an
  error at load time, not a silently ignored function;
* hook implementations are synchronous: ``async def`` implementations are refused at
  registration, and a decision hook that returns an awaitable is an error when called;
* providers registered through ``kubetrio_register_*`` hooks must follow their protocol
  and have unique names.

``KUBETRIO_PLUGINS=a,b`` limits loading to those entry-point names;
``KUBETRIO_BLOCKED_PLUGINS=a,b`` (or ``block=``) keeps plugins out.

Plugin state belongs to one manager, so two clusters in one process stay apart: an entry
point naming a class (``pkg.plugin:MyPlugin``) — or a module naming one in
``__kubetrio_plugin__`` — is instantiated once per :class:`PluginManager`; a module of
plain hook functions is registered as it is (it must then keep no state).

A plugin that fails — its import, its class, or one of its start-up hooks
(``kubetrio_add_options``, ``kubetrio_register_commands``, ``kubetrio_configure``)
raising — is *broken*: it is unregistered, logged in one line naming it and the error,
and listed by :meth:`PluginManager.plugins` with that error, while everything else runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import types
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

import pluggy

from kubetrio import hookspecs
from kubetrio.providers import (
    SCHEDULER_STAGES,
    AdmissionDenied,
    AdmissionRequest,
    ApiCaches,
    AuthorizationAttributes,
    AuthorizationDecision,
    AuthRequest,
    ContainerRuntime,
    Controller,
    KubeObject,
    NetworkPlugin,
    PluginOption,
    PluginOptions,
    ResourceDefinition,
    SchedulerPlugin,
    StorageDriver,
    UserInfo,
)

ENTRY_POINT_GROUP = "kubetrio"
"""The entry-point group plugins register under (``[project.entry-points.kubetrio]``)."""

ONLY_ENV = "KUBETRIO_PLUGINS"
BLOCK_ENV = "KUBETRIO_BLOCKED_PLUGINS"

log = logging.getLogger("kubetrio.plugins")

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT_NAME)
"""Marker for hook implementations: decorate functions named after a hook spec."""

P = TypeVar("P")
T = TypeVar("T")


class PluginError(Exception):
    """A plugin broke the rules of the hook specifications; the message names it."""


class AdmissionPluginFailed(Exception):
    """An admission hook raised something other than ``AdmissionDenied`` (a bug in it)."""

    def __init__(self, plugin: str, exc: Exception) -> None:
        super().__init__(f'admission plugin "{plugin}" failed: {_describe(exc)}')
        self.plugin = plugin


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``kubetrio plugins`` lists it."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    error: str = ""
    """Why the plugin is broken (and not running); empty when it runs."""


@dataclasses.dataclass(frozen=True)
class Registered(Generic[T]):
    """A provider together with the plugin that registered it."""

    plugin: str
    provider: T


def _split_env(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


class PluginManager:
    """The typed facade over pluggy's manager; the only way the core calls hooks."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}
        self._broken: dict[str, str] = {}
        self._configured = False

    # --- loading ------------------------------------------------------------------------

    def load_entry_points(
        self, *, only: Iterable[str] | None = None, block: Iterable[str] = ()
    ) -> None:
        """Load the plugins of the ``kubetrio`` entry-point group.

        :param only: load just these names; defaults to ``$KUBETRIO_PLUGINS`` (all if unset).
        :param block: never load these names, in addition to ``$KUBETRIO_BLOCKED_PLUGINS``.
        """
        wanted = set(only) if only is not None else _split_env(os.environ.get(ONLY_ENV))
        for name in set(block) | _split_env(os.environ.get(BLOCK_ENV)):
            self._pm.set_blocked(name)
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if wanted and ep.name not in wanted:
                continue
            if self._pm.is_blocked(ep.name) or self._pm.has_plugin(ep.name):
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else ("?", "?")
            try:
                self.register(_instantiate(ep), name=ep.name, distribution=dist)
                self._check_one(ep.name)
            except Exception as exc:
                self._dists[ep.name] = dist
                self._mark_broken(ep.name, f"failed to load ({ep.value}): {_describe(exc)}")

    def _check_one(self, name: str) -> None:
        """Refuse a plugin's hook implementations that match no hook spec."""
        for caller in self._pm.get_hookcallers(self._pm.get_plugin(name)) or ():
            if caller.spec is None:
                raise PluginError(f"{caller.name} is not a kubetrio hook (misspelt or stale?)")

    def _mark_broken(self, name: str, why: str) -> None:
        """Unregister a failing plugin and remember why; the rest keep running."""
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        self._broken[name] = why
        log.warning("plugin %r is broken and was skipped: %s", name, why)

    @property
    def configured(self) -> bool:
        """Whether ``configure`` ran (and ``unconfigure`` did not since)."""
        return self._configured

    @property
    def broken(self) -> dict[str, str]:
        """The plugins that failed and were skipped, with why (one line each)."""
        return dict(self._broken)

    def register(
        self, plugin: object, *, name: str, distribution: tuple[str, str] = ("", "")
    ) -> None:
        """Register a plugin object or module directly (embedding, tests).

        :param plugin: a module or object with ``@hookimpl`` functions.
        :param name: its plugin name (the entry-point name for installed plugins).
        :param distribution: (distribution name, version), when it comes from one.
        """
        for attr_name in dir(plugin):
            attr = getattr(plugin, attr_name, None)
            if attr_name.startswith("kubetrio_") and (
                inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr)
            ):
                raise PluginError(
                    f"plugin {name!r}: hook {attr_name} is async; hooks are synchronous — "
                    "register a provider whose methods are async instead (see kubetrio.hookspecs)"
                )
        try:
            self._pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        self._dists[name] = distribution

    def block(self, name: str) -> None:
        """Unregister (if loaded) and block a plugin by name."""
        self._pm.set_blocked(name)
        self._dists.pop(name, None)
        self._broken.pop(name, None)

    def check(self) -> None:
        """Refuse hook implementations that match no hook spec (misspelt or stale hooks)."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc

    # --- introspection ------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution and the hooks it implements."""
        infos = []
        for name, plugin in sorted(self._pm.list_name_plugin()):
            if plugin is None:  # blocked
                continue
            hooks = tuple(sorted(caller.name for caller in self._pm.get_hookcallers(plugin) or ()))
            dist, version = self._dists.get(name, ("", ""))
            infos.append(PluginInfo(name, dist, version, hooks))
        for name, why in self._broken.items():
            dist, version = self._dists.get(name, ("", ""))
            infos.append(PluginInfo(name, dist, version, (), error=why))
        return sorted(infos, key=lambda info: info.name)

    # --- start-up and extension ---------------------------------------------------------

    def options(self, *, reserved: Iterable[str] = ()) -> list[PluginOption]:
        """The command-line options and configuration keys plugins declare.

        A plugin whose ``kubetrio_add_options`` raises, or which declares an option
        another plugin declared already, or one of the ``reserved`` (built-in) names, is
        broken (and its options left out).
        """
        declared: list[PluginOption] = []
        owners = dict.fromkeys(reserved, "kubetrio")
        for plugin_name, function in self._impls("kubetrio_add_options"):
            collector = PluginOptions(plugin_name)
            try:
                self._refuse_awaitable("kubetrio_add_options", function(options=collector))
                for option in collector.declared:
                    if option.name in owners:
                        raise PluginError(
                            f"option --{option.name} is declared by "
                            f"{_owner(owners[option.name])} already"
                        )
            except Exception as exc:
                self._mark_broken(plugin_name, f"kubetrio_add_options: {_describe(exc)}")
                continue
            for option in collector.declared:
                owners[option.name] = plugin_name
            declared.extend(collector.declared)
        return declared

    def configure(self, *, config: dict[str, Any]) -> None:
        """Call ``kubetrio_configure`` on every plugin; a plugin raising is broken.

        :param config: sections by name (``config["network"]`` is the calico plugin's,
            ``config["auth"]`` the auth plugin's), and ``config["kubetrio"]``: what the
            core tells every plugin (the command, the data directory, the admin token).
        """
        for plugin_name, function in self._impls("kubetrio_configure"):
            try:
                self._refuse_awaitable("kubetrio_configure", function(config=config))
            except Exception as exc:
                self._mark_broken(plugin_name, f"kubetrio_configure: {_describe(exc)}")
        self._configured = True

    def unconfigure(self) -> None:
        """Call ``kubetrio_unconfigure`` on every plugin, once after ``configure``.

        A plugin raising is logged; the others still run theirs.
        """
        if not self._configured:
            return
        self._configured = False
        for plugin_name, function in self._impls("kubetrio_unconfigure"):
            try:
                function()
            except Exception as exc:
                log.warning("plugin %r: kubetrio_unconfigure: %s", plugin_name, _describe(exc))

    def resources(self) -> list[Registered[ResourceDefinition]]:
        """The resource kinds plugins add."""
        return self._collect("kubetrio_register_resources", ResourceDefinition, key=_gvk)

    def controllers(self) -> list[Registered[Controller]]:
        """The controllers plugins add."""
        return self._collect("kubetrio_register_controllers", Controller)

    def container_runtimes(self) -> list[Registered[ContainerRuntime]]:
        """The container runtimes plugins offer."""
        return self._collect("kubetrio_register_container_runtimes", ContainerRuntime)

    def add_commands(self, *, cli: Any) -> None:
        """Let plugins add commands to the CLI (a ``typer.Typer``); one raising is broken."""
        for plugin_name, function in self._impls("kubetrio_register_commands"):
            try:
                self._refuse_awaitable("kubetrio_register_commands", function(cli=cli))
            except Exception as exc:
                self._mark_broken(plugin_name, f"kubetrio_register_commands: {_describe(exc)}")

    # --- API request path ---------------------------------------------------------------

    def api_caches(self, *, caches: ApiCaches) -> None:
        """Let plugins ask for the API object caches their request hooks read; a plugin
        raising is broken (and its hooks skipped)."""
        for plugin_name, function in self._impls("kubetrio_api_caches"):
            try:
                self._refuse_awaitable("kubetrio_api_caches", function(caches=caches))
            except Exception as exc:
                self._mark_broken(plugin_name, f"kubetrio_api_caches: {_describe(exc)}")

    def has_authenticators(self) -> bool:
        """Whether any plugin implements ``kubetrio_authenticate``."""
        return bool(self._impls("kubetrio_authenticate"))

    def authenticate(self, *, request: AuthRequest) -> UserInfo | None:
        """The first authenticator's answer, or None when no plugin knows the credentials."""
        result: UserInfo | None = self._decide("kubetrio_authenticate", request=request)
        return result

    def authorize(
        self, *, user: UserInfo, attributes: AuthorizationAttributes
    ) -> AuthorizationDecision | None:
        """The first authorizer's decision, or None when none has an opinion."""
        result: AuthorizationDecision | None = self._decide(
            "kubetrio_authorize", user=user, attributes=attributes
        )
        return result

    def rules_for(self, *, user: UserInfo, namespace: str) -> KubeObject | None:
        """The first authorizer's list of ``user``'s rules in ``namespace`` (a
        SubjectRulesReviewStatus), or None when none can list them."""
        result: KubeObject | None = self._decide(
            "kubetrio_rules_for", user=user, namespace=namespace
        )
        return result

    def admission_mutate(self, *, request: AdmissionRequest) -> None:
        """Run every mutating admission hook over ``request.object``, in plugin order.

        :raises AdmissionPluginFailed: a hook raised anything but ``AdmissionDenied``.
        """
        self._admission("kubetrio_admission_mutate", request)

    def admission_validate(self, *, request: AdmissionRequest) -> list[str]:
        """Run every validating admission hook; return all their messages (empty: allowed).

        :raises AdmissionPluginFailed: a hook raised anything but ``AdmissionDenied``.
        """
        results = self._admission("kubetrio_admission_validate", request)
        return [message for messages in results if messages for message in messages]

    def _admission(self, hook_name: str, request: AdmissionRequest) -> list[Any]:
        """Call an admission hook plugin by plugin, so a crash names the plugin."""
        results = []
        for plugin_name, function in self._impls(hook_name):
            try:
                result = function(request=request)
            except AdmissionDenied:
                raise
            except Exception as exc:
                log.exception("admission plugin %r failed in %s", plugin_name, hook_name)
                raise AdmissionPluginFailed(plugin_name, exc) from exc
            self._refuse_awaitable(hook_name, result)
            results.append(result)
        return results

    # --- scheduling and node ------------------------------------------------------------

    def scheduler_plugins(self) -> list[Registered[SchedulerPlugin]]:
        """The scheduler plugins, by unique name, each stage's signature checked
        (:func:`check_scheduler_plugin`)."""
        return self._collect(
            "kubetrio_register_scheduler_plugins", SchedulerPlugin, check=check_scheduler_plugin
        )

    def network_plugins(self) -> list[Registered[NetworkPlugin]]:
        """The pod network (CNI) providers, by unique name."""
        return self._collect("kubetrio_register_network_plugins", NetworkPlugin)

    def storage_drivers(self) -> list[Registered[StorageDriver]]:
        """The storage (CSI) drivers, by unique provisioner name."""
        return self._collect("kubetrio_register_storage_drivers", StorageDriver)

    # --- machinery ----------------------------------------------------------------------

    def _impls(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        """A hook's implementations as (plugin name, function), in pluggy's call order."""
        caller = getattr(self._pm.hook, hook_name)
        return [(impl.plugin_name, impl.function) for impl in reversed(caller.get_hookimpls())]

    @staticmethod
    def _refuse_awaitable(hook_name: str, value: Any) -> None:
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # don't leave a "never awaited" warning behind
            raise PluginError(
                f"{hook_name} returned an awaitable; hooks are synchronous — "
                "register a provider whose methods are async instead"
            )

    def _decide(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a decision hook and refuse awaitables: they would never be awaited."""
        result = getattr(self._pm.hook, hook_name)(**kwargs)
        for value in result if isinstance(result, list) else [result]:
            self._refuse_awaitable(hook_name, value)
        return result

    def _collect(
        self,
        hook_name: str,
        protocol: type[P],
        *,
        key: Callable[[Any], str] = lambda provider: str(provider.name),
        check: Callable[[str, Any], None] | None = None,
    ) -> list[Registered[P]]:
        """Call a provider hook plugin by plugin, checking each provider it registers."""
        collected: list[Registered[P]] = []
        seen: dict[str, str] = {}
        caller = getattr(self._pm.hook, hook_name)
        # pluggy calls implementations last-registered first; keep that order.
        for impl in reversed(caller.get_hookimpls()):
            plugin_name = impl.plugin_name

            def register(provider: P, _plugin: str = plugin_name) -> None:
                if not isinstance(provider, protocol):
                    raise PluginError(
                        f"plugin {_plugin!r} registered {provider!r} in {hook_name}, "
                        f"which does not follow the {protocol.__name__} protocol"
                    )
                if check is not None:
                    check(_plugin, provider)
                provider_key = key(provider)
                if provider_key in seen:
                    raise PluginError(
                        f"plugin {_plugin!r} registered {protocol.__name__} {provider_key!r}, "
                        f"already registered by plugin {seen[provider_key]!r}"
                    )
                seen[provider_key] = _plugin
                collected.append(Registered(_plugin, provider))

            returned = impl.function(register=register)
            if inspect.iscoroutine(returned):
                returned.close()
                raise PluginError(f"plugin {plugin_name!r}: {hook_name} must not be async")
        return collected


def check_scheduler_plugin(plugin: str, provider: Any) -> None:
    """Refuse a scheduler plugin whose stage methods the cycle could not call.

    Each stage method present must take the positional arguments its Protocol in
    :data:`kubetrio.providers.SCHEDULER_STAGES` says (``bind`` must be ``async``); the
    error names the plugin, the scheduler plugin and the stage.
    """
    for stage, (protocol, counts, must_be_async) in SCHEDULER_STAGES.items():
        method = getattr(provider, stage, None)
        if method is None:
            continue
        where = f"plugin {plugin!r}: scheduler plugin {getattr(provider, 'name', provider)!r}"
        if not callable(method):
            raise PluginError(f"{where}: {stage} is not a method ({protocol.__name__})")
        if must_be_async and not inspect.iscoroutinefunction(method):
            raise PluginError(f"{where}: {stage} must be async ({protocol.__name__})")
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            continue  # a builtin or C function: nothing to check
        fits = []
        for count in counts:
            try:
                signature.bind(*range(count))
                fits.append(count)
            except TypeError:
                pass
        if not fits:
            wanted = " or ".join(str(count) for count in counts)
            raise PluginError(
                f"{where}: {stage}{signature} does not take {wanted} positional arguments, "
                f"as the {protocol.__name__} protocol says"
            )


def _instantiate(ep: EntryPoint) -> object:
    """The plugin object of an entry point: a new instance of a plugin class (named by
    the entry point, or by a module's ``__kubetrio_plugin__``), else the module itself."""
    target = ep.load()
    if isinstance(target, types.ModuleType):
        target = getattr(target, "__kubetrio_plugin__", target)
    return target() if isinstance(target, type) else target


def _owner(name: str) -> str:
    return "kubetrio itself" if name == "kubetrio" else f"plugin {name!r}"


def _describe(exc: BaseException) -> str:
    """An exception as one line: its type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _gvk(resource: ResourceDefinition) -> str:
    return f"{resource.group}/{resource.version}/{resource.kind}"


def load(*, only: Sequence[str] | None = None, block: Iterable[str] = ()) -> PluginManager:
    """A plugin manager with the installed plugins loaded (see ``load_entry_points``)."""
    manager = PluginManager()
    manager.load_entry_points(only=only, block=block)
    return manager
