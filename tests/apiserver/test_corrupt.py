"""Corrupt stored objects: reads name them, an unsafe DELETE removes them, the server lives.

The bytes are damaged directly in the SQLite file (as a disk or another program might),
so no validation or encoder of ours stands in the way.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.store import StoreError, open_store

CMS = "/api/v1/namespaces/default/configmaps"
KEY = "/registry/core/configmaps/default/broken"
UNSAFE = {"ignoreStoreReadErrorWithClusterBreakingPotential": "true"}


def overwrite(db: Path, key: str, value: bytes) -> None:
    """Replace the latest stored version of ``key`` with ``value``."""
    with sqlite3.connect(db) as conn:
        changed = conn.execute(
            "UPDATE log SET value = ? WHERE id = (SELECT MAX(id) FROM log WHERE name = ?)",
            (value, key.encode()),
        ).rowcount
    assert changed == 1


async def make(http: httpx.AsyncClient, name: str) -> None:
    body = {"metadata": {"name": name}, "data": {"k": "v"}}
    assert (await http.post(CMS, json=body)).status_code == 201


async def test_corrupt_object_reads_fail_clearly_and_unsafe_delete_removes_it(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make(http, "broken")
    await make(http, "fine")
    overwrite(tmp_path / "state.db", KEY, b'{"apiVersion":"v1","kind":"Conf\xff\x00')

    got = await http.get(f"{CMS}/broken")
    assert got.status_code == 500
    status = got.json()
    assert status["reason"] == "InternalError"
    assert "corrupt object" in status["message"] and KEY in status["message"]
    assert (await http.get(f"{CMS}/fine")).status_code == 200

    listed = await http.get(CMS)
    assert listed.status_code == 500
    status = listed.json()
    assert status["reason"] == "StorageReadError"
    assert status["message"] == "failed to read one or more configmaps from the storage"
    assert [c["field"] for c in status["details"]["causes"]] == [KEY]

    # The normal delete has to read the object first: the same clear error.
    assert (await http.delete(f"{CMS}/broken")).status_code == 500
    # The option is for corrupt objects only, and ignores nothing silently.
    refused = await http.delete(f"{CMS}/fine", params=UNSAFE)
    assert refused.status_code == 422
    assert "exclusively used to delete corrupt object(s)" in refused.json()["message"]
    combined = await http.delete(f"{CMS}/broken", params={**UNSAFE, "dryRun": "All"})
    assert combined.status_code == 422 and "dryRun" in combined.json()["message"]

    deleted = await http.delete(f"{CMS}/broken", params=UNSAFE)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "Success"
    assert (await http.get(f"{CMS}/broken")).status_code == 404
    names = [i["metadata"]["name"] for i in (await http.get(CMS)).json()["items"]]
    assert names == ["fine"]
    assert (await http.get("/readyz")).status_code == 200


async def test_unsafe_delete_in_the_body_and_of_an_oversized_object(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make(http, "broken")
    huge = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "broken", "namespace": "default"},
        "data": {"k": "x" * (2 << 20)},
    }
    overwrite(tmp_path / "state.db", KEY, json.dumps(huge).encode())
    options = {"kind": "DeleteOptions", "apiVersion": "v1"} | {
        "ignoreStoreReadErrorWithClusterBreakingPotential": True
    }
    deleted = await http.request("DELETE", f"{CMS}/broken", json=options)
    assert deleted.status_code == 200, deleted.text
    assert (await http.get(f"{CMS}/broken")).status_code == 404


async def test_a_watch_sees_an_error_when_a_corrupt_object_is_deleted(
    apiserver: RunningApiServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await make(http, "broken")
    rv = (await http.get(CMS)).json()["metadata"]["resourceVersion"]
    overwrite(tmp_path / "state.db", KEY, b"not json at all")
    with trio.fail_after(10):
        async with http.stream(
            "GET", CMS, params={"watch": "true", "resourceVersion": rv}
        ) as watch:
            deleted = await http.delete(f"{CMS}/broken", params=UNSAFE)
            assert deleted.status_code == 200
            lines = watch.aiter_lines()
            event = json.loads(await anext(lines))
    assert event["type"] == "ERROR"
    assert event["object"]["reason"] == "StorageReadError"
    assert KEY in event["object"]["message"]


async def test_unsafe_delete_needs_its_own_permission(tmp_path: Path) -> None:
    from kubetrio import plugins
    from kubetrio.apiserver import open_apiserver
    from kubetrio.store import open_store

    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,1,"system:masters"\nuser-token,jane,2,devs\n')
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(tokens)}})
    admin = {"authorization": "Bearer admin-token"}
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store, plugins=manager) as running,
        httpx.AsyncClient(base_url=running.url, headers=admin) as http,
    ):
        await make(http, "broken")
        overwrite(tmp_path / "state.db", KEY, b"{")
        jane = await http.delete(
            f"{CMS}/broken", params=UNSAFE, headers={"authorization": "Bearer user-token"}
        )
        assert jane.status_code == 403, jane.text
        assert 'User "jane" cannot unsafe-delete-ignore-read-errors' in jane.json()["message"]
        assert (await http.delete(f"{CMS}/broken", params=UNSAFE)).status_code == 200


async def test_a_store_that_refuses_writes_is_a_500_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the store fails (a full disk) is answered with the store's reason, and
    reads go on (tests/chaos/test_disk_full.py does it with a real full disk)."""
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_apiserver(store) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        await make(http, "before")

        async def full(key: object, value: bytes) -> None:
            raise StoreError("sqlite write failed: database or disk is full")

        monkeypatch.setattr(store, "create", full)
        refused = await http.post(CMS, json={"metadata": {"name": "after"}})
        assert refused.status_code == 500
        status = refused.json()
        assert status["reason"] == "InternalError"
        assert status["message"] == (
            "Internal error occurred: sqlite write failed: database or disk is full"
        )
        assert (await http.get(f"{CMS}/before")).status_code == 200
