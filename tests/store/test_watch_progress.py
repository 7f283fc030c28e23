"""A watch's progress (``watch_progress``): on both backends, and through encryption at
rest, a quiet watch learns that nothing of its range changed up to the revision other
keys moved the store to — and never claims progress past an event it still holds."""

from __future__ import annotations

import base64

import trio

from kubetrio.store import EncryptedStore, Store, parse_encryption_config, watch_progress

CONFIG = f"""
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox: {{keys: [{{name: k1, secret: {base64.b64encode(b"k" * 32).decode()}}}]}}
"""


async def _progress_follows_other_writes(store: Store, watched: str, other: str) -> None:
    head = await store.current_revision()
    async with store.watch(watched, prefix=True, revision=head + 1) as events:
        last = 0
        for i in range(3):
            last = (await store.create(f"{other}k{i}", b"v")).mod_revision
        with trio.fail_after(10):  # the hub hears of the writes (etcd: from its stream)
            while (watch_progress(events) or 0) < last:
                await trio.sleep(0.02)
        # An event of the watched range is waiting: no progress is claimed past it.
        mine = (await store.create(f"{watched}mine", b"v")).mod_revision
        with trio.fail_after(10):
            while watch_progress(events) is not None:
                await trio.sleep(0.02)
        event = await events.__anext__()
        assert event.kv.mod_revision == mine
        assert (watch_progress(events) or 0) >= mine


async def test_a_quiet_watch_progresses_with_the_store(store: Store, prefix: str) -> None:
    await _progress_follows_other_writes(store, f"{prefix}watched/", f"{prefix}other/")


async def test_progress_passes_through_encryption(store: Store, prefix: str) -> None:
    encrypted = EncryptedStore(store, parse_encryption_config(CONFIG))
    await _progress_follows_other_writes(
        encrypted, f"/registry/core/secrets/{prefix[10:]}", f"{prefix}other/"
    )
