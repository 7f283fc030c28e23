"""Custom resources: CustomResourceDefinitions and plugins' kinds, served like built-ins.

A CRD is an ordinary object until this module sees it: it watches the stored CRDs and,
for each served version, registers a resource in the scheme (discovery, REST paths,
tables and OpenAPI pick it up at once), then marks the CRD ``NamesAccepted`` and
``Established`` so ``kubectl wait --for condition=established`` returns. Deleting a CRD
unregisters it and deletes its objects. Every API server of a cluster runs this loop,
so all of them serve the same kinds.

Plugins' kinds (``kubetrio_register_resources``) are registered at start-up the same way.
Custom objects have no generated model: they are checked against their schema's types,
enums and required fields (:func:`kubetrio.api.validation.schema_errors`, 422 naming each
field) and stored as sent — fields the schema does not name are kept, not pruned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

import trio

from kubetrio.api.scheme import GroupVersionKind, ResourceInfo, Scheme, SubresourceInfo
from kubetrio.providers import ResourceDefinition
from kubetrio.store import StoreError

from . import _objects as objects
from ._registry import Registry
from ._status import ApiError

log = logging.getLogger("kubetrio.apiserver.crds")

KubeObject = dict[str, Any]
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


def _info(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    singular: str,
    short_names: tuple[str, ...],
    categories: tuple[str, ...],
    subresources: tuple[str, ...],
    schema: Mapping[str, Any] | None,
) -> ResourceInfo:
    subs: dict[str, SubresourceInfo] = {}
    if "status" in subresources:
        subs["status"] = SubresourceInfo(
            "status", GroupVersionKind(group, version, kind), SUB_VERBS
        )
    if "scale" in subresources:
        subs["scale"] = SubresourceInfo(
            "scale", GroupVersionKind("autoscaling", "v1", "Scale"), SUB_VERBS
        )
    return ResourceInfo(
        group=group,
        version=version,
        resource=plural,
        kind=kind,
        namespaced=namespaced,
        verbs=VERBS,
        singular=singular or kind.lower(),
        short_names=short_names,
        categories=categories,
        subresources=subs,
        schema=schema,
    )


def infos_of_crd(crd: KubeObject) -> list[ResourceInfo]:
    """The resources a CRD serves: one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    infos = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = tuple((version.get("subresources") or {}).keys())
        infos.append(
            _info(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", ""),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            )
        )
    return infos


def info_of_definition(definition: ResourceDefinition) -> ResourceInfo:
    """The resource a plugin's :class:`ResourceDefinition` serves."""
    return _info(
        definition.group,
        definition.version,
        definition.plural,
        definition.kind,
        namespaced=definition.namespaced,
        singular=definition.kind.lower(),
        short_names=definition.short_names,
        categories=definition.categories,
        subresources=tuple(definition.subresources),
        schema=definition.schema,
    )


class CustomResources:
    """Keeps the scheme in step with the stored CRDs (see the module docstring)."""

    def __init__(self, registry: Registry, scheme: Scheme) -> None:
        self.registry = registry
        self.scheme = scheme
        self.served: dict[str, list[ResourceInfo]] = {}
        """CRD name -> the resources registered for it."""

    @property
    def crd_info(self) -> ResourceInfo:
        info = self.scheme.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert info is not None
        return info

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the stored CRDs, then follow their changes until cancelled."""
        page = await self.registry.list(self.crd_info, "")
        for raw in page.items:
            await self.apply(objects.decode(raw))
        task_status.started()
        resource_version = str(page.revision)
        while True:
            try:
                async with aclosing(
                    self.registry.watch(self.crd_info, "", resource_version=resource_version)
                ) as events:
                    async for event in events:
                        resource_version = str(event.revision)
                        if event.type == "ERROR":
                            break
                        crd = objects.decode(event.object)
                        if event.type == "DELETED":
                            await self.remove(crd)
                        else:
                            await self.apply(crd)
            except Exception:
                log.exception("following CustomResourceDefinitions failed; retrying")
            await trio.sleep(1)
            resource_version = str(await self.registry.current_revision())

    async def apply(self, crd: KubeObject) -> None:
        """Serve (or re-serve) a CRD's versions and mark it established."""
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            await self.remove(crd)
            return
        try:
            infos = infos_of_crd(crd)
        except (KeyError, TypeError) as exc:
            log.warning("CustomResourceDefinition %s is not servable: %s", name, exc)
            return
        for old in self.served.get(name, []):
            if (old.group, old.version, old.resource) not in {
                (i.group, i.version, i.resource) for i in infos
            }:
                self.scheme.unregister(old.group, old.version, old.resource)
        for info in infos:
            self.scheme.register(info)
        self.served[name] = infos
        await self._mark_established(crd)

    async def remove(self, crd: KubeObject) -> None:
        """Stop serving a CRD and delete its objects."""
        name = crd["metadata"]["name"]
        for info in self.served.pop(name, []):
            self.scheme.unregister(info.group, info.version, info.resource)
            prefix = self.registry.prefix(info)
            page = await self.registry.store.list(prefix)
            for kv in page.kvs:
                with contextlib.suppress(StoreError):  # deleted meanwhile
                    await self.registry.store.delete(kv.key)

    async def _mark_established(self, crd: KubeObject) -> None:
        status = crd.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        names = (crd.get("spec") or {}).get("names") or {}
        if conditions.get("Established") == "True" and status.get("acceptedNames") == names:
            return

        async def establish(current: KubeObject) -> KubeObject:
            now = objects.now_rfc3339()
            current["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v["name"] for v in current["spec"].get("versions") or [] if v.get("storage")
                ],
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "message": "no conflicts found",
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "the initial names have been accepted",
                        "lastTransitionTime": now,
                    },
                ],
            }
            current["metadata"].pop("resourceVersion", None)
            return current

        try:
            await self.registry.update(
                self.crd_info, "", crd["metadata"]["name"], establish, precondition_from_body=False
            )
        except ApiError as exc:
            if exc.code != 404:
                raise
