"""Kubernetes protobuf objects → the dict their JSON form decodes to.

A body is ``k8s\\x00`` + a ``runtime.Unknown`` envelope: ``{1: TypeMeta{1 apiVersion,
2 kind}, 2: raw, 3: contentEncoding, 4: contentType}``. ``raw`` is the object's message,
found through the generated ``KINDS`` table; its fields are decoded through ``MESSAGES``.

The aim is the dict kube-apiserver would see had the client sent JSON, i.e. Go's
``json.Marshal`` of the decoded struct:

- field names are the JSON names (inline structs flattened into their parent);
- scalars appear when on the wire, except zeros of ``omitempty`` non-pointer fields (Go's
  protobuf encoder writes those always, its JSON encoder never): ``OMIT_ZERO``;
- messages appear when on the wire (Go writes non-pointer structs even when empty, and
  JSON keeps them as ``{}``); repeated fields and maps when they have entries;
- the apimachinery types whose JSON is not their struct: ``Time``/``MicroTime`` → RFC 3339
  (an empty Time is Go's zero time, JSON ``null``), ``Duration`` → Go's duration text,
  ``Quantity`` → its string, ``IntOrString`` → int or str, ``RawExtension``/``FieldsV1``
  → the embedded JSON, named string slices (``ExtraValue``) → arrays;
- ``bytes`` → base64, as Go's JSON encodes ``[]byte``.

Unknown field numbers are skipped, as Go's decoder does; anything malformed raises
:class:`ProtobufError`.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ._fields import INLINE, KINDS, LIST_WRAPPERS, MAP, MESSAGES, OMIT_ZERO, REPEATED
from ._wire import (
    LENGTH_DELIMITED,
    VARINT,
    WireError,
    as_signed,
    iter_fields,
    iter_packed_varints,
)

MAGIC: Final = b"k8s\x00"
PROTOBUF: Final = "application/vnd.kubernetes.protobuf"

# Kubernetes types nest about 15 deep (a CRD's JSONSchemaProps is not protobuf); the cap
# keeps hostile bodies from reaching Python's recursion limit.
MAX_DEPTH: Final = 100

_META: Final = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME: Final = _META + "Time"
_MICRO_TIME: Final = _META + "MicroTime"
_DURATION: Final = _META + "Duration"
_FIELDS_V1: Final = _META + "FieldsV1"
_RAW_EXTENSION: Final = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_QUANTITIES: Final = frozenset(
    {
        "k8s.io.apimachinery.pkg.api.resource.Quantity",
        "k8s.io.apimachinery.pkg.api.resource.QuantityValue",
    }
)
_INT_OR_STRING: Final = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NANOS: Final = 1_000_000_000


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object this server can read."""


def decode_object(body: bytes | memoryview, *, depth: int = 0) -> dict[str, Any]:
    """Decode one enveloped object (``k8s\\x00`` + ``runtime.Unknown``) to its JSON dict.

    :param body: the request body.
    :param depth: nesting depth so far (a RawExtension may hold another envelope).
    :returns: ``{"apiVersion": ..., "kind": ..., <the object's fields>}``.
    :raises ProtobufError: for anything malformed or of a kind the table lacks.
    """
    if bytes(body[:4]) != MAGIC:
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\x00")
    envelope = memoryview(body)[4:]
    api_version = kind = content_encoding = content_type = ""
    raw: memoryview = memoryview(b"")
    try:
        for number, wire_type, value in iter_fields(envelope):
            if number == 1:
                for sub, sub_wire, sub_value in iter_fields(
                    _delimited(value, wire_type, "typeMeta")
                ):
                    if sub == 1:
                        api_version = _string(sub_value, sub_wire, "apiVersion")
                    elif sub == 2:
                        kind = _string(sub_value, sub_wire, "kind")
            elif number == 2:
                raw = _delimited(value, wire_type, "raw")
            elif number == 3:
                content_encoding = _string(value, wire_type, "contentEncoding")
            elif number == 4:
                content_type = _string(value, wire_type, "contentType")
    except WireError as exc:
        raise ProtobufError(f"malformed envelope: {exc}") from exc
    if not api_version or not kind:
        raise ProtobufError("the envelope has no apiVersion and kind")
    if content_encoding:
        raise ProtobufError(f"unsupported contentEncoding {content_encoding!r}")
    if content_type.split(";")[0].strip() == "application/json":
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProtobufError(f"the embedded JSON is invalid: {exc}") from exc
        if not isinstance(decoded, dict):
            raise ProtobufError("the embedded JSON is not an object")
        return decoded
    if content_type not in ("", PROTOBUF):
        raise ProtobufError(f"unsupported contentType {content_type!r}")
    message = KINDS.get((api_version, kind))
    if message is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    try:
        decode_message(message, raw, depth=depth, into=obj)
    except WireError as exc:
        raise ProtobufError(f"malformed {kind}: {exc}") from exc
    return obj


