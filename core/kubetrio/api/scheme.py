"""The scheme: what kinds exist, where they are served and which Struct holds them.

Each :class:`ResourceInfo` ties together group/version/kind, the REST resource (plural,
singular, short names, categories), whether it is namespaced, its verbs, its
subresources (``status``, ``scale``, ``log`` ...) and the model types. That is all
discovery needs (``kubectl api-resources`` prints it) and all a generic REST handler
needs to route ``/apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/<sub>``.

Most of it is derived from swagger by the generator (:mod:`.generated.resources`):
plural, namespaced, verbs, subresources and their kinds come from the paths. Short names
and categories are not in swagger; they are tabulated below as facts of the Kubernetes
API. Group order and preferred versions follow the kube-apiserver, because kubectl
resolves ambiguous names (``events``, ``hpa``) by discovery order.

:data:`BUILTIN` is the scheme of built-in kinds; :meth:`Scheme.register` adds more
(custom resources) to a scheme of one's own, built with :meth:`Scheme.builtin`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .generated import meta_v1
from .generated.registry import DEFINITIONS, KINDS
from .generated.resources import RESOURCES, RawResource
from .model import KubeStruct
from .structural import kube_version_key

__all__ = [
    "BUILTIN",
    "METRICS_GROUP",
    "CustomVersion",
    "GroupVersionKind",
    "GroupVersionResource",
    "ResourceInfo",
    "Scheme",
    "SubresourceInfo",
    "api_version_of",
    "split_api_version",
]

# kubectl api-resources SHORTNAMES column for the built-in resources.
SHORT_NAMES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("", "componentstatuses"): ("cs",),
    ("", "configmaps"): ("cm",),
    ("", "endpoints"): ("ep",),
    ("", "events"): ("ev",),
    ("", "limitranges"): ("limits",),
    ("", "namespaces"): ("ns",),
    ("", "nodes"): ("no",),
    ("", "persistentvolumeclaims"): ("pvc",),
    ("", "persistentvolumes"): ("pv",),
    ("", "pods"): ("po",),
    ("", "replicationcontrollers"): ("rc",),
    ("", "resourcequotas"): ("quota",),
    ("", "serviceaccounts"): ("sa",),
    ("", "services"): ("svc",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("crd", "crds"),
    ("apps", "daemonsets"): ("ds",),
    ("apps", "deployments"): ("deploy",),
    ("apps", "replicasets"): ("rs",),
    ("apps", "statefulsets"): ("sts",),
    ("autoscaling", "horizontalpodautoscalers"): ("hpa",),
    ("batch", "cronjobs"): ("cj",),
    ("certificates.k8s.io", "certificatesigningrequests"): ("csr",),
    ("events.k8s.io", "events"): ("ev",),
    ("networking.k8s.io", "ingresses"): ("ing",),
    ("networking.k8s.io", "ipaddresses"): ("ip",),
    ("networking.k8s.io", "networkpolicies"): ("netpol",),
    ("policy", "poddisruptionbudgets"): ("pdb",),
    ("scheduling.k8s.io", "priorityclasses"): ("pc",),
    ("storage.k8s.io", "storageclasses"): ("sc",),
    ("storage.k8s.io", "volumeattributesclasses"): ("vac",),
}

# kubectl api-resources CATEGORIES (``kubectl get all`` expands the ``all`` category).
CATEGORIES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("all",),
    ("", "replicationcontrollers"): ("all",),
    ("", "services"): ("all",),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ("api-extensions",),
    ("apiregistration.k8s.io", "apiservices"): ("api-extensions",),
    ("apps", "daemonsets"): ("all",),
    ("apps", "deployments"): ("all",),
    ("apps", "replicasets"): ("all",),
    ("apps", "statefulsets"): ("all",),
    ("autoscaling", "horizontalpodautoscalers"): ("all",),
    ("batch", "cronjobs"): ("all",),
    ("batch", "jobs"): ("all",),
}

# The kube-apiserver's discovery order of groups, and their versions, preferred first.
GROUP_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("v1",)),
    ("apiregistration.k8s.io", ("v1",)),
    ("apps", ("v1",)),
    ("events.k8s.io", ("v1",)),
    ("authentication.k8s.io", ("v1",)),
    ("authorization.k8s.io", ("v1",)),
    ("autoscaling", ("v2", "v1")),
    ("batch", ("v1",)),
    ("certificates.k8s.io", ("v1",)),
    ("networking.k8s.io", ("v1",)),
    ("policy", ("v1",)),
    ("rbac.authorization.k8s.io", ("v1",)),
    ("storage.k8s.io", ("v1",)),
    ("apiextensions.k8s.io", ("v1",)),
    ("scheduling.k8s.io", ("v1",)),
    ("coordination.k8s.io", ("v1",)),
    ("discovery.k8s.io", ("v1",)),
    ("flowcontrol.apiserver.k8s.io", ("v1",)),
)


_VERSION_RE = re.compile(r"v[0-9]+(?:(?:alpha|beta)[0-9]+)?")


def api_version_of(group: str, version: str) -> str:
    """``("apps", "v1")`` -> ``"apps/v1"``; the core group is just ``"v1"``."""
    return f"{group}/{version}" if group else version


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` -> ``("apps", "v1")``; ``"v1"`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    """A kind in a group/version (``apps/v1 Deployment``)."""

    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` string of objects of this kind."""
        return api_version_of(self.group, self.version)

    @classmethod
    def of(cls, api_version: str, kind: str) -> GroupVersionKind:
        """From an object's ``apiVersion`` and ``kind``."""
        group, version = split_api_version(api_version)
        return cls(group, version, kind)


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """A resource in a group/version (``apps/v1 deployments``)."""

    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class SubresourceInfo:
    """A subresource such as ``status``, ``scale``, ``log`` or ``exec``.

    ``kind`` is the kind the subresource reads and writes; for ``scale`` that is
    ``autoscaling/v1 Scale``, and discovery must say so or ``kubectl scale`` fails.
    ``model`` is its Struct, or None for streaming ones (``log``, ``exec`` ...).
    """

    name: str
    kind: GroupVersionKind
    verbs: tuple[str, ...]
    model: type[KubeStruct] | None = None


