"""managedFields on every write, and server-side apply (the work is in kubetrio.api.managedfields).

Upstream's field manager wraps every create, update and patch: the request's
``fieldManager`` (or, when absent, the user agent's product name, as kube-apiserver
derives it) records an ``Update`` entry for what the write changed; an apply patch
(``application/apply-patch+yaml``) records an ``Apply`` entry and may conflict.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubetrio import api
from kubetrio.api import managedfields as mf
from kubetrio.api.scheme import ResourceInfo
from kubetrio.handler import Request
from kubetrio.kubeobject import KubeObject

from . import _objects as objects
from ._status import ApiError, invalid
from ._validation import report_unknown_fields

MAX_MANAGER_LENGTH = 128
_STATUS_IGNORED: mf.FieldSet = {"f:status": {".": {}}}


def type_of(info: ResourceInfo) -> mf.Type:
    """The schema type of a resource's objects (built-in table or the CRD's schema)."""
    if info.definition:
        return mf.builtin_type(info.definition)
    if info.schema:
        return mf.crd_type(info.schema)
    return mf.deduced_type()


def _options_invalid(field: str, reason: str, message: str) -> ApiError:
    return invalid(
        "PatchOptions", "meta.k8s.io", "", [{"reason": reason, "message": message, "field": field}]
    )


def manager_of(request: Request, *, required: bool = False) -> str:
    """The field manager of a write: ``fieldManager``, else from the user agent.

    422 (as kube-apiserver's option validation) when an apply names none, or the name
    is longer than 128 characters or not printable.
    """
    name = request.param("fieldManager")
    if not name:
        if required:
            raise _options_invalid(
                "fieldManager", "FieldValueRequired", "Required value: is required for apply patch"
            )
        agent = request.headers.get("user-agent", "").split("/")[0]
        printable = "".join(c for c in agent if c.isprintable())
        return printable.encode()[:MAX_MANAGER_LENGTH].decode(errors="ignore")
    if len(name) > MAX_MANAGER_LENGTH:
        raise _options_invalid(
            "fieldManager",
            "FieldValueTooLong",
            f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes",
        )
    if not name.isprintable():
        raise _options_invalid(
            "fieldManager",
            "FieldValueInvalid",
            f"Invalid value: {json.dumps(name)}: must only contain printable characters",
        )
    return name


def record(
    request: Request,
    info: ResourceInfo,
    live: KubeObject | None,
    new: KubeObject,
    *,
    subresource: str = "",
) -> None:
    """Set ``new``'s managedFields for a create/update/patch (in place)."""
    ignored = _STATUS_IGNORED if not subresource and "status" in info.subresources else None
    mf.record_update(
        live,
        new,
        type_of(info),
        manager=manager_of(request),
        api_version=info.api_version,
        now=objects.now_rfc3339(),
        subresource=subresource,
        ignored=ignored,
    )


def apply(
    request: Request,
    info: ResourceInfo,
    live: KubeObject | None,
    config: KubeObject,
    *,
    subresource: str = "",
) -> KubeObject:
    """The live object (None: none yet) with ``config`` applied; 409 on conflicts.

    On a subresource (``status``) only that field is applied; the rest is ignored.
    """
    metadata = config.get("metadata") or {}
    if metadata.get("managedFields") is not None:
        raise ApiError(400, "metadata.managedFields must be nil")
    manager = manager_of(request, required=True)
    force = request.flag("force")
    try:
        return mf.apply(
            live,
            config,
            type_of(info),
            manager=manager,
            api_version=info.api_version,
            now=objects.now_rfc3339(),
            force=force,
            ignored=_ignored(info, config, subresource),
            subresource=subresource,
        )
    except mf.ConflictError as exc:
        raise ApiError(
            409,
            str(exc),
            reason="Conflict",
            details={
                "causes": [
                    {
                        "reason": "FieldManagerConflict",
                        "message": f"conflict with {who}",
                        "field": path,
                    }
                    for who, path in exc.conflicts
                ]
            },
        ) from exc
    except ValueError as exc:
        raise ApiError(500, f"failed to merge config: {exc}", reason="InternalError") from exc


def _ignored(info: ResourceInfo, config: KubeObject, subresource: str) -> mf.FieldSet | None:
    if subresource:
        return {f"f:{k}": {".": {}} for k in config if k not in (subresource, "metadata")}
    return _STATUS_IGNORED if "status" in info.subresources else None


_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def configuration(
    applied: KubeObject, info: ResourceInfo, field_validation: str, warnings: list[str]
) -> KubeObject:
    """An applied configuration without fields the kind does not have.

    An apply configuration is partial (it names only what its manager owns), so it is
    not decoded through the model, whose required fields it may lack; the merged object
    is, afterwards. Unknown fields are refused (``Strict``), reported or dropped, as
    kube-apiserver's field validation does.
    """
    if info.model is None:
        return applied
    unknown = api.unknown_fields(applied, info.model)
    if not unknown:
        return applied
    report_unknown_fields(unknown, (field_validation or "Warn").capitalize(), warnings)
    for path in unknown:
        _remove_path(applied, path)
    return applied


def _remove_path(obj: Any, path: str) -> None:
    tokens = [name if name else key for name, key in _PATH_TOKEN.findall("." + path)]
    node = obj
    for token in tokens[:-1]:
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return
    if isinstance(node, dict):
        node.pop(tokens[-1], None)


def check_force(request: Request, patch_type: str, apply_type: str) -> None:
    """``force`` is only for apply patches (422 otherwise, as kube-apiserver)."""
    if patch_type != apply_type and request.param("force"):
        raise _options_invalid(
            "force", "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch"
        )
