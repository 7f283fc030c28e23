"""Malformed protobuf bodies: always a 400 ApiError, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrio.apiserver import ApiError
from kubetrio.apiserver._protobuf import decode_protobuf_body
from tests.protobuf.pbwrite import MAGIC, envelope, ld, tag, varint, vint

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.bin"))
DEPLOYMENT = (Path(__file__).parent / "fixtures" / "create_deployment.bin").read_bytes()


def decode_or_400(body: bytes) -> Any:
    """Decode; a failure must be a 400 ApiError (anything else propagates and fails)."""
    try:
        return decode_protobuf_body(body)
    except ApiError as exc:
        assert exc.code == 400, exc.message
        assert exc.message
        return exc


def rejected(body: bytes) -> str:
    with pytest.raises(ApiError) as info:
        decode_protobuf_body(body)
    assert info.value.code == 400
    assert info.value.reason == "BadRequest"
    return info.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "magic"),
        (b"k8s", "magic"),
        (b'{"kind":"Pod"}', "magic"),
        (b"k8s\x01" + DEPLOYMENT[4:], "magic"),
        (MAGIC, "no apiVersion and kind"),
        (MAGIC + ld(1, ld(2, "Pod")), "no apiVersion and kind"),
        (MAGIC + b"\x0a", "truncated varint"),
        (MAGIC + b"\x0a\xff\xff", "truncated varint"),
        (MAGIC + tag(1, 2) + varint(2**62) + b"x", "claims"),
        (MAGIC + tag(2, 2) + varint(10**9), "claims"),
        (MAGIC + tag(1, 3), "wire type 3"),
        (MAGIC + vint(1, 7), "wire type"),
        (envelope("apps/v1", "Nonsense", b""), 'no kind "Nonsense"'),
        (envelope("made.up/v9", "Deployment", b""), "is registered"),
        (envelope("v1", "Pod", tag(1, 2) + varint(2**40)), "claims"),
        (envelope("v1", "Pod", b"\x0a\x05\x0a\x03ab"), "claims"),
        (envelope("v1", "Pod", ld(1, ld(8, vint(1, 2**62)))), "out of range"),
        (envelope("v1", "ConfigMap", b"", content_type="application/yaml"), "contentType"),
        (envelope("v1", "ConfigMap", b"{", content_type="application/json"), "JSON"),
        (envelope("v1", "ConfigMap", b"[1]", content_type="application/json"), "not an object"),
    ],
)
def test_rejected_with_a_clear_message(body: bytes, message: str) -> None:
    assert message in rejected(body)


def test_content_encoding_is_refused() -> None:
    body = MAGIC + ld(1, ld(1, "v1") + ld(2, "ConfigMap")) + ld(2, b"") + ld(3, "gzip")
    assert "contentEncoding" in rejected(body)


@pytest.mark.parametrize("cut", range(1, len(DEPLOYMENT)))
def test_every_truncation_of_a_real_body(cut: int) -> None:
    result = decode_or_400(DEPLOYMENT[:cut])
    # Cutting exactly between records still parses, and must give a subset-shaped dict.
    assert isinstance(result, ApiError | dict)


def test_nesting_is_capped() -> None:
    # ControllerRevision.data is a RawExtension, which may hold another enveloped object.
    body = envelope("apps/v1", "ControllerRevision", b"")
    for _ in range(300):
        body = envelope("apps/v1", "ControllerRevision", ld(2, ld(1, body)))
    assert "deeper than" in rejected(body)


def test_huge_length_allocates_nothing() -> None:
    body = envelope("v1", "Secret", tag(2, 2) + varint(2**63 - 1))
    assert "claims" in rejected(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_after_magic(tail: bytes) -> None:
    decode_or_400(MAGIC + tail)


@settings(max_examples=300)
@given(
    st.sampled_from(FIXTURES),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_fuzz_mutated_real_bodies(fixture: Path, flips: list[tuple[int, int]]) -> None:
    body = bytearray(fixture.read_bytes())
    for position, value in flips:
        body[4 + position % (len(body) - 4)] = value
    decode_or_400(bytes(body))


def records(depth: int = 3) -> st.SearchStrategy[bytes]:
    """Structurally valid protobuf with random field numbers, wire types and nesting."""
    scalar = st.one_of(
        st.builds(vint, st.integers(1, 20), st.integers(-(2**63), 2**64 - 1)),
        st.builds(ld, st.integers(1, 20), st.binary(max_size=12)),
        st.builds(
            lambda n, v: tag(n, 1) + v, st.integers(1, 20), st.binary(min_size=8, max_size=8)
        ),
        st.builds(
            lambda n, v: tag(n, 5) + v, st.integers(1, 20), st.binary(min_size=4, max_size=4)
        ),
    )
    if depth == 0:
        return st.lists(scalar, max_size=5).map(b"".join)
    nested = st.builds(ld, st.integers(1, 20), records(depth - 1))
    return st.lists(st.one_of(scalar, nested), max_size=6).map(b"".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        [
            ("apps/v1", "Deployment"),
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Secret"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("policy/v1", "Eviction"),
            ("apps/v1", "ControllerRevision"),
        ]
    ),
    records(),
)
def test_fuzz_structured_bodies(kind: tuple[str, str], raw: bytes) -> None:
    result = decode_or_400(envelope(*kind, raw))
    if isinstance(result, dict):
        assert (result["apiVersion"], result["kind"]) == kind
