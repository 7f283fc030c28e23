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

from kubetrio.api.scheme import (
    BUILTIN,
    CustomVersion,
    GroupVersionKind,
    ResourceInfo,
    Scheme,
    SubresourceInfo,
)
from kubetrio.api.structural import has_defaults, kube_version_key
from kubetrio.kubeobject import KubeObject
from kubetrio.providers import ResourceDefinition
from kubetrio.store import StoreError

from . import _objects as objects
from ._registry import Registry
from ._status import ApiError

log = logging.getLogger("kubetrio.apiserver.crds")

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
"""Held by a CRD being deleted until its objects are gone (added by the delete itself)."""

AGE_COLUMN: Mapping[str, Any] = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}
"""The column a CRD version without ``additionalPrinterColumns`` gets (as upstream)."""


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
    custom: CustomVersion | None = None,
) -> ResourceInfo:
    subs: dict[str, SubresourceInfo] = {}
    if "status" in subresources:
        subs["status"] = SubresourceInfo(
            "status", GroupVersionKind(group, version, kind), SUB_VERBS
        )
    if "scale" in subresources:
        subs["scale"] = SubresourceInfo(
            "scale",
            GroupVersionKind("autoscaling", "v1", "Scale"),
            SUB_VERBS,
            model=BUILTIN.type_for(GroupVersionKind("autoscaling", "v1", "Scale")),
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
        custom=custom,
    )


def deprecation_warning(spec: Mapping[str, Any], version: Mapping[str, Any]) -> str:
    """The Warning for requests to a deprecated version: the CRD's own text, else
    upstream's ``<group>/<version> <Kind> is deprecated; use <group>/<newer> <Kind>``."""
    if not version.get("deprecated"):
        return ""
    if version.get("deprecationWarning"):
        return str(version["deprecationWarning"])
    group, kind, name = spec["group"], spec["names"]["kind"], version["name"]
    message = f"{group}/{name} {kind} is deprecated"
    newer = sorted(
        (
            v["name"]
            for v in spec.get("versions") or []
            if v.get("served")
            and not v.get("deprecated")
            and kube_version_key(v["name"]) < kube_version_key(name)
        ),
        key=kube_version_key,
    )
    return f"{message}; use {group}/{newer[0]} {kind}" if newer else message


