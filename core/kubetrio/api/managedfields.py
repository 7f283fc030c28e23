"""Field ownership for server-side apply: ``metadata.managedFields``, as upstream computes it.

Kubernetes tracks, per *manager* (a ``fieldManager`` name with an operation ``Apply`` or
``Update``, an apiVersion and a subresource), the set of fields that manager last set.
Upstream does this in Go, in ``sigs.k8s.io/structured-merge-diff`` (``fieldpath``,
``typed``, ``merge/update.go``) and apimachinery's ``util/managedfields``; no Python
library implements it, so this module is a hand-written port of the parts the API server
needs, working on plain JSON values:

- **Field sets** (:data:`FieldSet`) are tries in the wire encoding ``FieldsV1`` itself:
  ``{"f:spec": {"f:replicas": {}}, "f:data": {"f:key1": {}}}``. Path elements are
  ``f:<field>``, ``k:<json of the item's key fields>`` (associative-list items),
  ``v:<json value>`` (set items) and ``i:<index>``; ``"."`` marks a path that is itself a
  member while also having children (a list item and fields inside it). Internally every
  member carries ``"."``; :func:`encode_fields` writes leaves as ``{}`` in upstream's
  order and :func:`decode_fields` reads either form.
- **Schema** (:class:`Type`): the structural facts that decide how a value is walked —
  structs (named fields), maps (granular or atomic), lists (``atomic``, ``set`` or
  ``map`` with their key fields) and scalars — from the generated built-in table
  (:data:`~kubetrio.api.generated.fieldmeta.FIELDS`: ``x-kubernetes-list-type``,
  ``-list-map-keys``, ``-map-type``, else the patch strategy and merge key, as upstream's
  schema conversion) or from a CRD's structural schema. Values the schema does not
  describe are *deduced* as upstream does: maps granular, lists atomic.
- The typed operations: :func:`field_set` (``ToFieldSet``), :func:`compare` (added,
  modified and removed paths), :func:`merge` (an applied configuration into the live
  object, list order kept as upstream merges it), :func:`remove_items`.
- The updater (``merge/update.go``): :func:`record_update` for create/update/patch
  (the manager takes what it changed, others lose what was changed or removed) and
  :func:`apply` (the applier owns exactly its configuration; fields it applied before,
  applies no more and nobody else owns are removed; fields another manager owns and whose
  value would change are :class:`ConflictError` unless forced), plus upstream's
  ``stripMeta`` fields, the merging of one manager's consecutive updates, the cap of
  ten ``Update`` entries (older ones merged into ``ancient-changes``), kubectl's move
  from client-side apply (``lastAppliedManager``/``lastAppliedUpdater``: fields its
  last-applied annotation set are taken over without conflicts, and the annotation is
  kept current) and the entry order of ``managedFields``.

Not ported: conversion of field sets between API versions (kubetrio serves one version
per kind, custom resources convert with ``None``), unions, and the validation of
managedFields written by admission plugins.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .fieldmeta import FieldMeta
from .generated.fieldmeta import ATOMIC_DEFINITIONS, FIELDS

__all__ = [
    "ANCIENT_CHANGES",
    "LAST_APPLIED",
    "MAX_UPDATE_MANAGERS",
    "Comparison",
    "ConflictError",
    "FieldSet",
    "ManagedEntry",
    "Type",
    "apply",
    "builtin_type",
    "compare",
    "crd_type",
    "decode_fields",
    "decode_managed_fields",
    "deduced_type",
    "encode_fields",
    "encode_managed_fields",
    "field_set",
    "merge",
    "path_string",
    "record_update",
    "remove_items",
]

FieldSet = dict[str, Any]
"""A set of field paths as a trie keyed by path elements (``"."`` = the path is a member)."""

_DOT = "."
_EMPTY: dict[str, Any] = {}

# Upstream's stripMeta: never owned by anybody.
_STRIPPED = ("f:apiVersion", "f:kind")
_STRIPPED_META = (
    "f:name",
    "f:namespace",
    "f:creationTimestamp",
    "f:selfLink",
    "f:uid",
    "f:clusterName",
    "f:generation",
    "f:managedFields",
    "f:resourceVersion",
)

# Key fields the API server defaults, so an applied item that omits one still matches
# the live item (upstream takes them from the schema's defaults): container ports.
_KEY_DEFAULTS: Mapping[str, Any] = {"protocol": "TCP"}


# ---- schema -----------------------------------------------------------------------------

STRUCT, MAP, LIST, SCALAR, DEDUCED = "struct", "map", "list", "scalar", "deduced"


class Type:
    """How one value is walked: ``kind`` is struct, map, list, scalar or deduced.

    Structs resolve their fields through ``field``; maps and lists have an element type
    (``elem``); lists have a ``list_type`` (``atomic``, ``set`` or ``map``) and, for
    ``map``, their ``keys``. ``atomic`` structs and maps are owned as one leaf.
    ``self_owned`` is False for built-in structs: in Go they are (mostly) non-pointer
    fields that never appear or vanish as a whole, so a write that adds their content
    does not add the struct itself, as upstream's managedFields show (``f:spec`` without
    ``.``, but ``f:labels: {.: {}}``).
    """

    __slots__ = (
        "_elem",
        "_field",
        "_named",
        "atomic",
        "keys",
        "kind",
        "list_type",
        "self_owned",
        "sorted_keys",
    )

    def __init__(
        self,
        kind: str,
        *,
        atomic: bool = False,
        elem: Callable[[], Type] | None = None,
        field: Callable[[str], Type] | None = None,
        named: Callable[[str], bool] | None = None,
        list_type: str = "atomic",
        keys: tuple[str, ...] = (),
        self_owned: bool = True,
    ) -> None:
        self.kind = kind
        self.self_owned = self_owned
        self.atomic = atomic
        self._elem = elem
        self._field = field
        self._named = named
        self.list_type = list_type
        self.keys = keys
        self.sorted_keys = tuple(sorted(keys))

    def field(self, name: str) -> Type:
        """The type of a struct field or map value."""
        if self._field is not None:
            return self._field(name)
        return self.elem()

    def elem(self) -> Type:
        """The element type of a map or list."""
        return self._elem() if self._elem is not None else _DEDUCED

    def named(self, name: str) -> bool:
        """Whether ``name`` is a declared field of this struct (not a map key)."""
        return self._named(name) if self._named is not None else False


_SCALAR = Type(SCALAR)
_DEDUCED = Type(DEDUCED)
_ATOMIC_LIST = Type(LIST, list_type="atomic")


def deduced_type() -> Type:
    """The type of values without a schema: maps granular, lists atomic."""
    return _DEDUCED


def _resolve(t: Type, value: Any) -> Type:
    if t.kind == DEDUCED:
        if isinstance(value, dict):
            return _DEDUCED_MAP
        if isinstance(value, list):
            return _ATOMIC_LIST
        return _SCALAR
    return t


_DEDUCED_MAP = Type(MAP, elem=lambda: _DEDUCED)


@functools.cache
def builtin_type(definition: str | None) -> Type:
    """The type of a built-in definition (swagger id), from the generated field table.

    Every key of a built-in struct counts as a declared field (objects are decoded
    through their model first, so they hold no others); fields the table leaves out are
    plain scalars, maps of scalars or atomic lists, which deduction walks the same way.
    """
    if definition is None:
        return _DEDUCED
    table = FIELDS.get(definition, {})

    types: dict[str, Type] = {}

    def field(name: str) -> Type:
        found = types.get(name)
        if found is None:
            meta = table.get(name)
            found = types[name] = _DEDUCED if meta is None else _meta_type(meta)
        return found

    return Type(
        STRUCT,
        atomic=definition in ATOMIC_DEFINITIONS,
        field=field,
        named=lambda _n: True,
        self_owned=False,
    )


@functools.cache
def _meta_type(meta: FieldMeta) -> Type:
    ref = meta.ref

    def elem() -> Type:
        return builtin_type(ref) if ref else _DEDUCED

    if meta.container == "list":
        list_type = meta.list_type
        keys = meta.list_map_keys
        if list_type is None:  # upstream's schema conversion of the patch strategy
            if "merge" in meta.patch_strategy:
                list_type = "map" if meta.merge_key else "set"
            else:
                list_type = "atomic"
        if list_type == "map" and not keys:
            keys = (meta.merge_key,) if meta.merge_key else ()
            if not keys:
                list_type = "atomic"
        return Type(LIST, elem=elem, list_type=list_type, keys=keys)
    if meta.container == "map":
        return Type(MAP, atomic=meta.map_type == "atomic", elem=elem)
    if ref:
        t = builtin_type(ref)
        if meta.map_type == "atomic" and not t.atomic:
            return Type(STRUCT, atomic=True, field=t._field, named=t._named, self_owned=False)
        return t
    return _DEDUCED


_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def crd_type(schema: Mapping[str, Any] | None) -> Type:
    """The type of a custom resource from its structural schema (``openAPIV3Schema``).

    ``metadata`` is always ObjectMeta; lists default to atomic, maps to granular, as
    upstream converts CRD schemas (``x-kubernetes-list-type``, ``-list-map-keys``,
    ``-map-type``).
    """
    root = _schema_type(schema or {})
    if root.kind != STRUCT:
        root = Type(STRUCT, field=lambda _n: _DEDUCED, named=lambda _n: False)
    inner_field, inner_named = root._field, root._named
    assert inner_field is not None and inner_named is not None

    def field(name: str) -> Type:
        if name == "metadata":
            return builtin_type(_OBJECT_META)
        return inner_field(name)

    return Type(
        STRUCT,
        field=field,
        named=lambda n: n in ("apiVersion", "kind", "metadata") or inner_named(n),
    )


def _schema_type(schema: Mapping[str, Any]) -> Type:
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return _SCALAR
    if kind == "array":
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        list_type = schema.get("x-kubernetes-list-type") or "atomic"
        keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        if list_type == "map" and not keys:
            list_type = "atomic"
        return Type(
            LIST,
            elem=functools.cache(lambda: _schema_type(items)),
            list_type=list_type,
            keys=keys,
        )
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    atomic = schema.get("x-kubernetes-map-type") == "atomic"
    if isinstance(properties, Mapping) and properties:
        cache: dict[str, Type] = {}

        def field(name: str) -> Type:
            if name not in cache:
                sub = properties.get(name)
                cache[name] = _schema_type(sub) if isinstance(sub, Mapping) else _DEDUCED
            return cache[name]

        return Type(STRUCT, atomic=atomic, field=field, named=lambda n: n in properties)
    if isinstance(additional, Mapping):
        return Type(MAP, atomic=atomic, elem=functools.cache(lambda: _schema_type(additional)))
    if kind == "object" or schema.get("x-kubernetes-preserve-unknown-fields"):
        return Type(MAP, atomic=atomic, elem=lambda: _DEDUCED) if kind == "object" else _DEDUCED
    if kind in ("string", "integer", "number", "boolean"):
        return _SCALAR
    return _DEDUCED


# ---- path elements ----------------------------------------------------------------------


_HTML = frozenset("<>&\u2028\u2029")
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _go_json(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    if any(c in text for c in "<>&\u2028\u2029"):
        text = (
            text.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return text


def _item_element(item: Any, t: Type, index: int) -> str:
    """The path element of a list item: ``k:`` by its key fields, ``v:`` by value."""
    if t.list_type == "map" and isinstance(item, dict):
        parts = []
        for k in t.sorted_keys:
            value = item[k] if k in item else _KEY_DEFAULTS.get(k, _MISSING)
            if value is _MISSING:
                continue
            if type(value) is str and not _HTML.intersection(value):
                text = _encode_str(value)  # the common case, without a json.dumps
            elif type(value) is int:
                text = str(value)
            else:
                text = _go_json(value)
            parts.append(f"{_encode_str(k)}:{text}")
        return "k:{" + ",".join(parts) + "}"
    if t.list_type == "set":
        return "v:" + _go_json(item)
    return f"i:{index}"


@functools.lru_cache(maxsize=4096)
def _canonical_element(element: str) -> str:
    """An element as this module writes it (clients may send other JSON spellings)."""
    if element.startswith(("k:", "v:")):
        try:
            return element[:2] + _go_json(json.loads(element[2:]))
        except ValueError:
            return element
    return element


def _value_rank(value: Any) -> tuple[Any, ...]:
    # structured-merge-diff's value.Compare: numbers, strings, bools, lists, maps, null.
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(_value_rank(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, _value_rank(value[k])) for k in sorted(value)))
    return (5,)


@functools.lru_cache(maxsize=4096)
def _element_order(element: str) -> tuple[Any, ...]:
    kind, _, rest = element.partition(":")
    if kind == "f":
        return (0, rest)
    try:
        if kind == "k":
            fields = json.loads(rest)
            return (1, tuple((k, _value_rank(fields[k])) for k in sorted(fields)))
        if kind == "v":
            return (2, _value_rank(json.loads(rest)))
        if kind == "i":
            return (3, int(rest))
    except (ValueError, TypeError):
        pass
    return (4, element)


def _value_string(value: Any) -> str:
    # value.ToString: strings quoted as Go's %q, other scalars as %v.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_value_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "".join(f"{k}={_value_string(v)}" for k, v in value.items())
    return str(value)


def path_string(path: tuple[str, ...]) -> str:
    """A path as upstream prints it in conflicts: ``.spec.containers[name="app"].image``."""
    out = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out.append("." + rest)
            continue
        try:
            parsed = json.loads(rest)
        except ValueError:
            out.append(f"[{rest}]")
            continue
        if kind == "k" and isinstance(parsed, dict):
            out.append("[" + ",".join(f"{k}={_value_string(v)}" for k, v in parsed.items()) + "]")
        elif kind == "v":
            out.append(f"[={_value_string(parsed)}]")
        else:
            out.append(f"[{rest}]")
    return "".join(out)


# ---- field sets -------------------------------------------------------------------------


def _insert(root: FieldSet, path: tuple[str, ...]) -> None:
    node = root
    for element in path:
        child = node.get(element)
        if child is None:
            child = node[element] = {}
        node = child
    node[_DOT] = _EMPTY


def _union(a: FieldSet, b: FieldSet) -> FieldSet:
    if not b:
        return a
    if not a:
        return b
    out = dict(a)
    for key, child in b.items():
        if key == _DOT:
            out[_DOT] = _EMPTY
        elif key in out:
            out[key] = _union(out[key], child)
        else:
            out[key] = child
    return out


def _difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """Members of ``a`` that are not members of ``b`` (children kept)."""
    if not b or not a:
        return a
    out: FieldSet = {}
    for key, child in a.items():
        if key == _DOT:
            if _DOT not in b:
                out[_DOT] = _EMPTY
        elif key in b:
            rest = _difference(child, b[key])
            if rest:
                out[key] = rest
        else:
            out[key] = child
    return out


def _recursive_difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """``a`` without the members of ``b`` and everything under them."""
    if not b or not a:
        return a
    out: FieldSet = {}
    for key, child in a.items():
        if key == _DOT:
            out[_DOT] = _EMPTY
            continue
        other = b.get(key)
        if other is None:
            out[key] = child
        elif _DOT in other:
            continue
        else:
            rest = _recursive_difference(child, other)
            if rest:
                out[key] = rest
    return out


def _intersection(a: FieldSet, b: FieldSet) -> FieldSet:
    out: FieldSet = {}
    if not a or not b:
        return out
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    for key, child in small.items():
        other = big.get(key)
        if other is None:
            continue
        if key == _DOT:
            out[_DOT] = _EMPTY
        else:
            both = _intersection(child, other)
            if both:
                out[key] = both
    return out


def _paths(node: FieldSet, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The member paths of a set, in upstream's order."""
    for key in sorted((k for k in node if k != _DOT), key=_element_order):
        child = node[key]
        path = (*prefix, key)
        if _DOT in child:
            yield path
        yield from _paths(child, path)


