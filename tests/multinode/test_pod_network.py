"""Pod networking across a real 3-node cluster in each mode: VXLAN, IPIP and BGP.

Per mode, one ``kubetrio up --nodes 3 --mode MODE`` cluster (see conftest): pods on
every node, then traffic pod↔pod on one node and across nodes, node→pod and pod→node,
and every pod's address from the IPAM block its node claimed.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LocalCluster, running_cluster

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.slow]

PODS = {"a1": 1, "a2": 1, "b": 2, "c": 3}
"""Pod name → node index: two pods share node 1."""


@pytest.fixture(scope="module", params=["vxlan", "ipip", "bgp"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    with running_cluster(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


@pytest.fixture(scope="module")
def pods(cluster: LocalCluster) -> dict[str, str]:
    return cluster.run_pods(PODS)


def test_pods_get_addresses_from_their_nodes_blocks(
    cluster: LocalCluster, pods: dict[str, str]
) -> None:
    blocks = cluster.get("ipamblocks")["items"]
    by_node: dict[str, list[ipaddress.IPv4Network]] = {}
    for block in blocks:
        by_node.setdefault(block["spec"]["node"], []).append(
            ipaddress.IPv4Network(block["spec"]["cidr"])
        )
    assert set(by_node) == {cluster.node(i) for i in (1, 2, 3)}
    for pod, index in PODS.items():
        address = ipaddress.IPv4Address(pods[pod])
        assert any(address in block for block in by_node[cluster.node(index)]), (pod, address)
    pool = cluster.get("ippools")["items"]
    assert [p["spec"]["mode"] for p in pool] == [cluster.mode]


def test_agents_join_with_a_bootstrap_token_and_certificate_signing_requests(
    cluster: LocalCluster,
) -> None:
    """``up`` gives each agent the cluster CA and a bootstrap token (never a certificate
    nor the admin token as its credential): each asked for ``system:node:<name>`` by a
    CSR, which was auto-approved and signed by the client CA, and joined with it."""
    from cryptography import x509

    home = Path(cluster.env["HOME"]) / ".local/share/kubetrio/clusters" / cluster.name
    client_ca = x509.load_pem_x509_certificate((home / "data/pki/client-ca.crt").read_bytes())
    admin_token = (home / "data/admin-token").read_text().strip()
    csrs = cluster.get("csr")["items"]
    for index in (2, 3):
        name = cluster.node(index)
        pid = int((home / f"agent-{name}.pid").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index("--server") + 1].startswith("https://")
        assert argv[argv.index("--certificate-authority") + 1] == str(home / "data/pki/ca.crt")
        assert "--client-certificate" not in argv
        environ = dict(
            line.split("=", 1)
            for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
            if "=" in line
        )
        assert environ["KUBETRIO_TOKEN"] != admin_token
        assert len(environ["KUBETRIO_TOKEN"]) == 23  # <6>.<16>
        folder = home / "nodes" / name / "pki"
        cert = x509.load_pem_x509_certificate((folder / "kubelet-client.crt").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN=system:node:{name},O=system:nodes"
        cert.verify_directly_issued_by(client_ca)
        assert (folder / "kubelet-client.key").stat().st_mode & 0o777 == 0o600
        (mine,) = [
            c
            for c in csrs
            if c["spec"]["username"].startswith("system:bootstrap:")
            and c["metadata"]["name"].startswith(f"node-csr-{name}-")
        ]
        assert "system:bootstrappers" in mine["spec"]["groups"]
        assert mine["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
        (approved,) = mine["status"]["conditions"]
        assert (approved["type"], approved["reason"]) == ("Approved", "AutoApproved")
        assert mine["status"]["certificate"]
    nodes = cluster.get("nodes")["items"]
    assert {n["metadata"]["name"] for n in nodes} == {cluster.node(i) for i in (1, 2, 3)}


@pytest.mark.parametrize(
    ("client", "server"),
    [("a1", "a2"), ("a1", "b"), ("b", "c"), ("c", "a1")],
    ids=["same-node", "node1-to-node2", "node2-to-node3", "node3-to-node1"],
)
def test_pod_to_pod(cluster: LocalCluster, pods: dict[str, str], client: str, server: str) -> None:
    assert cluster.fetch_from_pod(client, f"http://{pods[server]}:8080/") == server


def test_node_to_pod(cluster: LocalCluster, pods: dict[str, str]) -> None:
    # Node 2 reaches a pod on node 3 and one on node 1 (across), and its own pod.
    for pod in ("c", "a1", "b"):
        assert cluster.fetch_from_node(2, f"http://{pods[pod]}:8080/") == pod


def test_pod_to_node(
    cluster: LocalCluster, pods: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A server on node 3's own address (outside any pod), fetched from pods on nodes 1 and 3.
    root = tmp_path_factory.mktemp("node-www")
    (root / "index.html").write_text("node-3\n")
    netns = cluster.topology.nodes[2].netns
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, "busybox", "httpd", "-f", "-p", "18080", "-h", str(root)]
    )
    try:
        for pod in ("a1", "c"):
            url = f"http://{cluster.node_ip(3)}:18080/"
            assert cluster.fetch_from_pod(pod, url) == "node-3"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_network_policy_across_nodes(cluster: LocalCluster, pods: dict[str, str]) -> None:
    # Pod c (node 3) admits only pods labelled app=b (node 2); a1 (node 1) is refused.
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "c-from-b"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "c"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
        },
    }
    url = f"http://{pods['c']}:8080/"
    assert cluster.reaches("a1", url)
    cluster.apply(policy)
    try:
        deadline = time.monotonic() + 15
        while cluster.reaches("a1", url) and time.monotonic() < deadline:
            time.sleep(0.5)  # the nodes' policy agents follow the new object
        assert not cluster.reaches("a1", url)
        assert cluster.reaches("b", url)
    finally:
        cluster.kubectl("delete", "networkpolicy", "c-from-b")
    deadline = time.monotonic() + 15
    while not cluster.reaches("a1", url) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.reaches("a1", url)