def infos_of_crd(crd: KubeObject, *, terminating: bool = False) -> list[ResourceInfo]:
    """The resources a CRD serves: one per served version, highest priority first."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    infos = []
    for version in sorted(spec.get("versions") or [], key=lambda v: kube_version_key(v["name"])):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        custom = CustomVersion(
            crd=crd["metadata"]["name"],
            storage=bool(version.get("storage")),
            deprecated=bool(version.get("deprecated")),
            deprecation_warning=deprecation_warning(spec, version),
            printer_columns=tuple(version.get("additionalPrinterColumns") or (AGE_COLUMN,)),
            defaulted=has_defaults((version.get("schema") or {}).get("openAPIV3Schema")),
            scale=subresources.get("scale"),
            terminating=terminating,
        )
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
                subresources=tuple(subresources.keys()),
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                custom=custom,
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
        self.pending: dict[str, KubeObject] = {}
        """CRDs not served because another CRD holds their plural or kind."""
        self.finalizing: set[str] = set()
        """Terminating CRDs whose objects are being deleted."""
        self._nursery: trio.Nursery | None = None

    @property
    def crd_info(self) -> ResourceInfo:
        info = self.scheme.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert info is not None
        return info

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the stored CRDs, then follow their changes until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._follow(task_status)

    async def _follow(self, task_status: trio.TaskStatus[None]) -> None:
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
        terminating = bool(crd["metadata"].get("deletionTimestamp"))
        if terminating and CLEANUP_FINALIZER not in crd["metadata"].get("finalizers", []):
            await self.remove(crd)
            return
        try:
            infos = infos_of_crd(crd, terminating=terminating)
        except (KeyError, TypeError) as exc:
            log.warning("CustomResourceDefinition %s is not servable: %s", name, exc)
            return
        if terminating:
            # Still served for reads and deletes while its objects go, as upstream.
            for old in self.served.get(name, []):
                self.scheme.unregister(old.group, old.version, old.resource)
            for info in infos:
                self.scheme.register(info)
            self.served[name] = infos
            if name not in self.finalizing and self._nursery is not None and infos:
                self.finalizing.add(name)
                self._nursery.start_soon(self._finalize, name, infos[0])
            return
        conflict = self._name_conflict(name, crd)
        if conflict is not None:
            # Not served (its objects stay stored) until the other CRD goes away.
            for old in self.served.pop(name, []):
                self.scheme.unregister(old.group, old.version, old.resource)
            self.pending[name] = crd
            await self._set_status(crd, conflict)
            return
        self.pending.pop(name, None)
        # Unregister first, then register in priority order: the group's preferred
        # version stays the highest served one (all in one step, no await between).
        for old in self.served.get(name, []):
            self.scheme.unregister(old.group, old.version, old.resource)
        for info in infos:
            self.scheme.register(info)
        self.served[name] = infos
        await self._set_status(crd, None)

    def _name_conflict(self, name: str, crd: KubeObject) -> tuple[str, str] | None:
        """``(reason, message)`` when another CRD already serves this plural or kind."""
        spec = crd["spec"]
        names = spec.get("names") or {}
        for other, infos in self.served.items():
            if other == name:
                continue
            for info in infos:
                if info.group != spec["group"]:
                    continue
                if info.resource == names.get("plural"):
                    return "PluralConflict", f'"{info.resource}" is already in use'
                if info.kind == names.get("kind"):
                    return "KindConflict", f'"{info.kind}" is already in use'
        return None

    async def remove(self, crd: KubeObject) -> None:
        """Stop serving a CRD and delete its objects."""
        name = crd["metadata"]["name"]
        self.pending.pop(name, None)
        for info in self.served.pop(name, []):
            self.scheme.unregister(info.group, info.version, info.resource)
            prefix = self.registry.prefix(info)
            page = await self.registry.store.list(prefix)
            for kv in page.kvs:
                with contextlib.suppress(StoreError):  # deleted meanwhile
                    await self.registry.store.delete(kv.key)
        # A CRD refused for a name this one held may be served now.
        for waiting in list(self.pending.values()):
            await self.apply(waiting)

    async def _finalize(self, name: str, info: ResourceInfo) -> None:
        """Delete a terminating CRD's objects (their finalizers honoured), then drop the
        cleanup finalizer so the CRD itself goes."""
        try:
            await self._set_terminating(name)
            while True:
                page = await self.registry.list(info, "")
                for raw in page.items:
                    meta = objects.decode(raw)["metadata"]
                    if meta.get("deletionTimestamp"):
                        continue  # waiting for its own finalizers
                    with contextlib.suppress(ApiError):  # gone meanwhile
                        await self.registry.delete(
                            info, meta.get("namespace", ""), meta["name"], options={}
                        )
                if not (await self.registry.list(info, "", limit=1)).items:
                    break
                await trio.sleep(1)

            async def release(current: KubeObject) -> KubeObject:
                finalizers = current["metadata"].get("finalizers") or []
                current["metadata"]["finalizers"] = [
                    f for f in finalizers if f != CLEANUP_FINALIZER
                ]
                current["metadata"].pop("resourceVersion", None)
                return current

            with contextlib.suppress(ApiError):  # another API server finished first
                await self.registry.update(
                    self.crd_info, "", name, release, precondition_from_body=False
                )
        except Exception:
            log.exception("deleting the objects of CustomResourceDefinition %s failed", name)
        finally:
            self.finalizing.discard(name)

    async def _set_terminating(self, name: str) -> None:
        async def mark(current: KubeObject) -> KubeObject:
            status = current.setdefault("status", {})
            conditions = [
                c for c in status.get("conditions") or [] if c.get("type") != "Terminating"
            ]
            conditions.append(
                {
                    "type": "Terminating",
                    "status": "True",
                    "reason": "InstanceDeletionInProgress",
                    "message": "CustomResource deletion is in progress",
                    "lastTransitionTime": objects.now_rfc3339(),
                }
            )
            status["conditions"] = conditions
            current["metadata"].pop("resourceVersion", None)
            return current

        with contextlib.suppress(ApiError):
            await self.registry.update(self.crd_info, "", name, mark, precondition_from_body=False)

    async def _set_status(self, crd: KubeObject, conflict: tuple[str, str] | None) -> None:
        """``acceptedNames``, ``storedVersions`` and the NamesAccepted / Established
        conditions, as apiextensions-apiserver's controllers keep them."""
        status = crd.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        stored = list(status.get("storedVersions") or [])
        stored += [v for v in storage if v not in stored]
        if conflict is None:
            wanted = {
                "NamesAccepted": ("True", "NoConflicts", "no conflicts found"),
                "Established": (
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            }
        else:
            reason, message = conflict
            wanted = {
                "NamesAccepted": ("False", reason, message),
                "Established": ("False", "NotAccepted", "not all names are accepted"),
            }
        accepted = names if conflict is None else status.get("acceptedNames") or {}
        unchanged = (
            status.get("acceptedNames") == accepted
            and status.get("storedVersions") == stored
            and all(
                (conditions.get(t) or {}).get("status") == v[0]
                and (conditions.get(t) or {}).get("reason") == v[1]
                for t, v in wanted.items()
            )
        )
        if unchanged:
            return

        async def update(current: KubeObject) -> KubeObject:
            now = objects.now_rfc3339()
            old = {c.get("type"): c for c in (current.get("status") or {}).get("conditions") or []}
            new_conditions = []
            for kind, (state, reason, message) in wanted.items():
                since = (old.get(kind) or {}).get("lastTransitionTime")
                if (old.get(kind) or {}).get("status") != state or not since:
                    since = now
                new_conditions.append(
                    {
                        "type": kind,
                        "status": state,
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": since,
                    }
                )
            current_stored = list((current.get("status") or {}).get("storedVersions") or [])
            current_stored += [v for v in stored if v not in current_stored]
            current["status"] = {
                "acceptedNames": accepted,
                "storedVersions": current_stored,
                "conditions": new_conditions,
            }
            current["metadata"].pop("resourceVersion", None)
            return current

        try:
            await self.registry.update(
                self.crd_info, "", crd["metadata"]["name"], update, precondition_from_body=False
            )
        except ApiError as exc:
            if exc.code != 404:
                raise


# --- the scale subresource ------------------------------------------------------------


def _path_steps(json_path: str) -> list[str]:
    """``.spec.replicas`` → ``["spec", "replicas"]`` (CRDs allow only such simple paths)."""
    return [step for step in json_path.split(".") if step]


def _nested(obj: Any, json_path: str) -> Any:
    for step in _path_steps(json_path):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def custom_scale(info: ResourceInfo, obj: KubeObject) -> KubeObject:
    """The ``autoscaling/v1`` Scale of a custom resource, read through the CRD's
    ``specReplicasPath``, ``statusReplicasPath`` and ``labelSelectorPath`` (absent
    replicas read as 0, as upstream)."""
    paths = (info.custom.scale if info.custom else None) or {}
    spec = _nested(obj, paths.get("specReplicasPath", ".spec.replicas"))
    status = _nested(obj, paths.get("statusReplicasPath", ".status.replicas"))
    selector = _nested(obj, paths["labelSelectorPath"]) if paths.get("labelSelectorPath") else None
    return objects.scale_view(
        obj,
        replicas=spec if isinstance(spec, int) else 0,
        status_replicas=status if isinstance(status, int) else 0,
        selector=selector if isinstance(selector, str) else "",
    )


def set_custom_replicas(info: ResourceInfo, obj: KubeObject, replicas: int) -> None:
    """Write a Scale's ``spec.replicas`` to the custom resource's ``specReplicasPath``."""
    paths = (info.custom.scale if info.custom else None) or {}
    steps = _path_steps(paths.get("specReplicasPath", ".spec.replicas"))
    node = obj
    for step in steps[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[steps[-1]] = replicas


async def add_cleanup_finalizer(registry: Registry, info: ResourceInfo, name: str) -> None:
    """Before a CRD is deleted: hold it with the cleanup finalizer so it stays, Terminating,
    until its objects are deleted (kube-apiserver's CRD storage does this on delete)."""

    async def hold(current: KubeObject) -> KubeObject:
        finalizers = current["metadata"].setdefault("finalizers", [])
        if CLEANUP_FINALIZER not in finalizers and not current["metadata"].get("deletionTimestamp"):
            finalizers.append(CLEANUP_FINALIZER)
        current["metadata"].pop("resourceVersion", None)
        return current

    await registry.update(info, "", name, hold, precondition_from_body=False)


def refuse_create_while_terminating(info: ResourceInfo) -> None:
    """Creating objects of a terminating CRD is refused (405), as upstream."""
    if info.custom is not None and info.custom.terminating:
        raise ApiError(
            405,
            "create not allowed while custom resource definition is terminating",
            reason="MethodNotAllowed",
        )
