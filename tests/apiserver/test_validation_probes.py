"""Issue 17's workload probes, through clients we did not write: the official
``kubernetes`` Python client and kubectl. Each was accepted before (a selector that does
not match its template made a ReplicaSet create pods forever; ``replicas: -1``, ``2^31``
and ``10^30`` were stored; a bogus CronJob schedule and a changed RoleBinding roleRef
went through)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from kubernetes import client

from kubetrio.apiserver import RunningApiServer

from .test_kubectl import Kubectl
from .test_python_client import api_client


def _deployment(name: str, replicas: Any = 1, template_app: str | None = None) -> Any:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": template_app or name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


def _create(url: str, body: Any) -> tuple[int, dict[str, Any], int]:
    """Create a Deployment with the Python client; (status, Status body, GET status)."""
    with api_client(url) as api:
        apps = client.AppsV1Api(api)
        try:
            apps.create_namespaced_deployment("default", body)
            status, payload = 201, {}
        except client.ApiException as exc:
            status, payload = exc.status, json.loads(exc.body or "{}")
        try:
            apps.read_namespaced_deployment(body["metadata"]["name"], "default")
            stored = 200
        except client.ApiException as exc:
            stored = exc.status
    return status, payload, stored


async def _py(fn: Any, *args: Any) -> Any:
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn, *args)


async def test_python_client_selector_mismatch_is_422_and_not_stored(
    apiserver: RunningApiServer,
) -> None:
    status, body, stored = await _py(
        _create, apiserver.url, _deployment("web", template_app="other")
    )
    assert (status, body["reason"], stored) == (422, "Invalid", 404)
    causes = {c["field"]: c["message"] for c in body["details"]["causes"]}
    assert causes["spec.template.metadata.labels"].startswith(
        'Invalid value: {"app":"other"}: `selector` does not match template `labels`'
    )
    assert body["message"].startswith('Deployment.apps "web" is invalid: ')


@pytest.mark.parametrize(
    ("replicas", "status"),
    [(-1, 422), (2**31, 400), (10**30, 400), (2**31 - 1, 201), (0, 201)],
)
async def test_python_client_replicas_range(
    apiserver: RunningApiServer, replicas: int, status: int
) -> None:
    code, body, stored = await _py(_create, apiserver.url, _deployment("r", replicas))
    assert code == status, body
    assert stored == (200 if status == 201 else 404)
    if status == 422:
        assert body["details"]["causes"] == [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: -1: must be greater than or equal to 0",
                "field": "spec.replicas",
            }
        ]
    if status == 400:
        assert body["reason"] == "BadRequest" and "spec.replicas" in body["message"]


def _scale(url: str, replicas: int) -> tuple[int, dict[str, Any], int | None]:
    with api_client(url) as api:
        apps = client.AppsV1Api(api)
        if replicas == -1:
            apps.create_namespaced_deployment("default", _deployment("s", 2))
        try:
            apps.patch_namespaced_deployment_scale("s", "default", {"spec": {"replicas": replicas}})
            status, body = 200, {}
        except client.ApiException as exc:
            status, body = exc.status, json.loads(exc.body or "{}")
        return status, body, apps.read_namespaced_deployment("s", "default").spec.replicas


async def test_python_client_scale_range(apiserver: RunningApiServer) -> None:
    status, body, kept = await _py(_scale, apiserver.url, -1)
    assert (status, body["details"]["causes"][0]["field"], kept) == (422, "spec.replicas", 2)
    status, body, kept = await _py(_scale, apiserver.url, 2**31)
    assert (status, body["reason"], kept) == (400, "BadRequest", 2)
    assert "spec.replicas" in body["message"]


def _cron_and_binding(url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with api_client(url) as api:
        batch = client.BatchV1Api(api)
        cron: Any = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {
                "schedule": "bogus",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox"}],
                            }
                        }
                    }
                },
            },
        }
        try:
            batch.create_namespaced_cron_job("default", cron)
        except client.ApiException as exc:
            seen["cron"] = (exc.status, json.loads(exc.body or "{}"))
        cron["spec"]["schedule"] = "@hourly"
        seen["cron_ok"] = batch.create_namespaced_cron_job("default", cron).spec.schedule

        rbac = client.RbacAuthorizationV1Api(api)
        binding: Any = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "User", "name": "alice"}],
        }
        rbac.create_namespaced_role_binding("default", binding)
        try:
            rbac.patch_namespaced_role_binding("b", "default", {"roleRef": {"name": "edit"}})
        except client.ApiException as exc:
            seen["binding"] = (exc.status, json.loads(exc.body or "{}"))
        seen["role"] = rbac.read_namespaced_role_binding("b", "default").role_ref.name
    return seen


async def test_python_client_cron_schedule_and_role_ref(apiserver: RunningApiServer) -> None:
    seen = await _py(_cron_and_binding, apiserver.url)
    status, body = seen["cron"]
    assert status == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "bogus": expected exactly 5 fields, found 1: [bogus]',
            "field": "spec.schedule",
        }
    ]
    assert seen["cron_ok"] == "@hourly"
    status, body = seen["binding"]
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["roleRef"]
    assert body["details"]["causes"][0]["message"].endswith("cannot change roleRef")
    assert seen["role"] == "view"


@pytest.fixture(params=[27, 33], ids=["kubectl-1.27", "kubectl-1.33"])
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(request.param, kubeconfig, tmp_path)


def _yaml(name: str, replicas: str, template_app: str | None = None) -> bytes:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {template_app or name}}}
    spec:
      containers: [{{name: c, image: busybox}}]
""".encode()


async def test_kubectl_sees_each_refusal(kubectl: Kubectl) -> None:
    out = await kubectl.run("apply", "-f", "-", stdin=_yaml("web", "1", "other"), check=False)
    assert 'The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value' in out
    assert "`selector` does not match template `labels`" in out
    out = await kubectl.run("create", "-f", "-", stdin=_yaml("neg", "-1"), check=False)
    assert (
        'The Deployment "neg" is invalid: spec.replicas: Invalid value: -1: must be greater ' in out
    )
    for huge in ("2147483648", "1000000000000000000000000000000"):
        out = await kubectl.run("create", "-f", "-", stdin=_yaml("big", huge), check=False)
        assert "Error from server (BadRequest)" in out and "spec.replicas" in out, out
    missing = await kubectl.run("get", "deploy", "web", "neg", "big", check=False)
    assert missing.count("NotFound") == 3, missing
    binding = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: %s}\n"
        "subjects: [{kind: User, name: alice}]\n"
    )
    await kubectl.run("apply", "-f", "-", stdin=(binding % "view").encode())
    out = await kubectl.run("apply", "-f", "-", stdin=(binding % "edit").encode(), check=False)
    assert 'The RoleBinding "b" is invalid: roleRef: Invalid value' in out
    assert "cannot change roleRef" in out