def encode_fields(node: FieldSet) -> dict[str, Any]:
    """A field set in the ``FieldsV1`` wire form: sorted, leaves as ``{}``."""
    out: dict[str, Any] = {}
    keys = [k for k in node if k != _DOT]
    if all(k[0] == "f" for k in keys):
        keys.sort()  # field names alone: their text order is upstream's order
    else:
        keys.sort(key=_element_order)
    for key in keys:
        child = node[key]
        if len(child) == 1 and _DOT in child:
            out[key] = {}
        else:
            inner = encode_fields(child)
            out[key] = {_DOT: {}, **inner} if _DOT in child else inner
    return out


def decode_fields(fields: Any) -> FieldSet:
    """A ``FieldsV1`` object as a field set; ValueError when it is not one."""
    if not isinstance(fields, dict):
        raise ValueError("fieldsV1 must be an object")
    return _decode_node(fields, root=True)


def _decode_node(fields: dict[str, Any], *, root: bool = False) -> FieldSet:
    out: FieldSet = {}
    if not fields and not root:
        out[_DOT] = _EMPTY
        return out
    for key, child in fields.items():
        if key == _DOT:
            out[_DOT] = _EMPTY
            continue
        if not isinstance(child, dict) or len(key) < 2 or key[1] != ":" or key[0] not in "fkvi":
            raise ValueError(f"invalid fieldsV1 element {key!r}")
        out[_canonical_element(key)] = _decode_node(child)
    return out


