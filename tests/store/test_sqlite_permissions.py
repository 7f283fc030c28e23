"""The SQLite store keeps its files private: Secrets and tokens live in them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kubetrio.store import open_store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual one, which gives SQLite's own files 0644
    try:
        async with open_store(f"sqlite://{tmp_path}/state.db") as store:
            await store.create(b"/registry/secrets/default/s", b"secret")
            files = [tmp_path / name for name in ("state.db", "state.db-wal", "state.db-shm")]
            assert all(path.exists() for path in files)
            assert {path.name: mode(path) for path in files} == {
                "state.db": 0o600,
                "state.db-wal": 0o600,
                "state.db-shm": 0o600,
            }
    finally:
        os.umask(old_umask)


async def test_an_existing_world_readable_database_is_tightened_on_open(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with open_store(f"sqlite://{db}", wal_preallocate=0) as store:
        await store.create(b"/registry/k", b"v")
    os.chmod(db, 0o644)  # as older versions left it
    async with open_store(f"sqlite://{db}", wal_preallocate=0) as store:
        assert mode(db) == 0o600
        assert mode(tmp_path / "state.db-wal") == 0o600
        assert (await store.get(b"/registry/k")) is not None
