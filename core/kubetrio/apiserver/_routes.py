"""Parsing Kubernetes resource URLs into what they address.

::

    /api/v1/pods                                  all pods (list, watch)
    /api/v1/namespaces/ns/pods[/name[/sub]]       pods in ns, one pod, a subresource
    /api/v1/namespaces/ns/pods/name/proxy/a/b     a proxy subresource and its path
    /api/v1/namespaces/ns/pods/name/history/12    one revision of an object's history
    /api/v1/namespaces/name[/status|/finalize]    the namespace object itself
    /apis/<group>/<version>/...                   the same shapes in a named group
"""

from __future__ import annotations

import dataclasses

from kubetrio.api.scheme import ResourceInfo, Scheme

from ._status import ApiError

HISTORY = "history"
"""Every resource's read-only history subresource (``_history``)."""


@dataclasses.dataclass(frozen=True)
class ResourcePath:
    """What a resource URL addresses."""

    info: ResourceInfo
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    rest: str = ""
    """What follows ``.../proxy/`` in a proxy URL (pods, services, nodes), or the revision
    after ``.../history/``."""


def _not_found() -> ApiError:
    return ApiError(404, "the server could not find the requested resource")


def parse_resource_path(scheme: Scheme, path: str) -> ResourcePath | None:
    """The resource a path addresses; None when it is not a resource path.

    :raises ApiError: 404 for a resource path naming nothing that is served.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespaces = scheme.resource("", "v1", "namespaces")
        if (
            group == ""
            and namespaces is not None
            and len(rest) == 3
            and rest[2] in (namespaces.subresources)
        ):
            return ResourcePath(namespaces, "", rest[1], rest[2])
        namespace, rest = rest[1], rest[2:]
    remainder = ""
    if len(rest) > 3:
        if rest[2] != "proxy" and not (rest[2] == HISTORY and len(rest) == 4):
            raise _not_found()
        rest, remainder = rest[:3], "/".join(rest[3:])
    info = scheme.resource(group, version, rest[0])
    if info is None:
        raise _not_found()
    if namespace and not info.namespaced:
        raise _not_found()
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if subresource and subresource not in info.subresources and subresource != HISTORY:
        raise _not_found()
    return ResourcePath(info, namespace, name, subresource, remainder)
