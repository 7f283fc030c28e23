"""JSON encoding and decoding of models, with Kubernetes' special scalar types.

Decode once at the edge, keep bytes for fan-out: a request body is decoded into a
Struct exactly once (``decode``); what the store keeps and what list/watch send are
the encoded bytes (``encode``), so a watch with a thousand subscribers encodes each
object once, not a thousand times. Patches work on plain JSON values
(``to_builtins``/``from_builtins`` cross between the two worlds).

``Quantity``, ``Time`` and ``MicroTime`` are not msgspec built-ins, so every encoder
and decoder here carries the hooks that convert them; use these functions (or
:data:`ENCODER`) rather than bare ``msgspec.json`` calls.

Decoding errors are ``msgspec.ValidationError``/``msgspec.DecodeError``; their message
ends with msgspec's ``- at `$.spec.containers[0].name``` path, which
:func:`kubetrio.api.validation.error_path` turns into a Kubernetes field path.
"""

from __future__ import annotations

import datetime as _dt
from functools import cache
from typing import Any, TypeVar

import msgspec

from .quantity import Quantity
from .timestamps import MicroTime, Time

__all__ = [
    "ENCODER",
    "dec_hook",
    "decode",
    "enc_hook",
    "encode",
    "from_builtins",
    "to_builtins",
    "unknown_fields",
]

T = TypeVar("T")


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook``: quantities and timestamps to their canonical strings."""
    if isinstance(obj, Quantity):
        return obj.canonical()
    if isinstance(obj, Time | MicroTime):
        return obj.rfc3339()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def dec_hook(tp: type, obj: Any) -> Any:
    """msgspec ``dec_hook``: build quantities and timestamps from their JSON forms.

    Quantities accept strings and bare numbers (YAML ``cpu: 1`` reaches the server as
    the number 1, and the apiserver accepts it).
    """
    if tp is Quantity:
        if isinstance(obj, Quantity):
            return obj
        if isinstance(obj, str | int | float) and not isinstance(obj, bool):
            return Quantity(obj)
        raise TypeError(f"Expected `quantity`, got `{type(obj).__name__}`")
    if tp is Time or tp is MicroTime:
        if isinstance(obj, tp):
            return obj
        if isinstance(obj, _dt.datetime):
            return tp.of(obj)
        return tp.parse(obj)
    raise NotImplementedError(f"cannot decode {tp!r}")


ENCODER = msgspec.json.Encoder(enc_hook=enc_hook)
"""A shared JSON encoder with the hooks; ``ENCODER.encode(obj)`` or :func:`encode`."""


def encode(obj: Any) -> bytes:
    """Encode a model (or any JSON-able value containing models) to JSON bytes."""
    return ENCODER.encode(obj)


@cache
def _decoder(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp, dec_hook=dec_hook)


def decode(data: bytes | str, tp: type[T]) -> T:
    """Decode JSON bytes into ``tp`` (a model class, or any msgspec-supported type).

    Unknown fields are ignored; missing required fields, wrong types and malformed
    quantities or timestamps raise ``msgspec.ValidationError`` with the field path.
    """
    result: T = _decoder(tp).decode(data)  # type: ignore[arg-type]
    return result


def to_builtins(obj: Any) -> Any:
    """A model as plain JSON values (dicts, lists, str, int, ...), JSON names as keys."""
    return msgspec.to_builtins(obj, enc_hook=enc_hook)


def from_builtins(data: Any, tp: type[T]) -> T:
    """Convert plain JSON values (e.g. a patched dict) into ``tp``, validating them."""
    return msgspec.convert(data, tp, dec_hook=dec_hook)


def unknown_fields(data: Any, tp: type[Any]) -> list[str]:
    """The paths of fields in plain JSON ``data`` that ``tp`` does not declare.

    For ``fieldValidation=Strict``: the apiserver answers 400 naming each unknown field
    (``strict decoding error: unknown field "spec.foo"``). Free-form fields
    (``dict[str, Any]``, ``Any``) accept anything.
    """
    found: list[str] = []
    _walk_unknown(data, tp, "", found)
    return [f[1:] if f.startswith(".") else f for f in found]


@cache
def _type_info(tp: Any) -> Any:
    # Inspecting a kind walks its whole type tree; do it once per type.
    return msgspec.inspect.type_info(tp)


_FIELD_TYPES: dict[int, dict[str, Any]] = {}
_UNDECLARED = object()


def _field_types(info: Any) -> dict[str, Any]:
    # Type infos are cached (``_type_info``), so their identity is stable: build each
    # struct's name -> type map once instead of on every object walked. A field whose
    # type can hold no undeclared field (a scalar, a map of strings) maps to None: the
    # walk does not descend into it.
    found = _FIELD_TYPES.get(id(info))
    if found is None:
        found = _FIELD_TYPES[id(info)] = {
            f.encode_name: f.type if _may_hold_unknown(f.type) else None for f in info.fields
        }
    return found


_MAY_HOLD: dict[int, bool] = {}


def _may_hold_unknown(info: Any) -> bool:
    """Whether a value of this type can hold fields it does not declare (a struct is
    somewhere inside). Every write walks its body for unknown fields: skipping the
    leaves (most of a pod: strings, numbers, maps of strings) is most of that walk."""
    known = _MAY_HOLD.get(id(info))
    if known is None:
        mi = msgspec.inspect
        _MAY_HOLD[id(info)] = True  # a recursive type may, while it is being looked at
        if isinstance(info, mi.StructType):
            known = True
        elif isinstance(info, mi.ListType):
            known = _may_hold_unknown(info.item_type)
        elif isinstance(info, mi.DictType):
            known = _may_hold_unknown(info.value_type)
        elif isinstance(info, mi.UnionType):
            known = any(_may_hold_unknown(t) for t in info.types)
        else:
            known = False
        _MAY_HOLD[id(info)] = known
    return known


def _walk_unknown(data: Any, tp: Any, path: str, found: list[str]) -> None:
    _walk_info(data, _type_info(tp), path, found)


def _walk_info(data: Any, info: Any, path: str, found: list[str]) -> None:
    # Only objects and arrays can hold undeclared fields: scalars are never walked into.
    mi = msgspec.inspect
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if isinstance(data, dict) and isinstance(t, mi.StructType | mi.DictType):
                _walk_info(data, t, path, found)
                return
            if isinstance(data, list) and isinstance(t, mi.ListType):
                _walk_info(data, t, path, found)
                return
        return
    if isinstance(info, mi.StructType) and isinstance(data, dict):
        fields = _field_types(info)
        for key, value in data.items():
            field = fields.get(key, _UNDECLARED)
            if field is _UNDECLARED:
                found.append(f"{path}.{key}")
            elif field is not None and isinstance(value, dict | list):
                _walk_info(value, field, f"{path}.{key}", found)
    elif (
        isinstance(info, mi.ListType)
        and isinstance(data, list)
        and _may_hold_unknown(info.item_type)
    ):
        for i, item in enumerate(data):
            if isinstance(item, dict | list):
                _walk_info(item, info.item_type, f"{path}[{i}]", found)
    elif (
        isinstance(info, mi.DictType)
        and isinstance(data, dict)
        and _may_hold_unknown(info.value_type)
    ):
        for key, value in data.items():
            if isinstance(value, dict | list):
                _walk_info(value, info.value_type, f"{path}[{key}]", found)
