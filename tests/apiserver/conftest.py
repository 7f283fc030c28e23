"""Fixtures: an API server on a fresh SQLite store, and a kubeconfig for kubectl."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kubetrio.apiserver import RunningApiServer, merge_kubeconfig, open_apiserver
from kubetrio.store import open_store


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store) as running,
    ):
        yield running


@pytest.fixture
async def http(apiserver: RunningApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=apiserver.url, timeout=10) as client:
        yield client


@pytest.fixture
def kubeconfig(apiserver: RunningApiServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    merge_kubeconfig(path, name="test", server=apiserver.url, token="test-token")
    return path
