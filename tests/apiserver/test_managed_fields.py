"""managedFields on every write and server-side apply, over HTTP against the API server."""

from __future__ import annotations

import json
from typing import Any

import httpx

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
APPLY = {"content-type": "application/apply-patch+yaml"}


def configmap(data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data}


def managers(obj: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"]
        for e in obj["metadata"].get("managedFields", [])
    }


async def apply(
    http: httpx.AsyncClient, body: dict[str, Any], query: str = "fieldManager=kubectl"
) -> httpx.Response:
    return await http.patch(f"{CM}/cm?{query}", content=json.dumps(body), headers=APPLY)


async def test_reapply_without_a_key_removes_it(http: httpx.AsyncClient) -> None:
    created = await apply(http, configmap({"key1": "a", "key2": "b"}))
    assert created.status_code == 201
    again = await apply(http, configmap({"key2": "b"}))
    assert again.status_code == 200
    assert again.json()["data"] == {"key2": "b"}
    assert managers(again.json()) == {("kubectl", "Apply", ""): {"f:data": {"f:key2": {}}}}


async def test_apply_conflicts_with_another_manager_unless_forced(http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{CM}?fieldManager=kubectl-client-side-apply", json=configmap({"key1": "a"})
    )
    assert managers(created.json()) == {
        ("kubectl-client-side-apply", "Update", ""): {"f:data": {".": {}, "f:key1": {}}}
    }
    refused = await apply(http, configmap({"key1": "b"}), "fieldManager=mine")
    assert refused.status_code == 409
    status = refused.json()
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: '
        ".data.key1"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using v1',
            "field": ".data.key1",
        }
    ]
    forced = await apply(http, configmap({"key1": "b"}), "fieldManager=mine&force=true")
    assert forced.status_code == 200 and forced.json()["data"] == {"key1": "b"}
    assert managers(forced.json()) == {
        ("mine", "Apply", ""): {"f:data": {"f:key1": {}}},
        ("kubectl-client-side-apply", "Update", ""): {"f:data": {}},
    }


async def test_apply_needs_a_field_manager(http: httpx.AsyncClient) -> None:
    refused = await apply(http, configmap({"a": "1"}), "")
    assert refused.status_code == 422
    assert "fieldManager: Required value" in refused.json()["message"]
    forced_merge = await http.patch(
        f"{CM}/cm?force=true", json={}, headers={"content-type": "application/merge-patch+json"}
    )
    assert forced_merge.status_code == 422


async def test_dry_run_apply_changes_nothing(http: httpx.AsyncClient) -> None:
    await apply(http, configmap({"key1": "a"}))
    dry = await apply(http, configmap({"key2": "b"}), "fieldManager=kubectl&dryRun=All")
    assert dry.json()["data"] == {"key2": "b"}
    stored = (await http.get(f"{CM}/cm")).json()
    assert stored["data"] == {"key1": "a"}
    assert dry.json()["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


async def test_updates_are_recorded_per_manager_and_user_agent(http: httpx.AsyncClient) -> None:
    await http.post(CM, json=configmap({"a": "1"}), headers={"user-agent": "python-requests/2.3"})
    patched = await http.patch(
        f"{CM}/cm?fieldManager=kubectl-edit",
        json={"data": {"b": "2"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert managers(patched.json()) == {
        ("python-requests", "Update", ""): {"f:data": {".": {}, "f:a": {}}},
        ("kubectl-edit", "Update", ""): {"f:data": {"f:b": {}}},
    }
    cleared = await http.patch(
        f"{CM}/cm",
        json={"metadata": {"managedFields": []}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert "managedFields" not in cleared.json()["metadata"]


async def test_status_writes_are_recorded_with_their_subresource(http: httpx.AsyncClient) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await http.post(f"{DEPLOY}?fieldManager=creator", json=deployment)
    status = await http.patch(
        f"{DEPLOY}/d/status?fieldManager=ctrl",
        json={"status": {"replicas": 1}},
        headers={"content-type": "application/merge-patch+json"},
    )
    found = managers(status.json())
    assert found[("ctrl", "Update", "status")] == {"f:status": {"f:replicas": {}}}
    # The creator owns the defaults it was given too (upstream defaults before recording).
    spec = found[("creator", "Update", "")]["f:spec"]
    assert "f:revisionHistoryLimit" in spec and "f:replicas" in spec


async def test_a_resource_version_in_the_configuration_is_a_precondition(
    http: httpx.AsyncClient,
) -> None:
    created = (await apply(http, configmap({"a": "1"}))).json()
    stale = configmap({"a": "2"})
    stale["metadata"]["resourceVersion"] = "1"
    refused = await apply(http, stale)
    assert refused.status_code == 409 and refused.json()["reason"] == "Conflict"
    current = configmap({"a": "2"})
    current["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    accepted = await apply(http, current)
    assert accepted.status_code == 200 and accepted.json()["data"] == {"a": "2"}


async def test_status_is_applied_through_its_subresource(http: httpx.AsyncClient) -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "s"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "s"}},
            "template": {
                "metadata": {"labels": {"app": "s"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await http.post(f"{DEPLOY}?fieldManager=creator", json=deployment)
    config = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "s"},
        "spec": {"replicas": 5},  # not the status subresource's to change
        "status": {"conditions": [{"type": "Custom", "status": "True"}]},
    }
    applied = await http.patch(
        f"{DEPLOY}/s/status?fieldManager=ctrl", content=json.dumps(config), headers=APPLY
    )
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["spec"]["replicas"] == 0
    assert {"type": "Custom", "status": "True"} in body["status"]["conditions"]
    entry = next(e for e in body["metadata"]["managedFields"] if e["manager"] == "ctrl")
    assert (entry["operation"], entry["subresource"]) == ("Apply", "status")
    assert entry["fieldsV1"] == {
        "f:status": {
            "f:conditions": {'k:{"type":"Custom"}': {".": {}, "f:status": {}, "f:type": {}}}
        }
    }
    config["status"] = {}
    again = await http.patch(
        f"{DEPLOY}/s/status?fieldManager=ctrl", content=json.dumps(config), headers=APPLY
    )
    conditions = again.json().get("status", {}).get("conditions") or []
    assert all(c["type"] != "Custom" for c in conditions)


async def test_a_partial_configuration_applies(http: httpx.AsyncClient) -> None:
    """An apply names only what its manager owns: required fields may be elsewhere."""
    await http.post(
        f"{DEPLOY}?fieldManager=creator",
        json={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "p"},
            "spec": {
                "selector": {"matchLabels": {"app": "p"}},
                "template": {
                    "metadata": {"labels": {"app": "p"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
    )
    partial = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "p", "labels": {"team": "a"}},
        "spec": {"replicas": 3},
    }
    applied = await http.patch(
        f"{DEPLOY}/p?fieldManager=scaler&force=true", content=json.dumps(partial), headers=APPLY
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["spec"]["replicas"] == 3
    strict = {**partial, "spec": {"replicas": 3, "replicaz": 1}}
    refused = await http.patch(
        f"{DEPLOY}/p?fieldManager=scaler&fieldValidation=Strict",
        content=json.dumps(strict),
        headers=APPLY,
    )
    assert refused.status_code == 400
    assert 'unknown field "spec.replicaz"' in refused.json()["message"]
