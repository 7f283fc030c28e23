"""``kubetrio up --servers 3 --nodes 0``: three etcd members over TLS, three servers
sharing one cluster PKI, one API address; kubectl and clients through it; ``down``."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from kubetrio.client import Client
from kubetrio.images import free_loopback_port
from tests.chaos.ha import HACluster, lease_holders

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HACluster]:
    ha = HACluster(tmp_path_factory.mktemp("up"))
    try:
        ha.up()
        yield ha
    finally:
        ha.down()
        assert ha.processes() == [], "kubetrio down left processes running"


def _server_urls(cluster: HACluster) -> list[str]:
    import json

    plan = json.loads((cluster.home / "ha.json").read_text())
    return [f"https://127.0.0.1:{port}" for port in plan["server_ports"]]


def test_kubectl_reaches_the_cluster_through_one_address(cluster: HACluster) -> None:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    server = subprocess.run(
        ["kubectl", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert server == cluster.url
    for _ in range(3):  # round robin: every server answers in turn, TLS verified each time
        got = subprocess.run(
            ["kubectl", "get", "namespace", "kube-system", "-o", "name"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert got.stdout.strip() == "namespace/kube-system", got.stderr


async def test_tokens_and_secrets_of_one_server_are_good_on_every_server(
    cluster: HACluster,
) -> None:
    first, *others = _server_urls(cluster)
    async with cluster.client(first) as client:
        await client.create(
            "v1", "serviceaccounts", {"metadata": {"name": "ha-sa"}}, namespace="default"
        )
        issued = await client.create(
            "v1",
            "serviceaccounts",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            namespace="default",
            name="ha-sa",
            subresource="token",
        )
        token = issued["status"]["token"]
        await client.create(
            "v1",
            "secrets",
            {"metadata": {"name": "ha-secret"}, "data": {"k": base64.b64encode(b"v").decode()}},
            namespace="default",
        )
    for url in others:
        # The service-account key is shared: another server accepts the token ...
        ca_only = ssl.create_default_context(cafile=str(cluster.pki().ca.files.cert_file))
        async with Client.connect(url, token=token, verify=ca_only) as as_sa:
            review = await as_sa.create(
                "authentication.k8s.io/v1", "selfsubjectreviews", {"metadata": {}}
            )
            assert review["status"]["userInfo"]["username"] == "system:serviceaccount:default:ha-sa"
        # ... and the encryption key too: it reads the Secret the first one encrypted.
        async with cluster.client(url) as admin:
            secret = await admin.get("v1", "secrets", "ha-secret", namespace="default")
            assert base64.b64decode(secret["data"]["k"]) == b"v"


async def test_one_leader_for_the_controllers_and_the_scheduler(cluster: HACluster) -> None:
    async with cluster.client() as client:
        holders = await lease_holders(client)
    pids = {str(cluster.pid(f"server-{name}")) for name in cluster.names()}
    for lease, holder in holders.items():
        assert holder.rsplit("-", 1)[1] in pids, (lease, holder)


def test_etcd_refuses_a_client_without_the_certificate(cluster: HACluster) -> None:
    member = cluster.etcd_url("s0")
    ca_only = ssl.create_default_context(cafile=str(cluster.pki().etcd_ca.files.cert_file))
    with pytest.raises(httpx.HTTPError):
        httpx.post(member + "/v3/kv/range", json={"key": "AA=="}, verify=ca_only, timeout=5)
    ok = httpx.post(
        member + "/v3/kv/range", json={"key": "AA=="}, verify=cluster.etcd_context(), timeout=5
    )
    assert ok.status_code == 200


def test_up_again_starts_only_what_died(cluster: HACluster) -> None:
    before = {name: cluster.pid(f"server-{name}") for name in cluster.names()}
    cluster.kill("server-s1")
    cluster.up()
    after = {name: cluster.pid(f"server-{name}") for name in cluster.names()}
    assert after["s0"] == before["s0"] and after["s2"] == before["s2"]
    assert after["s1"] != before["s1"]


async def test_a_server_joins_and_leaves(cluster: HACluster, tmp_path: Path) -> None:
    ca = cluster.pki().ca.files.cert_file
    token = (cluster.home / "servers" / "s0" / "admin-token").read_text().strip()
    port = free_loopback_port()
    command = [
        sys.executable, "-m", "kubetrio", "server", "--no-agent", "--join", cluster.url,
        "--certificate-authority", str(ca), "--data-dir", str(tmp_path / "s3"),
        "--port", str(port), "--kubeconfig", str(tmp_path / "kubeconfig"),
    ]  # fmt: skip
    refused = subprocess.run(
        command, env={**cluster.env, "KUBETRIO_TOKEN": "not-the-token"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1 and "refused the join token (401)" in refused.stderr
    with open(tmp_path / "s3.log", "wb") as log:
        joined = subprocess.Popen(
            command, env={**cluster.env, "KUBETRIO_TOKEN": token}, stdout=log, stderr=log
        )
    url = f"https://127.0.0.1:{port}"
    try:
        with trio.fail_after(90):
            while True:
                assert joined.poll() is None, (tmp_path / "s3.log").read_text()[-3000:]
                try:
                    if httpx.get(url + "/readyz", verify=cluster.context(), timeout=2).text == "ok":
                        break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.2)
        # The same cluster: a Secret written through the API address is read from the
        # new server (same etcd, same encryption key), and the admin certificate works.
        async with cluster.client() as client:
            await client.create(
                "v1",
                "secrets",
                {"metadata": {"name": "before-join"}, "stringData": {"k": "v"}},
                namespace="default",
            )
        async with cluster.client(url) as client:
            secret = await client.get("v1", "secrets", "before-join", namespace="default")
            assert base64.b64decode(secret["data"]["k"]) == b"v"
            holders = await lease_holders(client)
            assert all(not h.endswith(f"-{joined.pid}") for h in holders.values())  # a standby
        # Behind the API address once listed in the servers file; out of it when removed.
        servers = cluster.home / "servers.txt"
        listed = servers.read_text()
        servers.write_text(listed + f"127.0.0.1:{port}\n")
        with trio.fail_after(30):
            while (
                f"backend 127.0.0.1:{port} is healthy"
                not in (cluster.home / "balancer.log").read_text()
            ):
                await trio.sleep(0.2)
        servers.write_text(listed)
        with trio.fail_after(30):
            while (
                f"backend 127.0.0.1:{port} removed"
                not in (cluster.home / "balancer.log").read_text()
            ):
                await trio.sleep(0.2)
    finally:
        joined.terminate()
        try:
            joined.wait(30)
        except subprocess.TimeoutExpired:
            joined.kill()
            joined.wait()
    assert joined.returncode == 0