# ---- typed walks ------------------------------------------------------------------------


def _leaf(t: Type, value: Any) -> bool:
    """Whether a value is owned as one leaf: scalars, atomics, or not the expected shape."""
    if t.kind in (STRUCT, MAP):
        return t.atomic or not isinstance(value, dict)
    if t.kind == LIST:
        return t.list_type == "atomic" or not isinstance(value, list)
    return True


def field_set(value: Any, t: Type) -> FieldSet:
    """The set of fields a value sets (``TypedValue.ToFieldSet``)."""
    out: FieldSet = {}
    t = _resolve(t, value)
    if not _leaf(t, value):
        _collect(value, t, out)
    return out


def _collect(value: Any, t: Type, out: FieldSet) -> None:
    """Fill ``out`` with the children of a granular struct, map or list."""
    if isinstance(value, dict):
        struct = t.kind == STRUCT
        for key, child_value in value.items():
            ct = _resolve(t.field(key), child_value)
            node: FieldSet = {}
            if _leaf(ct, child_value) or child_value == {}:
                node[_DOT] = _EMPTY
            else:
                _collect(child_value, ct, node)
                if not struct or not t.named(key):
                    node[_DOT] = _EMPTY
            if node:
                out["f:" + key] = node
        return
    et = t.elem()
    seen: set[str] = set()
    for index, item in enumerate(value):
        element = _item_element(item, t, index)
        if element in seen:  # duplicates are owned as a whole
            out[element] = {_DOT: _EMPTY}
            continue
        seen.add(element)
        it = _resolve(et, item)
        node = {_DOT: _EMPTY}
        if not _leaf(it, item) and item:
            _collect(item, it, node)
        out[element] = node


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is not tb and not (ta in (int, float) and tb in (int, float)):
        return False
    return bool(a == b)


