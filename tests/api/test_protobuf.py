"""Decoding Kubernetes protobuf bodies, built here field by field as Go would write them."""

import base64
import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.api.codec import from_builtins
from kubetrio.api.generated import apps_v1, authorization_v1, core_v1
from kubetrio.api.protobuf import MAGIC, ProtobufDecodeError, decode_message, decode_protobuf
from kubetrio.api.quantity import Quantity


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = ld(1, api_version) + ld(2, kind)
    return MAGIC + ld(1, type_meta) + ld(2, raw) + ld(3, "") + ld(4, "")


def object_meta(name: str, **labels: str) -> bytes:
    # Go writes every non-pointer field, empty or not, and a zero Time as an empty message
    out = ld(1, name) + ld(2, "") + ld(3, "") + ld(4, "") + ld(5, "") + ld(6, "") + vint(7, 0)
    out += ld(8, b"")  # creationTimestamp: zero time
    for k, v in labels.items():
        out += ld(11, ld(1, k) + ld(2, v))
    return out


def test_kubectl_create_namespace() -> None:
    body = envelope("v1", "Namespace", ld(1, object_meta("foo")) + ld(2, b"") + ld(3, b""))
    api_version, kind, obj = decode_protobuf(body)
    assert (api_version, kind) == ("v1", "Namespace")
    assert obj == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "foo", "generation": 0, "creationTimestamp": None},
        "spec": {},
        "status": {},
    }
    ns = from_builtins(obj, core_v1.Namespace)
    assert ns.metadata is not None and ns.metadata.name == "foo"


def test_kubectl_create_deployment() -> None:
    limits = ld(1, "cpu") + ld(2, ld(1, "500m"))
    container = ld(1, "nginx") + ld(2, "nginx:1.27") + ld(8, ld(1, limits))
    container += ld(6, vint(3, 80) + ld(4, "TCP"))  # ports[0]: containerPort, protocol
    pod_spec = ld(2, container) + ld(3, "Always")
    template = ld(1, object_meta("", app="web")) + ld(2, pod_spec)
    selector = ld(1, ld(1, "app") + ld(2, "web"))
    surge = vint(1, 1) + vint(2, 0) + ld(3, "25%")
    strategy = ld(1, "RollingUpdate") + ld(2, ld(2, surge))
    spec = vint(1, 3) + ld(2, selector) + ld(3, template) + ld(4, strategy) + vint(7, 0)
    body = envelope("apps/v1", "Deployment", ld(1, object_meta("web", app="web")) + ld(2, spec))
    _, _, obj = decode_protobuf(body)
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["paused"] is False
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert obj["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%"},
    }
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "500m"}}
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    d = from_builtins(obj, apps_v1.Deployment)
    assert d.spec is not None and d.spec.template.spec is not None  # type: ignore[union-attr]
    cont = d.spec.template.spec.containers[0]  # type: ignore[union-attr,index]
    assert cont.resources is not None and cont.resources.limits == {"cpu": Quantity("0.5")}


def test_secret_bytes_and_times() -> None:
    meta = ld(1, "s") + ld(8, vint(1, 1714564800))  # creationTimestamp 2024-05-01T12:00:00Z
    body = envelope("v1", "Secret", ld(1, meta) + ld(2, ld(1, "k") + ld(2, b"\x00\xffhi")))
    _, _, obj = decode_protobuf(body)
    assert obj["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert obj["data"] == {"k": base64.b64encode(b"\x00\xffhi").decode()}


def test_self_subject_access_review() -> None:
    attrs = ld(1, "default") + ld(2, "get") + ld(4, "") + ld(5, "pods") + ld(3, "")
    spec = ld(1, attrs)
    body = envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        ld(1, object_meta("")) + ld(2, spec) + ld(3, vint(1, 0)),
    )
    _, kind, obj = decode_protobuf(body)
    assert kind == "SelfSubjectAccessReview"
    assert obj["spec"]["resourceAttributes"] == {
        "namespace": "default",
        "verb": "get",
        "resource": "pods",
    }
    assert obj["status"] == {"allowed": False}  # required: the zero value stays
    review = from_builtins(obj, authorization_v1.SelfSubjectAccessReview)
    assert review.status is not None and review.status.allowed is False


def test_inline_embedded_struct_and_negative_ints() -> None:
    # SecretKeySelector embeds LocalObjectReference (field 1) whose name is field 1
    selector = ld(1, ld(1, "creds")) + ld(2, "password")
    env = ld(1, "PW") + ld(3, ld(4, selector))
    data = decode_message("k8s.io.api.core.v1.EnvVar", env)
    assert data == {
        "name": "PW",
        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
    }
    probe = decode_message("k8s.io.api.core.v1.Probe", vint(2, -1) + vint(4, 10))
    assert probe == {"initialDelaySeconds": -1, "periodSeconds": 10}


def test_packed_and_double() -> None:
    ports = ld(1, varint(80) + varint(443))
    assert decode_message("k8s.io.api.core.v1.PodPortForwardOptions", ports) == {"ports": [80, 443]}
    value = varint(1 << 3 | 1) + struct.pack("<d", 2.5)
    # no double field in our kinds' messages is simpler than a hand-made table entry:
    with pytest.raises(ProtobufDecodeError):
        decode_message("k8s.io.api.core.v1.PodPortForwardOptions", value)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"k8s",
        b"json",
        MAGIC + b"\xff",
        MAGIC + ld(1, ld(1, "v1") + ld(2, "Nope")),
        MAGIC + ld(2, b""),
        envelope("v1", "Pod", b"\x0a\x05ab"),  # truncated
        envelope("v1", "Pod", ld(1, ld(1, b"\xff\xfe"))),  # bad UTF-8
        envelope("v1", "Pod", varint(1 << 3 | 3)),  # group wire type
        MAGIC + ld(1, ld(1, "v1") + ld(2, "Pod")) + ld(3, "gzip"),
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(ProtobufDecodeError):
        decode_protobuf(body)


@given(st.binary(max_size=200))
def test_fuzz_never_crashes(raw: bytes) -> None:
    with contextlib.suppress(ProtobufDecodeError):
        decode_protobuf(envelope("apps/v1", "Deployment", raw))
