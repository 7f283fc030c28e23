"""Discovery: which resources the API server serves, as client-go's discovery client reads it.

:func:`discover` reads the legacy discovery documents (``/api``, ``/api/v1``, ``/apis``
and ``/apis/<group>/<version>`` for every served version) into a :class:`Discovery`: the
top-level resources of every group version, each group's preferred version, and the
group versions whose documents could not be read. It is what a component needs that must
follow kinds it was not built with — custom resources above all — such as the garbage
collector: which resources to watch (the preferred versions' resources with given verbs)
and how an ``apiVersion``/``kind`` pair (an ownerReference) maps to a resource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ._client import Client
from ._errors import ClientError


@dataclasses.dataclass(frozen=True)
class ApiResource:
    """One top-level resource of one group version, as discovery lists it."""

    api_version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def group(self) -> str:
        """The API group (empty for the core group)."""
        return group_of(self.api_version)


def group_of(api_version: str) -> str:
    """The group of an ``apiVersion`` (``apps/v1`` → ``apps``, ``v1`` → the core group ``""``)."""
    return api_version.rpartition("/")[0]


@dataclasses.dataclass
class Discovery:
    """What the server serves (see the module docstring)."""

    resources: list[ApiResource] = dataclasses.field(default_factory=list)
    preferred: dict[str, str] = dataclasses.field(default_factory=dict)
    """Group → its preferred version (``""`` → ``v1``)."""
    failed: set[str] = dataclasses.field(default_factory=set)
    """Group versions (``apiVersion`` form) whose resource lists could not be read."""

    def preferred_resources(self, verbs: Iterable[str] = ()) -> list[ApiResource]:
        """The resources of each group's preferred version that support every verb given."""
        wanted = set(verbs)
        return [
            r
            for r in self.resources
            if self.preferred.get(r.group) == r.api_version.rpartition("/")[2] and wanted <= r.verbs
        ]

    def kind(self, api_version: str, kind: str) -> ApiResource | None:
        """The resource of ``kind`` in the group version ``api_version``, if it is served."""
        for r in self.resources:
            if r.api_version == api_version and r.kind == kind:
                return r
        return None


async def discover(client: Client) -> Discovery:
    """Read the server's discovery documents (see the module docstring).

    A group version whose document cannot be read is recorded in ``failed`` rather than
    failing the whole discovery (as client-go's ``ServerPreferredResources`` does); a
    failure to read ``/api`` or ``/apis`` raises.
    """
    found = Discovery()
    core = await client.get_path("/api")
    group_versions: list[str] = list(core.get("versions") or [])
    if group_versions:
        found.preferred[""] = group_versions[0]
    groups = await client.get_path("/apis")
    for group in groups.get("groups") or []:
        versions = [v["groupVersion"] for v in group.get("versions") or []]
        group_versions += versions
        preferred = (group.get("preferredVersion") or {}).get("version")
        if not preferred and versions:
            preferred = versions[0].rpartition("/")[2]
        if preferred:
            found.preferred[group["name"]] = preferred
    for api_version in group_versions:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listed = await client.get_path(path)
        except ClientError:
            found.failed.add(api_version)
            continue
        for entry in listed.get("resources") or []:
            name = entry.get("name", "")
            if not name or "/" in name:
                continue  # a subresource (pods/log): not an object collection
            found.resources.append(
                ApiResource(
                    api_version=api_version,
                    resource=name,
                    kind=entry.get("kind", ""),
                    namespaced=bool(entry.get("namespaced")),
                    verbs=frozenset(entry.get("verbs") or ()),
                )
            )
    return found