_MISSING: Any = object()


@dataclasses.dataclass
class Comparison:
    """Paths a change added, modified (leaf values) and removed."""

    added: FieldSet = dataclasses.field(default_factory=dict)
    modified: FieldSet = dataclasses.field(default_factory=dict)
    removed: FieldSet = dataclasses.field(default_factory=dict)


def compare(lhs: Any, rhs: Any, t: Type) -> Comparison:
    """How ``rhs`` differs from ``lhs`` (``TypedValue.Compare``)."""
    result = Comparison()
    _compare(lhs, rhs, t, (), result)
    return result


def _compare(lhs: Any, rhs: Any, t: Type, path: tuple[str, ...], out: Comparison) -> None:
    l_ok, r_ok = lhs is not _MISSING, rhs is not _MISSING
    if not (l_ok and r_ok):  # a whole sub-tree appeared or vanished
        whole = _whole(rhs if r_ok else lhs, t)
        _graft(out.added if r_ok else out.removed, path, whole)
        return
    t = _resolve(t, rhs)
    if (
        _leaf(t, rhs if r_ok else lhs)
        or (l_ok and r_ok and type(lhs) is not type(rhs))
        or ((not lhs if l_ok else True) and (not rhs if r_ok else True))
    ):
        if not l_ok:
            _insert(out.added, path)
        elif not r_ok:
            _insert(out.removed, path)
        elif not _same(lhs, rhs):
            _insert(out.modified, path)
        return
    if t.kind == LIST:
        _compare_lists(lhs if l_ok else [], rhs if r_ok else [], t, path, out)
    else:
        ld = lhs if l_ok else _EMPTY
        rd = rhs if r_ok else _EMPTY
        for key, lv in ld.items():
            rv = rd.get(key, _MISSING)
            if lv is rv or lv == rv:  # unchanged sub-trees are skipped whole
                continue
            _compare(lv, rv, t.field(key), (*path, "f:" + key), out)
        for key, rv in rd.items():
            if key not in ld:
                _compare(_MISSING, rv, t.field(key), (*path, "f:" + key), out)


def _whole(value: Any, t: Type, item: bool = False) -> FieldSet:
    """What ``compare`` finds in a value that is only on one side (its paths' node).

    The hot path of every create, so the type checks of ``_leaf`` are inlined.
    """
    if t.kind == DEDUCED:
        t = _resolve(t, value)
    kind = t.kind
    node: FieldSet
    if type(value) is dict:
        if not value or t.atomic or (kind != STRUCT and kind != MAP):
            return {_DOT: _EMPTY}
        field = t.field
        node = {
            "f:" + key: (
                _whole(child, field(key))
                if type(child) is dict or type(child) is list
                else {_DOT: _EMPTY}
            )
            for key, child in value.items()
        }
    elif type(value) is list:
        if not value or kind != LIST or t.list_type == "atomic":
            return {_DOT: _EMPTY}
        order, found = _index_items(value, t)
        et = t.elem()
        node = {}
        for element in order:
            items = found[element]
            node[element] = _whole(items[0], et, True) if len(items) == 1 else {_DOT: _EMPTY}
    else:
        return {_DOT: _EMPTY}
    if t.self_owned or item:  # an added list item is a member, whatever its type
        node[_DOT] = _EMPTY
    return node


