"""OpenAPI v3 documents generated from the served models, for ``kubectl explain`` and validation.

kubectl 1.29+ reads ``GET /openapi/v3`` (a map of ``api/v1``, ``apis/<group>/<version>`` to
``serverRelativeURL``), then the document of one group/version. Two things in it matter:

- ``kubectl explain`` finds the kind of a resource from the ``x-kubernetes-group-version-kind``
  of an operation on the resource's path, then the schema carrying that GVK in
  ``components.schemas``, and walks ``properties`` / ``items`` / ``additionalProperties`` /
  ``allOf`` and ``$ref`` down the field path.
- kubectl's field-validation check (cli-runtime ``supportsQueryParamV3``) looks for the *first*
  PATCH operation carrying the GVK and asks whether it lists an inline ``fieldValidation``
  query parameter. If so, kubectl leaves validation to the server (which answers 400
  ``strict decoding error`` for unknown fields). So every PATCH operation of a body-carrying
  kind lists it.
- kubectl apply (client-side) computes its strategic merge patch from the schemas'
  ``x-kubernetes-patch-merge-key`` / ``-strategy`` when the kind's PATCH operation accepts
  ``application/strategic-merge-patch+json``, so those extensions must be right; custom
  resources do not offer that type and get a JSON merge patch, as upstream.

Everything is derived from our own msgspec models through :mod:`msgspec.inspect` and the
generated field-metadata table; nothing is copied from upstream documents, and there is no
description prose. We walk the inspected types ourselves rather than post-process
``msgspec.json.schema_components``: that one names schemas by class name (``EndpointPort``
exists in two groups), wraps every optional field in ``anyOf [T, null]`` and cannot say
int-or-string, so rewriting its output would be more code than this walk.

Scalars get the Kubernetes forms: ``Time`` and ``MicroTime`` are ``string``/``date-time``,
``IntOrString`` (``int | str`` in the models) is ``int-or-string`` with
``x-kubernetes-int-or-string``, ``Quantity`` is ``oneOf string, number`` — each as its own
named component, as upstream documents have them, so explain prints ``<IntOrString>``.

Documents are built lazily, once per group/version, and kept encoded with a content hash
(the ``?hash=`` of ``serverRelativeURL`` and the ETag). A cache entry is keyed by a cheap
fingerprint of the group/version's resources, so custom resources registered later in the
scheme show up without a restart.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import msgspec
from msgspec import inspect as mi

from kubetrio.api import FieldMeta, MicroTime, Quantity, Time
from kubetrio.api.generated.fieldmeta import ATOMIC_DEFINITIONS, FIELDS
from kubetrio.api.generated.registry import DEFINITIONS, KINDS
from kubetrio.api.model import KubeStruct
from kubetrio.api.scheme import ResourceInfo, Scheme, SubresourceInfo
from kubetrio.handler import Request, Response

from ._status import ApiError

__all__ = ["EncodedDocument", "OpenAPIDocuments", "documents_of", "serve_openapi_v3"]

Schema = dict[str, Any]

REF_PREFIX = "#/components/schemas/"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"

# Named scalar components, in the forms Kubernetes publishes them.
SCALARS: Mapping[str, Schema] = {
    TIME: {"type": "string", "format": "date-time"},
    MICRO_TIME: {"type": "string", "format": "date-time"},
    QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
    INT_OR_STRING: {
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
    # The body of a PATCH is any of the four patch documents.
    PATCH: {"type": "object"},
}
CUSTOM_SCALARS: Mapping[type, str] = {Time: TIME, MicroTime: MICRO_TIME, Quantity: QUANTITY}

# Free-form JSON (RawExtension, apiextensions JSON): any value, kept as is.
ANY_VALUE: Schema = {"x-kubernetes-preserve-unknown-fields": True}

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_CONTENT_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    STRATEGIC_MERGE_PATCH,
    "application/apply-patch+yaml",
)
# Subresources that stream text or upgrade the connection rather than hold an object.
STREAMING_SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward", "proxy"})


def _query(name: str, type_: str) -> Schema:
    return {"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": True}}


def _path_param(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


PRETTY = [_query("pretty", "string")]
LIST_PARAMS = [
    _query("allowWatchBookmarks", "boolean"),
    _query("continue", "string"),
    _query("fieldSelector", "string"),
    _query("labelSelector", "string"),
    _query("limit", "integer"),
    _query("resourceVersion", "string"),
    _query("resourceVersionMatch", "string"),
    _query("sendInitialEvents", "boolean"),
    _query("timeoutSeconds", "integer"),
    _query("watch", "boolean"),
]
WRITE_PARAMS = [
    _query("dryRun", "string"),
    _query("fieldManager", "string"),
    _query("fieldValidation", "string"),
]
PATCH_PARAMS = [*WRITE_PARAMS, _query("force", "boolean")]
DELETE_PARAMS = [
    _query("dryRun", "string"),
    _query("gracePeriodSeconds", "integer"),
    _query("propagationPolicy", "string"),
]


def _ref(name: str) -> Schema:
    return {"$ref": REF_PREFIX + name}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def gv_path(group: str, version: str) -> str:
    """The key of a group/version in ``/openapi/v3``: ``api/v1`` or ``apis/apps/v1``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


