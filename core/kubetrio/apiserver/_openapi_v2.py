"""``GET /openapi/v2``: the v3 documents folded into one Swagger 2.0 document, as protobuf.

kubectl reads ``/openapi/v2`` only as the gnostic ``openapi.v2.Document`` protobuf
(``application/com.github.proto-openapi.spec.v2.v1.0+protobuf``). What reads it:

- ``kubectl explain --output=plaintext-openapiv2`` (the default ``plaintext`` output
  reads ``/openapi/v3`` from kubectl 1.27 on) finds a kind's definition by its
  ``x-kubernetes-group-version-kind`` vendor extension and walks ``properties``,
  ``items``, ``additionalProperties`` and ``$ref``;
- kubectl 1.27/1.28 fetch it eagerly for ``apply``/``create``: a PATCH operation of a
  kind carrying an inline ``fieldValidation`` query parameter leaves validation to the
  server, and the definitions' ``x-kubernetes-patch-merge-key`` / ``-strategy`` drive
  client-side apply's strategic merge patch — the same facts the v3 documents give.

Nothing here knows a kind: every group/version's v3 document (:mod:`._openapi`, so custom
resources included) is converted — ``#/components/schemas/X`` → ``#/definitions/X``, a
lone ``allOf`` reference becomes the reference, ``oneOf`` scalars (IntOrString, Quantity)
become ``string`` as upstream publishes them in v2, ``x-`` keys become vendor extensions
(YAML, here JSON) — and encoded with a small protobuf writer for the fields of
``OpenAPIv2.proto`` used. The result is cached until a group/version's document changes.
"""

from __future__ import annotations

import json
import struct
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ._openapi import OpenAPIDocuments

__all__ = ["openapi_v2_protobuf"]

Schema = Mapping[str, Any]
V3_REF = "#/components/schemas/"
V2_REF = "#/definitions/"


# --- protobuf writing ------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, messages), written even when empty."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, value: str) -> bytes:
    return _bytes(number, value.encode()) if value else b""


def _strings(number: int, values: Iterable[str]) -> bytes:
    return b"".join(_bytes(number, v.encode()) for v in values)


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", float(value))


def _any(number: int, value: Any) -> bytes:
    """An ``openapi.v2.Any`` holding ``value`` as YAML (JSON is YAML)."""
    return _bytes(number, _string(2, json.dumps(value, separators=(",", ":"))))


def _named_any(number: int, name: str, value: Any) -> bytes:
    return _bytes(number, _string(1, name) + _any(2, value))


# --- schemas -----------------------------------------------------------------------------

# Schema field numbers of OpenAPIv2.proto.
_SCHEMA_STRINGS = {"format": 2, "title": 3, "description": 4, "pattern": 13}
_SCHEMA_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_SCHEMA_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}
_SCHEMA_INTS = {
    "maxLength": 11,
    "minLength": 12,
    "maxItems": 14,
    "minItems": 15,
    "maxProperties": 17,
    "minProperties": 18,
}


def _v2_schema(schema: Schema) -> Schema:
    """A v3 schema node in Swagger 2.0 terms (see the module docstring)."""
    out = dict(schema)
    all_of = out.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and "$ref" in all_of[0]:
        del out["allOf"]
        out["$ref"] = all_of[0]["$ref"]
    if "oneOf" in out or "anyOf" in out:
        out.pop("oneOf", None)
        out.pop("anyOf", None)
        out.setdefault("type", "string")
    out.pop("nullable", None)
    return out


def _schema(schema: Schema) -> bytes:
    """An ``openapi.v2.Schema`` message."""
    schema = _v2_schema(schema)
    out = bytearray()
    ref = schema.get("$ref")
    if isinstance(ref, str):
        out += _string(1, ref.replace(V3_REF, V2_REF))
    for key, number in _SCHEMA_STRINGS.items():
        if isinstance(schema.get(key), str):
            out += _string(number, schema[key])
    if "default" in schema:
        out += _any(5, schema["default"])
    for key, number in _SCHEMA_DOUBLES.items():
        if isinstance(schema.get(key), int | float) and not isinstance(schema[key], bool):
            out += _double(number, schema[key])
    for key, number in _SCHEMA_BOOLS.items():
        if schema.get(key) is True:
            out += _bool(number, True)
    for key, number in _SCHEMA_INTS.items():
        if isinstance(schema.get(key), int) and not isinstance(schema[key], bool):
            out += _int(number, schema[key])
    out += _strings(19, [r for r in schema.get("required") or [] if isinstance(r, str)])
    for value in schema.get("enum") or []:
        out += _bytes(20, _string(2, json.dumps(value)))
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        out += _bytes(21, _bytes(1, _schema(extra)))
    elif isinstance(extra, bool):
        out += _bytes(21, _bool(2, extra) if extra else _varint(2 << 3) + b"\x00")
    kind = schema.get("type")
    if isinstance(kind, str):
        out += _bytes(22, _string(1, kind))
    items = schema.get("items")
    if isinstance(items, Mapping):
        out += _bytes(23, _bytes(1, _schema(items)))
    for member in schema.get("allOf") or []:
        if isinstance(member, Mapping):
            out += _bytes(24, _schema(member))
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        named = b"".join(
            _bytes(1, _string(1, name) + _bytes(2, _schema(sub)))
            for name, sub in properties.items()
            if isinstance(sub, Mapping)
        )
        out += _bytes(25, named)
    if "example" in schema:
        out += _any(30, schema["example"])
    for key, value in schema.items():
        if key.startswith("x-"):
            out += _named_any(31, key, value)
    return bytes(out)


