"""An in-process cluster for the DNS tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Any]:
    """An in-process cluster (API server + controllers) on SQLite."""
    from kubetrio.cluster import open_cluster
    from kubetrio.store import open_store

    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(store, scheduler=False) as running,
    ):
        yield running
