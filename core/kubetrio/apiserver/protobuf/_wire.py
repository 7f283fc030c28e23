"""The protobuf wire format, read-only: just what decoding Kubernetes bodies needs.

A message is a sequence of ``(tag, value)`` records; the tag is a varint holding
``field_number << 3 | wire_type``. Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited
(strings, bytes, nested messages, packed repeated scalars), 5 fixed 32-bit. Groups (3, 4)
are long deprecated and never produced by Kubernetes, so they are refused.

Every malformed input raises :class:`WireError` (a ``ValueError``) carrying the byte
offset; nothing here allocates more than the input's own size, so hostile lengths cannot
exhaust memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

VARINT: Final = 0
FIXED64: Final = 1
LENGTH_DELIMITED: Final = 2
FIXED32: Final = 5

_MAX_VARINT_BYTES: Final = 10
_U64: Final = 1 << 64


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode the unsigned varint at ``pos``: ``(value, position after it)``.

    :raises WireError: truncated, longer than 10 bytes, or above 2**64 - 1.
    """
    result = 0
    shift = 0
    end = len(data)
    for _ in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise WireError(f"truncated varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >= _U64:
                raise WireError(f"varint overflows 64 bits before byte {pos}")
            return result, pos
        shift += 7
    raise WireError(f"varint longer than {_MAX_VARINT_BYTES} bytes before byte {pos}")


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)`` for each record of one message.

    The value is an ``int`` for varint and fixed-width records (unsigned; see
    :func:`as_signed`) and a zero-copy ``memoryview`` for length-delimited ones.

    :raises WireError: on any malformed record.
    """
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        tag, pos = read_varint(view, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0 or number >= 1 << 29:
            raise WireError(f"invalid field number {number} at byte {pos}")
        value: int | memoryview
        if wire_type == VARINT:
            value, pos = read_varint(view, pos)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(view, pos)
            if length > end - pos:
                raise WireError(
                    f"field {number} claims {length} bytes at byte {pos}, only {end - pos} left"
                )
            value = view[pos : pos + length]
            pos += length
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if size > end - pos:
                raise WireError(f"truncated fixed{size * 8} field {number} at byte {pos}")
            value = int.from_bytes(view[pos : pos + size], "little")
            pos += size
        else:
            raise WireError(f"unsupported wire type {wire_type} for field {number} at byte {pos}")
        yield number, wire_type, value


def iter_packed_varints(data: memoryview) -> Iterator[int]:
    """The varints of a packed repeated field, in order.

    :raises WireError: when the last one is truncated.
    """
    pos = 0
    while pos < len(data):
        value, pos = read_varint(data, pos)
        yield value


def as_signed(value: int, bits: int) -> int:
    """Two's-complement reading of an unsigned varint as a ``bits``-wide signed integer.

    Go encodes a negative int32 as a 10-byte varint of its 64-bit sign extension; reading it
    back keeps the low ``bits`` bits, as Go's ``int32(v)`` conversion does.
    """
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value
