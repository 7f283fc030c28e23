"""Fixtures for the store suite: every contract test runs on SQLite and on a real etcd."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubetrio.store import Store, open_store
from tests.store.etcd_cluster import EtcdCluster

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")


@pytest.fixture(scope="session")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for the whole session (tests use distinct key prefixes)."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd1"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("etcd", marks=[pytest.mark.etcd, needs_etcd]),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for a fresh store: a new SQLite file, or the session's etcd."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state.db'}"
    cluster: EtcdCluster = request.getfixturevalue("etcd1")
    return cluster.url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open store of each backend."""
    async with open_store(store_url) as s:
        yield s


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses (the etcd member is shared)."""
    return f"/registry/t{uuid.uuid4().hex[:10]}/"
