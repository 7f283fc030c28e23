"""The store contract suite (tests/store) run on an :class:`EncryptedStore` that encrypts
every key: the wrapper keeps revisions, compare-and-swap, paging, watches and compaction
exactly as the store it wraps, and the wrapped store holds only ciphertext."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubetrio import store as kv
from tests.store.test_contract import (
    test_compacted_and_future_revisions as test_compacted_and_future_revisions,
)
from tests.store.test_contract import (
    test_create_update_delete_semantics as test_create_update_delete_semantics,
)
from tests.store.test_contract import (
    test_many_watchers_share_decoded_events as test_many_watchers_share_decoded_events,
)
from tests.store.test_contract import (
    test_reads_at_past_revisions_and_paging as test_reads_at_past_revisions_and_paging,
)
from tests.store.test_contract import (
    test_watch_from_now_and_deletes as test_watch_from_now_and_deletes,
)
from tests.store.test_contract import (
    test_watch_ordered_unique_resumable as test_watch_ordered_unique_resumable,
)
from tests.store.test_model import (
    test_random_operations_match_the_model as test_random_operations_match_the_model,
)

from .conftest import encryption_yaml, key, keyed

EVERYTHING = encryption_yaml(keyed("aesgcm", "k1", key(12)), resources="['*.*']")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[kv.Store]:
    """A fresh SQLite store behind an EncryptedStore that encrypts every resource."""
    async with kv.open_store(f"sqlite://{tmp_path / 'state.db'}") as inner:
        yield kv.EncryptedStore(inner, kv.parse_encryption_config(EVERYTHING))


@pytest.fixture
def prefix() -> str:
    """Keys as the registry lays them out, so the config applies."""
    return f"/registry/t{uuid.uuid4().hex[:10]}/"


async def test_the_wrapped_store_holds_only_ciphertext(store: kv.Store, prefix: str) -> None:
    assert isinstance(store, kv.EncryptedStore)
    await store.create(f"{prefix}things/a", b"plain-value-1")
    raw = await store.inner.get(f"{prefix}things/a")
    assert raw is not None and raw.value.startswith(b"k8s:enc:aesgcm:v1:k1:")
    assert b"plain-value-1" not in raw.value
    found = await store.get(f"{prefix}things/a")
    assert found is not None and found.value == b"plain-value-1"
