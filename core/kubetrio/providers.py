"""The objects that pass through hooks: request records and the provider protocols.

Decision hooks (see :mod:`kubetrio.hookspecs`) receive the frozen records defined here.
Provider hooks hand plugins a ``register`` callback; the objects they register follow
the protocols below. A provider's ``async`` methods are awaited by the core inside its
own nurseries, so a provider never needs to manage an event loop or a thread of its own.

Kubernetes objects cross this boundary as plain JSON-shaped dicts (``dict[str, Any]``)
so that a plugin depends on nothing but this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import trio

from kubetrio.kubeobject import KubeObject as KubeObject

"""A Kubernetes object as decoded JSON (``apiVersion``, ``kind``, ``metadata``, …)."""


# --- authentication and authorization ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserInfo:
    """An authenticated identity, as Kubernetes' ``user.Info``."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthRequest:
    """The credentials of an API request, as the authenticators see them."""

    headers: Mapping[str, str]
    """Request headers with lower-case names (``authorization``, ``impersonate-user``, …)."""
    client_certificate: Mapping[str, Any] | None = None
    """The verified client certificate (``ssl.SSLSocket.getpeercert()`` form), if any."""
    remote_address: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthorizationAttributes:
    """What a request wants to do, as Kubernetes' authorization attributes."""

    verb: str
    """get, list, watch, create, update, patch, delete, deletecollection, or an HTTP verb."""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    """The URL path, for non-resource requests such as ``/healthz``."""

    @property
    def is_resource_request(self) -> bool:
        """True for requests on API resources, False for non-resource paths."""
        return bool(self.resource)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuthorizationDecision:
    """An authorizer's answer; ``reason`` reaches the user in a 403 Status."""

    allowed: bool
    reason: str = ""


# --- caches of API objects for decision hooks --------------------------------------------------


class CacheHandler(Protocol):
    """What an :class:`ObjectCache` calls on changes; must return at once."""

    def on_add(self, obj: KubeObject) -> None:
        """A new object appeared (also for every object of the first list)."""

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        """An object changed."""

    def on_delete(self, obj: KubeObject) -> None:
        """An object is gone; ``obj`` is its last known state."""


@runtime_checkable
class ObjectCache(Protocol):
    """A watched, always-current copy of one resource's objects (an informer).

    Decision hooks (authorize, admission) may not do I/O; they read API objects — Roles,
    LimitRanges, ResourceQuotas, Namespaces — from such a cache instead.
    """

    synced: trio.Event
    """Set once the first list is in the cache."""

    def get(self, name: str, namespace: str = "") -> KubeObject | None:
        """The cached object, or None."""
        ...

    def list(self, namespace: str | None = None) -> list[KubeObject]:
        """The cached objects (of one namespace, or all)."""
        ...

    def add_handler(self, handler: CacheHandler) -> None:
        """Be told of every change (and of every cached object at once, if synced)."""
        ...


class ApiCaches(Protocol):
    """Hands out caches of API objects, filled by the API server's own loopback client."""

    def informer(self, api_version: str, resource: str) -> ObjectCache:
        """The cache of ``resource`` in ``api_version`` (``"rbac.authorization.k8s.io/v1"``,
        ``"roles"``), shared by everyone asking for the same one."""
        ...


# --- admission --------------------------------------------------------------------------------


class AdmissionDenied(Exception):
    """Raised by an admission hook to refuse a request; the message reaches the user."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The field path at fault (``spec.containers[0].image``), for a 422 Invalid answer."""


@dataclasses.dataclass(kw_only=True)
class AdmissionRequest:
    """One write going through admission. Mutating hooks change ``object`` in place."""

    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    user: UserInfo
    api_group: str
    api_version: str
    kind: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    object: KubeObject | None = None
    old_object: KubeObject | None = None
    dry_run: bool = False
    warnings: list[str] = dataclasses.field(default_factory=list)
    """Warnings for the client (kubectl prints them): hooks append; the API server sends
    them as ``Warning`` headers, whether the request succeeds or not."""
    audit_annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    """Annotations for the request's audit Events (``pod-security.kubernetes.io/...``):
    hooks set keys; the API server adds them to the audit log, success or not."""


# --- extension --------------------------------------------------------------------------------


