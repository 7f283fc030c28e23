"""What each kind adds to the generic verbs, as upstream's registry strategies do.

The verb handlers in ``_server`` are written once for every resource; a :class:`Strategy`
holds what one kind does differently: how a new or changed object is prepared
(defaults, the status it starts with, status kept from spec writes), what an update may
not change, and what happens around storing and deleting (a Service's ClusterIP and
NodePorts, a CRD's cleanup finalizer, a Namespace that terminates instead of going).
``Strategies.of(info)`` picks one; kinds without their own get :class:`Strategy`.

Reviews (TokenReview, SubjectAccessReview, ...) are not stored at all: their strategy
answers the create.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from kubetrio.api.scheme import ResourceInfo
from kubetrio.api.validation import certificates
from kubetrio.api.validation import core as core_validation
from kubetrio.kubeobject import KubeObject
from kubetrio.providers import UserInfo

from . import _crds, _defaults, _immutable, _validation
from . import _objects as objects
from ._registry import Registry, check_preconditions
from ._reviews import REVIEWS
from ._services import ServiceAllocator
from ._status import invalid

SERVICES = ("", "services")
CERTIFICATE_SIGNING_REQUESTS = ("certificates.k8s.io", "certificatesigningrequests")
NAMESPACES = ("", "namespaces")


class Strategy:
    """The default strategy: defaults, status reset, immutable fields, plain deletion."""

    stored = True
    """False for kinds whose create is answered, never stored (reviews)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def prepare_for_create(self, info: ResourceInfo, obj: KubeObject) -> None:
        """Fill in what a new object gets: defaults and the status it starts with."""
        if info.custom is not None and "status" in info.subresources:
            obj.pop("status", None)  # written through /status only, as upstream
        _defaults.apply_defaults(info.group, info.resource, obj)
        _defaults.default_on_create(info.group, info.resource, obj, now=objects.now_rfc3339())

    def record_requester(self, obj: KubeObject, user: UserInfo) -> None:
        """Note who creates ``obj`` in it (kinds that record it: CSRs)."""

    def prepare_for_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        """Make a changed object whole: status kept from spec writes, defaults."""
        if "status" in info.subresources:
            keep_field(new, current, "status")  # status changes go through /status
        _defaults.apply_defaults(info.group, info.resource, new)
        if not info.namespaced:
            new.get("metadata", {}).pop("namespace", None)

    def validate_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        """Refuse changes the kind does not allow (422)."""
        _immutable.check_update(info.group, info.resource, current, new)

    async def before_create(self, obj: KubeObject) -> None:
        """Reserve what the new object needs before it is stored (not on a dry run)."""

    async def create_failed(self, obj: KubeObject) -> None:
        """Give back what :meth:`before_create` reserved when storing failed."""

    async def before_delete(self, info: ResourceInfo, name: str) -> None:
        """Prepare a deletion (not on a dry run)."""

    async def delete(
        self, info: ResourceInfo, namespace: str, name: str, options: KubeObject, *, dry_run: bool
    ) -> KubeObject:
        """Delete (or mark for deletion) one object; return its last state."""
        obj, _gone = await self.registry.delete(
            info, namespace, name, options=options, dry_run=dry_run
        )
        return obj


class ServiceStrategy(Strategy):
    """Services: ClusterIPs and NodePorts allocated before the object is stored, kept
    across updates, released when storing fails (and, by the registry, on deletion)."""

    def __init__(self, registry: Registry, allocator: ServiceAllocator) -> None:
        super().__init__(registry)
        self.allocator = allocator

    def prepare_for_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        super().prepare_for_update(info, current, new)
        drop_type_dependent_fields(current, new)

    def validate_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        super().validate_update(info, current, new)
        self.allocator.keep_allocations(current, new)

    async def before_create(self, obj: KubeObject) -> None:
        await self.allocator.allocate(obj)

    async def create_failed(self, obj: KubeObject) -> None:
        with trio.CancelScope(shield=True):
            await self.allocator.release(obj)


def drop_type_dependent_fields(old: KubeObject, new: KubeObject) -> None:
    """As upstream's service strategy: when an update makes a Service something other than
    a NodePort or LoadBalancer, the fields only those have (node ports, the external
    traffic policy, the health check port) go with it, unless the update set them anew
    (then validation refuses them)."""
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        return
    for field in ("externalTrafficPolicy", "healthCheckNodePort"):
        if field in spec and spec[field] == old_spec.get(field):
            del spec[field]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    old_node_ports = [p.get("nodePort") for p in old_spec.get("ports") or [] if isinstance(p, dict)]
    if [p.get("nodePort") for p in ports] == old_node_ports[: len(ports)]:
        for port in ports:
            port.pop("nodePort", None)


