"""Fuzz every built-in kind the server serves with objects generated from its OpenAPI schema.

For each kind, hypothesis draws valid and near-valid objects (:mod:`.strategies`) from the
served ``/openapi/v3`` document and sends them to an HTTP-served API server: create, then
for what was accepted read, replace, patch, a damaged replace and delete. Properties:

* no answer is a 5xx, and every refusal is a ``Status``;
* no request hangs (each is bounded by ``trio.fail_after``);
* a refused write leaves the store unchanged (its revision does not move);
* an accepted object round-trips: GET returns what the create answered, and a PUT of
  it unchanged is accepted.

Budget: ``KUBETRIO_FUZZ_EXAMPLES`` examples per kind (default 3), derandomized so CI
cannot flake; raise it locally to dig deeper (``KUBETRIO_FUZZ_SHRINK=1`` shrinks failures).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings

from kubetrio.api.scheme import ResourceInfo, Scheme
from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.store import Store, open_store

from .strategies import SchemaStrategies, near_valid

EXAMPLES = int(os.environ.get("KUBETRIO_FUZZ_EXAMPLES", "3"))
SHRINK = os.environ.get("KUBETRIO_FUZZ_SHRINK", "") == "1"
REQUEST_TIMEOUT = 30.0
"""Seconds any one request may take before it counts as a hang (generous: CI is slow)."""
SKIPPED = {
    # Registering them changes what the server does with every later request (proxying
    # a group elsewhere, calling webhooks, serving new resources): fuzzed elsewhere.
    ("apiregistration.k8s.io", "apiservices"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


# Empty since the per-kind validation landed: the six round-trip failures this fuzzer
# found (workloads without spec.selector, a CronJob jobTemplate without a template, an
# HPA status) are refused at create now, as upstream refuses them.
KNOWN: dict[tuple[str, str, str], str] = {}
"""Kinds with a known round-trip bug: run, expected to fail until it is fixed."""


def fuzzed_resources() -> list[Any]:
    """Built-in resources that can be created and read back (known failures marked)."""
    return [
        pytest.param(
            info,
            marks=[pytest.mark.xfail(reason=KNOWN[known], strict=False)] if known in KNOWN else [],
            id=f"{info.resource}.{info.group or 'core'}.{info.version}",
        )
        for info in Scheme.builtin()
        if (known := (info.group, info.resource, info.version))
        and info.has_verb("create")
        and info.has_verb("get")
        and (info.group, info.resource) not in SKIPPED
    ]


def collection_path(info: ResourceInfo) -> str:
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    return (
        f"{base}/namespaces/default/{info.resource}"
        if info.namespaced
        else (f"{base}/{info.resource}")
    )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[RunningApiServer, Store]]:
    async with (
        open_store(f"sqlite://{tmp_path}/state.db", wal_preallocate=0) as store,
        open_apiserver(store) as running,
    ):
        yield running, store


async def schema_document(http: httpx.AsyncClient, info: ResourceInfo) -> dict[str, Any]:
    """The served OpenAPI v3 document of ``info``'s group/version."""
    index = (await http.get("/openapi/v3")).json()["paths"]
    gv = f"apis/{info.group}/{info.version}" if info.group else f"api/{info.version}"
    document: dict[str, Any] = (await http.get(index[gv]["serverRelativeURL"])).json()
    return document


def definition_of(document: dict[str, Any], info: ResourceInfo) -> str:
    """The schema name carrying the kind's group/version/kind."""
    for name, schema in document["components"]["schemas"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group"), gvk.get("version"), gvk.get("kind")) == (
                info.group,
                info.version,
                info.kind,
            ):
                return str(name)
    raise AssertionError(f"no schema for {info.kind} in the served document")


@pytest.mark.parametrize("info", fuzzed_resources())
async def test_kind_survives_fuzzing(
    info: ResourceInfo, served: tuple[RunningApiServer, Store]
) -> None:
    running, store = served
    async with httpx.AsyncClient(base_url=running.url, timeout=REQUEST_TIMEOUT * 2) as http:
        document = await schema_document(http, info)
        strategies = SchemaStrategies(document["components"]["schemas"])
        objects = strategies.object_of(
            definition_of(document, info),
            api_version=info.api_version,
            kind=info.kind,
            namespace="default" if info.namespaced else "",
        )
        collection = collection_path(info)

        async def send(method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
            with trio.fail_after(REQUEST_TIMEOUT):
                content = None if body is None else json.dumps(body)
                response = await http.request(method, path, content=content, **kw)
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert response.json()["kind"] == "Status", response.text
            return response

        async def quiet() -> None:
            """Wait (up to 5 s) for namespaces deleted by earlier examples to be finalized:
            the namespace finalizer's own writes would otherwise move the store under a
            refused write."""
            with trio.move_on_after(5):
                while any(
                    b'"deletionTimestamp"' in kv.value
                    for kv in (await store.list("/registry/core/namespaces/")).kvs
                ):
                    await trio.sleep(0.05)

        async def write(method: str, path: str, body: Any, **kw: Any) -> httpx.Response:
            """A write; when refused, the store must not have moved."""
            await quiet()
            before = await store.current_revision()
            response = await send(method, path, body, **kw)
            if response.status_code >= 400:
                assert await store.current_revision() == before, (method, body, response.text)
            return response

        async def one(candidate: dict[str, Any], damaged: dict[str, Any]) -> None:
            created = await write("POST", collection, candidate)
            if created.status_code not in (200, 201):
                return
            obj = created.json()
            item = f"{collection}/{obj['metadata']['name']}"
            got = await send("GET", item)
            assert got.status_code == 200 and got.json() == obj, (obj, got.text)
            again = await send("PUT", item, obj)
            assert again.status_code == 200, (obj, again.text)
            await write(
                "PATCH",
                item,
                {"metadata": {"labels": {"fuzzed": "yes"}}},
                headers={"content-type": "application/merge-patch+json"},
            )
            if isinstance(damaged.get("metadata"), dict):  # aim the damage at this object
                damaged["metadata"]["name"] = obj["metadata"]["name"]
            await write("PUT", item, damaged)
            await send("DELETE", item, params={"gracePeriodSeconds": "0"})

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # Shrinking a failure costs more than the whole budget: on demand only.
            phases=[p for p in Phase if p is not Phase.shrink or SHRINK],
        )
        @given(candidate=near_valid(objects), damaged=near_valid(objects))
        def fuzz(candidate: dict[str, Any], damaged: dict[str, Any]) -> None:
            trio.from_thread.run(one, candidate, damaged)

        await trio.to_thread.run_sync(fuzz)
        assert (await http.get("/readyz")).status_code == 200