def _wire_whole(value: Any, t: Type, item: bool = False) -> dict[str, Any]:
    """``encode_fields`` of what :func:`_whole` finds, built in one pass (creates)."""
    if t.kind == DEDUCED:
        t = _resolve(t, value)
    kind = t.kind
    out: dict[str, Any]
    if type(value) is dict:
        if not value or t.atomic or (kind != STRUCT and kind != MAP):
            return {}
        field = t.field
        out = {_DOT: {}} if t.self_owned or item else {}
        for key in sorted(value):
            child = value[key]
            # Scalars are leaves whatever their field's type: no call for them.
            kind_of = type(child)
            out["f:" + key] = (
                _wire_whole(child, field(key)) if kind_of is dict or kind_of is list else {}
            )
        return out
    if type(value) is list:
        if not value or kind != LIST or t.list_type == "atomic":
            return {}
        order, found = _index_items(value, t)
        et = t.elem()
        out = {_DOT: {}} if t.self_owned or item else {}
        for element in sorted(order, key=_element_order):
            items = found[element]
            out[element] = _wire_whole(items[0], et, True) if len(items) == 1 else {}
        return out
    return {}


def _graft(root: FieldSet, path: tuple[str, ...], node: FieldSet) -> None:
    """Add ``node`` (a sub-tree) at ``path`` (the root itself is never a member)."""
    if not path:
        node = {k: v for k, v in node.items() if k != _DOT}
        for key, child in node.items():
            root[key] = _union(root[key], child) if key in root else child
        return
    parent = root
    for element in path[:-1]:
        parent = parent.setdefault(element, {})
    last = path[-1]
    parent[last] = _union(parent[last], node) if last in parent else node


def _index_items(items: list[Any], t: Type) -> tuple[list[str], dict[str, list[Any]]]:
    order: list[str] = []
    found: dict[str, list[Any]] = {}
    for index, item in enumerate(items):
        element = _item_element(item, t, index)
        if element in found:
            found[element].append(item)
        else:
            found[element] = [item]
            order.append(element)
    return order, found


def _compare_lists(
    lhs: list[Any], rhs: list[Any], t: Type, path: tuple[str, ...], out: Comparison
) -> None:
    l_order, l_found = _index_items(lhs, t)
    r_order, r_found = _index_items(rhs, t)
    et = t.elem()
    for element in l_order + [e for e in r_order if e not in l_found]:
        ls, rs = l_found.get(element, []), r_found.get(element, [])
        item_path = (*path, element)
        if len(ls) <= 1 and len(rs) <= 1:
            if not ls:
                _graft(out.added, item_path, _whole(rs[0], et, True))
            elif not rs:
                _graft(out.removed, item_path, _whole(ls[0], et, True))
            elif ls[0] != rs[0]:
                _compare(ls[0], rs[0], et, item_path, out)
        elif len(ls) >= 2 and len(rs) >= 2:
            if not all(_same(a, b) for a, b in zip(ls, rs, strict=False)) or len(ls) != len(rs):
                _insert(out.modified, item_path)
        elif len(ls) >= 2:
            if rs:
                _graft(out.added, item_path, _whole(rs[0], et, True))
            _insert(out.removed, item_path)
        else:
            if ls:
                _graft(out.removed, item_path, _whole(ls[0], et, True))
            _insert(out.added, item_path)


def merge(lhs: Any, rhs: Any, t: Type) -> Any:
    """``rhs`` (an applied configuration) merged into ``lhs`` (``TypedValue.Merge``)."""
    out = _merge(lhs, rhs, t)
    return {} if out is _MISSING else out


def _merge(lhs: Any, rhs: Any, t: Type) -> Any:
    l_ok, r_ok = lhs is not _MISSING, rhs is not _MISSING
    t = _resolve(t, rhs if r_ok else lhs)
    if not (l_ok and r_ok) or _leaf(t, rhs) or type(lhs) is not type(rhs) or (not lhs and not rhs):
        return rhs if r_ok else lhs
    if t.kind == LIST:
        return _merge_lists(lhs, rhs, t)
    out = {}
    for key, lv in lhs.items():
        merged = _merge(lv, rhs.get(key, _MISSING), t.field(key))
        if merged is not _MISSING:
            out[key] = merged
    for key, rv in rhs.items():
        if key not in lhs:
            out[key] = rv
    return out if out else _MISSING


def _merge_lists(lhs: list[Any], rhs: list[Any], t: Type) -> Any:
    """Merge list items by their path element, in upstream's order."""
    et = t.elem()
    r_order, r_found = _index_items(rhs, t)
    l_order, l_found = _index_items(lhs, t)
    duplicates = [e for e in r_order if len(r_found[e]) > 1]
    if duplicates:
        raise ValueError(f"duplicate entries for key {path_string((duplicates[0],))}")
    shared = [e for e in r_order if e in l_found]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set[str] = set()
    out: list[Any] = []

    def item(element: str) -> None:
        ls = l_found.get(element, [])
        lv = ls[0] if len(ls) == 1 else _MISSING
        value = _merge(lv, r_found[element][0], et)
        if value is not _MISSING:
            out.append(value)

    li = ri = 0
    n_l, n_r = len(l_order), len(r_order)
    while li < n_l or ri < n_r:
        if li < n_l and ri < n_r:
            element = l_order[li]
            if element == r_order[ri]:
                merged_rhs.add(element)
                item(element)
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if element in r_found and next_shared is not None and next_shared != element:
                li += 1
                continue
        if li < n_l:
            element = l_order[li]
            if element not in r_found:
                for lv in l_found[element]:  # live duplicates are kept as they are
                    out.append(lv)
                li += 1
                continue
            if element in merged_rhs:
                li += 1
        if ri < n_r:
            element = r_order[ri]
            merged_rhs.add(element)
            item(element)
            ri += 1
            if next_shared is not None and next_shared == element:
                next_shared = shared.pop(0) if shared else None
    return out if out else _MISSING