@dataclass(frozen=True, slots=True)
class EncodedDocument:
    """One group/version's OpenAPI document as served: JSON bytes and their hash."""

    body: bytes
    hash: str
    """Upper-case hex SHA-512 of ``body``; the ``?hash=`` and the ETag."""
    build_seconds: float
    """How long building and encoding took (for the record)."""


@dataclass(frozen=True, slots=True)
class _StructSchema:
    name: str
    schema: Schema
    refs: frozenset[str]


class _SchemaBuilder:
    """Turns msgspec-inspected model types into named OpenAPI schemas, memoised per class."""

    def __init__(self) -> None:
        self._names: dict[type, str] = {cls: name for name, cls in DEFINITIONS.items()}
        self._structs: dict[type, _StructSchema] = {}
        self._by_name: dict[str, _StructSchema] = {}
        # Extra GVKs (custom or plugin kinds) on top of the generated KINDS table.
        self._gvks: dict[str, list[dict[str, str]]] = {}
        for (group, version, kind), name in sorted(KINDS.items()):
            self._gvks.setdefault(name, []).append(_gvk(group, version, kind))

    def name_of(self, cls: type) -> str:
        """The schema name of a model: its swagger id, else its Python path."""
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = f"{cls.__module__}.{cls.__qualname__}"
        return name

    def add_gvk(self, name: str, group: str, version: str, kind: str) -> None:
        """Record that schema ``name`` is the body of ``group/version kind``."""
        entries = self._gvks.setdefault(name, [])
        entry = _gvk(group, version, kind)
        if entry not in entries:
            entries.append(entry)
        # Schemas hold the shared list, so only one built before its first GVK needs it.
        built = self._by_name.get(name)
        if built is not None:
            built.schema["x-kubernetes-group-version-kind"] = entries

    def models(self, classes: Iterable[type[KubeStruct]]) -> list[str]:
        """Build (or reuse) the schemas of ``classes`` and what they reach; their names."""
        wanted = list(dict.fromkeys(classes))
        missing = [c for c in wanted if c not in self._structs]
        if missing:
            if not self._structs:
                # Inspecting one model walks everything it reaches (ObjectMeta, PodSpec
                # ...) again; one pass over all generated models is cheaper than many.
                missing = list(dict.fromkeys([*missing, *DEFINITIONS.values()]))
            for info in mi.multi_type_info(missing):
                self._type(info, set())
        return [self.name_of(c) for c in wanted]

    def closure(self, roots: Iterable[str]) -> dict[str, Schema]:
        """The named schemas ``roots`` refer to, transitively, including themselves."""
        out: dict[str, Schema] = {}
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name in out:
                continue
            if name in SCALARS:
                out[name] = SCALARS[name]
                continue
            built = self._by_name.get(name)
            if built is None:
                continue
            out[name] = built.schema
            todo.extend(built.refs)
        return out

    def custom(self, name: str, schema: Mapping[str, Any], list_name: str) -> None:
        """A custom resource's kind from its CRD schema (rebuilt each time: the CRD may
        have changed), and its list kind, as apiextensions-apiserver publishes them."""
        self.models([DEFINITIONS[OBJECT_META], DEFINITIONS[LIST_META]])
        body = _custom_schema(schema, root=True)
        if name in self._gvks:
            body["x-kubernetes-group-version-kind"] = self._gvks[name]
        self._by_name[name] = _StructSchema(name, body, frozenset({OBJECT_META}))
        listed: Schema = {
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "items": {"type": "array", "items": _ref(name)},
                "kind": {"type": "string"},
                "metadata": {"allOf": [_ref(LIST_META)]},
            },
        }
        if list_name in self._gvks:
            listed["x-kubernetes-group-version-kind"] = self._gvks[list_name]
        self._by_name[list_name] = _StructSchema(list_name, listed, frozenset({name, LIST_META}))

    def free_form(self, name: str) -> None:
        """A kind without a model (a custom resource): apiVersion, kind, metadata, anything."""
        if name in self._by_name:
            return
        self.models([DEFINITIONS[OBJECT_META]])
        schema: Schema = {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": _ref(OBJECT_META),
            },
            "x-kubernetes-preserve-unknown-fields": True,
        }
        if name in self._gvks:
            schema["x-kubernetes-group-version-kind"] = self._gvks[name]
        self._by_name[name] = _StructSchema(name, schema, frozenset({OBJECT_META}))

    # ---- type translation -------------------------------------------------------------

    def _type(self, t: mi.Type, refs: set[str]) -> Schema:
        if isinstance(t, mi.UnionType):
            members = [m for m in t.types if not isinstance(m, mi.NoneType)]
            kinds = {type(m) for m in members}
            if kinds == {mi.IntType, mi.StrType}:
                refs.add(INT_OR_STRING)
                return _ref(INT_OR_STRING)
            if len(members) == 1:
                return self._type(members[0], refs)
            return {"anyOf": [self._type(m, refs) for m in members]}
        if isinstance(t, mi.StructType):
            built = self._struct(t)
            refs.add(built.name)
            return _ref(built.name)
        if isinstance(t, mi.CustomType):
            scalar = next((n for c, n in CUSTOM_SCALARS.items() if issubclass(t.cls, c)), None)
            if scalar is None:
                return {"type": "string"}
            refs.add(scalar)
            return _ref(scalar)
        if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            return {"type": "array", "items": self._type(t.item_type, refs)}
        if isinstance(t, mi.DictType):
            if isinstance(t.value_type, mi.AnyType):
                return {"type": "object", **ANY_VALUE}
            return {"type": "object", "additionalProperties": self._type(t.value_type, refs)}
        if isinstance(t, mi.LiteralType):
            values = list(t.values)
            return {"type": _json_type(values[0]), "enum": values} if values else {}
        if isinstance(t, mi.EnumType):
            values = [m.value for m in t.cls]
            return {"type": _json_type(values[0]), "enum": values} if values else {}
        simple = {
            mi.StrType: {"type": "string"},
            mi.IntType: {"type": "integer"},
            mi.FloatType: {"type": "number", "format": "double"},
            mi.BoolType: {"type": "boolean"},
            mi.BytesType: {"type": "string", "format": "byte"},
            mi.DateTimeType: {"type": "string", "format": "date-time"},
        }.get(type(t))
        if simple is not None:
            return dict(simple)
        return dict(ANY_VALUE)

    def _struct(self, t: mi.StructType) -> _StructSchema:
        found = self._structs.get(t.cls)
        if found is not None:
            return found
        name = self.name_of(t.cls)
        schema: Schema = {"type": "object"}
        refs: set[str] = set()
        # Register before descending: models are recursive (JSONSchemaProps).
        built = self._structs[t.cls] = self._by_name[name] = _StructSchema(
            name, schema, frozenset()
        )
        meta = FIELDS.get(name, {})
        properties: dict[str, Schema] = {}
        for f in t.fields:
            prop = self._type(f.type, refs)
            extra = _field_extensions(meta.get(f.encode_name))
            if extra:
                prop = {"allOf": [prop], **extra} if "$ref" in prop else {**prop, **extra}
            properties[f.encode_name] = prop
        schema["properties"] = dict(sorted(properties.items()))
        required = sorted(f.encode_name for f in t.fields if f.required)
        if required:
            schema["required"] = required
        if name in ATOMIC_DEFINITIONS:
            schema["x-kubernetes-map-type"] = "atomic"
        if name in self._gvks:
            schema["x-kubernetes-group-version-kind"] = self._gvks[name]
        built = _StructSchema(name, schema, frozenset(refs))
        self._structs[t.cls] = self._by_name[name] = built
        return built


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _field_extensions(meta: FieldMeta | None) -> Schema:
    if meta is None:
        return {}
    out: Schema = {}
    if meta.merge_key:
        out["x-kubernetes-patch-merge-key"] = meta.merge_key
    if meta.patch_strategy:
        out["x-kubernetes-patch-strategy"] = ",".join(meta.patch_strategy)
    if meta.list_type:
        out["x-kubernetes-list-type"] = meta.list_type
    if meta.list_map_keys:
        out["x-kubernetes-list-map-keys"] = list(meta.list_map_keys)
    if meta.map_type:
        out["x-kubernetes-map-type"] = meta.map_type
    return out


