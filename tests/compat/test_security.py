"""Secure by default: what `kubetrio up` gives a stranger, and a ServiceAccount that can do
exactly what its Role says — through kubectl with `--token` and the official client."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.compat.kit import KUBECTL_DIR, CompatCluster
from tests.kit import wait_until

VERSIONS = pytest.mark.parametrize("version", ["1.27", "1.33"])


def ca_file(cluster: CompatCluster) -> str:
    return str(cluster.data_dir / "data" / "pki" / "ca.crt")


def token_kubeconfig(cluster: CompatCluster, token: str, path: Path) -> Path:
    """A kubeconfig holding only the CA and a bearer token, as a ServiceAccount's user
    gets (the suite's own kubeconfig presents the admin's client certificate)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": ca_file(cluster),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def test_anonymous_gets_only_what_upstream_gives_system_anonymous(
    cluster: CompatCluster,
) -> None:
    """No credentials: health and version (system:public-info-viewer) answer; the API
    refuses with upstream's 403 naming system:anonymous."""
    with httpx.Client(base_url=cluster.server, verify=ca_file(cluster), timeout=30) as http:
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            assert http.get(path).status_code == 200, path
        for path in ("/api/v1/namespaces", "/api/v1/namespaces/default/secrets", "/apis"):
            refused = http.get(path)
            assert refused.status_code == 403, (path, refused.text)
            assert 'User "system:anonymous"' in refused.json()["message"]
        created = http.post(
            "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "anon"}}
        )
        assert created.status_code == 403


@VERSIONS
def test_a_service_account_can_do_what_its_role_says(
    cluster: CompatCluster, namespace: str, version: str, tmp_path: Path
) -> None:
    k = cluster.kubectl
    k("create", "serviceaccount", "reader", "-n", namespace, version=version)
    k(
        "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods",
        "-n", namespace, version=version,
    )  # fmt: skip
    k(
        "create", "rolebinding", "reader-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:reader", "-n", namespace, version=version,
    )  # fmt: skip
    token = k("create", "token", "reader", "-n", namespace, version=version).stdout.strip()
    kubeconfig = token_kubeconfig(cluster, token, tmp_path / "reader.yaml")

    def as_reader(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL_DIR / f"kubectl.{version}"), "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        )

    def can_i(*args: str) -> str:
        return as_reader("auth", "can-i", *args).stdout.strip()

    assert can_i("list", "pods", "-n", namespace) == "yes"
    assert can_i("delete", "pods", "-n", namespace) == "no"
    assert can_i("list", "pods", "-n", "default") == "no"
    assert can_i("*", "*") == "no"
    listed = as_reader("get", "pods", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    denied = as_reader("get", "secrets", "-n", namespace)
    assert denied.returncode != 0
    assert (
        f'User "system:serviceaccount:{namespace}:reader" cannot list resource "secrets"'
        in denied.stderr
    )
    # The admin may impersonate it and sees the same answers.
    impersonated = k(
        "auth", "can-i", "delete", "pods", "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:reader", check=False, version=version,
    )  # fmt: skip
    assert impersonated.stdout.strip() == "no"


def test_python_client_with_a_service_account_token(cluster: CompatCluster, namespace: str) -> None:
    """The official client with `--token`-style credentials: allowed reads succeed, a
    forbidden write is an ApiException 403 and stores nothing."""
    from kubernetes import client as k8s

    k = cluster.kubectl
    k("create", "serviceaccount", "writer", "-n", namespace)
    k("create", "role", "cm", "--verb=get,list,create", "--resource=configmaps", "-n", namespace)
    k("create", "rolebinding", "cm", "--role=cm", f"--serviceaccount={namespace}:writer",
      "-n", namespace)  # fmt: skip
    token = k("create", "token", "writer", "-n", namespace).stdout.strip()
    configuration = k8s.Configuration()
    configuration.host = cluster.server
    configuration.ssl_ca_cert = ca_file(cluster)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    with k8s.ApiClient(configuration) as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "mine"}})
        assert core.read_namespaced_config_map("mine", namespace).metadata.name == "mine"
        with pytest.raises(k8s.ApiException) as refused:
            core.delete_namespaced_config_map("mine", namespace)
        assert refused.value.status == 403
        with pytest.raises(k8s.ApiException) as elsewhere:
            core.list_namespaced_config_map("default")
        assert elsewhere.value.status == 403
    assert "mine" in k("get", "configmap", "mine", "-n", namespace).stdout
    # The token dies with its ServiceAccount: 401, as upstream's authenticator answers.
    k("delete", "serviceaccount", "writer", "-n", namespace)
    with k8s.ApiClient(configuration) as api:
        core = k8s.CoreV1Api(api)

        def refused() -> bool:
            try:
                core.list_namespaced_config_map(namespace)
            except k8s.ApiException as exc:
                return exc.status == 401
            return False

        wait_until(refused, timeout=20, what="the deleted ServiceAccount's token refused")
