"""A node agent's credentials (a `system:node:<name>` client certificate from the client
CA) reach what the pods bound to that node need and change only that node and its pods —
through kubectl 1.27/1.33 with a kubeconfig carrying the node certificate, and through
the official Python client: the Node authorizer and NodeRestriction of `kubetrio up`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kubetrio.pki import ClusterPKI, KeyPair
from tests.compat.kit import KUBECTL_DIR, CompatCluster
from tests.kit import wait_until

VERSIONS = pytest.mark.parametrize("version", ["1.27", "1.33"])


def pki(cluster: CompatCluster) -> ClusterPKI:
    return ClusterPKI(cluster.data_dir / "data" / "pki")


def node_kubeconfig(cluster: CompatCluster, certificate: KeyPair, path: Path) -> Path:
    """A kubeconfig presenting a node's client certificate (as `up --nodes` gives agents)."""
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
                            "certificate-authority": str(pki(cluster).ca.files.cert_file),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "node",
                        "user": {
                            "client-certificate": str(certificate.cert_file),
                            "client-key": str(certificate.key_file),
                        },
                    }
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "node"}}],
                "current-context": "c",
            }
        )
    )
    return path


def two_nodes(cluster: CompatCluster, namespace: str) -> tuple[str, str]:
    """Nodes `<ns>-a` and `<ns>-b` (objects only), each with a pod in ``namespace``
    mounting a Secret of its own."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    objects = []
    for node in (a, b):
        objects.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"secret-{node}", "namespace": namespace},
                "stringData": {"k": "v"},
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod-{node}", "namespace": namespace},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "s", "secret": {"secretName": f"secret-{node}"}}],
                },
            }
        )
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump_all(objects))
    return a, b


@pytest.fixture
def nodes(cluster: CompatCluster, namespace: str) -> Iterator[tuple[str, str]]:
    """The two nodes; deleted afterwards (their pods go with the namespace)."""
    a, b = two_nodes(cluster, namespace)
    yield a, b
    cluster.kubectl("delete", "node", a, b, "--wait=false", check=False)


@VERSIONS
def test_kubectl_with_a_node_certificate(
    cluster: CompatCluster, namespace: str, nodes: tuple[str, str], version: str, tmp_path: Path
) -> None:
    a, b = nodes
    kubeconfig = node_kubeconfig(cluster, pki(cluster).node_certificate(a), tmp_path / "node.yaml")

    def as_node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL_DIR / f"kubectl.{version}"), "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        )

    # Its pod's Secret: readable once the authorizer's graph has the pod.
    wait_until(
        lambda: as_node("get", "secret", f"secret-{a}", "-n", namespace).returncode == 0,
        timeout=30,
        what="node a reading its pod's Secret",
    )
    other = as_node("get", "secret", f"secret-{b}", "-n", namespace)
    assert other.returncode != 0
    assert (
        f'secrets "secret-{b}" is forbidden: User "system:node:{a}" cannot get resource '
        f'"secrets" in API group "" in the namespace "{namespace}": no relationship found '
        f"between node '{a}' and this object"
    ) in other.stderr
    listing = as_node("auth", "can-i", "list", "secrets", "-n", namespace).stdout.strip()
    assert listing == "no - No Object name found"  # the Node authorizer's reason
    # Its own Node: a label of its own is fine; another node is not.
    mine = as_node("label", "node", a, "example.com/rack=r1")
    assert mine.returncode == 0, mine.stderr
    theirs = as_node("label", "node", b, "example.com/rack=r1")
    assert theirs.returncode != 0
    assert f'node "{a}" is not allowed to modify node "{b}"' in theirs.stderr
    steer = as_node("label", "node", a, "node-restriction.kubernetes.io/trusted=yes")
    assert steer.returncode != 0
    assert "is not allowed to modify labels: node-restriction.kubernetes.io/trusted" in (
        steer.stderr
    )
    # Pods on another node: not deleted.
    gone = as_node("delete", "pod", f"pod-{b}", "-n", namespace, "--grace-period=0")
    assert gone.returncode != 0
    assert f'node "{a}" can only delete pods with spec.nodeName set to itself' in gone.stderr
    assert cluster.kubectl("get", "pod", f"pod-{b}", "-n", namespace).returncode == 0
    labels = json.loads(cluster.kubectl("get", "node", b, "-o", "json").stdout)["metadata"]
    assert "example.com/rack" not in (labels.get("labels") or {})


def test_python_client_with_a_node_certificate(
    cluster: CompatCluster, namespace: str, nodes: tuple[str, str]
) -> None:
    from kubernetes import client as k8s

    a, b = nodes
    certificate = pki(cluster).node_certificate(a)
    configuration = k8s.Configuration()
    configuration.host = cluster.server
    configuration.ssl_ca_cert = str(pki(cluster).ca.files.cert_file)
    configuration.cert_file = str(certificate.cert_file)
    configuration.key_file = str(certificate.key_file)
    with k8s.ApiClient(configuration) as api:
        core = k8s.CoreV1Api(api)

        def readable() -> bool:
            try:
                core.read_namespaced_secret(f"secret-{a}", namespace)
            except k8s.ApiException as exc:
                if exc.status != 403:
                    raise
                return False
            return True

        wait_until(readable, timeout=30, what="node a reading its pod's Secret")
        with pytest.raises(k8s.ApiException) as secret:
            core.read_namespaced_secret(f"secret-{b}", namespace)
        assert secret.value.status == 403
        assert "no relationship found between node" in json.loads(secret.value.body)["message"]
        # Status of its own pod: yes; of the other node's pod and the other Node: no.
        core.patch_namespaced_pod_status(
            f"pod-{a}", namespace, {"status": {"message": f"seen by {a}"}}
        )
        with pytest.raises(k8s.ApiException) as pod:
            core.patch_namespaced_pod_status(f"pod-{b}", namespace, {"status": {"message": "x"}})
        assert pod.value.status == 403
        assert json.loads(pod.value.body)["message"] == (
            f'pods "pod-{b}" is forbidden: node "{a}" can only update pod status for pods '
            "with spec.nodeName set to itself"
        )
        with pytest.raises(k8s.ApiException) as node:
            core.patch_node_status(b, {"status": {"phase": "Running"}})
        assert node.value.status == 403
        assert json.loads(node.value.body)["message"] == (
            f'nodes "{b}" is forbidden: node "{a}" is not allowed to modify node "{b}"'
        )
    message = cluster.kubectl(
        "get", "pod", f"pod-{b}", "-n", namespace, "-o", "jsonpath={.status.message}"
    ).stdout
    assert message == ""
