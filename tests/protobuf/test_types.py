"""Field shapes and the apimachinery types whose JSON is not their protobuf struct."""

from __future__ import annotations

import base64
import json

import pytest

from kubetrio.apiserver.protobuf import (
    ProtobufError,
    decode_message,
    decode_object,
    decode_value,
    go_duration,
)
from tests.protobuf.pbwrite import entry, envelope, ld, tag, timestamp, varint, vint

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
CORE = "k8s.io.api.core.v1."


def obj_meta(*fields: bytes) -> bytes:
    return ld(1, b"".join(fields))


# Time and MicroTime ---------------------------------------------------------------------


def test_time_is_rfc3339_seconds_utc() -> None:
    meta = decode_message(META + "ObjectMeta", ld(8, timestamp(1704164645, 999_999_999)))
    assert meta == {"creationTimestamp": "2024-01-02T03:04:05Z"}


def test_empty_time_is_null_like_gos_zero_time() -> None:
    assert decode_message(META + "ObjectMeta", ld(8, b"")) == {"creationTimestamp": None}


def test_time_epoch_and_before() -> None:
    assert decode_value(META + "Time", timestamp(0)) == "1970-01-01T00:00:00Z"
    assert decode_value(META + "Time", timestamp(-1)) == "1969-12-31T23:59:59Z"
    # nanos outside [0, 1e9) carry into the seconds, as Go's time.Unix does
    assert decode_value(META + "Time", timestamp(0, 1_500_000_000)) == "1970-01-01T00:00:01Z"
    assert decode_value(META + "Time", timestamp(1, -1)) == "1970-01-01T00:00:00Z"


def test_time_early_years_are_zero_padded() -> None:
    assert decode_value(META + "Time", timestamp(-61_000_000_000)) == "0036-12-26T11:33:20Z"
    assert decode_value(META + "MicroTime", timestamp(-61_000_000_000, 1000)) == (
        "0036-12-26T11:33:20.000001Z"
    )


def test_time_out_of_range_is_an_error() -> None:
    with pytest.raises(ProtobufError, match="out of range"):
        decode_value(META + "Time", timestamp(2**62))


def test_micro_time_keeps_microseconds() -> None:
    event = decode_message("k8s.io.api.events.v1.Event", ld(2, timestamp(1704164645, 123_456_789)))
    assert event == {"eventTime": "2024-01-02T03:04:05.123456Z"}
    assert decode_value(META + "MicroTime", timestamp(5)) == "1970-01-01T00:00:05.000000Z"
    assert decode_value(META + "MicroTime", b"") is None


# Duration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (100_000_000, "100ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-90_000_000_000, "-1m30s"),
        (2**63 - 1, "2562047h47m16.854775807s"),
    ],
)
def test_go_duration(nanos: int, text: str) -> None:
    assert go_duration(nanos) == text


def test_duration_message() -> None:
    assert decode_value(META + "Duration", vint(1, 90_000_000_000)) == "1m30s"
    assert decode_value(META + "Duration", b"") == "0s"


# Quantity, IntOrString ------------------------------------------------------------------


def test_quantity_map() -> None:
    resources = decode_message(
        CORE + "ResourceRequirements",
        entry(1, "cpu", ld(1, "500m")) + entry(1, "memory", ld(1, "128Mi")) + entry(2, "cpu", b""),
    )
    # A map entry without a value is the zero Quantity, "0".
    assert resources == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "0"}}


def test_int_or_string() -> None:
    int_port = decode_message(CORE + "ServicePort", ld(4, vint(1, 0) + vint(2, 8080) + ld(3, "")))
    str_port = decode_message(CORE + "ServicePort", ld(4, vint(1, 1) + vint(2, 0) + ld(3, "http")))
    assert int_port == {"targetPort": 8080}
    assert str_port == {"targetPort": "http"}
    # Go's zero IntOrString (always written for a non-pointer field) is the integer 0.
    assert decode_message(CORE + "ServicePort", ld(4, b"")) == {"targetPort": 0}
    with pytest.raises(ProtobufError, match="impossible"):
        decode_message(CORE + "ServicePort", ld(4, vint(1, 2)))


# bytes, RawExtension, FieldsV1, list wrappers -------------------------------------------


def test_bytes_are_base64() -> None:
    secret = decode_message(CORE + "Secret", entry(2, "key", b"\x00\xffbinary"))
    assert secret == {"data": {"key": base64.b64encode(b"\x00\xffbinary").decode()}}
    csr = decode_message(
        "k8s.io.api.certificates.v1.CertificateSigningRequestSpec", ld(1, b"-----BEGIN")
    )
    assert csr == {"request": "LS0tLS1CRUdJTg=="}


def test_raw_extension_is_the_embedded_json() -> None:
    data = {"kind": "Thing", "spec": {"n": [1, 2]}}
    revision = decode_message(
        "k8s.io.api.apps.v1.ControllerRevision",
        ld(2, ld(1, json.dumps(data))) + vint(3, 7),
    )
    assert revision == {"data": data, "revision": 7}
    assert decode_message("k8s.io.api.apps.v1.ControllerRevision", ld(2, b"")) == {"data": None}


