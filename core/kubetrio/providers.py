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
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import trio

KubeObject = dict[str, Any]
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


# --- extension --------------------------------------------------------------------------------


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
    """A long-running reconciler. ``run`` follows trio's start protocol."""

    name: str

    async def run(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; call ``task_status.started()`` once caches are synced."""
        ...


@runtime_checkable
class ContainerRuntime(Protocol):
    """Runs pod sandboxes and containers on a node (runc, a simulated runtime, …)."""

    name: str

    async def run_pod_sandbox(self, pod: KubeObject) -> str:
        """Create the pod's sandbox (network namespace, pause process); return its id."""
        ...

    async def stop_pod_sandbox(self, sandbox_id: str, *, grace_period: float) -> None:
        """Stop every container of the sandbox, then the sandbox; idempotent."""
        ...

    async def start_container(self, sandbox_id: str, pod: KubeObject, container: KubeObject) -> str:
        """Create and start one container in the sandbox; return its id."""
        ...

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        """Return the container's state (running/exited, exit code, started/finished at)."""
        ...


# --- scheduling -------------------------------------------------------------------------------


@runtime_checkable
class SchedulerPlugin(Protocol):
    """A scheduler plugin. Only ``name`` is required; the cycle calls the optional stages
    (``pre_filter``, ``filter``, ``score``, ``normalize_scores``, ``reserve``, ``bind``) that
    the object has. Stages are synchronous: they run over the scheduler's in-memory
    snapshot, thousands of times per pod, and must not do I/O (``bind`` is the exception:
    it is ``async`` and only the first plugin that returns True binds)."""

    name: str


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


@runtime_checkable
class StorageDriver(Protocol):
    """A CSI-like provider: provisions volumes and publishes them into pods."""

    name: str
    """The provisioner name StorageClasses refer to (``kubetrio.io/hostpath``)."""

    async def provision(self, *, claim: KubeObject, parameters: Mapping[str, str]) -> KubeObject:
        """Create a volume for the claim; return the PersistentVolume ``spec.csi``-like source."""
        ...

    async def delete(self, *, volume: KubeObject) -> None:
        """Delete the volume's storage (reclaim policy Delete). Idempotent."""
        ...

    async def publish(self, *, volume: KubeObject, target_path: str, read_only: bool) -> None:
        """Make the volume's content appear at ``target_path`` on this node."""
        ...

    async def unpublish(self, *, volume: KubeObject, target_path: str) -> None:
        """Remove the volume from ``target_path``. Idempotent."""
        ...
