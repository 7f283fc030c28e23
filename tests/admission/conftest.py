"""Fixtures: a cluster with the ``auth`` and ``admission`` plugins served over HTTP, and
kubectl 1.33 with a kubeconfig for it (plus an in-process client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubetrio import plugins
from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client
from kubetrio.cluster import open_cluster
from kubetrio.store import open_store
from tests.apiserver.test_kubectl import Kubectl


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[tuple[Kubectl, Client]]:
    manager = plugins.load(only=["auth", "admission"])
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(store, plugins=manager, token="t", controllers=False, scheduler=False) as c,
    ):
        path = tmp_path / "kubeconfig"
        merge_kubeconfig(path, name="test", server=c.url, token="t")
        yield Kubectl(33, path, tmp_path), Client.in_process(c.api, token="t")