def test_raw_extension_may_hold_a_protobuf_object() -> None:
    inner = envelope("v1", "ConfigMap", entry(2, "a", "b"))
    revision = decode_message("k8s.io.api.apps.v1.ControllerRevision", ld(2, ld(1, inner)))
    assert revision == {"data": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}}


def test_raw_extension_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ProtobufError, match="not JSON"):
        decode_message("k8s.io.api.apps.v1.ControllerRevision", ld(2, ld(1, b"{nope")))


def test_managed_fields_v1() -> None:
    entry_ = ld(1, "kubectl") + ld(2, "Update") + ld(6, "FieldsV1")
    entry_ += ld(7, ld(1, b'{"f:data":{".":{}}}')) + ld(4, timestamp(0))
    meta = decode_message(META + "ObjectMeta", ld(17, entry_))
    assert meta == {
        "managedFields": [
            {
                "manager": "kubectl",
                "operation": "Update",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}}},
                "time": "1970-01-01T00:00:00Z",
            }
        ]
    }


def test_named_string_slices_are_arrays() -> None:
    extra = ld(1, "k") + ld(2, ld(1, "a") + ld(1, "b"))
    spec = decode_message(
        "k8s.io.api.authorization.v1.SubjectAccessReviewSpec",
        ld(3, "jane") + ld(4, "dev") + ld(4, "ops") + ld(5, extra),
    )
    assert spec == {"user": "jane", "groups": ["dev", "ops"], "extra": {"k": ["a", "b"]}}


# Structure: inline, merging, zeros, numbers, unknown fields ------------------------------


def test_inline_struct_is_flattened() -> None:
    volume = decode_message(CORE + "Volume", ld(1, "cache") + ld(2, ld(2, ld(1, "Memory"))))
    assert volume == {"name": "cache", "emptyDir": {"medium": "Memory"}}


def test_repeated_non_repeated_message_merges_like_go() -> None:
    body = obj_meta(ld(1, "a")) + obj_meta(entry(11, "x", "1"))
    assert decode_message(CORE + "ConfigMap", body) == {
        "metadata": {"name": "a", "labels": {"x": "1"}}
    }


def test_last_scalar_wins() -> None:
    assert decode_message(META + "ObjectMeta", ld(1, "a") + ld(1, "b")) == {"name": "b"}


def test_zero_of_omitempty_fields_is_dropped_pointer_zero_kept() -> None:
    container = decode_message(
        CORE + "Container",
        ld(1, "c") + ld(2, "") + vint(16, False) + ld(15, vint(2, False) + ld(3, b"")),
    )
    # image "" and stdin false are non-pointer omitempty: Go's JSON leaves them out;
    # securityContext.privileged is *bool: an explicit false is kept.
    assert container == {
        "name": "c",
        "securityContext": {"privileged": False, "seLinuxOptions": {}},
    }


def test_required_zero_is_kept() -> None:
    port = decode_message(CORE + "ContainerPort", vint(2, 0) + vint(3, 0) + ld(4, ""))
    assert port == {"containerPort": 0}


def test_negative_and_large_numbers() -> None:
    meta = decode_message(META + "ObjectMeta", vint(10, -5) + vint(7, 2**62))
    assert meta == {"deletionGracePeriodSeconds": -5, "generation": 2**62}
    context = decode_message(CORE + "PodSecurityContext", vint(2, -1) + vint(5, 2**63 - 1))
    assert context == {"runAsUser": -1, "fsGroup": 2**63 - 1}


def test_packed_and_unpacked_repeated_numbers() -> None:
    packed = ld(4, varint(1000) + varint(2000) + varint(-1))
    unpacked = vint(4, 3000)
    context = decode_message(CORE + "PodSecurityContext", packed + unpacked)
    assert context == {"supplementalGroups": [1000, 2000, -1, 3000]}


def test_unknown_fields_are_skipped() -> None:
    body = ld(1, "n") + vint(999, 5) + ld(1000, b"\xff\xff") + tag(1001, 5) + b"abcd"
    assert decode_message(META + "ObjectMeta", body) == {"name": "n"}


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert decode_message(META + "ObjectMeta", ld(1, b"a\xffb")) == {"name": "a\ufffdb"}


def test_wrong_wire_type_for_known_field() -> None:
    with pytest.raises(ProtobufError, match="wire type"):
        decode_message(META + "ObjectMeta", vint(1, 5))
    with pytest.raises(ProtobufError, match="wire type"):
        decode_message(META + "ObjectMeta", ld(7, b"x"))


# Envelope --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("policy/v1", "Eviction"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("batch/v1", "Job"),
        ("v1", "DeleteOptions"),
    ],
)
def test_kinds_kubectl_sends_are_known(api_version: str, kind: str) -> None:
    assert decode_object(envelope(api_version, kind, b"")) == {
        "apiVersion": api_version,
        "kind": kind,
    }


def test_eviction_as_drain_sends_it() -> None:
    raw = obj_meta(ld(1, "web-1"), ld(3, "default")) + ld(2, vint(1, 30) + ld(4, "Background"))
    assert decode_object(envelope("policy/v1", "Eviction", raw)) == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 30, "propagationPolicy": "Background"},
    }


def test_envelope_with_json_content_type() -> None:
    body = envelope("v1", "ConfigMap", b'{"kind":"ConfigMap"}', content_type="application/json")
    assert decode_object(body) == {"kind": "ConfigMap"}
