"""A test-only protobuf *writer*, to build bodies the way Go's gogo encoder lays them out.

The server never encodes protobuf; these helpers exist so tests can state inputs as
fields (``ld(1, "x") + vint(2, 3)``) instead of opaque byte strings.
"""

from __future__ import annotations

import struct

MAGIC = b"k8s\x00"


def varint(value: int) -> bytes:
    """Unsigned varint; negative numbers as Go writes them (64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """A field key."""
    return varint(number << 3 | wire_type)


def vint(number: int, value: int | bool) -> bytes:
    """A varint field (int32/int64/bool)."""
    return tag(number, 0) + varint(int(value))


def ld(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (string, bytes, embedded message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return tag(number, 2) + varint(len(data)) + data


def fixed64(number: int, value: int) -> bytes:
    """A 64-bit fixed field."""
    return tag(number, 1) + struct.pack("<Q", value)


def fixed32(number: int, value: int) -> bytes:
    """A 32-bit fixed field."""
    return tag(number, 5) + struct.pack("<I", value)


def entry(number: int, key: str, value: bytes | str) -> bytes:
    """One map entry {1: key, 2: value} (value already encoded if bytes of a message)."""
    return ld(number, ld(1, key) + ld(2, value))


def envelope(api_version: str, kind: str, raw: bytes, *, content_type: str = "") -> bytes:
    """``k8s\\x00`` + runtime.Unknown, as client-go writes it."""
    body = ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw)
    body += ld(3, "") + ld(4, content_type)
    return MAGIC + body


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    """A meta/v1 Time or MicroTime message body."""
    return vint(1, seconds) + vint(2, nanos)
