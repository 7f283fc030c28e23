"""Watch progress and watch-list (``sendInitialEvents``), on the wire as client-go's
reflector uses them: initial ADDED events ended by an annotated BOOKMARK, upstream's
refusals of bad option combinations, and bookmarks that advance while a watched
resource is quiet and other resources change."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

NS = "/api/v1/namespaces/default"


async def _lines(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a watch's lines."""
    return [json.loads(await anext(lines)) for _ in range(count)]


async def test_send_initial_events_ends_with_an_annotated_bookmark(
    http: httpx.AsyncClient,
) -> None:
    for name in ("a", "b"):
        created = await http.post(f"{NS}/configmaps", json={"metadata": {"name": name}})
        assert created.status_code == 201
    listed = (await http.get(f"{NS}/configmaps")).json()["metadata"]["resourceVersion"]
    params = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "10",
    }
    async with http.stream("GET", f"{NS}/configmaps", params=params) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        initial = await _lines(lines, 3)
        later = await http.post(f"{NS}/configmaps", json={"metadata": {"name": "c"}})
        assert later.status_code == 201
        (added,) = await _lines(lines, 1)
    names = sorted(e["object"]["metadata"]["name"] for e in initial[:2])
    assert [e["type"] for e in initial[:2]] == ["ADDED", "ADDED"] and names == ["a", "b"]
    end = initial[2]
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(end["object"]["metadata"]["resourceVersion"]) >= int(listed)
    assert added["type"] == "ADDED" and added["object"]["metadata"]["name"] == "c"


async def test_send_initial_events_false_starts_from_now(http: httpx.AsyncClient) -> None:
    await http.post(f"{NS}/configmaps", json={"metadata": {"name": "old"}})
    params = {
        "watch": "true",
        "sendInitialEvents": "false",
        "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "10",
    }
    async with http.stream("GET", f"{NS}/configmaps", params=params) as response:
        assert response.status_code == 200
        await http.post(f"{NS}/configmaps", json={"metadata": {"name": "new"}})
        (first,) = await _lines(response.aiter_lines(), 1)
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "new")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"sendInitialEvents": "true"},
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan",
        ),
        (
            {"resourceVersionMatch": "NotOlderThan"},
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch "
            "unless sendInitialEvents is provided",
        ),
        (
            {"sendInitialEvents": "true", "resourceVersionMatch": "Exact"},
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
            "resourceVersionMatch to NotOlderThan; resourceVersionMatch: Unsupported value: "
            '"Exact": supported values: "NotOlderThan"',
        ),
    ],
)
async def test_bad_watch_list_options_are_refused_as_upstream(
    http: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await http.get(f"{NS}/configmaps", params={"watch": "true", **params})
    assert response.status_code == 422
    status = response.json()
    assert status["reason"] == "Invalid"
    assert status["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'
    assert status["details"]["group"] == "meta.k8s.io"
    assert {c["field"] for c in status["details"]["causes"]} == {"resourceVersionMatch"}


async def test_a_quiet_watch_gets_bookmarks_that_advance_with_the_store(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets change while configmaps are quiet: the configmap watch's bookmarks move up
    to the store's revision, and a watch resumed from one misses nothing."""
    monkeypatch.setattr("kubetrio.apiserver._server.WATCH_BOOKMARK_INTERVAL", 0.2)
    version = (await http.get(f"{NS}/configmaps")).json()["metadata"]["resourceVersion"]
    written = 0
    for i in range(3):
        secret = await http.post(f"{NS}/secrets", json={"metadata": {"name": f"s{i}"}})
        written = int(secret.json()["metadata"]["resourceVersion"])
    params = {
        "watch": "true",
        "resourceVersion": version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "10",
    }
    async with http.stream("GET", f"{NS}/configmaps", params=params) as response:
        (mark,) = await _lines(response.aiter_lines(), 1)
    assert mark["type"] == "BOOKMARK"
    advanced = int(mark["object"]["metadata"]["resourceVersion"])
    assert advanced >= written > int(version)
    # Resuming from the bookmark: the next configmap change arrives, nothing before it.
    params["resourceVersion"] = str(advanced)
    async with http.stream("GET", f"{NS}/configmaps", params=params) as response:
        lines = response.aiter_lines()
        await http.post(f"{NS}/configmaps", json={"metadata": {"name": "after"}})
        events = await _lines(lines, 1)
        while events[-1]["type"] == "BOOKMARK":
            events += await _lines(lines, 1)
    assert events[-1]["type"] == "ADDED" and events[-1]["object"]["metadata"]["name"] == "after"


async def test_bookmarks_only_when_asked(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without allowWatchBookmarks, not even the initial-events-end bookmark is sent."""
    monkeypatch.setattr("kubetrio.apiserver._server.WATCH_BOOKMARK_INTERVAL", 0.2)
    await http.post(f"{NS}/configmaps", json={"metadata": {"name": "only"}})
    params = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "1",
    }
    async with http.stream("GET", f"{NS}/configmaps", params=params) as response:
        types = [json.loads(line)["type"] async for line in response.aiter_lines()]
    assert types == ["ADDED"]
