"""ServiceAccounts for pods on a real runc node: a pod runs the real kubectl binary with
no kubeconfig — in-cluster configuration from ``KUBERNETES_SERVICE_HOST``/``_PORT`` and the
projected token and ``ca.crt`` — and can do exactly what its ServiceAccount's Role says;
the token dies with the pod. Also the TokenRequest API through the official client,
``automountServiceAccountToken: false``, the admission message for a missing
ServiceAccount, ``kube-root-ca.crt`` and the OIDC documents, through kubectl."""

from __future__ import annotations

import json
import shutil
import ssl
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
import yaml

from kubetrio.images import RegistryConfig, build_image
from tests.compat.kit import KUBECTL_DIR, CompatCluster
from tests.kit import wait_until

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
VERSIONS = pytest.mark.parametrize("version", ["1.27", "1.33"])
SCRIPT = f"""
kubectl get pods -o name; echo "get-pods-exit=$?"
kubectl get secrets; echo "get-secrets-exit=$?"
env | grep '^KUBERNETES_' | sort
echo "namespace=$(cat {MOUNT}/namespace)"
echo done
sleep 3600
"""


def ca_file(cluster: CompatCluster) -> Path:
    return cluster.data_dir / "data" / "pki" / "ca.crt"


@pytest.fixture(scope="module")
def kubectl_image(cluster: CompatCluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A busybox image holding the static kubectl 1.33, pushed to the cluster's registry."""
    mirrors = yaml.safe_load((cluster.data_dir / "registries.yaml").read_text())
    endpoint = mirrors["mirrors"]["docker.io"]["endpoint"][0].split("://", 1)[1]
    context = tmp_path_factory.mktemp("kubectl-image")
    (context / "usr" / "local" / "bin").mkdir(parents=True)
    shutil.copy(KUBECTL_DIR / "kubectl.1.33", context / "usr" / "local" / "bin" / "kubectl")
    reference = f"{endpoint}/compat/kubectl:1.33"
    trio.run(
        lambda: build_image(
            reference, context, registries=RegistryConfig(insecure=[endpoint]), env={"HOME": "/tmp"}
        )
    )
    return reference


def apply(cluster: CompatCluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def logs(cluster: CompatCluster, namespace: str, pod: str) -> str:
    return cluster.kubectl("logs", pod, "-n", namespace, check=False).stdout


def test_a_pod_reads_the_api_with_its_mounted_token(
    cluster: CompatCluster, namespace: str, kubectl_image: str
) -> None:
    k = cluster.kubectl
    k("create", "serviceaccount", "reader", "-n", namespace)
    k("create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace)
    k("create", "rolebinding", "reader", "--role=pod-reader",
      f"--serviceaccount={namespace}:reader", "-n", namespace)  # fmt: skip
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "incluster"},
            "spec": {
                "serviceAccountName": "reader",
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {"name": "kubectl", "image": kubectl_image, "command": ["sh", "-c", SCRIPT]}
                ],
            },
        },
    )
    wait_until(
        lambda: "done" in logs(cluster, namespace, "incluster"),
        timeout=120,
        what="the in-cluster kubectl to finish",
    )
    out = logs(cluster, namespace, "incluster")
    # Its own pod, listed through the kubernetes Service with the projected token and CA.
    assert "pod/incluster" in out
    assert "get-pods-exit=0" in out
    assert (
        f'User "system:serviceaccount:{namespace}:reader" cannot list resource "secrets" '
        f'in API group "" in the namespace "{namespace}"'
    ) in out
    assert "get-secrets-exit=1" in out
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("KUBERNETES_"))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert f"namespace={namespace}" in out
    # The volume is the admission plugin's kube-api-access-*, read-only.
    pod = json.loads(k("get", "pod", "incluster", "-n", namespace, "-o", "json").stdout)
    (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == MOUNT and mount["readOnly"] is True
    assert mount["name"].startswith("kube-api-access-")
    token = k("exec", "incluster", "-n", namespace, "--", "cat", f"{MOUNT}/token").stdout
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {
        "name": "incluster",
        "uid": pod["metadata"]["uid"],
    }
    written = k("exec", "incluster", "-n", namespace, "--", "touch", f"{MOUNT}/x", check=False)
    assert written.returncode != 0  # mounted read-only
    with httpx.Client(
        base_url=cluster.server,
        verify=ssl.create_default_context(cafile=str(ca_file(cluster))),
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        assert http.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
        # The token dies with the pod: 401, as upstream's authenticator answers.
        k("delete", "pod", "incluster", "-n", namespace, "--wait=true", timeout=120)
        wait_until(
            lambda: http.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 401,
            timeout=30,
            what="the deleted pod's token refused",
        )


def test_token_request_bound_to_a_pod_through_the_python_client(
    cluster: CompatCluster, namespace: str
) -> None:
    from kubernetes import client as k8s
    from kubernetes import config

    k = cluster.kubectl
    k("create", "serviceaccount", "bound", "-n", namespace)
    k("run", "holder", "--image=busybox", "-n", namespace,
      "--overrides", json.dumps({"spec": {"serviceAccountName": "bound",
                                          "automountServiceAccountToken": False}}),
      "--", "sleep", "3600")  # fmt: skip
    with config.new_client_from_config(str(cluster.kubeconfig)) as api:
        core = k8s.CoreV1Api(api)
        holder = core.read_namespaced_pod("holder", namespace)
        # automountServiceAccountToken: false on the pod: no token volume, no mount.
        assert not [v for v in holder.spec.volumes or [] if v.projected is not None]
        assert not holder.spec.containers[0].volume_mounts
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=600,
                bound_object_ref=k8s.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name="holder", uid=holder.metadata.uid
                ),
            )
        )
        answer = core.create_namespaced_service_account_token("bound", namespace, request)
        assert answer.spec.bound_object_ref.name == "holder"
        assert answer.spec.audiences == ["https://kubernetes.default.svc.cluster.local"]
        token = answer.status.token
        with httpx.Client(
            base_url=cluster.server,
            verify=ssl.create_default_context(cafile=str(ca_file(cluster))),
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        ) as http:
            review = http.post(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
            assert review.status_code == 201, review.text
            user = review.json()["status"]["userInfo"]
            assert user["username"] == f"system:serviceaccount:{namespace}:bound"
            assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["holder"]
            core.delete_namespaced_pod("holder", namespace, grace_period_seconds=0)
            wait_until(
                lambda: (
                    http.post(
                        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                        json={
                            "apiVersion": "authentication.k8s.io/v1",
                            "kind": "SelfSubjectReview",
                        },
                    ).status_code
                    == 401
                ),
                timeout=60,
                what="the token bound to the deleted pod refused",
            )


@VERSIONS
def test_a_missing_service_account_is_refused(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    refused = cluster.kubectl(
        "run", "lost", "--image=busybox", "-n", namespace,
        "--overrides", json.dumps({"spec": {"serviceAccountName": "ghost"}}),
        check=False, version=version,
    )  # fmt: skip
    assert refused.returncode != 0
    assert (
        f'Error from server (Forbidden): pods "lost" is forbidden: error looking up service '
        f'account {namespace}/ghost: serviceaccount "ghost" not found'
    ) in refused.stderr


def test_kube_root_ca_and_the_kubernetes_service(cluster: CompatCluster, namespace: str) -> None:
    k = cluster.kubectl
    wanted = ca_file(cluster).read_text()

    def published() -> str:
        jsonpath = "jsonpath={.data.ca\\.crt}"
        got = k(
            "get", "configmap", "kube-root-ca.crt", "-n", namespace, "-o", jsonpath, check=False
        )
        return got.stdout

    wait_until(lambda: published() == wanted, timeout=30, what="kube-root-ca.crt")
    service = json.loads(k("get", "service", "kubernetes", "-n", "default", "-o", "json").stdout)
    assert service["spec"]["clusterIP"] == "10.96.0.1"
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["protocol"]) == ("https", 443, "TCP")
    assert port["targetPort"] == int(cluster.server.rsplit(":", 1)[1])
    slice_ = json.loads(
        k("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json").stdout
    )
    (address,) = slice_["endpoints"][0]["addresses"]
    assert not address.startswith("127.")  # pods cannot reach loopback
    discovery = json.loads(k("get", "--raw", "/.well-known/openid-configuration").stdout)
    assert discovery["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert discovery["jwks_uri"] == f"https://{address}:{port['targetPort']}/openid/v1/jwks"
    keys = json.loads(k("get", "--raw", "/openid/v1/jwks").stdout)["keys"]
    token = k("create", "token", "default", "-n", namespace).stdout.strip()
    (key,) = [key for key in keys if key["kid"] == jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=discovery["issuer"],
        issuer=discovery["issuer"],
    )
    assert claims["sub"] == f"system:serviceaccount:{namespace}:default"