def remove_items(value: Any, remove: FieldSet, t: Type) -> Any:
    """``value`` without the members of ``remove`` (and everything under them)."""
    t = _resolve(t, value)
    if not remove or _leaf(t, value) or not value:
        return value
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            sub = remove.get("f:" + key)
            if sub is None:
                out[key] = child
            elif _DOT in sub:
                continue
            else:  # emptied containers stay (upstream: null, which typed objects omit)
                out[key] = remove_items(child, sub, t.field(key))
        return out
    items = []
    et = t.elem()
    for index, entry in enumerate(value):
        sub = remove.get(_item_element(entry, t, index))
        if sub is None:
            items.append(entry)
        elif _DOT in sub:
            continue
        else:
            items.append(remove_items(entry, sub, et))
    return items


def _named_members(node: FieldSet, t: Type) -> FieldSet:
    """``EnsureNamedFieldsAreMembers``: struct fields with children count as members."""
    out: FieldSet = {}
    for key, child in node.items():
        if key == _DOT:
            out[_DOT] = _EMPTY
            continue
        if key.startswith("f:"):
            name = key[2:]
            ct = t.field(name) if t.kind in (STRUCT, MAP) else _DEDUCED
            new = _named_members(child, ct) if len(child) > 1 or _DOT not in child else child
            if t.kind == STRUCT and t.named(name) and _DOT not in new:
                new = {**new, _DOT: _EMPTY}
            out[key] = new
        else:
            et = t.elem() if t.kind == LIST else _DEDUCED
            out[key] = _named_members(child, et) if len(child) > 1 else child
    return out


# ---- managers ---------------------------------------------------------------------------


class ManagedEntry:
    """One ``managedFields`` entry: a manager and the fields it owns.

    An entry read from a stored object keeps its wire form (``raw``) and decodes it only
    when its set is needed; while the set is untouched the stored form is written back
    as it was, so a write costs little for the managers it does not concern.
    """

    __slots__ = ("_fields", "api_version", "manager", "operation", "raw", "subresource", "time")

    def __init__(
        self,
        manager: str,
        operation: str,
        api_version: str,
        fields: FieldSet | None,
        time: str | None = None,
        subresource: str = "",
        raw: dict[str, Any] | None = None,
    ) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self._fields = fields
        self.time = time
        self.subresource = subresource
        self.raw = raw if fields is None else None

    @property
    def fields(self) -> FieldSet:
        """The owned set (decoded on first use)."""
        if self._fields is None:
            self._fields = decode_fields(self.raw or {})
        return self._fields

    @fields.setter
    def fields(self, value: FieldSet) -> None:
        self._fields = value
        self.raw = None

    def empty(self) -> bool:
        """Whether the entry owns nothing."""
        return not (self.raw if self.raw is not None else self.fields)

    def clash(self, other: FieldSet) -> FieldSet:
        """The members this entry shares with ``other`` (without decoding a stored form)."""
        if self.raw is not None:
            return _intersect_wire(self.raw, other, root=True)
        return _intersection(self.fields, other)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What tells managers apart (an applier is one manager across versions)."""
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """The manager as upstream names it in conflict messages."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text


Managed = dict[tuple[str, str, str, str], ManagedEntry]


def _intersect_wire(wire: dict[str, Any], node: FieldSet, *, root: bool = False) -> FieldSet:
    """``_intersection`` of a set in wire form (leaf members ``{}``) with one in ours."""
    out: FieldSet = {}
    for key, child in node.items():
        if key == _DOT:
            if not root and (not wire or _DOT in wire):
                out[_DOT] = _EMPTY
            continue
        other = wire.get(key)
        if other is not None:
            both = _intersect_wire(other, child)
            if both:
                out[key] = both
    return out


def decode_managed_fields(entries: Any, *, trusted: bool = False) -> Managed:
    """The managers of a ``metadata.managedFields`` list; ValueError when malformed.

    ``trusted``: the list is one this module wrote (a stored object's), so each set is
    kept in its wire form until needed instead of being decoded and checked now.
    """
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: Managed = {}
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise ValueError(f"managedFields[{i}] must be an object")
        operation = raw.get("operation")
        if operation not in ("Apply", "Update"):
            raise ValueError("operation must be `Apply` or `Update`")
        if not raw.get("apiVersion"):
            raise ValueError("apiVersion must not be empty")
        if raw.get("fieldsType") != "FieldsV1":
            raise ValueError(f"invalid fieldsType {raw.get('fieldsType')!r} in entry {i}")
        fields_v1 = raw.get("fieldsV1") or {}
        if trusted and not isinstance(fields_v1, dict):
            trusted = False
        entry = ManagedEntry(
            manager=str(raw.get("manager") or ""),
            operation=operation,
            api_version=str(raw["apiVersion"]),
            fields=None if trusted else decode_fields(fields_v1),
            time=raw.get("time"),
            subresource=str(raw.get("subresource") or ""),
            raw=fields_v1,
        )
        out[entry.identity] = entry
    return out


def _entry_order(entry: ManagedEntry) -> tuple[Any, ...]:
    # Upstream sorts by operation, time, manager, apiVersion, subresource.
    return (entry.operation, entry.time or "", entry.manager, entry.api_version, entry.subresource)


def encode_managed_fields(managed: Managed) -> list[dict[str, Any]]:
    """The ``metadata.managedFields`` list of some managers (empty sets left out)."""
    out = []
    for entry in sorted(managed.values(), key=_entry_order):
        if entry.empty():
            continue
        encoded: dict[str, Any] = {
            "manager": entry.manager,
            "operation": entry.operation,
            "apiVersion": entry.api_version,
        }
        if entry.time:
            encoded["time"] = entry.time
        encoded["fieldsType"] = "FieldsV1"
        encoded["fieldsV1"] = entry.raw if entry.raw is not None else encode_fields(entry.fields)
        if entry.subresource:
            encoded["subresource"] = entry.subresource
        out.append(encoded)
    return out


