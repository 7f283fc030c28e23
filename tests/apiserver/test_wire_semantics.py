"""Generic semantics the compatibility suite found missing, checked in process.

A write that lands between the server's own read and its compare-and-swap must make the
server look again (upstream's ``GuaranteedUpdate``), never answer 409; boolean query
parameters parse as Go's ``strconv.ParseBool`` (anything else is 400); status lines
carry reason phrases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.handler import parse_bool
from kubetrio.plugins import PluginManager
from kubetrio.store import open_store

CM = "/api/v1/namespaces/default/configmaps"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        *[(v, True) for v in ("1", "t", "T", "TRUE", "true", "True")],
        *[(v, False) for v in ("0", "f", "F", "FALSE", "false", "False")],
    ],
)
def test_parse_bool_is_go_parse_bool(value: str | None, expected: bool) -> None:
    assert parse_bool("watch", value) is expected


@pytest.mark.parametrize("value", ["yes", "", "2", "tRUE"])
async def test_a_bad_boolean_parameter_is_400_naming_it(
    http: httpx.AsyncClient, value: str
) -> None:
    response = await http.get(CM, params={"watch": value})
    assert response.status_code == 400 and response.reason_phrase == "Bad Request"
    status = response.json()
    assert status["reason"] == "BadRequest" and "'watch'" in status["message"], status


def _race_once(
    apiserver: RunningApiServer, method: str, write: Callable[[bytes], bytes]
) -> list[bool]:
    """Make the store's next ``method`` find the key rewritten by someone else first."""
    store = apiserver.api.registry.store
    original: Callable[..., Awaitable[Any]] = getattr(store, method)
    raced: list[bool] = []

    async def racing(key: str, *args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            current = await store.get(key)
            assert current is not None
            await store.update(key, write(current.value), expected_revision=current.mod_revision)
        return await original(key, *args, **kwargs)

    setattr(store, method, racing)
    return raced


def _add_label(value: bytes) -> bytes:
    return value.replace(b'"metadata":{', b'"metadata":{"labels":{"raced":"yes"},', 1)


async def test_delete_after_a_concurrent_write_succeeds(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    assert (await http.post(CM, json={"metadata": {"name": "a"}})).status_code == 201
    raced = _race_once(apiserver, "delete", _add_label)
    response = await http.delete(f"{CM}/a")
    assert raced and response.status_code == 200, response.text
    assert response.reason_phrase == "OK"
    assert (await http.get(f"{CM}/a")).status_code == 404


async def test_finalizer_marking_and_json_patch_after_a_concurrent_write(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    body = {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}
    assert (await http.post(CM, json=body)).status_code == 201
    raced = _race_once(apiserver, "update", _add_label)
    marked = await http.delete(f"{CM}/f")
    assert raced and marked.status_code == 200, marked.text
    assert marked.json()["metadata"]["deletionTimestamp"]

    raced = _race_once(apiserver, "update", _add_label)
    patched = await http.patch(
        f"{CM}/f",
        content=b'[{"op":"add","path":"/data","value":{"k":"v"}}]',
        headers={"content-type": "application/json-patch+json"},
    )
    assert raced and patched.status_code == 200, patched.text

    # Removing the last finalizer deletes the object, even when raced.
    raced = _race_once(apiserver, "delete", _add_label)
    released = await http.patch(
        f"{CM}/f",
        json={"metadata": {"finalizers": None}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert raced and released.status_code == 200, released.text
    assert (await http.get(f"{CM}/f")).status_code == 404


async def test_client_preconditions_still_conflict(http: httpx.AsyncClient) -> None:
    created = (await http.post(CM, json={"metadata": {"name": "p"}})).json()
    stale = created["metadata"]["resourceVersion"]
    await http.patch(
        f"{CM}/p",
        json={"data": {"k": "v"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    put = await http.put(f"{CM}/p", json={"metadata": {"name": "p", "resourceVersion": stale}})
    assert put.status_code == 409 and put.reason_phrase == "Conflict"
    refused = await http.request(
        "DELETE", f"{CM}/p", json={"preconditions": {"resourceVersion": stale}}
    )
    assert refused.status_code == 409
    assert "Precondition failed" in refused.json()["message"]


@pytest.mark.parametrize(("value", "is_watch"), [("True", True), ("t", True), ("FALSE", False)])
async def test_watch_parameter(http: httpx.AsyncClient, value: str, is_watch: bool) -> None:
    response = await http.get(CM, params={"watch": value, "timeoutSeconds": "1"})
    assert response.status_code == 200
    assert ('"kind":"ConfigMapList"' in response.text) is not is_watch


async def test_a_second_delete_swaps_the_garbage_collectors_finalizers(
    http: httpx.AsyncClient,
) -> None:
    """Deleting an object that is already being deleted with another propagation policy
    changes its GC finalizers, as upstream's shouldUpdateFinalizers does."""
    body = {"metadata": {"name": "kept", "finalizers": ["example.com/hold"]}}
    assert (await http.post(CM, json=body)).status_code == 201

    async def delete(policy: str) -> list[str]:
        response = await http.request("DELETE", f"{CM}/kept", json={"propagationPolicy": policy})
        assert response.status_code in (200, 202), response.text
        finalizers: list[str] = (await http.get(f"{CM}/kept")).json()["metadata"]["finalizers"]
        return finalizers

    assert await delete("Foreground") == ["example.com/hold", "foregroundDeletion"]
    assert await delete("Orphan") == ["example.com/hold", "orphan"]
    assert await delete("Background") == ["example.com/hold"]


async def test_a_token_with_no_authenticator_installed_is_not_refused(tmp_path: Path) -> None:
    """Without any authentication plugin (KUBETRIO_PLUGINS=none) a bearer token is not a
    credential anybody checks: the request is anonymous, not 401 (the in-process
    controllers of such a server present one)."""
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store, plugins=PluginManager()) as running,
        httpx.AsyncClient(base_url=running.url, headers={"authorization": "Bearer x"}) as http,
    ):
        response = await http.get(CM)
        assert response.status_code == 200, response.text
