"""Validation helpers: names, labels, metadata, Status shape."""

import msgspec
import pytest

from kubetrio.api.codec import decode, to_builtins
from kubetrio.api.generated import core_v1, meta_v1
from kubetrio.api.validation import (
    NAME_VALIDATORS,
    FieldError,
    FieldErrorType,
    InvalidError,
    decode_error_field_errors,
    invalid_status,
    validate_dns1035_label,
    validate_dns1123_label,
    validate_dns1123_subdomain,
    validate_labels,
    validate_object_meta,
    validate_qualified_name,
)


@pytest.mark.parametrize("name", ["a", "abc-123", "1abc", "a.b.c", "x" * 253, "my-app.example.com"])
def test_valid_subdomains(name: str) -> None:
    assert validate_dns1123_subdomain(name, "metadata.name") == []


@pytest.mark.parametrize("name", ["", "Foo", "a_b", "-a", "a-", "a..b", "x" * 254, "a/b", "."])
def test_invalid_subdomains(name: str) -> None:
    errs = validate_dns1123_subdomain(name, "metadata.name")
    assert errs and all(e.field == "metadata.name" for e in errs)


def test_labels_and_dns1035() -> None:
    assert validate_dns1123_label("a.b", "f")
    assert validate_dns1123_label("x" * 63, "f") == []
    assert validate_dns1123_label("x" * 64, "f")
    assert validate_dns1035_label("1abc", "f")
    assert validate_dns1035_label("abc-1", "f") == []
    assert NAME_VALIDATORS[("", "services")] is validate_dns1035_label


@pytest.mark.parametrize(
    "key", ["app", "app.kubernetes.io/name", "example.com/My_Name.x", "a" * 63]
)
def test_valid_label_keys(key: str) -> None:
    assert validate_qualified_name(key, "metadata.labels") == []


@pytest.mark.parametrize("key", ["", "/a", "a/", "A.com/x", "a/b/c", "a" * 64, "-x", "x y"])
def test_invalid_label_keys(key: str) -> None:
    assert validate_qualified_name(key, "metadata.labels")


def test_label_value_path() -> None:
    errs = validate_labels({"app": "bad value"}, "metadata.labels")
    assert [e.field for e in errs] == ["metadata.labels[app]"]
    assert validate_labels({"app": ""}, "metadata.labels") == []


def test_object_meta() -> None:
    assert validate_object_meta({"name": "web", "namespace": "default"}, namespaced=True) == []
    errs = validate_object_meta({}, namespaced=True)
    assert {(e.type, e.field) for e in errs} == {
        (FieldErrorType.REQUIRED, "metadata.name"),
        (FieldErrorType.REQUIRED, "metadata.namespace"),
    }
    errs = validate_object_meta({"name": "n", "namespace": "x"}, namespaced=False)
    assert errs[0].type is FieldErrorType.FORBIDDEN and errs[0].field == "metadata.namespace"
    assert validate_object_meta({"generateName": "web-", "namespace": "d"}, namespaced=True) == []
    meta = meta_v1.ObjectMeta(name="Foo", namespace="default", labels={"ok": "yes"})
    errs = validate_object_meta(meta, namespaced=True)
    assert [e.field for e in errs] == ["metadata.name"]
    two = [
        {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": True},
    ]
    errs = validate_object_meta({"name": "x", "ownerReferences": two}, namespaced=False)
    assert "Only one reference" in errs[0].detail


def test_invalid_status_shape() -> None:
    errs = validate_dns1123_subdomain("Foo", "metadata.name")
    status = to_builtins(invalid_status("Pod", "Foo", errs))
    assert status["kind"] == "Status" and status["code"] == 422
    assert status["reason"] == "Invalid" and status["status"] == "Failure"
    assert status["message"].startswith(
        'Pod "Foo" is invalid: metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain'
    )
    cause = status["details"]["causes"][0]
    assert cause["reason"] == "FieldValueInvalid" and cause["field"] == "metadata.name"
    assert cause["message"].startswith('Invalid value: "Foo": a lowercase')
    assert status["details"]["kind"] == "Pod" and status["details"]["name"] == "Foo"
    deploy = InvalidError("Deployment", "d", [FieldError.required("spec.selector")], "apps")
    assert str(deploy) == 'Deployment.apps "d" is invalid: spec.selector: Required value'
    assert deploy.status().details is not None


def test_decode_errors_become_field_errors() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(b'{"spec":{"containers":[{"image":"x"}]}}', core_v1.Pod)
    (err,) = decode_error_field_errors(info.value)
    assert (err.type, err.field) == (FieldErrorType.REQUIRED, "spec.containers[0].name")
    with pytest.raises(msgspec.ValidationError) as info:
        decode(b'{"spec":{"containers":[],"priority":"high"}}', core_v1.Pod)
    (err,) = decode_error_field_errors(info.value)
    assert err.field == "spec.priority" and "Expected `int" in err.detail


def test_object_meta_shapes() -> None:
    errs = validate_object_meta(
        {"name": 5, "labels": ["x"], "annotations": {"a": 1}, "finalizers": "f"}, namespaced=False
    )
    assert {e.field for e in errs} == {
        "metadata.name",
        "metadata.labels",
        "metadata.annotations[a]",
        "metadata.finalizers",
    }
    errs = validate_object_meta(
        {"name": "x", "finalizers": [1], "ownerReferences": ["x"]}, namespaced=False
    )
    assert [e.field for e in errs] == ["metadata.finalizers[0]", "metadata.ownerReferences[0]"]
