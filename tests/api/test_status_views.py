"""Status builders, metadata-only views, IntOrString helpers."""

import pytest

from kubetrio.api import StatusError, decode_header, encode, scaled_value, unknown_fields
from kubetrio.api.codec import to_builtins
from kubetrio.api.generated import apiextensions_v1, core_v1, meta_v1
from kubetrio.api.status import (
    already_exists,
    conflict,
    expired,
    forbidden,
    not_found,
    status_success,
    unsupported_media_type,
)
from kubetrio.api.views import partial_object_metadata


def test_not_found_shape() -> None:
    assert to_builtins(not_found("pods", "web")) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "web" not found',
        "reason": "NotFound",
        "details": {"name": "web", "kind": "pods"},
        "code": 404,
    }
    assert not_found("deployments", "d", "apps").message == 'deployments.apps "d" not found'


def test_other_statuses() -> None:
    assert already_exists("pods", "p").code == 409
    c = conflict("pods", "p")
    assert c.reason == "Conflict" and "please apply your changes" in (c.message or "")
    assert expired("too old resource version: 5 (100)").code == 410
    f = forbidden("pods", "", "", 'User "bob" cannot list resource "pods"')
    assert f.message == 'pods is forbidden: User "bob" cannot list resource "pods"'
    u = unsupported_media_type("text/plain", ["application/json"])
    assert u.code == 415 and "unknown format" in (u.message or "")
    assert to_builtins(status_success(name="p", kind="pods", uid="u"))["status"] == "Success"


def test_status_error() -> None:
    with pytest.raises(StatusError) as info:
        raise StatusError(not_found("pods", "x"))
    assert info.value.code == 404 and info.value.reason == "NotFound"
    assert str(info.value) == 'pods "x" not found'


def test_header_view_skips_the_rest() -> None:
    pod = core_v1.Pod(
        api_version="v1",
        kind="Pod",
        metadata=meta_v1.ObjectMeta(name="p", namespace="d", labels={"a": "b"}),
        spec=core_v1.PodSpec(containers=[core_v1.Container(name="c")]),
    )
    header = decode_header(encode(pod))
    assert header.kind == "Pod" and header.metadata is not None
    assert header.metadata.labels == {"a": "b"}
    row = partial_object_metadata(header.metadata)
    assert row["kind"] == "PartialObjectMetadata"
    assert row["metadata"] == {"labels": {"a": "b"}, "name": "p", "namespace": "d"}


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("0%", 5, True, 0),
        ("100%", 7, False, 7),
    ],
)
def test_scaled_value(value: int | str, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, round_up=up) == expected


@pytest.mark.parametrize("bad", ["5", "abc", "%"])
def test_scaled_value_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="percentage"):
        scaled_value(bad, 10, round_up=True)


def test_unknown_fields_in_recursive_schema() -> None:
    crd = {
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"x": {"type": "string", "bogus": 1}},
                        }
                    },
                }
            ]
        }
    }
    found = unknown_fields(crd, apiextensions_v1.CustomResourceDefinition)
    assert found == ["spec.versions[0].schema.openAPIV3Schema.properties[x].bogus"]
