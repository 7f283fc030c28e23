"""The three PATCH flavours of the Kubernetes API, on plain JSON values.

- :func:`json_merge_patch` — ``application/merge-patch+json`` (RFC 7386): maps merge
  recursively, ``null`` deletes, everything else (lists included) is replaced.
- :func:`json_patch` — ``application/json-patch+json`` (RFC 6902): a list of
  ``add``/``remove``/``replace``/``move``/``copy``/``test`` operations addressed by
  JSON pointers (``~0`` is ``~``, ``~1`` is ``/``; ``-`` appends to an array).
- :func:`strategic_merge_patch` — ``application/strategic-merge-patch+json``: a merge
  patch that knows the schema. Lists whose field declares a patch merge key
  (``containers`` by ``name``, ``ports`` by ``containerPort``) are merged element by
  element; primitive lists with the ``merge`` strategy (``finalizers``) are unioned;
  other lists are replaced. Directives: ``$patch: replace|delete|merge`` on maps and
  list elements, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>``; other ``$`` keys are ignored, as the apiserver does,
  so newer clients' directives degrade gracefully. The schema facts come from the generated
  :data:`~kubetrio.api.generated.fieldmeta.FIELDS` table, keyed by swagger
  definition id (``ResourceInfo.definition``).

:func:`apply_merge` is the merge half of server-side apply
(``application/apply-patch+yaml``): the applied configuration is merged into the live
object by the structural schema — associative lists by their
``x-kubernetes-list-map-keys``, sets as unions, ``atomic`` lists, maps and structs
replaced whole — without field ownership (``managedFields``), so it upserts and never
removes what an earlier apply set and this one omits.

All of them work on what ``json.loads`` produces (dicts, lists, str, int, float, bool,
None); decode the result into a model afterwards to validate it. The inputs are never
modified. The merge-patch results may share untouched sub-trees with the original, so
copy before mutating them in place; :func:`json_patch` returns a fresh deep copy.

Errors are :class:`PatchError` (a ``ValueError``) with a message fit for a 422 (or,
for a failed ``test`` operation, a 409/422) Status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .fieldmeta import FieldMeta
from .generated.fieldmeta import ATOMIC_DEFINITIONS, FIELDS

__all__ = [
    "MAX_JSON_PATCH_OPERATIONS",
    "JSONPatchError",
    "JSONPatchTestFailed",
    "PatchError",
    "StrategicMergePatchError",
    "apply_merge",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
]

MAX_JSON_PATCH_OPERATIONS = 10_000
"""The apiserver's cap on operations in one JSON patch."""


class PatchError(ValueError):
    """A patch cannot be applied."""


class JSONPatchError(PatchError):
    """A JSON patch operation is malformed or addresses a missing location.

    ``index`` is the failing operation's position in the patch (or -1).
    """

    def __init__(self, message: str, index: int = -1) -> None:
        self.index = index
        super().__init__(message if index < 0 else f"operation {index}: {message}")


class JSONPatchTestFailed(JSONPatchError):
    """A ``test`` operation found a different value."""


class StrategicMergePatchError(PatchError):
    """A strategic merge patch is malformed (bad directive, missing merge key ...)."""


# ---- RFC 7386 ----------------------------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386) to ``target`` and return the result."""
    try:
        return _merge_patch(target, patch)
    except RecursionError:
        raise PatchError("the patch is nested too deeply") from None


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 ----------------------------------------------------------------------------


def _deep_copy(doc: Any) -> Any:
    # A JSON round trip through msgspec is both exact and much faster than deepcopy.
    return msgspec.json.decode(msgspec.json.encode(doc))


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _parse_pointer(pointer: Any, index: int) -> list[str]:
    if not isinstance(pointer, str):
        raise JSONPatchError("a JSON pointer must be a string", index)
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JSONPatchError(f"JSON pointer {pointer!r} must be empty or start with '/'", index)
    tokens = pointer[1:].split("/")
    for t in tokens:
        rest = t.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise JSONPatchError(f"JSON pointer {pointer!r} has an invalid '~' escape", index)
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _array_index(token: str, length: int, *, allow_end: bool, index: int, where: str) -> int:
    if token == "-" and allow_end:
        return length
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or not token.isascii():
        raise JSONPatchError(f"{where}: {token!r} is not a valid array index", index)
    i = int(token)
    limit = length if allow_end else length - 1
    if i > limit:
        raise JSONPatchError(f"{where}: array index {i} is out of bounds", index)
    return i


