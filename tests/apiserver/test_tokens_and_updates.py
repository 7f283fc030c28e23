"""TokenRequest (``serviceaccounts/token``) and fields an update may not change."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jwt
import pytest

from kubetrio.apiserver import RunningApiServer
from kubetrio.apiserver._tokens import ServiceAccountTokens

NS = "/api/v1/namespaces/default"


async def _create(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> dict[str, object]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_token_request_is_a_signed_jwt_for_the_service_account(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    account = await _create(http, f"{NS}/serviceaccounts", {"metadata": {"name": "robot"}})
    pod = await _create(
        http,
        f"{NS}/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    response = await http.post(
        f"{NS}/serviceaccounts/robot/token",
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": ["vault"],
                "expirationSeconds": 1200,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"},
            },
        },
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == 1200
    token = answer["status"]["token"]
    public = apiserver.api.service_account_tokens.public_key_pem()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="vault")
    assert jwt.get_unverified_header(token)["kid"]
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["exp"] - claims["iat"] == 1200
    private = claims["kubernetes.io"]
    assert private["serviceaccount"] == {
        "name": "robot",
        "uid": account["metadata"]["uid"],  # type: ignore[index]
    }
    assert private["pod"] == {"name": "p", "uid": pod["metadata"]["uid"]}  # type: ignore[index]

    default = await http.post(f"{NS}/serviceaccounts/robot/token", json={"spec": {}})
    claims = jwt.decode(
        default.json()["status"]["token"],
        public,
        algorithms=["RS256"],
        audience="https://kubernetes.default.svc.cluster.local",
    )
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    ("spec", "code", "words"),
    [
        ({"expirationSeconds": 599}, 422, "less than 10 minutes"),
        ({"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}, 422, "Unsupported value"),
        ({"boundObjectRef": {"kind": "Pod", "name": "gone"}}, 404, 'pods "gone" not found'),
    ],
)
async def test_token_request_refusals(
    http: httpx.AsyncClient, spec: dict[str, object], code: int, words: str
) -> None:
    await _create(http, f"{NS}/serviceaccounts", {"metadata": {"name": "robot"}})
    response = await http.post(f"{NS}/serviceaccounts/robot/token", json={"spec": spec})
    assert response.status_code == code, response.text
    assert words in response.json()["message"]
    missing = await http.post(f"{NS}/serviceaccounts/ghost/token", json={"spec": {}})
    assert missing.status_code == 404


def test_token_key_is_kept_in_its_file(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.key"
    first = ServiceAccountTokens(key_file).public_key_pem()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert ServiceAccountTokens(key_file).public_key_pem() == first


async def test_pod_spec_is_immutable_but_image_is_not(http: httpx.AsyncClient) -> None:
    pod = await _create(
        http,
        f"{NS}/pods",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "a", "command": ["x"]}]},
        },
    )
    pod["spec"]["containers"][0]["image"] = "b"  # type: ignore[index]
    response = await http.put(f"{NS}/pods/p", json=pod)
    assert response.status_code == 200, response.text
    pod = response.json()
    pod["spec"]["containers"][0]["command"] = ["y"]
    response = await http.put(f"{NS}/pods/p", json=pod)
    assert response.status_code == 422
    assert "pod updates may not change fields" in response.json()["message"]
    response = await http.patch(
        f"{NS}/pods/p",
        json={"metadata": {"labels": {"a": "b"}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 200


async def test_workload_selector_and_immutable_configmap(http: httpx.AsyncClient) -> None:
    template = {
        "metadata": {"labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    await _create(
        http,
        "/apis/apps/v1/namespaces/default/deployments",
        {
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template},
        },
    )
    response = await http.patch(
        "/apis/apps/v1/namespaces/default/deployments/d",
        json={"spec": {"selector": {"matchLabels": {"app": "b"}}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 422
    assert "spec.selector" in response.json()["message"]
    await _create(
        http,
        f"{NS}/configmaps",
        {"metadata": {"name": "frozen"}, "immutable": True, "data": {"k": "v"}},
    )
    response = await http.patch(
        f"{NS}/configmaps/frozen",
        json={"data": {"k": "w"}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 422
    assert "immutable" in response.json()["message"]


async def test_namespace_given_to_a_cluster_scoped_object_is_dropped(
    http: httpx.AsyncClient,
) -> None:
    """kube-apiserver clears it (the Python client's dynamic-client example sends one)."""
    created = await _create(
        http,
        "/api/v1/namespaces",
        {"metadata": {"name": "scoped", "namespace": "default"}},
    )
    assert "namespace" not in created["metadata"]  # type: ignore[operator]
    created["metadata"]["namespace"] = "default"  # type: ignore[index]
    response = await http.put("/api/v1/namespaces/scoped", json=created)
    assert response.status_code == 200, response.text
    assert "namespace" not in response.json()["metadata"]


async def test_stale_replace_is_a_conflict_before_validation(http: httpx.AsyncClient) -> None:
    """A pod bound after the client read it: the stale PUT is 409 (re-read and retry),
    not 422 about nodeName, which the client never meant to change."""
    pod = await _create(
        http,
        f"{NS}/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    bound = await http.post(
        f"{NS}/pods/p/binding",
        json={"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}},
    )
    assert bound.status_code == 201, bound.text
    pod["metadata"]["labels"] = {"a": "b"}  # type: ignore[index]
    response = await http.put(f"{NS}/pods/p", json=pod)
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "Conflict"


async def test_quiet_watch_from_a_version_gets_bookmarks(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubetrio.apiserver._server.WATCH_BOOKMARK_INTERVAL", 0.1)
    listed = await http.get(f"{NS}/configmaps")
    version = listed.json()["metadata"]["resourceVersion"]
    async with http.stream(
        "GET",
        f"{NS}/configmaps",
        params={
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "5",
        },
    ) as response:
        async for line in response.aiter_lines():
            event = json.loads(line)
            assert event["type"] == "BOOKMARK"
            assert event["object"]["metadata"]["resourceVersion"] == version
            assert event["object"]["kind"] == "ConfigMap"
            break
        else:
            raise AssertionError("no bookmark")