@dataclass(frozen=True, slots=True)
class CustomVersion:
    """What a CustomResourceDefinition says of one served version beyond its schema."""

    crd: str
    """The CRD's name (``widgets.example.com``)."""
    storage: bool = False
    deprecated: bool = False
    deprecation_warning: str = ""
    """The ``Warning`` every request to this version gets (empty when not deprecated)."""
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    """``additionalPrinterColumns`` (an ``Age`` column when the CRD declares none)."""
    terminating: bool = False
    """The CRD is being deleted: objects may be read and deleted, not created."""
    defaulted: bool = False
    """Whether the schema has ``default`` values (then objects are defaulted on read too)."""
    scale: Mapping[str, Any] | None = None
    """``subresources.scale``: ``specReplicasPath``, ``statusReplicasPath``,
    ``labelSelectorPath``."""


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """Everything about one served resource; see the module docstring."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: Mapping[str, SubresourceInfo] = field(default_factory=dict)
    model: type[KubeStruct] | None = None
    list_model: type[KubeStruct] | None = None
    definition: str | None = None
    schema: Mapping[str, Any] | None = None
    """A custom resource's OpenAPI v3 schema (built-ins have a ``model`` instead)."""
    custom: CustomVersion | None = None
    """Set for resources served from a CustomResourceDefinition (pruned, defaulted)."""

    @property
    def api_version(self) -> str:
        """``apps/v1``, or ``v1`` for the core group."""
        return api_version_of(self.group, self.version)

    @property
    def gvk(self) -> GroupVersionKind:
        """The kind served by the resource."""
        return GroupVersionKind(self.group, self.version, self.kind)

    @property
    def gvr(self) -> GroupVersionResource:
        """The resource's group/version/plural."""
        return GroupVersionResource(self.group, self.version, self.resource)

    @property
    def list_kind(self) -> str:
        """The kind of collections of this resource (``PodList``)."""
        return self.kind + "List"

    def has_verb(self, verb: str) -> bool:
        """Whether ``verb`` (get, list, watch, create, update, patch, delete,
        deletecollection) is allowed on the resource itself."""
        return verb in self.verbs

    def api_resources(self) -> list[meta_v1.APIResource]:
        """The discovery entries: the resource, then each subresource."""
        out = [
            meta_v1.APIResource(
                name=self.resource,
                singular_name=self.singular,
                namespaced=self.namespaced,
                kind=self.kind,
                verbs=list(self.verbs),
                short_names=list(self.short_names) or None,
                categories=list(self.categories) or None,
            )
        ]
        for sub in sorted(self.subresources.values(), key=lambda s: s.name):
            other_gv = (sub.kind.group, sub.kind.version) != (self.group, self.version)
            out.append(
                meta_v1.APIResource(
                    name=f"{self.resource}/{sub.name}",
                    singular_name="",
                    namespaced=self.namespaced,
                    group=sub.kind.group if other_gv else None,
                    version=sub.kind.version if other_gv else None,
                    kind=sub.kind.kind,
                    verbs=list(sub.verbs),
                )
            )
        return out

    def aggregated(self) -> dict[str, Any]:
        """The ``apidiscovery.k8s.io`` (v2/v2beta1) entry of this resource."""
        entry: dict[str, Any] = {
            "resource": self.resource,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        subs = [
            {
                "subresource": sub.name,
                "responseKind": {
                    "group": sub.kind.group,
                    "version": sub.kind.version,
                    "kind": sub.kind.kind,
                },
                "verbs": list(sub.verbs),
            }
            for sub in sorted(self.subresources.values(), key=lambda s: s.name)
        ]
        if subs:
            entry["subresources"] = subs
        return entry


class Scheme:
    """A registry of resources, looked up by resource, kind or kubectl-style name."""

    def __init__(self, resources: Iterable[ResourceInfo] = ()) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceInfo] = {}
        self._by_gvk: dict[tuple[str, str, str], ResourceInfo] = {}
        self._versions: dict[str, list[str]] = {}
        self._types: dict[tuple[str, str, str], type[KubeStruct]] = {}
        for gvk, def_id in KINDS.items():
            self._types[gvk] = DEFINITIONS[def_id]
        for info in resources:
            self.register(info)

    @classmethod
    def builtin(cls) -> Scheme:
        """A new scheme holding every built-in resource."""
        return cls(_builtin_resources())

    def register(self, info: ResourceInfo) -> None:
        """Add (or replace) a resource; its group/version joins discovery."""
        self._by_gvr[(info.group, info.version, info.resource)] = info
        self._by_gvk[(info.group, info.version, info.kind)] = info
        versions = self._versions.setdefault(info.group, [])
        if info.version not in versions:
            versions.append(info.version)
            if info.custom is not None:
                # A custom group's preferred version is its highest-priority one, as
                # kube-apiserver orders them (v2 > v1 > v1beta1 > v1alpha1).
                versions.sort(key=kube_version_key)
        if info.model is not None:
            self._types[(info.group, info.version, info.kind)] = info.model
        if info.list_model is not None:
            self._types[(info.group, info.version, info.list_kind)] = info.list_model

    def unregister(self, group: str, version: str, resource: str) -> None:
        """Remove a resource (a deleted custom resource definition)."""
        info = self._by_gvr.pop((group, version, resource), None)
        if info is None:
            return
        self._by_gvk.pop((group, version, info.kind), None)
        if not any(g == group and v == version for g, v, _ in self._by_gvr):
            self._versions[group].remove(version)
            if not self._versions[group]:
                del self._versions[group]

    def __iter__(self) -> Iterator[ResourceInfo]:
        for group, versions in self.groups():
            for version in versions:
                yield from self.resources(group, version)

    def groups(self) -> list[tuple[str, list[str]]]:
        """Served groups in discovery order, each with its versions, preferred first."""
        return [(g, list(v)) for g, v in self._versions.items()]

    def resources(self, group: str, version: str) -> list[ResourceInfo]:
        """The resources of one group/version, sorted by plural."""
        found = [i for (g, v, _), i in self._by_gvr.items() if g == group and v == version]
        return sorted(found, key=lambda i: i.resource)

    def resource(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        """The resource served at ``/<group>/<version>/<resource>``, if any."""
        return self._by_gvr.get((group, version, resource))

    def for_kind(self, gvk: GroupVersionKind) -> ResourceInfo | None:
        """The resource serving a kind, if any."""
        return self._by_gvk.get((gvk.group, gvk.version, gvk.kind))

    def type_for(self, gvk: GroupVersionKind) -> type[KubeStruct] | None:
        """The Struct type of a kind (also list kinds, ``Status``, ``Scale`` ...)."""
        return self._types.get((gvk.group, gvk.version, gvk.kind))

    def resolve(self, name: str) -> list[ResourceInfo]:
        """Resources matching a kubectl-style name, best first.

        Accepts plural, singular, short name or kind, case-insensitive, optionally
        qualified: ``po``, ``pods``, ``Pod``, ``deploy``, ``deployments.apps``,
        ``deployments.v1.apps``, ``hpa``. Candidates come in discovery order (core
        first, preferred versions first), as kubectl orders them.
        """
        lowered = name.lower()
        base, _, rest = lowered.partition(".")
        wanted: list[tuple[str, str | None, str | None]] = [(lowered, None, None)]
        if rest:
            wanted.append((base, None, rest))
            version, _, group = rest.partition(".")
            if group and _VERSION_RE.fullmatch(version):
                wanted.append((base, version, group))
        found: list[ResourceInfo] = []
        for want, version_, group_ in wanted:
            for info in self:
                if group_ is not None and info.group != group_:
                    continue
                if version_ is not None and info.version != version_:
                    continue
                names = {info.resource, info.singular, info.kind.lower(), *info.short_names}
                if want in names and info not in found:
                    found.append(info)
        return found

    # ---- discovery documents ------------------------------------------------------

    def api_versions(self, server_address: str) -> meta_v1.APIVersions:
        """``GET /api``."""
        return meta_v1.APIVersions(
            kind="APIVersions",
            versions=list(self._versions.get("", [])),
            server_address_by_client_cidrs=[
                meta_v1.ServerAddressByClientCIDR(
                    client_cidr="0.0.0.0/0", server_address=server_address
                )
            ],
        )

    def api_group_list(self) -> meta_v1.APIGroupList:
        """``GET /apis``."""
        groups = []
        for group, versions in self.groups():
            if not group:
                continue
            gvs = [
                meta_v1.GroupVersionForDiscovery(group_version=f"{group}/{v}", version=v)
                for v in versions
            ]
            groups.append(meta_v1.APIGroup(name=group, versions=gvs, preferred_version=gvs[0]))
        return meta_v1.APIGroupList(kind="APIGroupList", api_version="v1", groups=groups)

    def api_group(self, group: str) -> meta_v1.APIGroup | None:
        """``GET /apis/<group>``."""
        for g in self.api_group_list().groups or []:
            if g.name == group:
                return meta_v1.APIGroup(
                    kind="APIGroup",
                    api_version="v1",
                    name=g.name,
                    versions=g.versions,
                    preferred_version=g.preferred_version,
                )
        return None

    def api_resource_list(self, group: str, version: str) -> meta_v1.APIResourceList | None:
        """``GET /api/v1`` or ``GET /apis/<group>/<version>``; None if not served."""
        if version not in self._versions.get(group, []):
            return None
        entries = [e for info in self.resources(group, version) for e in info.api_resources()]
        return meta_v1.APIResourceList(
            kind="APIResourceList",
            api_version="v1",
            group_version=api_version_of(group, version),
            resources=entries,
        )

    def aggregated_discovery(self, *, core: bool, version: str = "v2") -> dict[str, Any]:
        """``GET /api`` (``core=True``) or ``/apis`` as an ``APIGroupDiscoveryList``.

        ``version`` is ``v2`` or ``v2beta1`` (same shape), picked from the Accept header.
        """
        items = []
        for group, versions in self.groups():
            if (group == "") != core:
                continue
            items.append(
                {
                    "metadata": {"name": group, "creationTimestamp": None},
                    "versions": [
                        {
                            "version": v,
                            "resources": [i.aggregated() for i in self.resources(group, v)],
                            "freshness": "Current",
                        }
                        for v in versions
                    ],
                }
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {},
            "items": items,
        }


def _builtin_resources() -> list[ResourceInfo]:
    raw_by_resource: dict[tuple[str, str, str], list[RawResource]] = {}
    for raw in RESOURCES:
        raw_by_resource.setdefault((raw.group, raw.version, raw.resource), []).append(raw)
    order = {(g, v): (i, j) for i, (g, vs) in enumerate(GROUP_ORDER) for j, v in enumerate(vs)}
    infos: list[ResourceInfo] = []
    for (group, version, resource), raws in sorted(
        raw_by_resource.items(), key=lambda kv: (order.get(kv[0][:2], (999, 0)), kv[0])
    ):
        main = next((r for r in raws if not r.subresource), None)
        if main is None:
            continue
        subs = {
            r.subresource: SubresourceInfo(
                name=r.subresource,
                kind=GroupVersionKind(r.kind_group, r.kind_version, r.kind),
                verbs=r.verbs,
                model=_type((r.kind_group, r.kind_version, r.kind)),
            )
            for r in raws
            if r.subresource
        }
        gvk = (main.kind_group, main.kind_version, main.kind)
        info = ResourceInfo(
            group=group,
            version=version,
            resource=resource,
            kind=main.kind,
            namespaced=main.namespaced,
            verbs=main.verbs,
            singular=main.kind.lower(),
            short_names=SHORT_NAMES.get((group, resource), ()),
            categories=CATEGORIES.get((group, resource), ()),
            subresources=subs,
            model=_type(gvk),
            list_model=_type((gvk[0], gvk[1], gvk[2] + "List")),
            definition=KINDS.get(gvk),
        )
        infos.append(info)
    return infos + _metrics_resources()


METRICS_GROUP = "metrics.k8s.io"
"""The resource metrics API (metrics-server's), served by the API server from the node
agents' figures; not in swagger, so its two read-only resources are tabulated here."""


def _metrics_resources() -> list[ResourceInfo]:
    return [
        ResourceInfo(
            group=METRICS_GROUP,
            version="v1beta1",
            resource=resource,
            kind=kind,
            namespaced=namespaced,
            verbs=("get", "list"),
        )
        for resource, kind, namespaced in (
            ("nodes", "NodeMetrics", False),
            ("pods", "PodMetrics", True),
        )
    ]


def _type(gvk: tuple[str, str, str]) -> type[KubeStruct] | None:
    def_id = KINDS.get(gvk)
    return DEFINITIONS[def_id] if def_id else None


BUILTIN: Scheme = Scheme.builtin()
"""The scheme of built-in kinds. Treat it as read-only; build your own with
:meth:`Scheme.builtin` to register custom resources."""
