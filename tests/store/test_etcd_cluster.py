"""etcd backend against a real 3-member cluster: losing a member loses nothing acknowledged."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
import trio

from kubetrio.store import Event, StoreError, open_store
from tests.store.etcd_cluster import EtcdCluster

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed"),
]


async def test_kill_leader_during_writes(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path / "etcd3", size=3)
    try:
        await trio.to_thread.run_sync(cluster.start)
        with trio.fail_after(60):
            await _writes_survive_leader_kill(cluster)
    finally:
        await trio.to_thread.run_sync(cluster.stop)


async def _writes_survive_leader_kill(cluster: EtcdCluster) -> None:
    acked: dict[bytes, int] = {}
    acked_after_kill = 0
    failed = 0
    killed = trio.Event()
    events: list[Event] = []
    seen: dict[bytes, int] = {}

    # etcd holds a proposal that was lost with a dead leader until its own request timeout
    # (about 6 s); a short client timeout turns that into an ambiguous error that the
    # writers handle by moving on, as an API server would.
    async with open_store(cluster.url, request_timeout=1.0) as store:
        start_rev = await store.current_revision()

        async def writer(w: int) -> None:
            nonlocal acked_after_kill, failed
            for i in range(10**9):
                key = f"/kill/{w}/{i}".encode()
                try:
                    kv = await store.create(key, b"v")
                except StoreError:
                    # Outcome unknown (the member died mid-request): move on to a new key.
                    failed += 1
                    await trio.sleep(0.05)
                    continue
                acked[key] = kv.mod_revision
                if killed.is_set():
                    acked_after_kill += 1

        async def watcher() -> None:
            async with store.watch("/kill/", prefix=True, revision=start_rev + 1) as w:
                async for ev in w:
                    events.append(ev)

        async with trio.open_nursery() as watching:
            watching.start_soon(watcher)
            async with trio.open_nursery() as writing:
                for w in range(8):
                    writing.start_soon(writer, w)
                await trio.sleep(1.0)
                # The hardest member to lose: the raft leader that is also the endpoint the
                # store talks to and holds its upstream watch on.
                leader = cluster.members[0]
                await trio.to_thread.run_sync(cluster.make_leader, leader)
                await trio.to_thread.run_sync(cluster.kill, leader)
                killed.set()
                await trio.sleep(3.0)
                writing.cancel_scope.cancel()
            assert acked_after_kill > 50, "writes must continue after losing the leader"
            # The watch goes on across the failure (its upstream moves to another member):
            # every acknowledged create reaches it.
            with trio.fail_after(15):
                while not all(k in seen for k in acked):
                    await trio.sleep(0.1)
                    seen = {e.kv.key: e.revision for e in events}
            watching.cancel_scope.cancel()
        # ... in order, without gaps or duplicates.
        revs = [e.revision for e in events]
        assert revs == sorted(set(revs))
        assert all(seen[k] == r for k, r in acked.items())

    # Every acknowledged write is on each surviving member.
    for m in cluster.members:
        if m is leader:
            continue
        resp = await trio.to_thread.run_sync(
            lambda m=m: m.post(  # type: ignore[misc]
                "/v3/kv/range",
                {
                    "key": base64.b64encode(b"/kill/").decode(),
                    "range_end": base64.b64encode(b"/kill0").decode(),
                },
            )
        )
        kvs = resp.get("kvs", [])
        assert isinstance(kvs, list)
        stored = {base64.b64decode(kv["key"]): int(kv["mod_revision"]) for kv in kvs}
        missing = {k: r for k, r in acked.items() if stored.get(k) != r}
        assert not missing, f"{len(missing)} acknowledged writes missing on {m.name}"
    assert len(acked) > 200