def _strip_meta(fields: FieldSet) -> FieldSet:
    """Upstream's stripMeta: identity and server-set metadata are never owned."""
    if not any(k in fields for k in (*_STRIPPED, "f:metadata")):
        return fields
    out = {k: v for k, v in fields.items() if k not in _STRIPPED}
    meta = out.get("f:metadata")
    if meta is not None:
        meta = {k: v for k, v in meta.items() if k not in _STRIPPED_META and k != _DOT}
        if meta:
            out["f:metadata"] = meta
        else:
            del out["f:metadata"]
    return out


def _strip_meta_wire(fields: dict[str, Any]) -> dict[str, Any]:
    """:func:`_strip_meta` on a set in wire form."""
    for key in _STRIPPED:
        fields.pop(key, None)
    meta = fields.get("f:metadata")
    if meta is not None:
        for key in (*_STRIPPED_META, _DOT):
            meta.pop(key, None)
        if not meta:
            del fields["f:metadata"]
    return fields


def _without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        metadata = {k: v for k, v in metadata.items() if k != "managedFields"}
        return {**obj, "metadata": metadata}
    return dict(obj)


class ConflictError(Exception):
    """An apply would change fields other managers own.

    ``conflicts`` are (manager as upstream prints it, path as printed); ``paths`` the
    same paths as path-element tuples.
    """

    def __init__(self, conflicts: list[tuple[str, tuple[str, ...]]]) -> None:
        self.paths = conflicts
        self.conflicts = [(manager, path_string(path)) for manager, path in conflicts]
        super().__init__(_conflict_message(self.conflicts))


def _conflict_message(conflicts: list[tuple[str, str]]) -> str:
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {manager}: {path}"
    by_manager: dict[str, list[str]] = {}
    for manager, path in conflicts:
        by_manager.setdefault(manager, []).append(path)
    lines = []
    for manager in sorted(by_manager):
        lines.append(f"conflict with {manager}:")
        lines.extend(f"- {path}" for path in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _update_others(
    managed: Managed,
    comparison: Comparison,
    skip: tuple[str, str, str, str] | None,
    *,
    force: bool,
    ignored: FieldSet,
) -> None:
    """Others lose fields that changed (conflicts, unless forced is checked) or vanished."""
    changed = _union(comparison.modified, comparison.added)
    removed = comparison.removed
    if ignored:
        changed = _recursive_difference(changed, ignored)
        removed = _recursive_difference(removed, ignored)
    conflicts: list[tuple[ManagedEntry, FieldSet]] = []
    for identity, entry in managed.items():
        if identity == skip:
            continue
        clash = entry.clash(changed)
        if clash:
            conflicts.append((entry, clash))
    if conflicts and not force:
        raise ConflictError(
            [
                (entry.describe(), path)
                for entry, clash in sorted(conflicts, key=lambda c: c[0].describe())
                for path in _paths(clash)
            ]
        )
    for entry, clash in conflicts:
        entry.fields = _difference(entry.fields, clash)
    if removed:
        for identity, entry in managed.items():
            if identity != skip and entry.clash(removed):
                entry.fields = _difference(entry.fields, removed)
    for identity in [i for i, e in managed.items() if e.empty()]:
        del managed[identity]


def _base_managed(live: Mapping[str, Any], new: Mapping[str, Any], subresource: str) -> Managed:
    """The managers an update starts from: the request's own list, else the live one.

    Upstream semantics: a subresource write always starts from the live list; a list
    that is ``[]`` or ``[{}]`` resets ownership; one that is missing, empty-by-omission or
    undecodable keeps the live list (clients unaware of the field cannot wipe it).
    """
    live_list = (live.get("metadata") or {}).get("managedFields")
    new_list = (new.get("metadata") or {}).get("managedFields")
    if not subresource and isinstance(new_list, list):
        if new_list == [] or new_list == [{}]:
            return {}
        try:
            decoded = decode_managed_fields(new_list)
        except ValueError:
            decoded = {}
        if decoded:
            return decoded
    try:
        return decode_managed_fields(live_list or [], trusted=True)
    except ValueError:
        return {}


def record_update(
    live: Mapping[str, Any] | None,
    new: dict[str, Any],
    t: Type,
    *,
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
    ignored: FieldSet | None = None,
) -> None:
    """Set ``new``'s managedFields after a create/update/patch by ``manager`` (in place).

    The manager's ``Update`` entry gains the fields the write added or modified (merged
    with its earlier updates, its time set when it took something); every other manager
    loses fields that changed or were removed. ``ignored`` are fields this endpoint
    resets (``status`` on the main resource, the rest on ``/status``).
    """
    live = live or {}
    managed = _base_managed(live, new, subresource)
    after = _without_managed_fields(new)
    top_level = not ignored or all(_DOT in v for v in ignored.values())
    if not live and not managed and top_level:
        # A plain create: everything is the creator's, written straight in wire form.
        fields = _strip_meta_wire(_wire_whole(after, t))
        for key in (*(ignored or ()), _DOT):
            fields.pop(key, None)
        metadata = new.setdefault("metadata", {})
        if not fields:
            metadata.pop("managedFields", None)
            return
        entry: dict[str, Any] = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
        if subresource:
            entry["subresource"] = subresource
        metadata["managedFields"] = [entry]
        return
    before = _without_managed_fields(live)
    comparison = compare(before, after, t)
    _update_others(managed, comparison, None, force=True, ignored=ignored or {})
    taken = _union(comparison.modified, comparison.added)
    if ignored:
        taken = _recursive_difference(taken, ignored)
    taken = _strip_meta(taken)
    if taken:
        identity = (manager, "Update", api_version, subresource)
        previous = managed.get(identity)
        fields = _union(previous.fields, taken) if previous else taken
        managed[identity] = ManagedEntry(
            manager, "Update", api_version, fields, time=now, subresource=subresource
        )
    _store(new, managed)


MAX_UPDATE_MANAGERS = 10
"""Update entries kept before the oldest are merged into ``ancient-changes`` (upstream)."""
ANCIENT_CHANGES = "ancient-changes"


def _cap_updates(managed: Managed) -> None:
    """Merge the oldest Update entries, per apiVersion, into one ``ancient-changes`` entry."""
    updaters = [e for e in managed.values() if e.operation == "Update"]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda e: e.time or "")
    first_of_version: dict[str, ManagedEntry] = {}
    length = len(updaters)
    for entry in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        version = entry.api_version
        first = first_of_version.get(version)
        if first is None:
            first_of_version[version] = entry
            continue
        bucket_id = (ANCIENT_CHANGES, "Update", version, "")
        bucket = managed.get(bucket_id)
        if bucket is None:
            del managed[first.identity]
            bucket = managed[bucket_id] = ManagedEntry(
                ANCIENT_CHANGES, "Update", version, first.fields, time=first.time
            )
        bucket.fields = _union(entry.fields, bucket.fields)
        bucket.time = entry.time
        del managed[entry.identity]
        length -= 1