COMMANDS = ("server", "agent", "up")
"""The commands plugin options can be added to: they run (or start) cluster processes."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginOption:
    """One command-line option (and configuration file key) a plugin owns.

    Its value reaches the plugin through ``kubetrio_configure`` as
    ``config[section][key]``; on the command line it is ``--<name>``, in a configuration
    file the key ``<name>`` (or ``<key>`` inside the ``<section>:`` mapping).
    """

    plugin: str
    """The plugin that declared it (filled in by the plugin manager)."""
    name: str
    """The long option name without dashes, such as ``network-mode``."""
    help: str
    type: type[str] | type[int] | type[float] | type[bool] = str
    default: str | int | float | bool | None = None
    """None: the option is left out of the plugin's section unless given."""
    choices: tuple[str, ...] = ()
    """The values allowed (for ``str`` options); empty: any."""
    commands: tuple[str, ...] = COMMANDS
    """Which of ``server``, ``agent`` and ``up`` take it (``up`` hands it to the
    processes it starts that take it)."""
    section: str
    """The plugin's configuration section (default: the plugin's name)."""
    key: str
    """The key inside ``section`` (default: ``name`` with ``_`` for ``-``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings on the command line, such as ``--mode``."""

    @property
    def param_name(self) -> str:
        """The Python identifier of the option (``network_mode``)."""
        return self.name.replace("-", "_")

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's type; ValueError saying why not."""
        if value is None:
            return None
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "on", "1"):
                return True
            if str(value).lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        if self.type in (int, float) and isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            converted = self.type(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a valid {self.type.__name__}") from None
        if self.choices and converted and converted not in self.choices:
            raise ValueError(f"{converted!r} is not one of {', '.join(self.choices)}")
        return converted


class PluginOptions:
    """What ``kubetrio_add_options`` receives: one plugin's way to declare its options."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.declared: list[PluginOption] = []

    def add(
        self,
        name: str,
        *,
        help: str,
        type: type[str] | type[int] | type[float] | type[bool] = str,
        default: str | int | float | bool | None = None,
        choices: Sequence[str] = (),
        commands: Sequence[str] = COMMANDS,
        section: str = "",
        key: str = "",
        aliases: Sequence[str] = (),
    ) -> None:
        """Declare ``--<name>``; see :class:`PluginOption` for the arguments."""
        name = name.removeprefix("--")
        unknown = set(commands) - set(COMMANDS)
        if unknown:
            raise ValueError(f"option --{name}: no command {', '.join(sorted(unknown))}")
        self.declared.append(
            PluginOption(
                plugin=self.plugin,
                name=name,
                help=help,
                type=type,
                default=default,
                choices=tuple(choices),
                commands=tuple(commands),
                section=section or self.plugin,
                key=key or name.replace("-", "_"),
                aliases=tuple(aliases),
            )
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResourceDefinition:
    """An API kind a plugin serves, like a CustomResourceDefinition with one version."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Literal["status", "scale"], ...] = ()
    schema: Mapping[str, Any] | None = None
    """An OpenAPI v3 schema of the object, used to validate and for ``kubectl explain``."""


@runtime_checkable
class Controller(Protocol):
    """A long-running reconciler. ``run`` follows trio's start protocol.

    A controller whose class sets ``in_apiserver = True`` is run by the API server with
    its loopback client (allowed everything) before it serves requests, as kube-apiserver's
    post-start hooks; the others run in the controller manager, each acting as its own
    identity under the leader Lease.
    """

    name: str

    async def run(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; call ``task_status.started()`` once caches are synced."""
        ...


# --- node: container runtime ------------------------------------------------------------------
#
# The node agent drives a runtime through the calls below, in this order for a pod:
#
#   run_pod_sandbox → pull_image (per image) → create_container → start_container
#   → wait_container / container_status / exec_sync (probes)
#   → stop_container → remove_container (per container) → stop_pod_sandbox
#
# Container processes outlive nothing the agent does not know about: ``stop_pod_sandbox``
# stops whatever containers of the sandbox are left and releases the network namespace,
# cgroups and mounts. They do outlive the agent process: a restarted agent finds its
# sandboxes and containers again (``list_sandboxes``, ``list_containers``) and adopts
# them, so restarting the agent restarts no pod.


class ContainerConfigError(Exception):
    """A container cannot be created as specified (Kubernetes: ``CreateContainerConfigError``).

    The message is what Kubernetes shows in the container's waiting state, for instance
    ``container has runAsNonRoot and image will run as root (pod: "p_ns(uid)", container: c)``.
    """


class ImagePullError(Exception):
    """An image could not be pulled (Kubernetes: ``ErrImagePull``, then ``ImagePullBackOff``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodSandboxStatus:
    """A pod's sandbox: its id, network namespace and addresses."""

    id: str
    netns_path: str
    """The bound network namespace; empty for ``hostNetwork`` pods."""
    ips: Sequence[str] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class VolumeMount:
    """A host path the runtime bind-mounts into a container (volumes are prepared by the agent)."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContainerConfig:
    """What the agent resolved for one container run, beyond the pod and container specs.

    ``env`` is the final environment (``env``/``envFrom`` resolved, ``$(VAR)`` expanded);
    the runtime adds the image's variables under it. ``attempt`` is the restart count.
    """

    env: Sequence[tuple[str, str]] = ()
    mounts: Sequence[VolumeMount] = ()
    log_path: str = ""
    """Where this run's CRI-format log goes (``/var/log/pods/<ns>_<pod>_<uid>/<c>/<n>.log``)."""
    attempt: int = 0
    share_pid_with: str = ""
    """A container id of the same sandbox whose PID namespace this run joins (an
    ephemeral container's ``targetContainerName``); empty: the container's own."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContainerState:
    """A container as the runtime sees it; times are UNIX seconds (0: not yet)."""

    id: str
    state: Literal["created", "running", "exited", "unknown"]
    exit_code: int | None = None
    reason: str = ""
    """For exited containers: ``Completed``, ``Error`` or ``OOMKilled``."""
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    image_id: str = ""
    """The image's config digest, reported as ``imageID``."""
    pid: int = 0
    name: str = ""
    """The container's name in the pod."""
    attempt: int = 0
    """Which run of that container this is (the restart count when it was created)."""


@runtime_checkable
class ContainerRuntime(Protocol):
    """Runs pod sandboxes and containers on a node (runc, a simulated runtime, …).

    ``run`` holds the runtime's background tasks (log copying, exit watching) for the
    agent's life and follows trio's start protocol. Every method is idempotent where a
    retry after a failure could repeat it.
    """

    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the runtime's background tasks until cancelled; ``started`` once ready."""
        ...

    async def pull_image(
        self, image: str, *, credentials: Mapping[str, tuple[str, str]] | None = None
    ) -> str:
        """Pull ``image`` (credentials by registry); return its image id. Raises ImagePullError."""
        ...

    def image_present(self, image: str) -> bool:
        """Whether ``image`` is already on the node (for ``imagePullPolicy: IfNotPresent``)."""
        ...

    async def run_pod_sandbox(self, pod: KubeObject) -> PodSandboxStatus:
        """Create the pod's sandbox (network namespace wired by the network plugin).

        Idempotent: for a sandbox that exists (also one found again after an agent
        restart) it returns the existing one.
        """
        ...

    def list_sandboxes(self) -> Sequence[str]:
        """Ids of every sandbox on the node (pod uids), including ones from before a restart."""
        ...

    def list_containers(self, sandbox_id: str) -> Sequence[ContainerState]:
        """Every container of a sandbox the runtime knows, so an agent can adopt them."""
        ...

    async def stop_pod_sandbox(self, sandbox_id: str, *, grace_period: float) -> None:
        """Stop every container of the sandbox, then release the sandbox; idempotent."""
        ...

    async def create_container(
        self, sandbox_id: str, pod: KubeObject, container: KubeObject, config: ContainerConfig
    ) -> str:
        """Create one container in the sandbox (not yet started); return its id.

        Raises :class:`ContainerConfigError` when the spec cannot run (runAsNonRoot, …).
        """
        ...

    async def start_container(self, container_id: str) -> None:
        """Start a created container."""
        ...

    async def wait_container(self, container_id: str) -> ContainerState:
        """Wait until the container exits; return its final state."""
        ...

    async def container_status(self, container_id: str) -> ContainerState:
        """The container's current state."""
        ...

    async def exec_sync(
        self, container_id: str, command: Sequence[str], *, timeout: float
    ) -> tuple[int, bytes]:
        """Run a command in the container (exec probes); return (exit code, output)."""
        ...

    async def stop_container(self, container_id: str, *, grace_period: float) -> None:
        """SIGTERM, wait up to ``grace_period`` seconds, then SIGKILL; idempotent."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Delete a stopped container and its root filesystem; idempotent."""
        ...


# --- scheduling -------------------------------------------------------------------------------
#
# The scheduler keeps a cache of every node with the pods assigned to it; a scheduling cycle
# takes one pending pod and asks the enabled plugins, stage by stage, as kube-scheduler's
# framework does:
#
#   pre_filter (once) → filter (per node, until enough feasible nodes are found)
#   → pre_score (once) → score (per feasible node) → normalize_scores (once per plugin)
#   → reserve (on the chosen node) → pre_bind, bind (async, off the cycle)
#
# Every stage is optional. Stages other than ``pre_bind`` and ``bind`` are synchronous and
# run over the in-memory snapshot thousands of times per pod: they must not do I/O or block.


class _Skip:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Any = _Skip()
"""Returned by ``pre_filter``/``pre_score`` to say "nothing to check for this pod": the
cycle then does not call that plugin's ``filter``/``score`` for the pod (kube-scheduler's
``Skip`` status), which keeps the per-node loop short."""


class PodInfo:
    """A pod with the figures the scheduler computes once per pod version.

    ``requests`` maps resource names to integers: ``cpu`` in millicores, ``memory`` and
    other byte resources in bytes, extended resources as counts. They follow Kubernetes'
    rule: the sum over containers and sidecars, or the largest init container if more,
    plus ``spec.overhead``. ``non_zero_cpu``/``non_zero_memory`` are the same with the
    defaults kube-scheduler uses for scoring (100m, 200Mi) for containers without requests.
    ``memo`` is scratch space where plugins keep what they parsed from the pod (affinity
    terms, selectors), so existing pods are parsed once, not once per cycle.
    """

    __slots__ = (
        "key",
        "labels",
        "memo",
        "name",
        "namespace",
        "node_name",
        "non_zero_cpu",
        "non_zero_memory",
        "pod",
        "priority",
        "requests",
    )

    def __init__(
        self,
        pod: KubeObject,
        *,
        requests: dict[str, int],
        non_zero_cpu: int,
        non_zero_memory: int,
    ) -> None:
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod = pod
        self.namespace: str = metadata.get("namespace") or ""
        self.name: str = metadata.get("name") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.labels: dict[str, str] = metadata.get("labels") or {}
        self.node_name: str = spec.get("nodeName") or ""
        self.priority: int = spec.get("priority") or 0
        self.requests = requests
        self.non_zero_cpu = non_zero_cpu
        self.non_zero_memory = non_zero_memory
        self.memo: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"PodInfo({self.key!r})"


class NodeInfo(dict[str, Any]):
    """A node as the scheduler sees it: the Node object itself (this dict, so a plugin
    can read ``node["metadata"]["labels"]`` as JSON) plus the aggregates of the pods on it.

    Attributes: ``name``, ``labels``, ``taints`` (``spec.taints``), ``allocatable`` (same
    units as :attr:`PodInfo.requests`, ``pods`` is the pod count), ``requested`` (sum of
    the pods' requests, ``pods`` counts them), ``non_zero_requested`` (``cpu``/``memory``
    for scoring), ``pods`` (key → :class:`PodInfo`, including pods the scheduler assumed
    but has not seen bound yet), ``pods_with_affinity`` / ``pods_with_required_anti_affinity``
    (the subsets InterPodAffinity walks), ``images`` (image name → size in bytes, from
    ``status.images``) and ``generation`` (bumped on every change).
    A NodeInfo is owned by the scheduler's cache: plugins read it, never change it —
    except a :meth:`clone`, which :meth:`add_pod`/:meth:`remove_pod` may change (a
    what-if: the node without some pods, as preemption asks).
    """

    __slots__ = (
        "allocatable",
        "generation",
        "images",
        "labels",
        "memo",
        "name",
        "non_zero_requested",
        "pods",
        "pods_with_affinity",
        "pods_with_required_anti_affinity",
        "requested",
        "taints",
    )

    def __init__(self, node: KubeObject) -> None:
        super().__init__(node)
        self.name: str = node["metadata"]["name"]
        self.labels: dict[str, str] = node["metadata"].get("labels") or {}
        self.taints: list[dict[str, Any]] = (node.get("spec") or {}).get("taints") or []
        self.allocatable: dict[str, int] = {}
        self.requested: dict[str, int] = {"cpu": 0, "memory": 0, "pods": 0}
        self.non_zero_requested: dict[str, int] = {"cpu": 0, "memory": 0}
        self.pods: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.images: dict[str, int] = {}
        self.generation = 0
        self.memo: dict[Any, Any] = {}
        """Scratch space for results computed from this node, emptied whenever the node
        or its pods change; a plugin keys its entries with its own name."""

    def __repr__(self) -> str:
        return f"NodeInfo({self.name!r}, pods={len(self.pods)})"

    def clone(self) -> NodeInfo:
        """A copy whose pods and aggregates can change without touching this node."""
        copy = NodeInfo(self)
        copy.allocatable = self.allocatable
        copy.images = self.images
        copy.requested = dict(self.requested)
        copy.non_zero_requested = dict(self.non_zero_requested)
        copy.pods = dict(self.pods)
        copy.pods_with_affinity = dict(self.pods_with_affinity)
        copy.pods_with_required_anti_affinity = dict(self.pods_with_required_anti_affinity)
        copy.generation = self.generation
        return copy

    def add_pod(self, pod: PodInfo) -> bool:
        """Count ``pod`` here (aggregates included); True when it has affinity terms."""
        self.pods[pod.key] = pod
        requested = self.requested
        for resource, value in pod.requests.items():
            requested[resource] = requested.get(resource, 0) + value
        requested["pods"] += 1
        self.non_zero_requested["cpu"] += pod.non_zero_cpu
        self.non_zero_requested["memory"] += pod.non_zero_memory
        affinity = (pod.pod.get("spec") or {}).get("affinity") or {}
        anti = affinity.get("podAntiAffinity") or {}
        any_affinity = bool(affinity.get("podAffinity") or anti)
        if any_affinity:
            self.pods_with_affinity[pod.key] = pod
        if anti.get("requiredDuringSchedulingIgnoredDuringExecution"):
            self.pods_with_required_anti_affinity[pod.key] = pod
        self.generation += 1
        self.memo.clear()  # memoised plugin results were about the node before this pod
        return any_affinity

    def remove_pod(self, key: str) -> bool:
        """Stop counting the pod ``key`` here; False when it was not here."""
        pod = self.pods.pop(key, None)
        if pod is None:
            return False
        requested = self.requested
        for resource, value in pod.requests.items():
            requested[resource] = requested.get(resource, 0) - value
        requested["pods"] -= 1
        self.non_zero_requested["cpu"] -= pod.non_zero_cpu
        self.non_zero_requested["memory"] -= pod.non_zero_memory
        self.pods_with_affinity.pop(key, None)
        self.pods_with_required_anti_affinity.pop(key, None)
        self.generation += 1
        self.memo.clear()
        return True

    __hash__ = object.__hash__  # type: ignore[assignment]  # identity: one per node

    def __eq__(self, other: object) -> bool:
        return self is other


@runtime_checkable
class NodeSnapshot(Protocol):
    """Every node of the cluster at the start of a scheduling cycle."""

    @property
    def nodes(self) -> Sequence[NodeInfo]:
        """All nodes, in the scheduler's order."""
        ...

    def get(self, name: str) -> NodeInfo | None:
        """The node called ``name``, or None."""
        ...

    @property
    def order_version(self) -> int:
        """Changes whenever nodes are added or removed (positions in ``nodes`` move)."""
        ...

    def index_of(self, name: str) -> int | None:
        """The position of the node called ``name`` in ``nodes``, or None."""
        ...

    def nodes_with_affinity_pods(self) -> Sequence[NodeInfo]:
        """The nodes holding at least one pod with (anti-)affinity terms."""
        ...

    def image_node_count(self, image: str) -> int:
        """How many nodes report having ``image`` (a name from ``status.images``)."""
        ...

    def changed_since(self, mark: int) -> tuple[int, Sequence[str] | None]:
        """``(current mark, names of the nodes changed after mark)``, for plugins that
        keep counts across cycles and update only what changed; the names are None when
        ``mark`` is too old to answer (count from scratch). Start with mark ``-1``."""
        ...

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """The labels of a namespace (for ``namespaceSelector``), empty if unknown."""
        ...


class CycleState(dict[str, Any]):
    """Per-pod scratch space of one scheduling cycle, shared by the stages of a plugin.

    A plugin stores what its ``pre_filter`` computed under its own name
    (``state[self.name] = ...``) and reads it back in ``filter``. ``pod_info`` is the
    pod being scheduled, ``snapshot`` the :class:`NodeSnapshot` of the cycle and
    ``profile`` the scheduler name of the profile running the cycle.
    """

    __slots__ = ("pod_info", "profile", "snapshot")

    def __init__(self, pod_info: PodInfo, snapshot: NodeSnapshot, profile: str) -> None:
        super().__init__()
        self.pod_info = pod_info
        self.snapshot = snapshot
        self.profile = profile


class Unresolvable(str):
    """A filter reason that no preemption can cure (a taint, a node selector): return
    ``Unresolvable("node(s) ...")`` instead of a plain string, as kube-scheduler's
    ``UnschedulableAndUnresolvable`` status. It reads as the same text in events."""

    __slots__ = ()


FilterResult = str | Sequence[str] | None
"""What ``filter`` returns: None when the node fits, else the reason(s) it does not,
worded as kube-scheduler words them (``"Insufficient cpu"``), because the
``FailedScheduling`` event counts nodes per reason."""


@runtime_checkable
class SchedulerPlugin(Protocol):
    """A scheduler plugin. Only ``name`` is required; the cycle calls the stages it has.

    Optional attributes and methods (signatures as the cycle calls them):

    ``weight: int``
        Default weight of its scores (a profile's configuration may override it).
    ``pre_filter(state: CycleState, pod: PodInfo) -> FilterResult | SKIP``
        Once per cycle, before the node loop: compute what ``filter`` needs into
        ``state``; return :data:`SKIP` when the pod needs nothing of this plugin, or a
        reason when no node can fit (the reason then counts for every node).
    ``filter(pod, node)`` or ``filter(pod, node, state)`` → :data:`FilterResult`
        Per node. ``pod`` is the Pod object (a dict; ``state.pod_info`` has the
        :class:`PodInfo`), ``node`` the :class:`NodeInfo` (which *is* the Node dict). The
        two-argument form suits plugins that look at the objects alone (the README's
        example); the cycle tells the forms apart by the number of parameters.
    ``pre_score(state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> None | SKIP``
        Once, with the feasible nodes.
    ``score(pod, node)`` or ``score(pod, node, state)`` → ``float``
        Per feasible node: 0..100, or any number when ``normalize_scores`` maps them.
    ``normalize_scores(state: CycleState, pod: PodInfo, scores: dict[str, float]) -> None``
        Rewrite the per-node scores (node name → score) in place into 0..100. Equal
        scores must stay equal: when every node scored the same the cycle skips the
        call (the result could not change which node wins).
    ``reserve(state: CycleState, pod: PodInfo, node: NodeInfo) -> str | None`` and
    ``unreserve(state: CycleState, pod: PodInfo, node: NodeInfo) -> None``
        The chosen node is about to be bound; a reason refuses it (the pod is retried).
    ``post_filter(state: CycleState, pod: PodInfo, failed: Mapping[str, Sequence[str]],
    filters: FilterRunner) -> PostFilterResult | None``
        Only when no node fits (kube-scheduler's PostFilter; the built-in one is
        ``DefaultPreemption``). ``failed`` maps each node to its filter reasons;
        ``filters(node)`` re-runs the profile's filters on a node (say a copy without
        some pods), counting the pods nominated there. The first result naming a node
        ends the stage; the scheduler then deletes the result's victims and records the
        nomination. The stage must not do I/O.
    ``async pre_bind(client, state: CycleState, pod: PodInfo, node_name: str) -> str | None``
        After reserve, off the cycle, before the pod is bound: API writes the binding
        depends on (a claim's selected node) and waiting for them; a reason fails the
        binding (reserves are undone, the pod is retried after a back-off).
    ``async bind(client, pod: KubeObject, node_name: str) -> bool``
        Bind the pod; return False to let the next binder (finally the default
        ``pods/binding`` call) do it. The only stage that may do I/O.
    ``ask_for_caches(caches: ApiCaches) -> None``
        Called once when the scheduler is made: take the caches of other API objects
        the stages read (``caches.informer("v1", "persistentvolumeclaims")``). The
        scheduler fills them before it schedules, and a change to any of them retries
        the unschedulable pods (events ``<resource>Add``/``Update``/``Delete``).
    ``configured(args: Mapping[str, Any]) -> SchedulerPlugin``
        Return a copy set up with a profile's ``pluginConfig`` ``args``.
    ``requeue_on: frozenset[str]``
        The cluster changes after which a pod this plugin rejected may fit:
        ``NodeAdd``, ``NodeUpdate``, ``PodAdd`` (a pod bound), ``PodUpdate`` (labels),
        ``PodDelete`` (deleted or finished), ``NamespaceUpdate`` (labels). Without it,
        every change retries the pod (kube-scheduler's ``EventsToRegister``).
    ``node_local: bool``
        True promises that ``filter`` and ``score`` depend only on the pod's spec,
        labels and namespace and on that node's :class:`NodeInfo` (not on other nodes,
        time, or state other plugins wrote), and that ``pre_filter``/``pre_score``
        decide to :data:`SKIP` from the pod alone. The cycle then remembers the results
        per node and *pod class* (pods with equal spec, labels and namespace, such as a
        Deployment's replicas) until the node or its pods change, so the next replica
        costs no plugin call on the nodes that did not change.
    """

    name: str


# Each stage of the cycle as a Protocol of its own: what a plugin with that method must
# accept. ``PluginManager.scheduler_plugins`` checks every registered plugin's stage
# methods against these (by how many positional arguments they take, and ``bind`` being
# ``async``) and refuses a mismatch naming the plugin and the stage.


@runtime_checkable
class PreFilterPlugin(Protocol):
    """``pre_filter(state, pod)``: once per cycle, before the nodes are filtered."""

    def pre_filter(self, state: CycleState, pod: PodInfo, /) -> FilterResult | _Skip:
        """A reason no node fits, :data:`SKIP`, or None."""
        ...


@runtime_checkable
class FilterPlugin(Protocol):
    """``filter(pod, node)`` or ``filter(pod, node, state)``: may the pod run there?"""

    def filter(self, pod: KubeObject, node: NodeInfo, /) -> FilterResult:
        """None when the node fits; else the reason(s) it does not."""
        ...


@runtime_checkable
class PreScorePlugin(Protocol):
    """``pre_score(state, pod, nodes)``: once, with the feasible nodes."""

    def pre_score(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo], /
    ) -> _Skip | None:
        """:data:`SKIP` when this plugin has nothing to score for the pod."""
        ...


@runtime_checkable
class ScorePlugin(Protocol):
    """``score(pod, node)`` or ``score(pod, node, state)``: 0..100 (checked), or any
    number when the plugin also has ``normalize_scores``."""

    def score(self, pod: KubeObject, node: NodeInfo, /) -> float:
        """How well the pod fits the node."""
        ...


@runtime_checkable
class NormalizeScorePlugin(Protocol):
    """``normalize_scores(state, pod, scores)``: map node name → score into 0..100."""

    def normalize_scores(
        self, state: CycleState, pod: PodInfo, scores: dict[str, float], /
    ) -> None:
        """Rewrite ``scores`` in place."""
        ...


@runtime_checkable
class ReservePlugin(Protocol):
    """``reserve(state, pod, node)`` and ``unreserve(state, pod, node)``."""

    def reserve(self, state: CycleState, pod: PodInfo, node: NodeInfo, /) -> str | None:
        """A reason refuses the node (the pod is retried)."""
        ...


FilterRunner = Callable[[NodeInfo], Sequence[str] | None]
"""Runs a profile's filters on one node for the pod of the cycle: None when it fits."""


@dataclasses.dataclass
class PostFilterResult:
    """What a ``post_filter`` stage decided for a pod no node fits.

    ``nominated_node``: the node the pod should wait for (victims are deleted to make
    room), ``""`` to clear the pod's nomination, None to leave it as it is.
    ``victims``: the pods to delete, most important first. ``message``: what the
    ``FailedScheduling`` event adds after the filter reasons (``preemption: ...``).
    """

    nominated_node: str | None = None
    victims: Sequence[PodInfo] = ()
    message: str = ""


@runtime_checkable
class PostFilterPlugin(Protocol):
    """``post_filter(state, pod, failed, filters)``: no node fits; make room (preempt)."""

    def post_filter(
        self,
        state: CycleState,
        pod: PodInfo,
        failed: Mapping[str, Sequence[str]],
        filters: FilterRunner,
        /,
    ) -> PostFilterResult | None:
        """A nomination with victims, a message, or None for nothing to say."""
        ...


@runtime_checkable
class PreBindPlugin(Protocol):
    """``async pre_bind(client, state, pod, node_name)``: prepare the binding."""

    async def pre_bind(
        self, client: Any, state: CycleState, pod: PodInfo, node_name: str, /
    ) -> str | None:
        """None when the pod may be bound; else why not (the pod is retried)."""
        ...


@runtime_checkable
class BindPlugin(Protocol):
    """``async bind(client, pod, node_name)``: False lets the next binder bind."""

    async def bind(self, client: Any, pod: KubeObject, node_name: str, /) -> bool:
        """Bind the pod to the node; True when done."""
        ...


SCHEDULER_STAGES: Mapping[str, tuple[type[Any], tuple[int, ...], bool]] = {
    "pre_filter": (PreFilterPlugin, (2,), False),
    "filter": (FilterPlugin, (2, 3), False),
    "pre_score": (PreScorePlugin, (3,), False),
    "score": (ScorePlugin, (2, 3), False),
    "normalize_scores": (NormalizeScorePlugin, (3,), False),
    "post_filter": (PostFilterPlugin, (4,), False),
    "reserve": (ReservePlugin, (3,), False),
    "unreserve": (ReservePlugin, (3,), False),
    "pre_bind": (PreBindPlugin, (4,), True),
    "bind": (BindPlugin, (3,), True),
    "configured": (SchedulerPlugin, (1,), False),
}
"""Stage method → (its Protocol, the positional argument counts the cycle may call it
with, whether it must be ``async``)."""


# --- node: network and storage ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class PodNetwork:
    """What a network plugin set up for a pod: its addresses and interface."""

    ips: Sequence[str]
    interface: str = "eth0"
    gateway: str | None = None
    mtu: int | None = None


@runtime_checkable
class NetworkPlugin(Protocol):
    """A CNI-like provider: wires pods' network namespaces and runs node services."""

    name: str

    async def add(self, *, pod: KubeObject, netns_path: str, container_id: str) -> PodNetwork:
        """Connect the pod's network namespace; return its addresses. Idempotent."""
        ...

    async def delete(self, *, pod: KubeObject, netns_path: str, container_id: str) -> None:
        """Disconnect the pod and release its addresses. Idempotent."""
        ...

    async def run_node_services(
        self, client: Any, node_name: str, *, task_status: trio.TaskStatus[None] = ...
    ) -> None:
        """Run node-level services (routes, BGP, policy) until cancelled."""
        ...


# --- storage (CSI-shaped) ---------------------------------------------------------------------

ACCESS_MODES_TO_CSI: Mapping[str, str] = {
    "ReadWriteOnce": "SINGLE_NODE_WRITER",
    "ReadWriteOncePod": "SINGLE_NODE_SINGLE_WRITER",
    "ReadOnlyMany": "MULTI_NODE_READER_ONLY",
    "ReadWriteMany": "MULTI_NODE_MULTI_WRITER",
}
"""A PersistentVolume access mode → the CSI ``VolumeCapability.AccessMode`` name, as
upstream's external-provisioner maps them."""


class StorageDriverError(Exception):
    """A storage driver's refusal, with a CSI (gRPC) status code name.

    ``code`` is one of CSI's codes as gRPC names them: ``INVALID_ARGUMENT``, ``NOT_FOUND``,
    ``ALREADY_EXISTS``, ``RESOURCE_EXHAUSTED``, ``FAILED_PRECONDITION``, ``OUT_OF_RANGE``,
    ``UNIMPLEMENTED``, ``ABORTED``, ``UNAVAILABLE``, ``INTERNAL``. The core reports the
    message in events (``ProvisioningFailed``, ``FailedMount``, …) and retries with back-off
    unless the code says retrying is useless (``INVALID_ARGUMENT``, ``UNIMPLEMENTED``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True, kw_only=True)
class VolumeCapability:
    """CSI ``VolumeCapability``: how a volume will be used."""

    access_mode: str = "SINGLE_NODE_WRITER"
    """A CSI access mode name (see :data:`ACCESS_MODES_TO_CSI`)."""
    block: bool = False
    """Raw block device (``volumeMode: Block``) instead of a mounted filesystem."""
    fs_type: str = ""
    mount_flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorageDriverInfo:
    """CSI identity and capabilities (``GetPluginInfo``, ``GetPluginCapabilities``,
    ``ControllerGetCapabilities``, ``NodeGetCapabilities``), with CSI's capability names."""

    name: str
    vendor_version: str = ""
    plugin_capabilities: frozenset[str] = frozenset()
    """E.g. ``CONTROLLER_SERVICE``, ``VOLUME_ACCESSIBILITY_CONSTRAINTS``, ``ONLINE``
    (volume expansion)."""
    controller_capabilities: frozenset[str] = frozenset()
    """E.g. ``CREATE_DELETE_VOLUME``, ``EXPAND_VOLUME``, ``GET_CAPACITY``."""
    node_capabilities: frozenset[str] = frozenset()
    """E.g. ``STAGE_UNSTAGE_VOLUME``, ``EXPAND_VOLUME``, ``GET_VOLUME_STATS``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreateVolumeRequest:
    """CSI ``CreateVolumeRequest``, as the provisioner builds it from a claim.

    ``parameters`` are the StorageClass' parameters plus, as external-provisioner's
    ``--extra-create-metadata`` adds them, ``csi.storage.k8s.io/pvc/name``,
    ``csi.storage.k8s.io/pvc/namespace`` and ``csi.storage.k8s.io/pv/name``.
    """

    name: str
    """The PersistentVolume's name (``pvc-<claim uid>``): the idempotency key."""
    capacity_bytes: int = 0
    """The claim's ``resources.requests.storage`` (0: the driver's default)."""
    limit_bytes: int = 0
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    capabilities: tuple[VolumeCapability, ...] = ()
    requisite_topology: tuple[Mapping[str, str], ...] = ()
    """Topology segments the volume must be accessible from (e.g. the selected node's
    ``kubernetes.io/hostname`` under ``WaitForFirstConsumer``)."""
    preferred_topology: tuple[Mapping[str, str], ...] = ()
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreatedVolume:
    """CSI ``Volume``: what ``create_volume`` made; becomes the PV's ``spec.csi``."""

    volume_id: str
    """Becomes ``spec.csi.volumeHandle``."""
    capacity_bytes: int = 0
    """Becomes ``spec.capacity.storage`` (0: unknown, the request's size is used)."""
    volume_context: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Becomes ``spec.csi.volumeAttributes``; handed back to the node calls."""
    accessible_topology: tuple[Mapping[str, str], ...] = ()
    """Becomes the PV's ``spec.nodeAffinity`` (one term per segment)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExpandedVolume:
    """CSI ``ControllerExpandVolumeResponse``."""

    capacity_bytes: int
    node_expansion_required: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class StorageNodeInfo:
    """CSI ``NodeGetInfoResponse``; recorded in the ``CSINode`` object."""

    node_id: str
    max_volumes_per_node: int = 0
    accessible_topology: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VolumeStats:
    """CSI ``NodeGetVolumeStatsResponse`` (bytes and inodes; 0 when unknown)."""

    total_bytes: int = 0
    used_bytes: int = 0
    available_bytes: int = 0
    total_inodes: int = 0
    used_inodes: int = 0
    available_inodes: int = 0


@runtime_checkable
class StorageDriver(Protocol):
    """A storage driver shaped like a CSI plugin: identity, controller and node services.

    Methods map one to one to CSI RPCs, so an adapter can forward them to an external CSI
    driver over gRPC, and a built-in driver reads like a CSI driver. The volume controllers
    call the controller side (``create_volume``, ``delete_volume``, ``expand_volume``,
    ``get_capacity``) when the driver advertises the matching controller capability; each
    node agent calls the node side for the volumes of its pods. A method a driver does not
    support raises :class:`StorageDriverError` with code ``UNIMPLEMENTED``. All methods are
    idempotent, as CSI requires: the core retries after errors and restarts.
    """

    name: str
    """The CSI driver name: StorageClasses' ``provisioner`` and PVs' ``spec.csi.driver``
    (``rancher.io/local-path``, ``hostpath.csi.k8s.io``, …)."""

    # identity
    async def get_info(self) -> StorageDriverInfo:
        """The driver's name, version and capabilities (CSI identity + capabilities)."""
        ...

    async def probe(self) -> bool:
        """True when the driver is ready to serve (CSI ``Probe``)."""
        ...

    # controller service
    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        """Create (or find, by ``request.name``) a volume (CSI ``CreateVolume``)."""
        ...

    async def delete_volume(
        self, *, volume_id: str, secrets: Mapping[str, str] | None = None
    ) -> None:
        """Delete a volume; a volume already gone is success (CSI ``DeleteVolume``)."""
        ...

    async def expand_volume(
        self, *, volume_id: str, capacity_bytes: int, capability: VolumeCapability
    ) -> ExpandedVolume:
        """Grow a volume to at least ``capacity_bytes`` (CSI ``ControllerExpandVolume``)."""
        ...

    async def get_capacity(
        self, *, parameters: Mapping[str, str], topology: Mapping[str, str] | None = None
    ) -> int | None:
        """Bytes available for new volumes there; None when unknown (CSI ``GetCapacity``)."""
        ...

    # node service
    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
        """This node's id and topology (CSI ``NodeGetInfo``). ``node_name`` is the calling
        node agent's name; in-process drivers may use it as their node id, an external
        CSI driver has its own."""
        ...

    async def stage_volume(
        self,
        *,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability,
        volume_context: Mapping[str, str],
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare the volume on this node once for all pods (CSI ``NodeStageVolume``);
        called only when the driver has the ``STAGE_UNSTAGE_VOLUME`` node capability."""
        ...

    async def unstage_volume(self, *, volume_id: str, staging_path: str) -> None:
        """Undo :meth:`stage_volume` (CSI ``NodeUnstageVolume``)."""
        ...

    async def publish_volume(
        self,
        *,
        volume_id: str,
        target_path: str,
        capability: VolumeCapability,
        read_only: bool,
        volume_context: Mapping[str, str],
        staging_path: str = "",
        publish_context: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        """Make the volume's content appear at ``target_path`` for one pod
        (CSI ``NodePublishVolume``)."""
        ...

    async def unpublish_volume(self, *, volume_id: str, target_path: str) -> None:
        """Remove the volume from ``target_path``; nothing there is success
        (CSI ``NodeUnpublishVolume``)."""
        ...

    async def expand_node_volume(
        self, *, volume_id: str, volume_path: str, capacity_bytes: int, staging_path: str = ""
    ) -> int:
        """Grow the filesystem on this node; returns the new size in bytes
        (CSI ``NodeExpandVolume``)."""
        ...

    async def volume_stats(self, *, volume_id: str, volume_path: str) -> VolumeStats:
        """Usage of a published volume (CSI ``NodeGetVolumeStats``)."""
        ...