def _custom_schema(schema: Mapping[str, Any], *, root: bool = False) -> Schema:
    """A CRD schema node as published: ``apiVersion``, ``kind`` and ``metadata``
    (ObjectMeta) at the root and in embedded resources, the rest as the CRD says."""
    out: Schema = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {k: _custom_schema(v) for k, v in properties.items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            out[key] = _custom_schema(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            out[key] = [_custom_schema(s) if isinstance(s, Mapping) else s for s in schema[key]]
    if isinstance(schema.get("not"), Mapping):
        out["not"] = _custom_schema(schema["not"])
    if root or schema.get("x-kubernetes-embedded-resource"):
        props = dict(out.get("properties") or {})
        props["apiVersion"] = {"type": "string"}
        props["kind"] = {"type": "string"}
        props["metadata"] = {"allOf": [_ref(OBJECT_META)]}
        out["properties"] = dict(sorted(props.items()))
        out["type"] = "object"
    return out


def _custom_definition(group: str, version: str, kind: str) -> str:
    # Upstream's naming for custom resources: reversed group, version, kind.
    return ".".join([*reversed(group.split(".")), version, kind]) if group else f"{version}.{kind}"


def _response(code: str, schema: Schema) -> Schema:
    return {
        code: {"description": _REASON[code], "content": {"application/json": {"schema": schema}}}
    }


_REASON = {"200": "OK", "201": "Created", "202": "Accepted"}


class _DocumentBuilder:
    """Assembles one group/version document from the scheme's resources."""

    def __init__(self, schemas: _SchemaBuilder, group: str, version: str) -> None:
        self.schemas = schemas
        self.group = group
        self.version = version
        self.prefix = "/" + gv_path(group, version)
        self.paths: dict[str, Schema] = {}
        self.roots: set[str] = {STATUS, DELETE_OPTIONS, PATCH}

    def kind_schema(
        self, model: type[KubeStruct] | None, group: str, version: str, kind: str
    ) -> str:
        """The schema name of a kind's body, annotated with its GVK."""
        if model is None:
            name = KINDS.get((group, version, kind)) or _custom_definition(group, version, kind)
            if name in DEFINITIONS:
                model = DEFINITIONS[name]
        if model is None:
            self.schemas.add_gvk(name, group, version, kind)
            self.schemas.free_form(name)
        else:
            name = self.schemas.name_of(model)
            self.schemas.add_gvk(name, group, version, kind)
            self.schemas.models([model])
        self.roots.add(name)
        return name

    def resource(self, info: ResourceInfo) -> None:
        """Paths and operations of one resource and its subresources."""
        gvk = _gvk(info.group, info.version, info.kind)
        list_body = None
        if info.model is None and info.schema is not None:
            body = _custom_definition(info.group, info.version, info.kind)
            list_body = _custom_definition(info.group, info.version, info.list_kind)
            self.schemas.add_gvk(body, info.group, info.version, info.kind)
            self.schemas.add_gvk(list_body, info.group, info.version, info.list_kind)
            self.schemas.custom(body, info.schema, list_body)
            self.roots.update((body, list_body))
        else:
            body = self.kind_schema(info.model, info.group, info.version, info.kind)
            if info.has_verb("list"):
                list_body = self.kind_schema(
                    info.list_model, info.group, info.version, info.list_kind
                )
        scope = "/namespaces/{namespace}" if info.namespaced else ""
        base = f"{self.prefix}{scope}/{info.resource}"
        scope_params = [_path_param("namespace")] if info.namespaced else []
        name_params = [*scope_params, _path_param("name")]

        collection: Schema = {}
        if list_body is not None:
            collection["get"] = _op("list", gvk, LIST_PARAMS, _response("200", _ref(list_body)))
        if info.has_verb("create"):
            collection["post"] = _op(
                "post", gvk, WRITE_PARAMS, _created(_ref(body)), request=_ref(body)
            )
        if info.has_verb("deletecollection"):
            collection["delete"] = _op(
                "deletecollection",
                gvk,
                [*LIST_PARAMS, *DELETE_PARAMS],
                _response("200", _ref(STATUS)),
                request=_ref(DELETE_OPTIONS),
            )
        self._add(base, collection, scope_params)

        item: Schema = {}
        if info.has_verb("get"):
            item["get"] = _op("get", gvk, [], _response("200", _ref(body)))
        if info.has_verb("update"):
            item["put"] = _op("put", gvk, WRITE_PARAMS, _created(_ref(body)), request=_ref(body))
        # Strategic merge needs Go struct tags on the server; custom resources lack them,
        # and kubectl then computes a JSON merge patch instead.
        strategic = body in DEFINITIONS
        if info.has_verb("patch"):
            item["patch"] = _patch_op(gvk, _ref(body), strategic=strategic)
        if info.has_verb("delete"):
            item["delete"] = _op(
                "delete",
                gvk,
                DELETE_PARAMS,
                {**_response("200", _ref(STATUS)), **_response("202", _ref(STATUS))},
                request=_ref(DELETE_OPTIONS),
            )
        self._add(f"{base}/{{name}}", item, name_params)

        if info.namespaced and list_body is not None:
            every_ns = {"get": _op("list", gvk, LIST_PARAMS, _response("200", _ref(list_body)))}
            self._add(f"{self.prefix}/{info.resource}", every_ns, [])

        for sub in sorted(info.subresources.values(), key=lambda s: s.name):
            own_kind = sub.kind == info.gvk and sub.model is None  # a custom /status
            self._subresource(
                f"{base}/{{name}}/{sub.name}",
                sub,
                name_params,
                strategic=strategic,
                body=body if own_kind else None,
            )

    def _subresource(
        self,
        path: str,
        sub: SubresourceInfo,
        params: list[Schema],
        *,
        strategic: bool,
        body: str | None = None,
    ) -> None:
        gvk = _gvk(sub.kind.group, sub.kind.version, sub.kind.kind)
        ops: Schema = {}
        if body is None and (sub.name in STREAMING_SUBRESOURCES or sub.model is None):
            text = {
                "200": {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}}
            }
            action = "get" if sub.name == "log" else "connect"
            for verb in sub.verbs:
                method = _SUB_METHOD.get(verb)
                if method is not None:
                    ops[method] = _op(action, gvk, [], text)
            self._add(path, ops, params)
            return
        if body is None:
            body = self.kind_schema(sub.model, sub.kind.group, sub.kind.version, sub.kind.kind)
        if "get" in sub.verbs:
            ops["get"] = _op("get", gvk, [], _response("200", _ref(body)))
        if "update" in sub.verbs:
            ops["put"] = _op("put", gvk, WRITE_PARAMS, _created(_ref(body)), request=_ref(body))
        if "patch" in sub.verbs:
            ops["patch"] = _patch_op(gvk, _ref(body), strategic=strategic)
        if "create" in sub.verbs:
            ops["post"] = _op("post", gvk, WRITE_PARAMS, _created(_ref(body)), request=_ref(body))
        self._add(path, ops, params)

    def _add(self, path: str, ops: Schema, params: list[Schema]) -> None:
        if not ops:
            return
        if params:
            ops["parameters"] = params
        self.paths[path] = ops

    def document(self, info_version: str) -> Schema:
        """The finished OpenAPI 3.0 document."""
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": info_version},
            "paths": self.paths,
            "components": {"schemas": self.schemas.closure(self.roots)},
        }


