"""Hypothesis strategies for Kubernetes objects, built from an OpenAPI v3 document.

:class:`SchemaStrategies` walks ``components.schemas`` (``$ref``, ``allOf``,
``properties``/``required``, ``items``, ``additionalProperties``, ``enum``, the
int-or-string and Quantity ``oneOf`` forms) and produces objects of the right types:
DNS-label strings where a string is free (most string fields that are names must be),
small numbers, short lists and maps, every required field and a few optional ones,
nesting bounded by depth. :func:`near_valid` then damages some of them the way a
careless client does: a required field dropped, a value of the wrong type, an integer
far outside int32, an invalid name.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st

Schema = Mapping[str, Any]
REF = "#/components/schemas/"

MAX_DEPTH = 4
"""Below this many nested objects only required fields are generated."""
MAX_OPTIONAL = 4
"""Most optional properties drawn per object."""

dns_labels = st.from_regex(r"\A[a-z]([a-z0-9-]{0,10}[a-z0-9])?\Z")
"""Names valid as DNS-1123 labels (and so as most names)."""
label_keys = st.one_of(dns_labels, st.builds(lambda p, n: f"{p}.io/{n}", dns_labels, dns_labels))
free_text = st.text(max_size=12)
quantities = st.sampled_from(["1", "100m", "64Mi", "1Gi", "0.5", "2k", "1e3"])
timestamps = st.sampled_from(["2024-01-02T03:04:05Z", "2030-12-31T23:59:59Z"])
small_ints = st.integers(min_value=0, max_value=100)


class SchemaStrategies:
    """Strategies for the schemas of one OpenAPI v3 document's ``components.schemas``."""

    def __init__(self, schemas: Mapping[str, Schema]) -> None:
        self.schemas = schemas

    def resolve(self, schema: Schema) -> Schema:
        """Follow ``$ref`` and lone ``allOf`` references."""
        while True:
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF):
                schema = self.schemas[ref[len(REF) :]]
                continue
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1:
                schema = all_of[0]
                continue
            return schema

    def of(self, schema: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
        """Values of ``schema``."""
        schema = self.resolve(schema)
        if schema.get("x-kubernetes-int-or-string"):
            return st.one_of(small_ints, st.sampled_from(["25%", "http", "1"]))
        if "oneOf" in schema:  # Quantity: a string or a number
            return quantities
        if "enum" in schema:
            return st.sampled_from(list(schema["enum"]))
        kind = schema.get("type")
        if kind == "string":
            return self._string(schema)
        if kind == "integer":
            return small_ints
        if kind == "number":
            return st.floats(min_value=0, max_value=100, allow_nan=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "array":
            if depth >= MAX_DEPTH:
                return st.just([])
            items = self.of(schema.get("items") or {}, depth + 1)
            return st.lists(items, max_size=2)
        if kind == "object" or "properties" in schema:
            return self._object(schema, depth)
        return st.one_of(st.none(), small_ints, dns_labels)  # free-form JSON

    def _string(self, schema: Schema) -> st.SearchStrategy[Any]:
        fmt = schema.get("format")
        if fmt == "date-time":
            return timestamps
        if fmt == "byte":
            return st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
        # Names are most of a Kubernetes object's strings: mostly valid ones, some not.
        return st.one_of(dns_labels, dns_labels, dns_labels, free_text)

    def _object(self, schema: Schema, depth: int) -> st.SearchStrategy[Any]:
        properties: Mapping[str, Schema] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if not properties:
            if isinstance(extra, Mapping) and depth < MAX_DEPTH:
                values = self.of(extra, depth + 1)
                return st.dictionaries(label_keys, values, max_size=2)
            return st.just({})
        required = [name for name in schema.get("required") or [] if name in properties]
        optional = sorted(name for name in properties if name not in required and name != "status")
        if depth >= MAX_DEPTH:
            optional = []

        def lazy(name: str) -> st.SearchStrategy[Any]:
            return st.deferred(lambda: self.of(properties[name], depth + 1))

        def build(chosen: list[str]) -> st.SearchStrategy[dict[str, Any]]:
            return st.fixed_dictionaries({name: lazy(name) for name in [*required, *chosen]})

        if not optional:
            return build([])
        picks = st.lists(st.sampled_from(optional), max_size=MAX_OPTIONAL, unique=True)
        return picks.flatmap(build)

    def object_of(
        self, definition: str, *, api_version: str, kind: str, namespace: str
    ) -> st.SearchStrategy[dict[str, Any]]:
        """Whole objects of a kind: its schema, apiVersion and kind, valid metadata."""
        body = self._object(self.resolve(self.schemas[definition]), 0)
        labels = st.dictionaries(label_keys, dns_labels, max_size=2)
        metadata = st.fixed_dictionaries(
            {"name": dns_labels}, optional={"labels": labels, "annotations": labels}
        )

        def assemble(parts: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
            obj, meta = parts
            if namespace:
                meta = {**meta, "namespace": namespace}
            return {**obj, "apiVersion": api_version, "kind": kind, "metadata": meta}

        return st.tuples(body, metadata).map(assemble)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = [at] if at else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*at, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*at, index))
    return found


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return "not-a-number"
    if isinstance(value, str):
        return {"a": 1}
    if isinstance(value, list):
        return "not-a-list"
    return ["not", "an", "object"]


DAMAGE = ("drop", "wrong-type", "huge-number", "int32-overflow", "bad-name")


@st.composite
def near_valid(draw: st.DrawFn, objects: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """An object of ``objects``, left alone or damaged in one place (half of the time)."""
    obj = draw(objects)
    how = draw(st.sampled_from(("none", *DAMAGE)))
    if how == "none":
        return obj
    obj = copy.deepcopy(obj)
    if how == "bad-name":
        obj["metadata"]["name"] = draw(st.sampled_from(["Bad_Name", "-x", "a" * 300, "", "a/b"]))
        return obj
    paths = [p for p in _paths(obj) if p[0] not in ("apiVersion", "kind")]
    if not paths:
        return obj
    path = draw(st.sampled_from(paths))
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "drop":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif how == "wrong-type":
        parent[last] = _wrong_type(parent[last])
    elif how == "huge-number":
        parent[last] = 10**30
    else:
        parent[last] = 2**31
    return obj
