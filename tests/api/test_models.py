"""Generated models: wire names, required fields, special types, generator reproducibility."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from kubetrio.api.codec import decode, encode, from_builtins, to_builtins, unknown_fields
from kubetrio.api.generated import apiextensions_v1, apps_v1, core_v1, events_v1, meta_v1
from kubetrio.api.generated.fieldmeta import ATOMIC_DEFINITIONS, FIELDS
from kubetrio.api.generated.registry import DEFINITIONS, KINDS
from kubetrio.api.quantity import Quantity
from kubetrio.api.timestamps import MicroTime, Time

REPO = Path(__file__).resolve().parents[2]
SWAGGER = REPO / "third_party" / "kubernetes" / "swagger.json"

KUBECTL_CREATE_DEPLOYMENT = b"""{"kind":"Deployment","apiVersion":"apps/v1",
"metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},
"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
"spec":{"containers":[{"name":"nginx","image":"nginx","resources":{}}]}},
"strategy":{}},"status":{}}"""


def test_kubectl_generated_body_decodes() -> None:
    d = decode(KUBECTL_CREATE_DEPLOYMENT, apps_v1.Deployment)
    assert d.metadata is not None and d.metadata.name == "web"
    assert d.metadata.creation_timestamp is None
    assert d.spec is not None and d.spec.template is not None
    assert d.spec.template.spec is not None
    assert d.spec.template.spec.containers is not None
    assert d.spec.template.spec.containers[0].name == "nginx"
    assert b"creationTimestamp" not in encode(d)


def test_wire_names_match_swagger() -> None:
    info = msgspec.structs.fields(core_v1.PodStatus)
    names = {f.name: f.encode_name for f in info}
    assert names["pod_ips"] == "podIPs"
    assert names["host_ip"] == "hostIP"
    assert names["start_time"] == "startTime"
    schema = {f.encode_name for f in msgspec.structs.fields(apiextensions_v1.JSONSchemaProps)}
    assert {"$ref", "not", "x-kubernetes-list-type", "x-kubernetes-int-or-string"} <= schema
    port = {f.encode_name for f in msgspec.structs.fields(core_v1.DaemonEndpoint)}
    assert port == {"Port"}
    cont = {f.name: f.encode_name for f in msgspec.structs.fields(meta_v1.ListMeta)}
    assert cont["continue_"] == "continue"


def test_every_field_name_matches_swagger() -> None:
    import json

    swagger = json.loads(SWAGGER.read_text())["definitions"]
    for def_id, tp in DEFINITIONS.items():
        declared = {f.encode_name for f in msgspec.structs.fields(tp)}
        assert declared == set(swagger[def_id].get("properties", {})), def_id
        required = {f.encode_name for f in msgspec.structs.fields(tp) if f.required}
        assert required == set(swagger[def_id].get("required", [])), def_id


def test_required_fields_are_enforced_with_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"`name` - at `\$.spec.containers\[0\]`"):
        decode(b'{"spec":{"containers":[{"image":"x"}]}}', core_v1.Pod)


def test_special_types() -> None:
    pod = decode(
        b'{"metadata":{"creationTimestamp":"2024-05-01T12:00:00Z"},'
        b'"spec":{"containers":[{"name":"c","ports":[{"containerPort":80}],'
        b'"livenessProbe":{"httpGet":{"port":"http"}},'
        b'"resources":{"limits":{"cpu":1,"memory":"1.5Gi"},"requests":{"cpu":0.25}}}]}}',
        core_v1.Pod,
    )
    assert pod.metadata is not None
    ts = pod.metadata.creation_timestamp
    assert isinstance(ts, Time) and ts == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert pod.spec is not None and pod.spec.containers is not None
    c = pod.spec.containers[0]
    assert c.resources is not None and c.resources.limits is not None
    assert c.resources.limits["memory"] == Quantity("1536Mi")
    assert c.liveness_probe is not None and c.liveness_probe.http_get is not None
    assert c.liveness_probe.http_get.port == "http"
    out = to_builtins(pod)
    assert out["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert out["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "1536Mi"},
        "requests": {"cpu": "250m"},
    }
    assert from_builtins(out, core_v1.Pod) == pod


def test_micro_time_always_has_six_digits() -> None:
    ev = events_v1.Event(event_time=MicroTime(2024, 1, 1, tzinfo=dt.UTC))
    assert b'"eventTime":"2024-01-01T00:00:00.000000Z"' in encode(ev)
    t = meta_v1.ObjectMeta(
        creation_timestamp=Time.of(dt.datetime(2024, 1, 1, 0, 0, 5, 999, dt.UTC))
    )
    assert encode(t) == b'{"creationTimestamp":"2024-01-01T00:00:05Z"}'


def test_timestamps_need_a_zone() -> None:
    with pytest.raises(msgspec.ValidationError, match="creationTimestamp"):
        decode(b'{"creationTimestamp":"2024-01-01T00:00:00"}', meta_v1.ObjectMeta)


def test_unknown_fields() -> None:
    data = {
        "spec": {"containers": [{"name": "c", "imagePullPolicyy": "x"}], "foo": 1},
        "metadata": {"labels": {"any": "thing"}},
    }
    assert unknown_fields(data, core_v1.Pod) == [
        "spec.containers[0].imagePullPolicyy",
        "spec.foo",
    ]


def test_unknown_fields_deep_inside_lists_maps_and_recursive_types() -> None:
    """Undeclared fields are found under optional structs, in lists of structs and maps
    of (recursive) structs; free-form maps and scalars hold none."""
    pod = {
        "metadata": {"annotations": {"a": "b"}, "managedFields": [{"fieldsV1": {"f:x": {}}}]},
        "spec": {
            "containers": [{"name": "c", "env": [{"name": "A", "value": "1", "valu": "2"}]}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "k", "operator": "In", "op": 1}]}
                        ]
                    }
                }
            },
            "overhead": {"cpu": "1"},
        },
    }
    assert unknown_fields(pod, core_v1.Pod) == [
        "spec.containers[0].env[0].valu",
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].op",
    ]
    crd = {
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"x": {"typo": 1}}}
                            },
                        }
                    },
                }
            ]
        }
    }
    assert unknown_fields(crd, apiextensions_v1.CustomResourceDefinition) == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].typo"
    ]


def test_tables() -> None:
    assert KINDS[("apps", "v1", "Deployment")] == "io.k8s.api.apps.v1.Deployment"
    assert DEFINITIONS["io.k8s.api.core.v1.Pod"] is core_v1.Pod
    containers = FIELDS["io.k8s.api.core.v1.PodSpec"]["containers"]
    assert containers.merge_key == "name" and containers.patch_strategy == ("merge",)
    assert containers.ref == "io.k8s.api.core.v1.Container" and containers.container == "list"
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector" in ATOMIC_DEFINITIONS


def test_generator_reproduces_committed_output() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_api_models.py"), str(SWAGGER), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
