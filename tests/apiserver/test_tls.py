"""HTTPS with client certificates, on an embedded API server with the ``auth`` plugin: the
identity a certificate carries (CN the user, O the groups) as kubectl and the Python
client see it, a certificate from another CA refused, plain HTTP refused as Go refuses it."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, merge_kubeconfig, open_apiserver
from kubetrio.pki import ClusterPKI, client_context, ensure_cluster_pki
from kubetrio.store import open_store
from tests.compat.kit import KUBECTL_DIR

WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ensure_cluster_pki(tmp_path / "data", ip_addresses=["127.0.0.1"])


@pytest.fixture
async def server(tmp_path: Path, pki: ClusterPKI) -> AsyncIterator[RunningApiServer]:
    manager = plugins.load(only=["auth"])
    manager.configure(config={})
    try:
        async with (
            open_store(f"sqlite://{tmp_path}/state.db") as store,
            open_apiserver(store, plugins=manager, tls=pki.tls()) as running,
        ):
            yield running
    finally:
        manager.unconfigure()


def _kubeconfig(path: Path, server: RunningApiServer, pki: ClusterPKI, user: str) -> Path:
    merge_kubeconfig(
        path,
        name="t",
        server=server.url,
        certificate_authority=pki.ca.files.cert_file.read_bytes(),
        client_certificate=pki.client_certificate(user, user, ["dev"]).pem(),
    )
    return path


async def test_the_admin_certificate_is_system_masters(
    server: RunningApiServer, pki: ClusterPKI
) -> None:
    assert server.url.startswith("https://")
    context = client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)
    async with httpx.AsyncClient(base_url=server.url, verify=context) as http:
        review = await http.post(WHOAMI, json=REVIEW)
        assert review.status_code == 201, review.text
        assert review.json()["status"]["userInfo"] == {
            "username": "kubernetes-admin",
            "groups": ["system:masters", "system:authenticated"],
        }
        # The serving certificate names the address (the client checked it: no error).
        assert (await http.get("/api/v1/namespaces")).status_code == 200


async def test_plain_http_is_answered_as_go_answers_it(server: RunningApiServer) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(4096):
            answer += data
    assert answer == (
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    )


async def test_a_certificate_from_another_ca_is_refused(
    server: RunningApiServer, pki: ClusterPKI, tmp_path: Path
) -> None:
    other = ensure_cluster_pki(tmp_path / "other")
    forged = other.client_certificate("mallory", "kubernetes-admin", ["system:masters"])
    context = client_context(pki.ca.files.cert_file, forged.cert_file, forged.key_file)
    async with httpx.AsyncClient(base_url=server.url, verify=context) as http:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await http.post(WHOAMI, json=REVIEW)
    # The server is fine afterwards.
    good = client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)
    async with httpx.AsyncClient(base_url=server.url, verify=good) as http:
        assert (await http.get("/readyz")).status_code == 200


async def test_a_client_that_does_not_trust_the_ca_refuses_the_server(
    server: RunningApiServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, verify=ssl.create_default_context()) as h:
        with pytest.raises(httpx.ConnectError):
            await h.get("/readyz")


@pytest.mark.skipif(not (KUBECTL_DIR / "kubectl.1.33").exists(), reason="needs kubectl.1.33")
async def test_kubectl_auth_whoami_shows_the_certificates_user(
    server: RunningApiServer, pki: ClusterPKI, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", server, pki, "jane")
    done = await trio.run_process(
        [
            KUBECTL_DIR / "kubectl.1.33",
            "--kubeconfig",
            str(kubeconfig),
            "auth",
            "whoami",
            "-o",
            "json",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["userInfo"] == {
        "username": "jane",
        "groups": ["dev", "system:authenticated"],
    }


@pytest.mark.skipif(not (KUBECTL_DIR / "kubectl.1.27").exists(), reason="needs kubectl.1.27")
async def test_kubectl_1_27_reads_over_https(
    server: RunningApiServer, pki: ClusterPKI, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", server, pki, "jane")
    done = await trio.run_process(
        [
            KUBECTL_DIR / "kubectl.1.27",
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "namespaces",
            "-o",
            "name",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"namespace/default" in done.stdout


async def test_the_python_client_uses_the_kubeconfigs_certificate(
    server: RunningApiServer, pki: ClusterPKI, tmp_path: Path
) -> None:
    from kubernetes import client, config

    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", server, pki, "jane")

    def whoami() -> object:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        with client.ApiClient(configuration) as api:
            review = client.AuthenticationV1Api(api).create_self_subject_review(
                client.V1SelfSubjectReview()
            )
            return review.status.user_info.username

    assert await trio.to_thread.run_sync(whoami) == "jane"
