"""Bodies real kubectl 1.33 sent (recorded by record_fixtures.py), decoded field by field.

Each ``<name>.bin`` has a twin ``<name>.json``: the same command run with kubectl 1.31,
which still sends JSON. The decoded protobuf must equal it exactly — that is the dict the
rest of the server would have got from an older kubectl.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kubetrio.apiserver._protobuf import decode_protobuf_body

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
NAMES = sorted(MANIFEST["bodies"])


def decoded(name: str) -> dict[str, Any]:
    value = decode_protobuf_body((FIXTURES / f"{name}.bin").read_bytes())
    assert isinstance(value, dict)
    return value


def test_fixtures_come_from_kubectl_133_and_131() -> None:
    assert MANIFEST["protobuf_kubectl"].startswith("v1.33.")
    assert MANIFEST["json_kubectl"].startswith("v1.31.")
    assert len(NAMES) == 16
    for name in NAMES:
        assert (FIXTURES / f"{name}.bin").read_bytes().startswith(b"k8s\x00")
        assert (FIXTURES / f"{name}.json").read_bytes().startswith(b"{")


# Go's JSON writes an absent pointer/slice without omitempty as null; protobuf cannot say
# it was there at all, and null and absent mean the same to the API server.
ABSENT_NULLS = {"create_token": [("spec", "boundObjectRef")]}


@pytest.mark.parametrize("name", NAMES)
def test_protobuf_decodes_to_what_kubectl_131_sent_as_json(name: str) -> None:
    expected = json.loads((FIXTURES / f"{name}.json").read_bytes())
    for *parents, key in ABSENT_NULLS.get(name, []):
        holder = expected
        for parent in parents:
            holder = holder[parent]
        assert holder.pop(key) is None
    assert decoded(name) == expected


def test_create_deployment() -> None:
    obj = decoded("create_deployment")
    assert obj["apiVersion"] == "apps/v1"
    assert obj["kind"] == "Deployment"
    assert obj["metadata"] == {
        "name": "web",
        "creationTimestamp": None,
        "labels": {"app": "web"},
    }
    spec = obj["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["strategy"] == {}
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [container] = template["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx:1.25"
    assert container["ports"] == [{"containerPort": 8080}]
    assert container["resources"] == {}
    # Zeros Go's protobuf writes but its JSON omits must not leak in.
    for absent in ("stdin", "tty", "imagePullPolicy", "terminationMessagePath", "workingDir"):
        assert absent not in container
    for absent in ("minReadySeconds", "paused"):
        assert absent not in spec
    assert obj["status"] == {}


def test_explicit_zero_replicas_survives() -> None:
    # replicas is *int32: an explicit 0 is on the wire and means "no pods", not "default".
    obj = decoded("create_deployment_zero_replicas")
    assert obj["spec"]["replicas"] == 0
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"


def test_create_namespace() -> None:
    assert decoded("create_namespace") == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "creationTimestamp": None},
        "spec": {},
        "status": {},
    }


def test_create_configmap() -> None:
    obj = decoded("create_configmap")
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
    assert obj["metadata"]["name"] == "settings"
    assert obj["data"] == {"color": "blue", "size": "10"}
    assert "binaryData" not in obj


def test_create_secret_data_is_base64() -> None:
    obj = decoded("create_secret")
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "Secret")
    assert obj["metadata"]["name"] == "creds"
    assert base64.b64decode(obj["data"]["user"]) == b"admin"
    assert base64.b64decode(obj["data"]["password"]).decode() == "s3cr\u00e9t!"
    assert "type" not in obj  # kubectl leaves it empty; the server defaults it


def test_create_service_ports_and_int_or_string_target() -> None:
    obj = decoded("create_service")
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "Service")
    spec = obj["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == {"app": "web"}
    assert spec["ports"] == [
        {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
        {"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"},
    ]
    assert isinstance(spec["ports"][0]["targetPort"], int)
    assert obj["status"] == {"loadBalancer": {}}


def test_auth_can_i_self_subject_access_review() -> None:
    obj = decoded("auth_can_i")
    assert (obj["apiVersion"], obj["kind"]) == (
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
    )
    assert obj["spec"] == {
        "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}
    }
    # SubjectAccessReviewStatus.allowed has no omitempty: Go's JSON keeps false.
    assert obj["status"] == {"allowed": False}
    assert MANIFEST["bodies"]["auth_can_i"]["path"] == (
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    )


def test_auth_whoami_self_subject_review() -> None:
    obj = decoded("auth_whoami")
    assert (obj["apiVersion"], obj["kind"]) == ("authentication.k8s.io/v1", "SelfSubjectReview")
    assert obj["status"] == {"userInfo": {}}


def test_create_job_and_cronjob() -> None:
    job = decoded("create_job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["echo", "hi"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    cronjob = decoded("create_cronjob")
    assert cronjob["spec"]["schedule"] == "*/5 * * * *"
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert template["spec"]["restartPolicy"] == "OnFailure"


def test_create_role_rules() -> None:
    assert decoded("create_role")["rules"] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "configmaps"]}
    ]


def test_create_quota_quantities() -> None:
    assert decoded("create_quota")["spec"]["hard"] == {
        "cpu": "1500m",
        "memory": "1Gi",
        "pods": "10",
    }


def test_create_pdb_percent_int_or_string() -> None:
    obj = decoded("create_pdb")
    assert obj["spec"]["minAvailable"] == "50%"
    # PodDisruptionBudgetStatus counters have no omitempty: Go's JSON keeps the zeros.
    assert obj["status"]["disruptionsAllowed"] == 0


def test_create_ingress_backend() -> None:
    spec = decoded("create_ingress")["spec"]
    assert spec["ingressClassName"] == "nginx"
    [rule] = spec["rules"]
    assert rule["host"] == "example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/api",
            "pathType": "Prefix",
            "backend": {"service": {"name": "api", "port": {"number": 8080}}},
        }
    ]


def test_create_token_request() -> None:
    obj = decoded("create_token")
    assert (obj["apiVersion"], obj["kind"]) == ("authentication.k8s.io/v1", "TokenRequest")
    assert obj["spec"] == {"audiences": ["api"], "expirationSeconds": 600}
    # TokenRequestStatus fields have no omitempty: the empty token and null time stay.
    assert obj["status"] == {"token": "", "expirationTimestamp": None}