def decode_message(
    message: str,
    data: bytes | memoryview,
    *,
    depth: int = 0,
    into: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode the fields of ``message`` (a full proto name) into a JSON-shaped dict.

    :param into: merge into this dict (a repeated non-repeated field, or an inline struct,
        merges as Go's decoder does) instead of a new one.
    :raises ProtobufError: or its :class:`WireError` cause, for malformed input.
    """
    if depth > MAX_DEPTH:
        raise ProtobufError(f"the object nests deeper than {MAX_DEPTH} messages")
    fields = MESSAGES.get(message)
    if fields is None:
        raise ProtobufError(f"no schema for message {message}")
    out: dict[str, Any] = {} if into is None else into
    for number, wire_type, value in iter_fields(data):
        spec = fields.get(number)
        if spec is None:
            continue
        name, type_, flags = spec
        if flags & MAP:
            key, entry = _map_entry(type_, _delimited(value, wire_type, name), name, depth)
            target = out.get(name)
            if not isinstance(target, dict):
                target = out[name] = {}
            target[key] = entry
        elif type_ in _SCALARS:
            if flags & REPEATED:
                target = out.get(name)
                if not isinstance(target, list):
                    target = out[name] = []
                if wire_type == LENGTH_DELIMITED and type_ not in ("string", "bytes"):
                    # Packed encoding: proto3 writers and some proto2 ones use it.
                    convert = _SCALARS[type_]
                    target.extend(
                        convert(v, VARINT, name)
                        for v in iter_packed_varints(_delimited(value, wire_type, name))
                    )
                else:
                    target.append(_SCALARS[type_](value, wire_type, name))
            else:
                scalar = _SCALARS[type_](value, wire_type, name)
                if flags & OMIT_ZERO and not scalar:
                    out.pop(name, None)
                else:
                    out[name] = scalar
        else:
            payload = _delimited(value, wire_type, name)
            if flags & REPEATED:
                target = out.get(name)
                if not isinstance(target, list):
                    target = out[name] = []
                target.append(decode_value(type_, payload, depth=depth + 1))
            elif flags & INLINE:
                decode_message(type_, payload, depth=depth + 1, into=out)
            else:
                existing = out.get(name)
                if isinstance(existing, dict) and type_ not in _SPECIAL:
                    decode_message(type_, payload, depth=depth + 1, into=existing)
                else:
                    out[name] = decode_value(type_, payload, depth=depth + 1)
    return out


def decode_value(message: str, data: bytes | memoryview, *, depth: int = 0) -> Any:
    """Decode one embedded message, as its JSON value (special types included)."""
    special = _SPECIAL.get(message)
    if special is not None:
        return special(memoryview(data), depth)
    if message in LIST_WRAPPERS:
        return _list_wrapper(memoryview(data))
    return decode_message(message, data, depth=depth)


# Scalars ------------------------------------------------------------------------------


def _expect(wire_type: int, wanted: int, name: str) -> None:
    if wire_type != wanted:
        raise ProtobufError(f"field {name}: wire type {wire_type}, expected {wanted}")


def _delimited(value: int | memoryview, wire_type: int, name: str) -> memoryview:
    _expect(wire_type, LENGTH_DELIMITED, name)
    assert isinstance(value, memoryview)  # wire type 2 always carries bytes
    return value


def _string(value: int | memoryview, wire_type: int, name: str) -> str:
    # Go's JSON encoder writes invalid UTF-8 as U+FFFD; do the same rather than refuse.
    return bytes(_delimited(value, wire_type, name)).decode("utf-8", "replace")


def _bytes(value: int | memoryview, wire_type: int, name: str) -> str:
    return base64.b64encode(_delimited(value, wire_type, name)).decode("ascii")


def _varint(value: int | memoryview, wire_type: int, name: str) -> int:
    _expect(wire_type, VARINT, name)
    assert isinstance(value, int)
    return value


def _bool(value: int | memoryview, wire_type: int, name: str) -> bool:
    return _varint(value, wire_type, name) != 0


def _int32(value: int | memoryview, wire_type: int, name: str) -> int:
    return as_signed(_varint(value, wire_type, name), 32)


def _int64(value: int | memoryview, wire_type: int, name: str) -> int:
    return as_signed(_varint(value, wire_type, name), 64)


def _uint32(value: int | memoryview, wire_type: int, name: str) -> int:
    return _varint(value, wire_type, name) & 0xFFFFFFFF


def _uint64(value: int | memoryview, wire_type: int, name: str) -> int:
    return _varint(value, wire_type, name)


def _zigzag(value: int | memoryview, wire_type: int, name: str) -> int:
    raw = _varint(value, wire_type, name)
    return (raw >> 1) ^ -(raw & 1)


_Scalar = Callable[[int | memoryview, int, str], Any]
_SCALARS: Final[dict[str, _Scalar]] = {
    "string": _string,
    "bytes": _bytes,
    "bool": _bool,
    "int32": _int32,
    "int64": _int64,
    "uint32": _uint32,
    "uint64": _uint64,
    "sint32": _zigzag,
    "sint64": _zigzag,
}
_ZEROS: Final[dict[str, Any]] = {"string": "", "bytes": "", "bool": False}


def _map_entry(value_type: str, data: memoryview, name: str, depth: int) -> tuple[str, Any]:
    """One ``map<string, V>`` entry: a message ``{1: key, 2: value}``."""
    key = ""
    entry: Any = None
    seen_value = False
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            key = _string(value, wire_type, name)
        elif number == 2:
            seen_value = True
            if value_type in _SCALARS:
                entry = _SCALARS[value_type](value, wire_type, name)
            else:
                entry = decode_value(
                    value_type, _delimited(value, wire_type, name), depth=depth + 1
                )
    if not seen_value:
        # An absent value is the type's zero value, as in Go.
        if value_type in _SCALARS:
            entry = _ZEROS.get(value_type, 0)
        else:
            entry = decode_value(value_type, b"", depth=depth + 1)
    return key, entry


# Special types -------------------------------------------------------------------------


def _small_message(data: memoryview, kinds: dict[int, str]) -> dict[int, Any]:
    """Decode a tiny fixed message by field number (last occurrence wins)."""
    values: dict[int, Any] = {}
    for number, wire_type, value in iter_fields(data):
        kind = kinds.get(number)
        if kind is not None:
            values[number] = _SCALARS[kind](value, wire_type, f"field {number}")
    return values


def _instant(data: memoryview) -> tuple[dt.datetime, int] | None:
    """A ``Timestamp`` {1 seconds, 2 nanos} as (UTC datetime to the second, nanos)."""
    if not data:
        return None  # Go's zero time marshals to no bytes; its JSON is null.
    values = _small_message(data, {1: "int64", 2: "int32"})
    # time.Unix normalises nanos outside [0, 1e9) into the seconds.
    seconds, nanos = divmod(values.get(1, 0) * _NANOS + values.get(2, 0), _NANOS)
    try:
        instant = _EPOCH + dt.timedelta(seconds=seconds)
    except OverflowError as exc:
        raise ProtobufError(f"timestamp {seconds}s is out of range") from exc
    return instant, nanos


def _rfc3339_seconds(instant: dt.datetime) -> str:
    # By hand: strftime's %Y does not zero-pad years below 1000 on every libc; Go does.
    return (
        f"{instant.year:04d}-{instant.month:02d}-{instant.day:02d}"
        f"T{instant.hour:02d}:{instant.minute:02d}:{instant.second:02d}"
    )


def _time(data: memoryview, depth: int) -> str | None:
    decoded = _instant(data)
    if decoded is None:
        return None
    return _rfc3339_seconds(decoded[0]) + "Z"


def _micro_time(data: memoryview, depth: int) -> str | None:
    decoded = _instant(data)
    if decoded is None:
        return None
    instant, nanos = decoded
    return f"{_rfc3339_seconds(instant)}.{nanos // 1000:06d}Z"


def go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String``: ``1h2m3.5s``, ``1.5µs``, ``0s``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    magnitude = abs(nanos)
    if magnitude < _NANOS:
        for unit, scale in (("ns", 1), ("µs", 1000), ("ms", 1_000_000)):
            if magnitude < scale * 1000:
                return f"{sign}{_decimal(magnitude, scale)}{unit}"
    text = f"{_decimal(magnitude % (60 * _NANOS), _NANOS)}s"
    minutes = magnitude // (60 * _NANOS)
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _decimal(value: int, scale: int) -> str:
    """``value / scale`` with the fraction's trailing zeros trimmed (Go's fmtFrac)."""
    whole, fraction = divmod(value, scale)
    if not fraction:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


def _duration(data: memoryview, depth: int) -> str:
    return go_duration(_small_message(data, {1: "int64"}).get(1, 0))


def _quantity(data: memoryview, depth: int) -> str:
    # A zero Quantity prints as "0"; validity is checked where quantities are used.
    return str(_small_message(data, {1: "string"}).get(1, "0"))


def _int_or_string(data: memoryview, depth: int) -> int | str:
    values = _small_message(data, {1: "int64", 2: "int32", 3: "string"})
    kind = values.get(1, 0)
    if kind == 0:
        return int(values.get(2, 0))
    if kind == 1:
        return str(values.get(3, ""))
    raise ProtobufError(f"IntOrString has impossible type {kind}")


def _embedded_json(data: memoryview, depth: int) -> Any:
    """RawExtension/FieldsV1 ``{1: raw}``: the raw JSON (or a nested protobuf object)."""
    payload: bytes | None = None
    for number, wire_type, value in iter_fields(data):
        if number == 1:
            payload = bytes(_delimited(value, wire_type, "raw"))
    if payload is None:
        return None
    if payload.startswith(MAGIC):
        return decode_object(payload, depth=depth + 1)
    if not payload:
        return None
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise ProtobufError(f"embedded raw object is not JSON: {exc}") from exc


def _list_wrapper(data: memoryview) -> list[str]:
    """A Go named ``[]string`` (``Verbs``, ``ExtraValue``): ``repeated string items = 1``."""
    return [
        _string(value, wire_type, "items")
        for number, wire_type, value in iter_fields(data)
        if number == 1
    ]


_SPECIAL: Final[dict[str, Callable[[memoryview, int], Any]]] = {
    _TIME: _time,
    _MICRO_TIME: _micro_time,
    _DURATION: _duration,
    _FIELDS_V1: _embedded_json,
    _RAW_EXTENSION: _embedded_json,
    _INT_OR_STRING: _int_or_string,
    **dict.fromkeys(_QUANTITIES, _quantity),
}