# --- paths -------------------------------------------------------------------------------


def _parameter(param: Schema) -> bytes:
    """A ``ParametersItem`` holding a query or path parameter."""
    kind = (param.get("schema") or {}).get("type", "string")
    where = param.get("in", "query")
    sub = (
        _bool(1, bool(param.get("required")))
        + _string(2, where)
        + _string(4, str(param.get("name", "")))
    )
    if where == "path":
        sub += _string(5, kind)
        non_body = _bytes(4, sub)
    else:
        sub += _string(6, kind)
        if (param.get("schema") or {}).get("uniqueItems"):
            sub += _bool(20, True)
        non_body = _bytes(3, sub)
    return _bytes(1, _bytes(2, non_body))


def _body_parameter(schema: Schema) -> bytes:
    body = _string(2, "body") + _string(3, "body") + _bool(4, True) + _bytes(5, _schema(schema))
    return _bytes(1, _bytes(1, body))


def _operation(op: Schema) -> bytes:
    out = bytearray()
    params = [p for p in op.get("parameters") or [] if isinstance(p, Mapping)]
    request = ((op.get("requestBody") or {}).get("content") or {}).values()
    consumes = list(((op.get("requestBody") or {}).get("content") or {}).keys())
    out += _strings(6, ["application/json"])
    out += _strings(7, [c if c != "*/*" else "application/json" for c in consumes])
    for param in params:
        out += _bytes(8, _parameter(param))
    body = next(iter(request), None)
    if body is not None and isinstance(body.get("schema"), Mapping):
        out += _bytes(8, _body_parameter(body["schema"]))
    responses = bytearray()
    for code, response in (op.get("responses") or {}).items():
        content = (response.get("content") or {}).values()
        first: Schema = next(iter(content), {})
        value = _string(1, str(response.get("description", "")))
        if isinstance(first.get("schema"), Mapping):
            value += _bytes(2, _bytes(1, _schema(first["schema"])))
        responses += _bytes(1, _string(1, str(code)) + _bytes(2, _bytes(1, value)))
    out += _bytes(9, bytes(responses))
    for key, value in op.items():
        if key.startswith("x-"):
            out += _named_any(13, key, value)
    return bytes(out)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def _path_item(item: Schema) -> bytes:
    out = bytearray()
    for method, number in _METHODS.items():
        if isinstance(item.get(method), Mapping):
            out += _bytes(number, _operation(item[method]))
    for param in item.get("parameters") or []:
        if isinstance(param, Mapping):
            out += _bytes(9, _parameter(param))
    return bytes(out)


def _document(documents: Iterable[Schema], version: str) -> bytes:
    definitions: dict[str, Schema] = {}
    paths: dict[str, Schema] = {}
    for document in documents:
        definitions.update((document.get("components") or {}).get("schemas") or {})
        paths.update(document.get("paths") or {})
    out = bytearray(_string(1, "2.0"))
    out += _bytes(2, _string(1, "Kubernetes") + _string(2, version))
    named_paths = b"".join(
        _bytes(2, _string(1, path) + _bytes(2, _path_item(item)))
        for path, item in sorted(paths.items())
    )
    out += _bytes(8, named_paths)
    named = b"".join(
        _bytes(1, _string(1, name) + _bytes(2, _schema(schema)))
        for name, schema in sorted(definitions.items())
    )
    out += _bytes(9, named)
    return bytes(out)


_CACHE: weakref.WeakKeyDictionary[OpenAPIDocuments, tuple[tuple[str, ...], bytes]] = (
    weakref.WeakKeyDictionary()
)


def openapi_v2_protobuf(documents: OpenAPIDocuments) -> bytes:
    """The Swagger 2.0 document of every served group/version, protobuf-encoded; rebuilt
    only when a group/version's v3 document changed (a CRD came, went or changed)."""
    found = [documents.document(g, v) for g, v in documents.group_versions()]
    encoded = [d for d in found if d is not None]
    fingerprint = tuple(d.hash for d in encoded)
    cached = _CACHE.get(documents)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    body = _document((msgspec.json.decode(d.body) for d in encoded), documents.version)
    _CACHE[documents] = (fingerprint, body)
    return body
