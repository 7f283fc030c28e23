"""An RBAC cluster without controllers (so only the tests write), two users with tokens."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.pki import ClusterPKI, ensure_cluster_pki
from kubetrio.store import open_store
from tests.store.etcd_cluster import EtcdCluster

ADMIN_TOKEN = "admin-token"
TOKENS = """jane-token,jane,u-jane,"devs"
bob-token,bob,u-bob
"""
RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "etcd",
            marks=[
                pytest.mark.etcd,
                pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed"),
            ],
        ),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh etcd member."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/state.db"
        return
    member = EtcdCluster(tmp_path / "etcd")
    try:
        member.start()
        yield member.url
    finally:
        member.stop()


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    """The cluster's CA and serving certificate (kubectl sends tokens over HTTPS only)."""
    return ensure_cluster_pki(tmp_path / "data", ip_addresses=["127.0.0.1"])


def kubeconfig_for(path: Path, cluster: Cluster, pki: ClusterPKI, token: str) -> Path:
    """A kubeconfig at ``path`` reaching ``cluster`` over HTTPS with ``token``."""
    merge_kubeconfig(
        path,
        name="history",
        server=cluster.url,
        token=token,
        certificate_authority=pki.ca.files.cert_file.read_bytes(),
    )
    return path


@pytest.fixture
async def cluster(tmp_path: Path, store_url: str, pki: ClusterPKI) -> AsyncIterator[Cluster]:
    """An RBAC cluster with namespaces ``team`` and ``other``; jane and bob may read and
    write Deployments and ConfigMaps in ``team`` and read their history."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    async with (
        open_store(store_url) as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac"]),
            token=ADMIN_TOKEN,
            controllers=False,
            scheduler=False,
            tls=pki.tls(),
            plugin_config={"auth": {"token_auth_file": str(tokens), "authorization_mode": "RBAC"}},
        ) as running,
    ):
        admin = running.client
        for name in ("team", "other"):
            await admin.create("v1", "namespaces", {"metadata": {"name": name}})
        every = ["get", "list", "create", "update", "patch", "delete"]
        rules: list[dict[str, Any]] = [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": every},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": every},
            {
                "apiGroups": ["apps", ""],
                "resources": ["deployments/history", "configmaps/history"],
                "verbs": ["get"],
            },
        ]
        await admin.create(
            RBAC, "roles", {"metadata": {"name": "editor"}, "rules": rules}, namespace="team"
        )
        await admin.create(
            RBAC,
            "rolebindings",
            {
                "metadata": {"name": "editors"},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "Role", "name": "editor"},
                "subjects": [
                    {"kind": "User", "name": user, "apiGroup": RBAC.split("/")[0]}
                    for user in ("jane", "bob")
                ],
            },
            namespace="team",
        )
        # Discovery for everyone (the default policy's system:discovery; its reconciler is
        # a controller, and controllers are off here).
        paths = ["/api", "/api/*", "/apis", "/apis/*", "/version", "/openapi/*"]
        await admin.create(
            RBAC,
            "clusterroles",
            {
                "metadata": {"name": "discovery"},
                "rules": [{"nonResourceURLs": paths, "verbs": ["get"]}],
            },
        )
        await admin.create(
            RBAC,
            "clusterrolebindings",
            {
                "metadata": {"name": "discovery"},
                "roleRef": {
                    "apiGroup": RBAC.split("/")[0],
                    "kind": "ClusterRole",
                    "name": "discovery",
                },
                "subjects": [
                    {
                        "kind": "Group",
                        "name": "system:authenticated",
                        "apiGroup": RBAC.split("/")[0],
                    }
                ],
            },
        )
        yield running


def as_user(cluster: Cluster, token: str) -> Client:
    """An in-process client presenting ``token``."""
    return Client.in_process(cluster.api, token=token)
