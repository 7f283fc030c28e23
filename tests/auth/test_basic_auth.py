"""HTTP basic authentication from ``--basic-auth-file`` (legacy, off by default): the
password file's format, a 401 Status for a wrong password, and real clients sending
``username``/``password`` from a kubeconfig."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import yaml
from kubetrio_auth.passwords import StaticPasswords
from kubetrio_auth.tokens import TokenFileError

from kubetrio import plugins
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.pki import ClusterPKI, ensure_cluster_pki
from kubetrio.providers import AuthRequest, UserInfo
from kubetrio.store import open_store
from tests.compat.kit import KUBECTL_DIR

PASSWORDS = """# password,user,uid,groups
s3cret,jane,u-jane,"devs,ops"

hunter2,bob,u-bob
"""
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


def basic(user: str, password: str) -> AuthRequest:
    return AuthRequest(headers={"authorization": httpx.BasicAuth(user, password)._auth_header})


def test_the_password_file_is_kube_apiservers_format() -> None:
    passwords = StaticPasswords.from_text(PASSWORDS)
    assert passwords.authenticate(basic("jane", "s3cret")) == UserInfo(
        name="jane", uid="u-jane", groups=("devs", "ops")
    )
    assert passwords.authenticate(basic("bob", "hunter2")) == UserInfo(name="bob", uid="u-bob")
    assert passwords.authenticate(basic("jane", "hunter2")) is None
    assert passwords.authenticate(basic("nobody", "")) is None
    # Not basic credentials at all: another authenticator's business.
    assert passwords.authenticate(AuthRequest(headers={"authorization": "Bearer x"})) is None
    assert passwords.authenticate(AuthRequest(headers={"authorization": "Basic %%%"})) is None
    with pytest.raises(TokenFileError, match=r"^pw.csv:2: expected password,user,uid"):
        StaticPasswords.from_text("a,b,c\nonly-two,fields\n", source="pw.csv")


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ensure_cluster_pki(tmp_path / "data", ip_addresses=["127.0.0.1"])


async def serve(tmp_path: Path, pki: ClusterPKI, auth: dict[str, str]) -> AsyncIterator[Cluster]:
    """An RBAC API server over HTTPS with upstream's default roles (no controllers)."""
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac"]),
            tls=pki.tls(),
            controllers=False,
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "RBAC", **auth}},
        ) as running,
    ):
        yield running


@pytest.fixture
async def server(tmp_path: Path, pki: ClusterPKI) -> AsyncIterator[Cluster]:
    (tmp_path / "passwords.csv").write_text(PASSWORDS)
    async for running in serve(tmp_path, pki, {"basic_auth_file": str(tmp_path / "passwords.csv")}):
        yield running


async def test_basic_auth_authenticates_and_refuses_a_wrong_password_with_401(
    server: Cluster, pki: ClusterPKI
) -> None:
    ca = ssl.create_default_context(cafile=pki.ca.files.cert_file)
    async with httpx.AsyncClient(base_url=server.url, verify=ca, auth=("jane", "s3cret")) as h:
        review = await h.post(WHOAMI, json=REVIEW)
        assert review.status_code == 201, review.text
        assert review.json()["status"]["userInfo"] == {
            "username": "jane",
            "uid": "u-jane",
            "groups": ["devs", "ops", "system:authenticated"],
        }
    for user, password in (("jane", "wrong"), ("nobody", "s3cret")):
        async with httpx.AsyncClient(base_url=server.url, verify=ca, auth=(user, password)) as h:
            refused = await h.get("/api/v1/namespaces")
            assert refused.status_code == 401
            assert refused.json() == UNAUTHORIZED


async def test_basic_auth_is_off_without_the_file(tmp_path: Path, pki: ClusterPKI) -> None:
    async for running in serve(tmp_path, pki, {}):
        ca = ssl.create_default_context(cafile=pki.ca.files.cert_file)
        async with httpx.AsyncClient(base_url=running.url, verify=ca, auth=("jane", "s3cret")) as h:
            refused = await h.get("/version")
            assert refused.status_code == 401
            assert refused.json() == UNAUTHORIZED


def password_kubeconfig(path: Path, server: Cluster, pki: ClusterPKI) -> Path:
    """A kubeconfig whose user is ``username``/``password`` (client-go 1.33 still sends
    them)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": server.url,
                            "certificate-authority": str(pki.ca.files.cert_file),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"username": "jane", "password": "s3cret"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_sends_the_kubeconfigs_username_and_password(
    server: Cluster, pki: ClusterPKI, tmp_path: Path, version: str
) -> None:
    binary = KUBECTL_DIR / f"kubectl.{version}"
    if not binary.exists():
        pytest.skip(f"needs kubectl.{version}")
    kubeconfig = password_kubeconfig(tmp_path / "kubeconfig", server, pki)

    async def kubectl(*args: str) -> tuple[int, bytes]:
        done = await trio.run_process(
            [binary, "--kubeconfig", str(kubeconfig), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        return done.returncode, done.stderr

    # jane has no role: RBAC refuses her by name (she is authenticated, not anonymous).
    code, err = await kubectl("get", "secrets")
    assert code == 1
    assert b'User "jane" cannot list resource "secrets"' in err
    code, err = await kubectl("get", "secrets", "--password", "wrong")
    assert code == 1
    assert b"error: You must be logged in to the server (Unauthorized)" in err


async def test_the_python_client_sends_basic_credentials(
    server: Cluster, pki: ClusterPKI, tmp_path: Path
) -> None:
    from kubernetes import client, config

    kubeconfig = password_kubeconfig(tmp_path / "kubeconfig", server, pki)

    def whoami() -> object:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        with api:
            review = client.AuthenticationV1Api(api).create_self_subject_review(
                client.V1SelfSubjectReview()
            )
            return review.status.user_info.username

    assert await trio.to_thread.run_sync(whoami) == "jane"
