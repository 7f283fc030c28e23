"""The hook specifications: the only meeting point of kubetrio's core and its plugins.

Hooks are listed in the order kubetrio calls them in a process's life:

1. start-up and extension (options, configure, resources, controllers, CLI commands,
   runtimes);
2. the API request path (authenticate → authorize → mutating admission → validating admission);
3. scheduling (the scheduler cycle asks each registered scheduler plugin);
4. the node (network/CNI providers, storage/CSI drivers);
5. shutdown.

How async work flows through hooks
----------------------------------
pluggy calls hooks synchronously and has no notion of awaiting. kubetrio therefore splits
hooks into two shapes, and the plugin manager enforces the split:

* **Decision hooks** (options, configure, authenticate, authorize, admission) are plain functions
  over in-memory data (an informer cache, the request). They must return at once; they may
  not be ``async def`` and may not return awaitables — the plugin manager rejects both.
* **Provider hooks** (``kubetrio_register_*``) hand a ``register`` callback to the plugin,
  which calls it once per provider object it offers. Providers are objects whose methods
  may be ``async``: the core awaits them inside its own nurseries, with its own timeouts
  and cancellation. Anything that does I/O (wiring a network namespace, provisioning a
  volume, running a controller loop, starting a container) is a provider method.

The protocols the providers follow live in :mod:`kubetrio.providers`.

Plugin state and configuration
------------------------------
A plugin with settings is a class whose methods are the hook implementations: the
plugin manager makes one instance per manager (each cluster in a process has its own
manager), so its state lives on ``self``, never in module globals. Its settings are
options it declares in ``kubetrio_add_options`` — command-line options of ``kubetrio
server``/``agent``/``up`` and keys of their configuration file — which reach
``kubetrio_configure`` as the plugin's section of ``config``. A plugin whose start-up
hooks (``kubetrio_add_options``, ``kubetrio_register_commands``,
``kubetrio_configure``) raise is reported in one line and skipped.

Every hook's docstring follows one template: a summary line, ``:param:`` for each
argument, ``:returns:``, and for ``firstresult`` hooks the sentence "Stops at first
non-None result". ``tests/test_hookspecs.py`` fails when a hook breaks the template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from kubetrio.providers import (
        AdmissionRequest,
        ApiCaches,
        AuthorizationAttributes,
        AuthorizationDecision,
        AuthRequest,
        ContainerRuntime,
        Controller,
        KubeObject,
        NetworkPlugin,
        PluginOptions,
        ResourceDefinition,
        SchedulerPlugin,
        StorageDriver,
        UserInfo,
    )

PROJECT_NAME = "kubetrio"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# 1. Start-up and extension
# ---------------------------------------------------------------------------------------------


@hookspec
def kubetrio_add_options(options: PluginOptions) -> None:
    """Declare the plugin's command-line options and configuration keys (as pytest_addoption).

    Called once the plugins are loaded, before the command line is parsed. Each
    ``options.add("network-mode", help=..., choices=..., commands=("server", "agent",
    "up"), section="network", key="mode")`` becomes ``--network-mode`` of those commands
    (shown in their ``--help``) and a key of their configuration file; its value reaches
    ``kubetrio_configure`` as ``config[section][key]``.

    :param options: the collector of this plugin's options
        (:class:`~kubetrio.providers.PluginOptions`).
    :returns: nothing.
    """


@hookspec
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Let a plugin read the process configuration once, after all plugins are loaded.

    Called once per plugin manager before any provider hook. A plugin instance keeps
    what it needs from ``config`` on itself (not in module globals: two clusters in one
    process have two plugin managers, each with its own plugin instances); it must not
    start tasks here (providers start when the core starts them). A plugin that raises
    is reported and skipped.

    :param config: sections by name, each a plugin's options (``config["network"]``:
        the calico plugin's ``mode``, ``pool``…) from flags, the configuration file and
        embedding code; ``config["kubetrio"]``: what the core tells every plugin
        (``command``, ``data_dir``, ``admin_token``).
    :returns: nothing.
    """


@hookspec
def kubetrio_register_resources(register: Callable[[ResourceDefinition], None]) -> None:
    """Register the API resource kinds a plugin adds to the API server (CRD-like kinds).

    Called when the API server builds its scheme, before it serves requests.

    :param register: call once per :class:`~kubetrio.providers.ResourceDefinition`.
    :returns: nothing.
    """


@hookspec
def kubetrio_register_controllers(register: Callable[[Controller], None]) -> None:
    """Register controllers the controller manager runs beside its built-in ones.

    Called when the controller manager starts; each controller runs under its leader lease.

    :param register: call once per :class:`~kubetrio.providers.Controller`.
    :returns: nothing.
    """


@hookspec
def kubetrio_register_commands(cli: typer.Typer) -> None:
    """Add commands or command groups to the ``kubetrio`` command line.

    Called while the CLI is built, before arguments are parsed. A plugin that raises
    here is reported and skipped; ``kubetrio --help`` and the other commands still work.

    :param cli: the root Typer application; call ``cli.command()`` or ``cli.add_typer()``.
    :returns: nothing.
    """


@hookspec
def kubetrio_register_container_runtimes(register: Callable[[ContainerRuntime], None]) -> None:
    """Register container runtimes the node agent can run pods with.

    Called when the node agent starts; the agent picks one by name (``--runtime``).

    :param register: call once per :class:`~kubetrio.providers.ContainerRuntime`.
    :returns: nothing.
    """


# ---------------------------------------------------------------------------------------------
# 2. The API request path: authenticate → authorize → mutate → validate
# ---------------------------------------------------------------------------------------------