def _store(obj: dict[str, Any], managed: Managed) -> None:
    _cap_updates(managed)
    metadata = obj.setdefault("metadata", {})
    encoded = encode_managed_fields(managed)
    if encoded:
        metadata["managedFields"] = encoded
    else:
        metadata.pop("managedFields", None)


def apply(
    live: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    t: Type,
    *,
    manager: str,
    api_version: str,
    now: str,
    force: bool = False,
    ignored: FieldSet | None = None,
    subresource: str = "",
) -> dict[str, Any]:
    """Server-side apply of ``config`` by ``manager`` to ``live`` (None: a new object).

    Returns the merged object with its managedFields. The applier's ``Apply`` entry
    becomes exactly the fields of ``config`` (minus ``ignored``); what it applied last
    time, applies no more and no other manager owns is removed. Raises
    :class:`ConflictError` when the result changes a field another manager owns, unless
    ``force`` (then the others lose those fields); ValueError on a configuration that
    cannot merge (duplicate list keys).
    """
    live = live or {}
    config = _drop_nulls(_without_managed_fields(config))
    try:
        merged = _apply(live, config, t, manager, api_version, now, force, ignored, subresource)
    except ConflictError as exc:
        # kubectl moving an object from client-side to server-side apply: conflicts on
        # fields its last-applied annotation set (to the live value) are taken over.
        allowed = _last_applied_fields(live, t) if manager == "kubectl" and not force else None
        if allowed is None:
            raise
        remaining = [(m, p) for m, p in exc.paths if not _has(allowed, p)]
        if remaining:
            raise ConflictError(remaining) from None
        merged = _apply(live, config, t, manager, api_version, now, True, ignored, subresource)
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if manager == "kubectl" and annotations.get(LAST_APPLIED):
        # Keep a later client-side apply right (upstream's lastAppliedUpdater).
        merged["metadata"].setdefault("annotations", {})[LAST_APPLIED] = _last_applied(config)
    return merged


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""The annotation client-side ``kubectl apply`` keeps its configuration in."""


def _has(node: FieldSet, path: tuple[str, ...]) -> bool:
    for element in path:
        child = node.get(element)
        if child is None:
            return False
        node = child
    return _DOT in node


def _last_applied_fields(live: Mapping[str, Any], t: Type) -> FieldSet | None:
    """Fields of the last-applied annotation whose value the live object still has."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED) or "")
    except ValueError:
        return None
    if not isinstance(last, dict):
        return None
    comparison = compare(last, _without_managed_fields(live), t)
    return _difference(field_set(last, t), comparison.modified)


def _last_applied(config: Mapping[str, Any]) -> str:
    metadata = dict(config.get("metadata") or {})
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    # Go's encoding of an unstructured object: sorted keys, compact, newline-terminated.
    return _go_json({**config, "metadata": metadata}) + "\n"


def _apply(
    live: Mapping[str, Any],
    config: Mapping[str, Any],
    t: Type,
    manager: str,
    api_version: str,
    now: str,
    force: bool,
    ignored: FieldSet | None,
    subresource: str,
) -> dict[str, Any]:
    managed: Managed = decode_managed_fields(
        (live.get("metadata") or {}).get("managedFields") or [], trusted=True
    )
    before = _without_managed_fields(live)
    merged = merge(before, config, t) if before else dict(config)
    identity = (manager, "Apply", "", subresource)
    last = managed.get(identity)
    applied = _strip_meta(field_set(config, t))
    if ignored:
        applied = _recursive_difference(applied, ignored)
    managed[identity] = ManagedEntry(
        manager, "Apply", api_version, applied, time=now, subresource=subresource
    )
    if last is not None and last.fields:
        merged = _prune(merged, managed, last.fields, t)
    comparison = compare(before, merged, t)
    _update_others(managed, comparison, identity, force=force, ignored=ignored or {})
    if not applied:
        managed.pop(identity, None)
    if last is not None and identity in managed and before == merged:
        managed[identity].time = last.time  # a no-op apply keeps the entry's time
    _store(merged, managed)
    return merged


def _prune(merged: Any, managed: Managed, last: FieldSet, t: Type) -> Any:
    """Remove what the applier applied last time, applies no more and nobody else owns."""
    owned: FieldSet = {}
    for entry in managed.values():
        owned = _union(owned, entry.fields)
    mergedset = _named_members(field_set(merged, t), t)
    remove = _difference(
        _intersection(mergedset, _named_members(last, t)), _named_members(owned, t)
    )
    if not remove:
        return merged
    return remove_items(merged, remove, t)


def _drop_nulls(value: Any) -> Any:
    # An applied null means "not set" (a typed object has no nulls), so it is not owned.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value