def _resolve_parent(doc: Any, tokens: list[str], index: int, where: str) -> Any:
    node = doc
    for depth, token in enumerate(tokens[:-1]):
        if isinstance(node, dict):
            if token not in node:
                missing = "/" + "/".join(tokens[: depth + 1])
                raise JSONPatchError(f"{where}: path {missing!r} does not exist", index)
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(token, len(node), allow_end=False, index=index, where=where)]
        else:
            raise JSONPatchError(f"{where}: cannot descend into a scalar", index)
    return node


def _get(doc: Any, tokens: list[str], index: int, where: str) -> Any:
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, index, where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JSONPatchError(f"{where}: path does not exist", index)
        return parent[last]
    if isinstance(parent, list):
        return parent[_array_index(last, len(parent), allow_end=False, index=index, where=where)]
    raise JSONPatchError(f"{where}: cannot index into a scalar", index)


def _add(doc: Any, tokens: list[str], value: Any, index: int, where: str) -> Any:
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, index, where)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(
            _array_index(last, len(parent), allow_end=True, index=index, where=where), value
        )
    else:
        raise JSONPatchError(f"{where}: cannot add to a scalar", index)
    return doc


def _remove(doc: Any, tokens: list[str], index: int, where: str) -> tuple[Any, Any]:
    if not tokens:
        raise JSONPatchError(f"{where}: cannot remove the whole document", index)
    parent = _resolve_parent(doc, tokens, index, where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JSONPatchError(f"{where}: path does not exist", index)
        return doc, parent.pop(last)
    if isinstance(parent, list):
        i = _array_index(last, len(parent), allow_end=False, index=index, where=where)
        return doc, parent.pop(i)
    raise JSONPatchError(f"{where}: cannot remove from a scalar", index)


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply a JSON patch (RFC 6902) and return the patched copy of ``doc``.

    The operations apply atomically: on any error (:class:`JSONPatchError`, or
    :class:`JSONPatchTestFailed` for a ``test``), nothing is returned and ``doc`` is
    untouched.
    """
    try:
        return _json_patch(doc, operations)
    except RecursionError:
        raise JSONPatchError("the document or patch is nested too deeply") from None


def _json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise JSONPatchError("a JSON patch must be an array of operations")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise JSONPatchError(
            f"the JSON patch has {len(operations)} operations, more than the allowed "
            f"{MAX_JSON_PATCH_OPERATIONS}"
        )
    result = _deep_copy(doc)
    for index, op in enumerate(operations):
        if not isinstance(op, dict):
            raise JSONPatchError("an operation must be an object", index)
        name = op.get("op")
        if "path" not in op:
            raise JSONPatchError(f"{name!r} operation is missing 'path'", index)
        path = op["path"]
        tokens = _parse_pointer(path, index)
        where = f"{name} {path}"
        if name in ("add", "replace", "test") and "value" not in op:
            raise JSONPatchError(f"{name!r} operation is missing 'value'", index)
        if name == "add":
            result = _add(result, tokens, _deep_copy(op["value"]), index, where)
        elif name == "remove":
            result, _ = _remove(result, tokens, index, where)
        elif name == "replace":
            if tokens:
                result, _ = _remove(result, tokens, index, where)
            result = _add(result, tokens, _deep_copy(op["value"]), index, where)
        elif name in ("move", "copy"):
            if "from" not in op:
                raise JSONPatchError(f"{name!r} operation is missing 'from'", index)
            source = _parse_pointer(op["from"], index)
            if name == "move":
                if tokens[: len(source)] == source and len(tokens) > len(source):
                    raise JSONPatchError(f"{where}: cannot move a value into itself", index)
                result, value = _remove(result, source, index, f"move from {op['from']}")
            else:
                value = _deep_copy(_get(result, source, index, f"copy from {op['from']}"))
            result = _add(result, tokens, value, index, where)
        elif name == "test":
            if not _json_equal(_get(result, tokens, index, where), op["value"]):
                raise JSONPatchTestFailed(f"testing value {path} failed", index)
        else:
            raise JSONPatchError(f"unknown operation {name!r}", index)
    return result


# ---- strategic merge patch ------------------------------------------------------------

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"

FieldLookup = Callable[[str], FieldMeta | None]


def _object_lookup(
    definition: str | None, fields: Mapping[str, Mapping[str, FieldMeta]]
) -> FieldLookup:
    table = fields.get(definition, {}) if definition else {}
    return table.get


def _values_lookup(ref: str | None) -> FieldLookup:
    meta = FieldMeta(ref=ref)
    return lambda _key: meta


def strategic_merge_patch(
    original: Mapping[str, Any],
    patch: Mapping[str, Any],
    definition: str | None,
    *,
    fields: Mapping[str, Mapping[str, FieldMeta]] = FIELDS,
) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of swagger ``definition``.

    ``definition`` is the object's swagger id (``io.k8s.api.apps.v1.Deployment``; the
    scheme's ``ResourceInfo.definition``). With None (or a definition without patch
    metadata) every list is replaced, as for objects Kubernetes knows nothing about.
    ``fields`` defaults to the generated built-in table; pass your own to patch other
    schemas. Raises :class:`StrategicMergePatchError`.
    """
    if not isinstance(patch, Mapping):
        raise StrategicMergePatchError("a strategic merge patch must be a JSON object")
    try:
        result = _merge_map(
            dict(original), patch, lambda d: _object_lookup(d, fields), definition, ""
        )
    except RecursionError:
        raise StrategicMergePatchError("the patch is nested too deeply") from None
    return result if result is not None else {}


def _merge_map(
    original: dict[str, Any],
    patch: Mapping[str, Any],
    lookup_for: Callable[[str | None], FieldLookup],
    definition: str | None,
    path: str,
    lookup: FieldLookup | None = None,
) -> dict[str, Any] | None:
    """Merge ``patch`` into a copy of ``original``; None means "delete this map"."""
    lookup = lookup or lookup_for(definition)
    directive = patch.get(_PATCH)
    if directive is not None:
        if directive == "replace":
            return _strip(dict(patch), lookup_for, definition, lookup)
        if directive == "delete":
            return None
        if directive != "merge":
            raise StrategicMergePatchError(f"{path or '.'}: unknown $patch directive {directive!r}")
    result = dict(original)
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise StrategicMergePatchError(f"{path}.$retainKeys must be a list")
        for key in list(result):
            if key not in retain:
                del result[key]
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_PATCH, _RETAIN_KEYS):
            continue
        if key.startswith(_DELETE_FROM_PRIMITIVE):
            field = key[len(_DELETE_FROM_PRIMITIVE) :]
            if not isinstance(value, list):
                raise StrategicMergePatchError(f"{path}.{key} must be a list")
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [v for v in current if not any(_json_equal(v, d) for d in value)]
            continue
        if key.startswith(_SET_ORDER):
            if not isinstance(value, list):
                raise StrategicMergePatchError(f"{path}.{key} must be a list")
            orders[key[len(_SET_ORDER) :]] = value
            continue
        if key.startswith("$"):
            continue  # servers ignore directives they do not know (forward compatibility)
        meta = lookup(key)
        child_path = f"{path}.{key}"
        if value is None:
            result.pop(key, None)
            continue
        if key not in result or result[key] is None:
            if isinstance(value, dict) and value.get(_PATCH) == "delete":
                result.pop(key, None)
                continue
            result[key] = _strip_value(value, meta, lookup_for)
            continue
        current = result[key]
        if isinstance(value, dict) and isinstance(current, dict):
            if meta is not None and "replace" in meta.patch_strategy:
                result[key] = _strip_value(value, meta, lookup_for)
                continue
            child_lookup = (
                _values_lookup(meta.ref)
                if meta is not None and meta.container == "map"
                else lookup_for(meta.ref if meta else None)
            )
            merged = _merge_map(
                current, value, lookup_for, meta.ref if meta else None, child_path, child_lookup
            )
            if merged is None:
                del result[key]
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _merge_list(current, value, meta, lookup_for, child_path)
        else:
            result[key] = _strip_value(value, meta, lookup_for)
    for field, order in orders.items():
        current = result.get(field)
        if isinstance(current, list):
            meta = lookup(field)
            result[field] = _apply_order(current, order, meta.merge_key if meta else None)
    return result