class CustomResourceDefinitionStrategy(Strategy):
    """CRDs: a deletion first adds the cleanup finalizer, so their objects go first."""

    async def before_delete(self, info: ResourceInfo, name: str) -> None:
        await _crds.add_cleanup_finalizer(self.registry, info, name)


class NamespaceStrategy(Strategy):
    """Namespaces terminate: a deletion sets phase Terminating; the namespace finalizer
    removes the namespace once everything in it is gone."""

    def __init__(self, registry: Registry, terminated: Callable[[str], None]) -> None:
        super().__init__(registry)
        self.terminated = terminated

    async def delete(
        self, info: ResourceInfo, namespace: str, name: str, options: KubeObject, *, dry_run: bool
    ) -> KubeObject:
        """Mark the namespace Terminating (its ``preconditions`` checked); return it."""

        async def terminate(ns: KubeObject) -> KubeObject:
            check_preconditions(info, name, ns, options.get("preconditions") or {})
            ns["metadata"].setdefault("deletionTimestamp", objects.now_rfc3339())
            ns.setdefault("status", {})["phase"] = "Terminating"
            return ns

        marked = await self.registry.update(
            info,
            "",
            name,
            terminate,
            precondition_from_body=False,
            dry_run=dry_run,
            server_fields=("deletionTimestamp",),
        )
        self.terminated(name)
        return marked


class CertificateSigningRequestStrategy(Strategy):
    """CertificateSigningRequests: the requester recorded on create; spec and status kept
    on updates of the object (the subresources are ``_certificates``')."""

    def prepare_for_create(self, info: ResourceInfo, obj: KubeObject) -> None:
        super().prepare_for_create(info, obj)
        obj["status"] = {}

    def record_requester(self, obj: KubeObject, user: UserInfo) -> None:
        """``spec.username``/``uid``/``groups``/``extra``: who sent the request."""
        spec = obj.setdefault("spec", {})
        for key in ("username", "uid", "groups", "extra"):
            spec.pop(key, None)
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = {key: list(values) for key, values in user.extra.items()}

    def prepare_for_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        super().prepare_for_update(info, current, new)
        keep_field(new, current, "spec")

    def validate_update(self, info: ResourceInfo, current: KubeObject, new: KubeObject) -> None:
        super().validate_update(info, current, new)
        check_certificate_signing_request(info, new, current, "")


def check_certificate_signing_request(
    info: ResourceInfo, new: KubeObject, old: KubeObject, subresource: str
) -> None:
    """422 for a CSR update through the object (``""``), ``status`` or ``approval`` that
    upstream's validation refuses."""
    errors = certificates.validate_certificate_signing_request(new, old)
    errors += certificates.update_problems(new, old, subresource)
    if errors:
        name = str((new.get("metadata") or {}).get("name", ""))
        raise _validation._invalid(info, name, errors)


class ReviewStrategy(Strategy):
    """Access and token reviews: the create is answered from the request, never stored."""

    stored = False


class Strategies:
    """The strategy of every kind this server has special rules for."""

    def __init__(
        self,
        registry: Registry,
        services: ServiceAllocator,
        namespace_terminated: Callable[[str], None],
    ) -> None:
        self.default = Strategy(registry)
        self._by_resource: dict[tuple[str, str], Strategy] = {
            SERVICES: ServiceStrategy(registry, services),
            _validation.CRDS: CustomResourceDefinitionStrategy(registry),
            NAMESPACES: NamespaceStrategy(registry, namespace_terminated),
            CERTIFICATE_SIGNING_REQUESTS: CertificateSigningRequestStrategy(registry),
            **dict.fromkeys(REVIEWS, ReviewStrategy(registry)),
        }

    def of(self, info: ResourceInfo) -> Strategy:
        """The strategy of ``info``'s resource."""
        return self._by_resource.get((info.group, info.resource), self.default)


def keep_field(new: KubeObject, source: KubeObject, field: str) -> None:
    """Set ``new[field]`` to ``source[field]`` (or drop it when absent there); a dotted
    ``field`` such as ``spec.ephemeralContainers`` names a nested one."""
    *parents, last = field.split(".")
    for parent in parents:
        new = new.setdefault(parent, {})
        source = source.get(parent) or {}
    if last in source:
        new[last] = objects.deep_copy(source[last])
    else:
        new.pop(last, None)


def check_ephemeral_containers(current: KubeObject, new: KubeObject) -> None:
    """``pods/ephemeralcontainers`` (upstream's ``podEphemeralContainersStrategy``): the
    new containers get a container's defaults, then the pod must be valid and its
    ephemeral containers only added to; 422 Invalid otherwise."""
    _defaults.pod_spec(new.setdefault("spec", {}))
    errors = core_validation.validate_ephemeral_containers_update(new, current)
    if errors:
        name = str(new["metadata"].get("name", ""))
        causes = [{"reason": str(e.type), "message": e.message, "field": e.field} for e in errors]
        raise invalid("Pod", "", name, causes)
