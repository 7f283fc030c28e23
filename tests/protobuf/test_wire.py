"""The wire-format reader: varints, the four wire types, signed readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.apiserver.protobuf import WireError, as_signed, iter_fields, read_varint
from tests.protobuf.pbwrite import fixed32, fixed64, ld, tag, varint, vint


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x00", 0),
        (b"\x01", 1),
        (b"\x7f", 127),
        (b"\x80\x01", 128),
        (b"\xac\x02", 300),
        (b"\xff\xff\xff\xff\x0f", 0xFFFFFFFF),
        (b"\xff" * 9 + b"\x01", (1 << 64) - 1),
        (b"\x80\x00", 0),  # non-minimal encodings are valid protobuf
    ],
)
def test_read_varint(data: bytes, value: int) -> None:
    assert read_varint(data, 0) == (value, len(data))


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_varint_round_trip(value: int) -> None:
    data = varint(value) + b"tail"
    assert read_varint(data, 0) == (value, len(data) - 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated varint"),
        (b"\x80", "truncated varint"),
        (b"\xff\xff\xff", "truncated varint"),
        (b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\xff" * 9 + b"\x7f", "overflows 64 bits"),
    ],
)
def test_bad_varints(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        read_varint(data, 0)


def test_iter_fields_all_wire_types() -> None:
    data = vint(1, 150) + fixed64(2, 2**63 + 5) + ld(3, b"abc") + fixed32(4, 7) + ld(536870911, b"")
    fields = [(n, w, bytes(v) if isinstance(v, memoryview) else v) for n, w, v in iter_fields(data)]
    assert fields == [
        (1, 0, 150),
        (2, 1, 2**63 + 5),
        (3, 2, b"abc"),
        (4, 5, 7),
        (536870911, 2, b""),
    ]


def test_length_delimited_is_zero_copy() -> None:
    data = ld(1, b"x" * 1000)
    [(_, _, value)] = list(iter_fields(data))
    assert isinstance(value, memoryview)
    assert value.obj is memoryview(data).obj or bytes(value) == b"x" * 1000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tag(0, 0) + b"\x01", "invalid field number 0"),
        (tag(1, 3), "unsupported wire type 3"),
        (tag(1, 4), "unsupported wire type 4"),
        (tag(1, 6), "unsupported wire type 6"),
        (tag(1, 7), "unsupported wire type 7"),
        (tag(1, 2) + varint(5) + b"abc", "claims 5 bytes"),
        (tag(1, 2) + varint(2**62), "claims"),
        (tag(1, 1) + b"1234567", "truncated fixed64"),
        (tag(1, 5) + b"123", "truncated fixed32"),
        (tag(1, 0), "truncated varint"),
        (b"\x80", "truncated varint"),
    ],
)
def test_iter_fields_rejects(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        list(iter_fields(data))


@pytest.mark.parametrize(
    ("value", "bits", "signed"),
    [
        (0, 32, 0),
        (5, 32, 5),
        ((1 << 64) - 1, 32, -1),  # Go's int32(-1): a 10-byte varint
        ((1 << 64) - 1, 64, -1),
        (0x7FFFFFFF, 32, 2**31 - 1),
        (0x80000000, 32, -(2**31)),
        (1 << 63, 64, -(2**63)),
    ],
)
def test_as_signed(value: int, bits: int, signed: int) -> None:
    assert as_signed(value, bits) == signed


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_negative_int64_round_trip(value: int) -> None:
    raw, _ = read_varint(varint(value), 0)
    assert as_signed(raw, 64) == value