def _merge_list(
    original: list[Any],
    patch: list[Any],
    meta: FieldMeta | None,
    lookup_for: Callable[[str | None], FieldLookup],
    path: str,
) -> list[Any]:
    strategy = meta.patch_strategy if meta is not None else ()
    if "merge" not in strategy:
        return _strip_list(patch, meta, lookup_for)
    # A {"$patch": "replace"} element replaces the whole list with the other elements.
    if any(isinstance(p, dict) and p.get(_PATCH) == "replace" for p in patch):
        rest = [p for p in patch if not (isinstance(p, dict) and _PATCH in p)]
        return _strip_list(rest, meta, lookup_for)
    assert meta is not None
    key = meta.merge_key
    if key is None or not all(isinstance(p, dict) for p in patch):
        # Merge a primitive list: union, original order first.
        out = list(original)
        for item in patch:
            if not any(_json_equal(item, o) for o in out):
                out.append(item)
        return out
    out = list(original)
    for i, item in enumerate(patch):
        directive = item.get(_PATCH)
        if key not in item:
            raise StrategicMergePatchError(
                f"{path}[{i}]: map does not contain declared merge key {key!r}"
            )
        pos = next(
            (
                j
                for j, o in enumerate(out)
                if isinstance(o, dict) and _json_equal(o.get(key), item[key])
            ),
            None,
        )
        if directive == "delete":
            out = [
                o for o in out if not (isinstance(o, dict) and _json_equal(o.get(key), item[key]))
            ]
            continue
        if directive not in (None, "merge", "replace"):
            raise StrategicMergePatchError(f"{path}[{i}]: unknown $patch directive {directive!r}")
        if pos is None:
            out.append(_strip(dict(item), lookup_for, meta.ref, None))
        else:
            merged = _merge_map(out[pos], item, lookup_for, meta.ref, f"{path}[{i}]")
            if merged is None:
                del out[pos]
            else:
                out[pos] = merged
    return out


