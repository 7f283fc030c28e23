"""The API server ↔ node agent endpoint (kubelet's 10250) over mutual TLS: the agent
serves a certificate of the cluster CA and admits callers by a client certificate of the
client CA plus a SubjectAccessReview of ``nodes/proxy``; the API server presents its
``kube-apiserver-kubelet-client`` certificate and verifies the agent's.

The agent here is the real :class:`KubeletServer` over a stand-in for the node agent that
answers ``pods/log`` (no containers needed); the cluster is embedded, ``Node,RBAC``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.kubelet._prom import NodeMetrics
from kubetrio.kubelet._server import KubeletServer
from kubetrio.pki import ClusterPKI, ensure_cluster_pki
from kubetrio.store import open_store
from tests.compat.kit import KUBECTL_VERSIONS
from tests.kit.polling import wait_for
from tests.kit.prom import kubectl


class NoPods:
    """A runtime running nothing (for the agent's ``/metrics``)."""

    def list_sandboxes(self) -> list[str]:
        return []


@dataclass
class StandIn:
    """What :class:`KubeletServer` asks of its node agent: a name, a client, logs, metrics."""

    client: Client
    node_name: str = "tls-node"
    metrics: NodeMetrics = field(default_factory=NodeMetrics)
    runtime: Any = field(default_factory=NoPods)

    async def read_logs(
        self, namespace: str, name: str, container: str = "", **_: Any
    ) -> AsyncIterator[bytes]:
        yield f"log of {namespace}/{name}/{container}\n".encode()


@dataclass
class Setup:
    cluster: Cluster
    pki: ClusterPKI
    url: str
    """The agent endpoint's base URL."""


async def serve(nursery: trio.Nursery, agent: StandIn, pki: ClusterPKI) -> int:
    serving = pki.node_serving_certificate(agent.node_name, ip_addresses=["127.0.0.1"])
    server = KubeletServer(
        agent,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        tls=pki.agent_tls(serving).serving,
    )
    port: int = await nursery.start(server.run)
    return port


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    pki = ensure_cluster_pki(tmp_path / "data", ip_addresses=["127.0.0.1"])
    serving = pki.node_serving_certificate("tls-node", ip_addresses=["127.0.0.1"])
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac", "node"]),
            token="admin-token",
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "Node,RBAC"}},
            tls=pki.tls(),
            agent_tls=pki.agent_tls(serving),
        ) as cluster,
        trio.open_nursery() as nursery,
    ):
        port = await serve(nursery, StandIn(cluster.client), pki)
        await cluster.client.create(
            "v1",
            "nodes",
            {
                "metadata": {"name": "tls-node"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                },
            },
        )
        await cluster.client.patch(
            "v1",
            "nodes",
            "tls-node",
            {
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                }
            },
            subresource="status",
        )
        pod = {
            "metadata": {"name": "p"},
            "spec": {"nodeName": "tls-node", "containers": [{"name": "c", "image": "x"}]},
        }
        await cluster.client.create("v1", "pods", pod, namespace="default")
        yield Setup(cluster, pki, f"https://127.0.0.1:{port}")
        nursery.cancel_scope.cancel()


async def pod_log(cluster: Cluster) -> tuple[int, bytes]:
    """``pods/log`` of pod ``p`` through the API server: (status, body)."""
    answer = await cluster.client.transport.request(
        "GET",
        "/api/v1/namespaces/default/pods/p/log",
        query={},
        body=b"",
        content_type="application/json",
    )
    return answer.status, bytes(answer.body)


def client_context(
    pki: ClusterPKI, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.files.cert_file))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_pods_log_reaches_the_agent_over_mutual_tls(setup: Setup) -> None:
    """``pods/log`` through the API server: its client certificate is accepted once RBAC
    binds it to system:kubelet-api-admin (the default policy, reconciled at start)."""

    async def logged() -> bool:
        status, body = await pod_log(setup.cluster)
        if status == 403:  # the binding is not there yet: the agent refused
            return False
        assert (status, body) == (200, b"log of default/p/c\n")
        return True

    await wait_for(logged)


async def test_a_request_without_a_client_certificate_is_401(setup: Setup) -> None:
    async with httpx.AsyncClient(verify=client_context(setup.pki)) as http:
        answer = await http.get(f"{setup.url}/containerLogs/default/p/c")
    assert answer.status_code == 401


async def test_a_certificate_of_another_ca_is_refused(setup: Setup, tmp_path: Path) -> None:
    stranger = ensure_cluster_pki(tmp_path / "stranger").admin
    context = client_context(setup.pki, stranger.cert_file, stranger.key_file)
    async with httpx.AsyncClient(verify=context) as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"{setup.url}/containerLogs/default/p/c")


async def test_a_user_without_nodes_proxy_is_403(setup: Setup) -> None:
    """A client certificate of the client CA is not enough: the SubjectAccessReview of
    ``nodes/proxy`` decides (a node's own certificate may not read another's logs)."""
    other = setup.pki.node_certificate("other-node")
    context = client_context(setup.pki, other.cert_file, other.key_file)
    async with httpx.AsyncClient(verify=context) as http:
        answer = await http.get(f"{setup.url}/containerLogs/default/p/c")
    assert answer.status_code == 403
    assert answer.text == (
        "Forbidden (user=system:node:other-node, verb=get, resource=nodes, subresource=proxy)\n"
    )


async def test_the_api_server_verifies_the_agents_certificate(setup: Setup, tmp_path: Path) -> None:
    """An endpoint serving a certificate the cluster CA did not sign is not talked to."""
    stranger = ensure_cluster_pki(tmp_path / "stranger")
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, StandIn(setup.cluster.client, "imposter"), stranger)
        await setup.cluster.client.patch(
            "v1",
            "nodes",
            "tls-node",
            {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}},
            subresource="status",
        )
        status, body = await pod_log(setup.cluster)
        assert status == 502
        assert b"the node agent could not be reached" in body
        assert b"CERTIFICATE_VERIFY_FAILED" in body
        nursery.cancel_scope.cancel()


async def test_the_agents_metrics_through_the_node_proxy(setup: Setup, tmp_path: Path) -> None:
    """``kubectl get --raw /api/v1/nodes/<node>/proxy/metrics``: the API server checks the
    caller may ``get nodes/proxy``, then asks the agent over mutual TLS."""
    ca = setup.pki.ca.files.cert_file.read_bytes()
    admin, jane = tmp_path / "admin" / "config", tmp_path / "jane" / "config"
    for path, pair in (
        (admin, setup.pki.admin),
        (jane, setup.pki.client_certificate("jane", "jane")),
    ):
        path.parent.mkdir()
        merge_kubeconfig(
            path,
            name="t",
            server=setup.cluster.url,
            certificate_authority=ca,
            client_certificate=pair.pem(),
        )
    url = "/api/v1/nodes/tls-node/proxy/metrics"
    for version in KUBECTL_VERSIONS:

        async def scraped(version: str = version) -> str | None:
            # The API server's own certificate is bound as the default policy reconciles.
            code, out = await kubectl(version, admin, "get", "--raw", url)
            return out if code == 0 else None

        out = await wait_for(scraped)
        assert "kubelet_running_pods 0.0" in out
        assert "# TYPE kubelet_pod_start_duration_seconds histogram" in out
        code, out = await kubectl(version, jane, "get", "--raw", url)
        assert code == 1
        assert 'User "jane" cannot get resource "nodes/proxy"' in out.replace('\\"', '"'), out
