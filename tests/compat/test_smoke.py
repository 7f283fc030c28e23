"""The suite's own footing: the cluster is reachable through the kubeconfig by every client."""

from __future__ import annotations

from tests.compat.kit import CompatCluster


def test_kubectl_versions_reach_the_cluster(cluster: CompatCluster, namespace: str) -> None:
    for version in ("1.27", "1.33"):
        out = cluster.kubectl("get", "serviceaccounts", "-n", namespace, version=version).stdout
        assert "default" in out