def _apply_order(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    """Reorder per ``$setElementOrder``: listed elements in that order, then the rest."""

    def ident(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    wanted = [ident(o) if isinstance(o, dict) else o for o in order]
    ranked: list[tuple[int, int, Any]] = []
    for pos, item in enumerate(items):
        ident_value = ident(item)
        rank = next((r for r, w in enumerate(wanted) if _json_equal(w, ident_value)), len(wanted))
        ranked.append((rank, pos, item))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in ranked]


def _strip_value(
    value: Any, meta: FieldMeta | None, lookup_for: Callable[[str | None], FieldLookup]
) -> Any:
    """A patch value taken as is, minus directives and nulls (it has nothing to merge into)."""
    if isinstance(value, dict):
        if meta is not None and meta.container == "map":
            return {
                k: _strip_value(v, FieldMeta(ref=meta.ref), lookup_for)
                for k, v in value.items()
                if v is not None and not k.startswith("$")
            }
        return _strip(dict(value), lookup_for, meta.ref if meta else None, None)
    if isinstance(value, list):
        return _strip_list(value, meta, lookup_for)
    return value


def _strip_list(
    items: list[Any], meta: FieldMeta | None, lookup_for: Callable[[str | None], FieldLookup]
) -> list[Any]:
    out = []
    for item in items:
        if isinstance(item, dict):
            if item.get(_PATCH) == "delete":
                continue
            out.append(_strip(dict(item), lookup_for, meta.ref if meta else None, None))
        else:
            out.append(item)
    return out


def _strip(
    obj: dict[str, Any],
    lookup_for: Callable[[str | None], FieldLookup],
    definition: str | None,
    lookup: FieldLookup | None,
) -> dict[str, Any]:
    lookup = lookup or lookup_for(definition)
    directive = obj.get(_PATCH)
    if directive is not None and directive not in ("replace", "delete", "merge"):
        raise StrategicMergePatchError(f"unknown $patch directive {directive!r}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key.startswith("$") or value is None:
            continue
        out[key] = _strip_value(value, lookup(key), lookup_for)
    return out


# ---- server-side apply (merge only) ------------------------------------------------------

# Map keys that may be omitted because the apiserver defaults them (ports' protocol):
# an applied {"containerPort": 80} must match the live {"containerPort": 80,
# "protocol": "TCP"}, as structured merge fills key defaults in before comparing.
_LIST_KEY_DEFAULTS: Mapping[str, Any] = {"protocol": "TCP"}


def apply_merge(
    live: Mapping[str, Any],
    applied: Mapping[str, Any],
    definition: str | None,
    *,
    fields: Mapping[str, Mapping[str, FieldMeta]] = FIELDS,
    atomic: frozenset[str] = ATOMIC_DEFINITIONS,
) -> dict[str, Any]:
    """Merge an applied configuration into the live object (see the module docstring).

    ``null`` in the applied configuration removes the field. Associative-list items
    are matched on all their map keys. With no ``definition`` maps merge and lists are
    replaced. Raises :class:`PatchError` if ``applied`` is not an object.
    """
    if not isinstance(applied, Mapping):
        raise PatchError("an apply configuration must be a JSON object")
    try:
        return _apply_object(dict(live), applied, definition, fields, atomic)
    except RecursionError:
        raise PatchError("the apply configuration is nested too deeply") from None


def _apply_object(
    live: dict[str, Any],
    applied: Mapping[str, Any],
    definition: str | None,
    fields: Mapping[str, Mapping[str, FieldMeta]],
    atomic: frozenset[str],
) -> dict[str, Any]:
    table = fields.get(definition, {}) if definition else {}
    result = dict(live)
    for key, value in applied.items():
        if value is None:
            result.pop(key, None)
            continue
        meta = table.get(key)
        current = result.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            result[key] = _apply_dict(current, value, meta, fields, atomic)
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _apply_list(current, value, meta, fields, atomic)
        else:
            result[key] = value
    return result


def _apply_dict(
    current: dict[str, Any],
    value: dict[str, Any],
    meta: FieldMeta | None,
    fields: Mapping[str, Mapping[str, FieldMeta]],
    atomic: frozenset[str],
) -> Any:
    if meta is not None and (meta.map_type == "atomic" or meta.ref in atomic):
        return value
    if meta is not None and meta.container == "map":
        merged = dict(current)
        for k, v in value.items():
            if v is None:
                merged.pop(k, None)
            elif isinstance(v, dict) and isinstance(merged.get(k), dict) and meta.ref:
                if meta.ref in atomic:
                    merged[k] = v
                else:
                    merged[k] = _apply_object(merged[k], v, meta.ref, fields, atomic)
            else:
                merged[k] = v
        return merged
    return _apply_object(current, value, meta.ref if meta else None, fields, atomic)


def _apply_list(
    current: list[Any],
    value: list[Any],
    meta: FieldMeta | None,
    fields: Mapping[str, Mapping[str, FieldMeta]],
    atomic: frozenset[str],
) -> list[Any]:
    list_type = meta.list_type if meta is not None else None
    if list_type == "set":
        out = list(current)
        for item in value:
            if not any(_json_equal(item, o) for o in out):
                out.append(item)
        return out
    if list_type != "map" or meta is None or not meta.list_map_keys:
        return value
    keys = meta.list_map_keys

    def identity(item: Any) -> tuple[Any, ...] | None:
        if not isinstance(item, dict):
            return None
        return tuple(msgspec.json.encode(item.get(k, _LIST_KEY_DEFAULTS.get(k))) for k in keys)

    out = list(current)
    for item in value:
        ident = identity(item)
        pos = (
            None
            if ident is None
            else next((i for i, o in enumerate(out) if identity(o) == ident), None)
        )
        if pos is None:
            out.append(item)
        elif meta.ref in atomic:
            out[pos] = item
        else:
            out[pos] = _apply_object(out[pos], item, meta.ref, fields, atomic)
    return out