_SUB_METHOD = {
    "get": "get",
    "create": "post",
    "update": "put",
    "patch": "patch",
    "delete": "delete",
}


def _op(
    action: str,
    gvk: dict[str, str],
    params: list[Schema],
    responses: Schema,
    *,
    request: Schema | None = None,
) -> Schema:
    op: Schema = {
        "parameters": [*params, *PRETTY],
        "responses": responses,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if request is not None:
        op["requestBody"] = {"content": {"*/*": {"schema": request}}, "required": True}
    return op


def _patch_op(gvk: dict[str, str], body: Schema, *, strategic: bool) -> Schema:
    # fieldValidation is inline here: kubectl only looks at the operation's own list.
    op = _op("patch", gvk, PATCH_PARAMS, _created(body))
    # kubectl 1.27+ computes apply's strategic merge patch from these schemas' patch
    # extensions when the PATCH operation of the kind accepts that content type.
    media_types = [m for m in PATCH_CONTENT_TYPES if strategic or m != STRATEGIC_MERGE_PATCH]
    op["requestBody"] = {
        "content": {media: {"schema": _ref(PATCH)} for media in media_types},
        "required": True,
    }
    return op


def _created(body: Schema) -> Schema:
    return {**_response("200", body), **_response("201", body)}


def _fingerprint(resources: list[ResourceInfo]) -> tuple[object, ...]:
    # Identity of what the document is built from; recomputed on every request (cheap).
    return tuple(
        (
            i.resource,
            i.kind,
            i.namespaced,
            i.verbs,
            i.schema,  # a changed CRD schema (compared by value) makes a new document
            i.custom,
            id(i.model),
            id(i.list_model),
            tuple(
                (s.name, s.kind, s.verbs, id(s.model))
                for s in sorted(i.subresources.values(), key=lambda s: s.name)
            ),
        )
        for i in resources
    )


class OpenAPIDocuments:
    """The OpenAPI v3 documents of a scheme, built lazily per group/version and cached.

    :param scheme: the served resources; read on every request, so resources registered
        later (custom resources) appear in the next answer.
    :param version: ``info.version`` of the documents (``v1.31.0``).
    """

    def __init__(self, scheme: Scheme, *, version: str = "") -> None:
        self.scheme = scheme
        self.version = version
        self._schemas = _SchemaBuilder()
        self._cache: dict[tuple[str, str], tuple[tuple[object, ...], EncodedDocument]] = {}

    def group_versions(self) -> list[tuple[str, str]]:
        """Every served group/version, in discovery order."""
        return [(g, v) for g, versions in self.scheme.groups() for v in versions]

    def document(self, group: str, version: str) -> EncodedDocument | None:
        """The encoded document of one group/version, or None when it is not served."""
        resources = self.scheme.resources(group, version)
        if not resources:
            return None
        fingerprint = _fingerprint(resources)
        cached = self._cache.get((group, version))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        started = time.perf_counter()
        builder = _DocumentBuilder(self._schemas, group, version)
        for info in resources:
            builder.resource(info)
        body = msgspec.json.encode(builder.document(self.version), order="sorted")
        encoded = EncodedDocument(
            body=body,
            hash=hashlib.sha512(body).hexdigest().upper(),
            build_seconds=time.perf_counter() - started,
        )
        self._cache[(group, version)] = (fingerprint, encoded)
        return encoded

    def parsed(self, group: str, version: str) -> Schema | None:
        """The document of one group/version as a dict (for tests and tools)."""
        doc = self.document(group, version)
        return None if doc is None else msgspec.json.decode(doc.body)

    def root(self) -> bytes:
        """``GET /openapi/v3``: where each group/version's document is, with its hash."""
        paths: dict[str, dict[str, str]] = {}
        for group, version in self.group_versions():
            doc = self.document(group, version)
            if doc is not None:
                key = gv_path(group, version)
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={doc.hash}"}
        return msgspec.json.encode({"paths": paths})

    def respond(self, request: Request, path: str) -> Response:
        """Answer ``/openapi/v3`` or ``/openapi/v3/<api/v1|apis/g/v>``; 404 otherwise.

        With ``?hash=`` equal to the document's hash the answer may be cached for good
        (``public, immutable``), as kube-apiserver allows; any other value is still
        answered with the current document, just not marked immutable.
        """
        if request.method not in ("GET", "HEAD"):
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if path == "/openapi/v3":
            return Response(body=self.root(), headers=[("cache-control", "no-cache, private")])
        parts = path.removeprefix("/openapi/v3/").split("/")
        found: EncodedDocument | None = None
        if len(parts) == 2 and parts[0] == "api":
            found = self.document("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            found = self.document(parts[1], parts[2])
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        etag = f'"{found.hash}"'
        headers = [("etag", etag)]
        if request.param("hash") == found.hash:
            expires = formatdate(time.time() + 365 * 86400, usegmt=True)
            headers += [("cache-control", "public, immutable"), ("expires", expires)]
        else:
            headers.append(("cache-control", "no-cache, private"))
        if etag in request.headers.get("if-none-match", ""):
            return Response(status=304, content_type=None, headers=headers)
        return Response(body=found.body, headers=headers)


_BY_SCHEME: weakref.WeakKeyDictionary[Scheme, OpenAPIDocuments] = weakref.WeakKeyDictionary()


def documents_of(scheme: Scheme, *, kubernetes_version: tuple[int, int, int]) -> OpenAPIDocuments:
    """The (lazily made, then kept) OpenAPI documents of ``scheme``."""
    documents = _BY_SCHEME.get(scheme)
    if documents is None:
        major, minor, patch = kubernetes_version
        documents = OpenAPIDocuments(scheme, version=f"v{major}.{minor}.{patch}")
        _BY_SCHEME[scheme] = documents
    return documents


def serve_openapi_v3(
    scheme: Scheme, request: Request, path: str, *, kubernetes_version: tuple[int, int, int]
) -> Response:
    """Answer an ``/openapi/v3`` request from the (lazily made) documents of ``scheme``."""
    return documents_of(scheme, kubernetes_version=kubernetes_version).respond(request, path)
