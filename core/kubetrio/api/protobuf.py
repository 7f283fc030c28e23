"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies into JSON values.

From client-go v0.32 on, kubectl's typed clients (``kubectl create deployment|
namespace|configmap|secret``, ``auth can-i``, ``auth whoami``, ...) send protobuf.
The server only ever needs to *read* it (answering in JSON is fine), so this is a
decoder only: it turns the body into the same plain JSON dict the JSON path would
have produced, and the rest of the request handling is shared.

Envelope: the bytes ``k8s\\x00``, then a ``runtime.Unknown`` message — field 1
``typeMeta`` {1 apiVersion, 2 kind}, 2 ``raw`` (the object's message), 3
``contentEncoding``, 4 ``contentType``. The object's message is decoded with the
generated field table (:mod:`.generated.protobuf_schema`). Special types become
their JSON forms: ``Time``/``MicroTime`` {seconds, nanos} -> RFC 3339 strings (an
empty message is Go's zero time -> null), ``Quantity`` -> its string,
``IntOrString`` {type, intVal, strVal} -> int or str, ``RawExtension``/``FieldsV1``
-> the embedded JSON, ``bytes`` -> base64, Go slice types (``Verbs``) -> lists,
embedded Go structs -> fields merged into the parent.

Go's protobuf encoder writes non-pointer fields even when empty, where its JSON
encoder would omit them (``omitempty``); empty strings, lists and maps of fields
swagger does not mark required are therefore dropped, so the dict matches the JSON a
Go client would send. Numbers and booleans are kept (a zero may be meaningful).

Malformed input raises :class:`ProtobufDecodeError` (a ``ValueError``) — answer 400.
"""

from __future__ import annotations

import base64
import datetime as _dt
import struct
from typing import Any

import msgspec

from .generated.protobuf_schema import LIST_MESSAGES, MESSAGES, REQUIRED
from .generated.registry import KINDS
from .scheme import split_api_version

__all__ = ["MAGIC", "ProtobufDecodeError", "decode_message", "decode_protobuf"]

MAGIC = b"k8s\x00"
"""The four bytes every Kubernetes protobuf body starts with."""

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICRO_TIME = _META + "MicroTime"
_DURATION = _META + "Duration"
_FIELDS_V1 = _META + "FieldsV1"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_MAX_DEPTH = 100


class ProtobufDecodeError(ValueError):
    """The body is not a valid Kubernetes protobuf message (or not of a known kind)."""


def _message_for(api_version: str, kind: str) -> str:
    group, version = split_api_version(api_version)
    def_id = KINDS.get((group, version, kind))
    if def_id is None or not def_id.startswith("io.k8s."):
        raise ProtobufDecodeError(f"no protobuf schema for {api_version} {kind}")
    name = "k8s.io." + def_id.removeprefix("io.k8s.")
    if name not in MESSAGES:
        raise ProtobufDecodeError(f"no protobuf schema for {api_version} {kind}")
    return name


def decode_protobuf(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """Decode a whole request body: ``(apiVersion, kind, object as a JSON dict)``.

    The dict carries ``apiVersion`` and ``kind`` like a JSON body would.
    """
    if not body.startswith(MAGIC):
        raise ProtobufDecodeError("protobuf body does not start with the k8s\\x00 prefix")
    envelope = _Reader(memoryview(body)[len(MAGIC) :])
    api_version = kind = ""
    raw: memoryview | None = None
    encoding = ""
    for number, wire, value in envelope.fields():
        if number == 1 and wire == 2:
            assert isinstance(value, memoryview)
            for n, w, v in _Reader(value).fields():
                if w == 2 and n in (1, 2):
                    text = _utf8(v)
                    if n == 1:
                        api_version = text
                    else:
                        kind = text
        elif number == 2 and wire == 2:
            assert isinstance(value, memoryview)
            raw = value
        elif number == 3 and wire == 2:
            encoding = _utf8(value)
    if encoding:
        raise ProtobufDecodeError(f"unsupported content encoding {encoding!r}")
    if not api_version or not kind:
        raise ProtobufDecodeError("protobuf envelope has no apiVersion/kind")
    obj = decode_message(_message_for(api_version, kind), bytes(raw or b""))
    obj["apiVersion"] = api_version
    obj["kind"] = kind
    return api_version, kind, obj


def decode_message(message: str, data: bytes) -> dict[str, Any]:
    """Decode the bytes of one message (full proto name) into a JSON dict."""
    value = _decode(message, memoryview(data), 0)
    if not isinstance(value, dict):
        raise ProtobufDecodeError(f"{message} does not decode to an object")
    return value


# ---- the wire format -------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def varint(self) -> int:
        result = shift = 0
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise ProtobufDecodeError("truncated varint")
            b = buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise ProtobufDecodeError("varint too long")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtobufDecodeError("truncated field")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def fields(self) -> Any:
        """Yield (number, wire type, value): ints for varint/fixed, memoryviews for bytes."""
        while self.pos < len(self.buf):
            key = self.varint()
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ProtobufDecodeError("field number 0")
            if wire == 0:
                yield number, wire, self.varint()
            elif wire == 1:
                yield number, wire, self.take(8)
            elif wire == 2:
                yield number, wire, self.take(self.varint())
            elif wire == 5:
                yield number, wire, self.take(4)
            else:
                raise ProtobufDecodeError(f"unsupported wire type {wire}")


def _utf8(value: Any) -> str:
    if not isinstance(value, memoryview):
        raise ProtobufDecodeError("expected a length-delimited string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufDecodeError("string field is not valid UTF-8") from None


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32:
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    return value


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "string":
        return _utf8(value)
    if kind == "bytes":
        if not isinstance(value, memoryview):
            raise ProtobufDecodeError("expected bytes")
        return base64.b64encode(value).decode("ascii")
    if kind == "bool":
        if wire != 0:
            raise ProtobufDecodeError("expected a varint boolean")
        return bool(value)
    if kind in ("int32", "int64", "uint"):
        if wire != 0:
            raise ProtobufDecodeError("expected a varint integer")
        return value if kind == "uint" else _signed(value, 32 if kind == "int32" else 64)
    if kind == "double":
        if wire != 1:
            raise ProtobufDecodeError("expected a 64-bit double")
        return struct.unpack("<d", value)[0]
    if kind == "float":
        if wire != 5:
            raise ProtobufDecodeError("expected a 32-bit float")
        return struct.unpack("<f", value)[0]
    raise ProtobufDecodeError(f"unknown field kind {kind}")  # pragma: no cover


def _packed(kind: str, value: memoryview) -> list[Any]:
    """Numeric repeated fields may arrive packed into one length-delimited field."""
    reader = _Reader(value)
    out: list[Any] = []
    while reader.pos < len(value):
        if kind == "double":
            out.append(_scalar(kind, 1, reader.take(8)))
        elif kind == "float":
            out.append(_scalar(kind, 5, reader.take(4)))
        else:
            out.append(_scalar(kind, 0, reader.varint()))
    return out


def _special(message: str, data: memoryview) -> tuple[bool, Any]:
    """Decode the types whose JSON form is not an object of their fields."""
    if message in (_TIME, _MICRO_TIME):
        if not data:
            return True, None
        seconds = nanos = 0
        for n, w, v in _Reader(data).fields():
            if n == 1 and w == 0:
                seconds = _signed(v, 64)
            elif n == 2 and w == 0:
                nanos = _signed(v, 32)
        try:
            when = _dt.datetime.fromtimestamp(seconds, _dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ProtobufDecodeError(f"timestamp {seconds} out of range") from None
        if message == _TIME:
            return True, when.strftime("%Y-%m-%dT%H:%M:%SZ")
        when = when.replace(microsecond=max(0, min(999_999, nanos // 1000)))
        return True, when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if message == _QUANTITY:
        text = "0"
        for n, w, v in _Reader(data).fields():
            if n == 1 and w == 2:
                text = _utf8(v)
        return True, text
    if message == _INT_OR_STRING:
        typ, int_val, str_val = 0, 0, ""
        for n, w, v in _Reader(data).fields():
            if n == 1 and w == 0:
                typ = v
            elif n == 2 and w == 0:
                int_val = _signed(v, 32)
            elif n == 3 and w == 2:
                str_val = _utf8(v)
        return True, str_val if typ == 1 else int_val
    if message in (_RAW_EXTENSION, _FIELDS_V1):
        raw = b""
        for n, w, v in _Reader(data).fields():
            if n == 1 and w == 2:
                raw = bytes(v)
        if not raw:
            return True, None
        try:
            return True, msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise ProtobufDecodeError(f"{message} does not hold JSON") from None
    if message == _DURATION:
        nanos = 0
        for n, w, v in _Reader(data).fields():
            if n == 1 and w == 0:
                nanos = _signed(v, 64)
        return True, _go_duration(nanos)
    return False, None


def _go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String()`` for the JSON form of ``metav1.Duration``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                text = f"{nanos / size:.9f}".rstrip("0").rstrip(".")
                return f"{sign}{text}{unit}"
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = f"{rest / 1_000_000_000:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _decode(message: str, data: memoryview, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ProtobufDecodeError("message nested too deeply")
    handled, value = _special(message, data)
    if handled:
        return value
    table = MESSAGES.get(message)
    if table is None:
        raise ProtobufDecodeError(f"no protobuf schema for message {message}")
    obj: dict[str, Any] = {}
    for number, wire, raw in _Reader(data).fields():
        spec = table.get(number)
        if spec is None:
            continue  # a field this schema does not know: skip, as Go does
        name, kind, ref, repeated = spec
        if kind == "message" or kind == "inline":
            if wire != 2:
                raise ProtobufDecodeError(f"{message}.{name}: expected a message")
            value = _decode(ref, raw, depth + 1)
            if kind == "inline":
                if isinstance(value, dict):
                    obj.update(value)
                continue
            if repeated:
                obj.setdefault(name, []).append(value)
            else:
                obj[name] = value
        elif kind.startswith("map:"):
            if wire != 2:
                raise ProtobufDecodeError(f"{message}.{name}: expected a map entry")
            key, item = _map_entry(kind[4:], ref, raw, depth)
            obj.setdefault(name, {})[key] = item
        elif repeated:
            items = obj.setdefault(name, [])
            if wire == 2 and kind not in ("string", "bytes"):
                items.extend(_packed(kind, raw))
            else:
                items.append(_scalar(kind, wire, raw))
        else:
            obj[name] = _scalar(kind, wire, raw)
    if message in LIST_MESSAGES:
        return next(iter(obj.values()), [])
    # Empty strings, lists and maps are what Go writes for unset non-pointer fields;
    # an empty nested message stays (Go's JSON writes structs even when empty).
    kinds = {spec[0]: spec for spec in table.values()}
    for name in [n for n, v in obj.items() if v == "" or v == [] or v == {}]:
        spec = kinds.get(name)
        single_message = spec is not None and spec[1] == "message" and not spec[3]
        if not single_message and f"{message}.{name}" not in REQUIRED:
            del obj[name]
    return obj


def _map_entry(kind: str, ref: str, data: memoryview, depth: int) -> tuple[str, Any]:
    key = ""
    value: Any = None
    have_value = False
    for n, w, v in _Reader(data).fields():
        if n == 1:
            key = _utf8(v)
        elif n == 2:
            have_value = True
            if kind == "message":
                if w != 2:
                    raise ProtobufDecodeError("map value: expected a message")
                value = _decode(ref, v, depth + 1)
            else:
                value = _scalar(kind, w, v)
    if not have_value:
        # an absent value is the zero value of its type
        value = {"string": "", "bytes": "", "bool": False}.get(kind, 0)
        if kind == "message":
            handled, special = _special(ref, memoryview(b""))
            value = special if handled else ([] if ref in LIST_MESSAGES else {})
    return key, value