@hookspec
def kubetrio_api_caches(caches: ApiCaches) -> None:
    """Ask for caches of API objects the request-path hooks will read.

    Called once when an API server starts, before it serves requests. Decision hooks may
    not do I/O, so an authorizer or admission plugin that needs API objects (Roles and
    bindings, LimitRanges, ResourceQuotas, Namespaces) keeps the caches it asks for here;
    the server fills them through its own loopback client (which bypasses authorization)
    and serves no request before they have synced.

    :param caches: call ``caches.informer(api_version, resource)`` for each resource.
    :returns: nothing.
    """


@hookspec(firstresult=True)
def kubetrio_authenticate(request: AuthRequest) -> UserInfo | None:
    """Tell who sent an API request, from its credentials.

    Called for every API request before authorization. An implementation that does not
    recognise the credentials returns None so the next one is asked; when none answers,
    the request is anonymous (or refused with 401 when anonymous access is off).
    Stops at first non-None result.

    :param request: the request's credentials (headers, verified client certificate).
    :returns: the authenticated user, or None when these credentials are not yours.
    """


@hookspec(firstresult=True)
def kubetrio_authorize(
    user: UserInfo, attributes: AuthorizationAttributes
) -> AuthorizationDecision | None:
    """Decide whether a user may perform an action (Kubernetes authorization attributes).

    Called after authentication. Returning None means "no opinion" and the next
    authorizer is asked; when none decides, the request is forbidden (403).
    Stops at first non-None result.

    :param user: the authenticated (or anonymous) user.
    :param attributes: verb, API group, resource, subresource, namespace, name, or the
        non-resource path.
    :returns: an allow or deny decision with a reason, or None for no opinion.
    """


@hookspec(firstresult=True)
def kubetrio_rules_for(user: UserInfo, namespace: str) -> KubeObject | None:
    """List what a user may do in a namespace (``kubectl auth can-i --list``).

    Called for a SelfSubjectRulesReview. An authorizer that can enumerate its rules (RBAC)
    answers; one that cannot returns None so the next one is asked; when none answers,
    the review says the list is incomplete.
    Stops at first non-None result.

    :param user: the user asking.
    :param namespace: the namespace of the review (rules granted there and cluster-wide).
    :returns: a ``SubjectRulesReviewStatus`` as a dict (``resourceRules``,
        ``nonResourceRules``, ``incomplete``, ``evaluationError``), or None.
    """


@hookspec
def kubetrio_admission_mutate(request: AdmissionRequest) -> None:
    """Change an object on its way into the store (mutating admission).

    Called after authorization for create, update and delete requests, in plugin order
    (``tryfirst``/``trylast`` move a plugin); each implementation sees the previous ones'
    changes. Mutate ``request.object`` in place; raise
    :class:`~kubetrio.providers.AdmissionDenied` to refuse the request.

    :param request: the operation, the user, the incoming object and the stored one.
    :returns: nothing.
    """


@hookspec
def kubetrio_admission_validate(request: AdmissionRequest) -> list[str] | None:
    """Check an object after all mutations (validating admission); must not change it.

    Called once every mutating admission hook has run. All implementations run; their
    messages are joined into one 403 Forbidden (or 422 Invalid for field errors) answer.

    :param request: the operation, the user, the final object and the stored one.
    :returns: messages saying what is not allowed, or None/empty when it is allowed.
    """


# ---------------------------------------------------------------------------------------------
# 3. Scheduling
# ---------------------------------------------------------------------------------------------


@hookspec
def kubetrio_register_scheduler_plugins(register: Callable[[SchedulerPlugin], None]) -> None:
    """Register scheduler plugins: filters, scorers, preemption, reservers and binders.

    A post filter (``post_filter``: preemption) runs only when no node fits the pod.
    Called when the scheduler starts. Each plugin has a unique name; scheduler profiles
    enable plugins and weight their scores by that name, as kube-scheduler's do.

    :param register: call once per :class:`~kubetrio.providers.SchedulerPlugin`.
    :returns: nothing.
    """


# ---------------------------------------------------------------------------------------------
# 4. The node: pod networking (CNI) and storage (CSI)
# ---------------------------------------------------------------------------------------------


@hookspec
def kubetrio_register_network_plugins(register: Callable[[NetworkPlugin], None]) -> None:
    """Register pod network providers (CNI): add/del/check a pod's network in its netns.

    Called when the node agent starts; the agent uses the configured one by name and
    also runs its node-level services (routes, BGP, policy) for the node's lifetime.

    :param register: call once per :class:`~kubetrio.providers.NetworkPlugin`.
    :returns: nothing.
    """


@hookspec
def kubetrio_register_storage_drivers(register: Callable[[StorageDriver], None]) -> None:
    """Register storage drivers, shaped like CSI plugins (identity, controller, node).

    Called by the volume controllers and the node agent when they start. A driver's
    ``name`` is the CSI driver name: StorageClasses name it in ``provisioner`` and
    PersistentVolumes in ``spec.csi.driver``. The controllers create, delete and expand
    volumes through it; node agents stage, publish, expand and measure them, and record
    each driver's ``node_info`` in the node's ``CSINode``. Each method is one CSI RPC, so an
    adapter (``plugins/csi``) forwards them to external CSI drivers over gRPC.

    :param register: call once per :class:`~kubetrio.providers.StorageDriver`.
    :returns: nothing.
    """


# ---------------------------------------------------------------------------------------------
# 5. Shutdown
# ---------------------------------------------------------------------------------------------


@hookspec
def kubetrio_unconfigure() -> None:
    """Let a plugin release what it took in ``kubetrio_configure``, before the process exits.

    Called once, after every provider has stopped: when ``kubetrio server`` or
    ``kubetrio agent`` stops, and when an embedded ``open_cluster`` block ends.

    :returns: nothing.
    """
