"""Resource metrics on a real node: a pod burning CPU shows in ``kubectl top`` (1.27 and
1.33), in the official Python client through ``metrics.k8s.io``, and for a user who may
only ``view``; ``kubectl top nodes`` shows the node."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from kubetrio.api.quantity import Quantity
from tests.compat.kit import KUBECTL_VERSIONS, CompatCluster
from tests.kit import wait_until

BURN = """
apiVersion: v1
kind: Pod
metadata: {name: burn, labels: {app: burn}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: busybox
    command: [sh, -c, "while :; do :; done"]
    resources: {limits: {cpu: 300m}}
  - name: rest
    image: busybox
    command: [sleep, "3600"]
"""


@pytest.fixture
def burning(cluster: CompatCluster, namespace: str) -> Iterator[str]:
    """A pod with one container spinning (300m at most) and one sleeping."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=BURN)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/burn", "--timeout=90s")
    yield namespace
    cluster.kubectl("delete", "pod", "burn", "-n", namespace, "--wait=false", check=False)


def millicores(text: str) -> int:
    return Quantity(text).milli_value()


def top_rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()[1:] if line.strip()]


def test_kubectl_top_shows_the_busy_pod(cluster: CompatCluster, burning: str) -> None:
    namespace = burning

    def busy() -> bool:
        result = cluster.kubectl("top", "pod", "burn", "-n", namespace, check=False)
        rows = top_rows(result.stdout) if result.returncode == 0 else []
        return bool(rows) and millicores(rows[0][1]) > 50

    # Two scrapes (15 s apart) are needed before a rate exists.
    wait_until(busy, timeout=120, what="kubectl top pod burn to show CPU use")
    for version in KUBECTL_VERSIONS:
        pods = cluster.kubectl("top", "pods", "-A", "--containers", version=version).stdout
        assert pods.split()[:5] == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        rows = {(r[0], r[1], r[2]): r for r in top_rows(pods)}
        spin = rows[(namespace, "burn", "spin")]
        assert 50 < millicores(spin[3]) <= 400, pods  # limited to 300m
        assert re.fullmatch(r"\d+Mi", spin[4]), pods
        rest = rows[(namespace, "burn", "rest")]
        assert millicores(rest[3]) < millicores(spin[3])

        got = cluster.kubectl("get", "podmetrics", "-n", namespace, version=version).stdout
        assert got.split()[:4] == ["NAME", "CPU", "MEMORY", "WINDOW"], got
        assert top_rows(got)[0][0] == "burn", got

        one = cluster.kubectl("top", "pod", "burn", "-n", namespace, version=version).stdout
        assert top_rows(one)[0][0] == "burn" and millicores(top_rows(one)[0][1]) > 50

        nodes = cluster.kubectl("top", "nodes", version=version).stdout
        assert nodes.split()[:2] == ["NAME", "CPU(cores)"], nodes
        (node,) = top_rows(nodes)
        assert millicores(node[1]) > 50 and node[2].endswith("%"), nodes

    # A selector narrows the list; a pod without metrics is answered as metrics-server does.
    selected = cluster.kubectl("top", "pods", "-n", namespace, "-l", "app=burn").stdout
    assert [r[0] for r in top_rows(selected)] == ["burn"]
    raw = cluster.kubectl(
        "get",
        "--raw",
        f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/nothing",
        check=False,
    )
    assert raw.returncode != 0 and 'pods "nothing" not found' in raw.stderr


def test_python_client_reads_pod_and_node_metrics(cluster: CompatCluster, burning: str) -> None:
    namespace = burning
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        custom = client.CustomObjectsApi(api_client)

        def spin_cpu() -> int:
            listed = custom.list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods", label_selector="app=burn"
            )
            for item in listed["items"]:
                for container in item["containers"]:
                    if container["name"] == "spin":
                        return millicores(container["usage"]["cpu"])
            return 0

        wait_until(lambda: spin_cpu() > 50, timeout=120, what="PodMetrics of burn")
        pod = custom.get_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", namespace, "pods", "burn"
        )
        assert pod["kind"] == "PodMetrics" and pod["metadata"]["labels"] == {"app": "burn"}
        assert {c["name"] for c in pod["containers"]} == {"spin", "rest"}
        assert re.fullmatch(r"\d+(\.\d+)?s", pod["window"]), pod["window"]
        assert all(c["usage"]["memory"].endswith(("Ki", "Mi")) for c in pod["containers"])
        nodes = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        assert nodes["kind"] == "NodeMetricsList" and len(nodes["items"]) == 1
        assert millicores(nodes["items"][0]["usage"]["cpu"]) > 50


def test_a_viewer_can_run_kubectl_top(cluster: CompatCluster, burning: str) -> None:
    """``view`` aggregates ``system:aggregated-metrics-reader``, as with metrics-server."""
    namespace = burning
    role = cluster.kubectl("get", "clusterrole", "system:aggregated-metrics-reader", "-o", "json")
    rules = json.loads(role.stdout)["rules"]
    assert rules[0]["apiGroups"] == ["metrics.k8s.io"]
    cluster.kubectl("create", "serviceaccount", "viewer", "-n", namespace)
    cluster.kubectl(
        "create",
        "rolebinding",
        "viewer",
        "-n",
        namespace,
        "--clusterrole=view",
        f"--serviceaccount={namespace}:viewer",
    )
    viewer = f"--as=system:serviceaccount:{namespace}:viewer"

    def shown() -> bool:
        result = cluster.kubectl("top", "pods", "-n", namespace, viewer, check=False)
        return result.returncode == 0 and "burn" in result.stdout

    wait_until(shown, timeout=120, what="kubectl top pods as a viewer")
    denied = cluster.kubectl("top", "nodes", viewer, check=False)  # nodes: cluster-scoped
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
