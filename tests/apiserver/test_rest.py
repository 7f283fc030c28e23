"""Kubernetes REST semantics of the API server, over real HTTP and a real SQLite store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from kubetrio.apiserver import RunningApiServer

CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": name},
    }


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }


async def test_discovery_and_version(http: httpx.AsyncClient) -> None:
    version = (await http.get("/version")).json()
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    api = await http.get("/api")
    assert api.headers["content-type"] == "application/json"
    assert api.json()["versions"] == ["v1"]
    groups = {g["name"] for g in (await http.get("/apis")).json()["groups"]}
    assert {"apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io"} <= groups
    apps = (await http.get("/apis/apps/v1")).json()
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    aggregated = await http.get(
        "/apis",
        headers={"accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    )
    assert aggregated.headers["content-type"].endswith("as=APIGroupDiscoveryList")
    assert aggregated.json()["kind"] == "APIGroupDiscoveryList"


async def test_create_get_list_with_server_metadata(http: httpx.AsyncClient) -> None:
    created = await http.post(CM, json=configmap("a"))
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["resourceVersion"]
    assert meta["namespace"] == "default"
    got = (await http.get(f"{CM}/a")).json()
    assert got["kind"] == "ConfigMap" and got["data"] == {"k": "a"}
    assert got["metadata"]["resourceVersion"] == meta["resourceVersion"]
    listed = (await http.get(CM)).json()
    assert listed["kind"] == "ConfigMapList"
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    dup = await http.post(CM, json=configmap("a"))
    assert dup.status_code == 409 and dup.json()["reason"] == "AlreadyExists"
    missing = await http.get(f"{CM}/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'configmaps "nope" not found'
    assert missing.json()["details"] == {"name": "nope", "kind": "configmaps"}


async def test_generate_name(http: httpx.AsyncClient) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "gen-"}
    created = (await http.post(CM, json=body)).json()
    name = created["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


async def test_update_needs_matching_resource_version(http: httpx.AsyncClient) -> None:
    created = (await http.post(CM, json=configmap("u"))).json()
    stale = dict(created, data={"k": "v2"})
    first = await http.put(f"{CM}/u", json=stale)
    assert first.status_code == 200
    assert first.json()["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    second = await http.put(f"{CM}/u", json=dict(created, data={"k": "v3"}))
    assert second.status_code == 409 and second.json()["reason"] == "Conflict"
    assert (await http.get(f"{CM}/u")).json()["data"] == {"k": "v2"}
    # Without a resourceVersion the update is unconditional.
    unconditional = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "u"},
        "data": {"k": "v4"},
    }
    assert (await http.put(f"{CM}/u", json=unconditional)).status_code == 200


async def test_generation_counts_spec_changes_only(http: httpx.AsyncClient) -> None:
    created = (await http.post(DEPLOY, json=deployment("g"))).json()
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    merge = {"content-type": "application/merge-patch+json"}
    labelled = await http.patch(
        f"{DEPLOY}/g", content=json.dumps({"metadata": {"labels": {"x": "y"}}}), headers=merge
    )
    assert labelled.json()["metadata"]["generation"] == 1
    scaled = await http.patch(
        f"{DEPLOY}/g", content=json.dumps({"spec": {"replicas": 3}}), headers=merge
    )
    assert scaled.json()["metadata"]["generation"] == 2
    status_ignored = await http.patch(
        f"{DEPLOY}/g", content=json.dumps({"status": {"replicas": 7}}), headers=merge
    )
    assert "replicas" not in (status_ignored.json().get("status") or {})
    status = await http.patch(
        f"{DEPLOY}/g/status", content=json.dumps({"status": {"replicas": 7}}), headers=merge
    )
    assert status.json()["status"]["replicas"] == 7
    assert status.json()["metadata"]["generation"] == 2


async def test_all_patch_types(http: httpx.AsyncClient) -> None:
    await http.post(DEPLOY, json=deployment("p"))
    strategic = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:2"}]}}}
    }
    result = await http.patch(
        f"{DEPLOY}/p",
        content=json.dumps(strategic),
        headers={"content-type": "application/strategic-merge-patch+json"},
    )
    names = [c["name"] for c in result.json()["spec"]["template"]["spec"]["containers"]]
    assert names == ["c", "sidecar"] or sorted(names) == ["c", "sidecar"]  # merged by name
    json_patch = [
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "test", "path": "/metadata/name", "value": "p"},
    ]
    result = await http.patch(
        f"{DEPLOY}/p",
        content=json.dumps(json_patch),
        headers={"content-type": "application/json-patch+json"},
    )
    assert result.json()["spec"]["replicas"] == 4
    failed = await http.patch(
        f"{DEPLOY}/p",
        content=json.dumps([{"op": "test", "path": "/spec/replicas", "value": 9}]),
        headers={"content-type": "application/json-patch+json"},
    )
    assert failed.status_code == 422
    applied = deployment("p", replicas=2)
    conflicting = await http.patch(
        f"{DEPLOY}/p?fieldManager=test",
        content=json.dumps(applied),
        headers={"content-type": "application/apply-patch+yaml"},
    )
    # replicas belongs to the JSON patch's manager (this client's user agent).
    assert conflicting.status_code == 409
    assert ".spec.replicas" in conflicting.json()["message"]
    result = await http.patch(
        f"{DEPLOY}/p?fieldManager=test&force=true",
        content=json.dumps(applied),
        headers={"content-type": "application/apply-patch+yaml"},
    )
    assert result.status_code == 200 and result.json()["spec"]["replicas"] == 2
    new = await http.patch(
        f"{DEPLOY}/q?fieldManager=test",
        content=json.dumps(deployment("q")),
        headers={"content-type": "application/apply-patch+yaml"},
    )
    assert new.status_code == 201


async def test_concurrent_merge_patches_retry_instead_of_conflicting(
    http: httpx.AsyncClient,
) -> None:
    """Merge patches without a resourceVersion are re-applied on a racing write, as
    kube-apiserver does; one naming a stale resourceVersion still gets 409."""
    await http.post(DEPLOY, json=deployment("racy"))
    statuses: list[int] = []

    async def label(i: int) -> None:
        patch = {"metadata": {"labels": {f"k{i}": "v"}}}
        response = await http.patch(
            f"{DEPLOY}/racy",
            content=json.dumps(patch),
            headers={"content-type": "application/merge-patch+json"},
        )
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(label, i)
    assert statuses == [200] * 12
    labels = (await http.get(f"{DEPLOY}/racy")).json()["metadata"]["labels"]
    assert {f"k{i}" for i in range(12)} <= set(labels)
    stale = {"metadata": {"resourceVersion": "1", "labels": {"late": "v"}}}
    response = await http.patch(
        f"{DEPLOY}/racy",
        content=json.dumps(stale),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert response.status_code == 409


async def test_scale_subresource(http: httpx.AsyncClient) -> None:
    await http.post(DEPLOY, json=deployment("s", replicas=2))
    scale = (await http.get(f"{DEPLOY}/s/scale")).json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=s"
    patched = await http.patch(
        f"{DEPLOY}/s/scale",
        content=b'{"spec":{"replicas":5}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.json()["spec"]["replicas"] == 5
    assert (await http.get(f"{DEPLOY}/s")).json()["spec"]["replicas"] == 5
    negative = await http.patch(
        f"{DEPLOY}/s/scale",
        content=b'{"spec":{"replicas":-1}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert negative.status_code == 422


async def test_selectors_and_paging(http: httpx.AsyncClient) -> None:
    for i in range(7):
        await http.post(CM, json=configmap(f"c{i}", tier="even" if i % 2 == 0 else "odd"))
    even = (await http.get(CM, params={"labelSelector": "tier=even"})).json()["items"]
    assert [i["metadata"]["name"] for i in even] == ["c0", "c2", "c4", "c6"]
    not_even = (await http.get(CM, params={"labelSelector": "tier notin (even)"})).json()["items"]
    assert [i["metadata"]["name"] for i in not_even] == ["c1", "c3", "c5"]
    by_name = (await http.get(CM, params={"fieldSelector": "metadata.name=c3"})).json()["items"]
    assert [i["metadata"]["name"] for i in by_name] == ["c3"]
    bad = await http.get(CM, params={"labelSelector": "tier in (even"})
    assert bad.status_code == 400
    unsupported = await http.get(CM, params={"fieldSelector": "spec.nodeName=x"})
    assert unsupported.status_code == 400
    pages, token, revisions = [], "", set()
    while True:
        params = {"limit": "3"} | ({"continue": token} if token else {})
        page = (await http.get(CM, params=params)).json()
        pages.append([i["metadata"]["name"] for i in page["items"]])
        revisions.add(page["metadata"]["resourceVersion"])
        # A write between pages must not show up: every page is read at one revision.
        await http.post(CM, json=configmap(f"late{len(pages)}"))
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert pages == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6"]]
    assert len(revisions) == 1


async def test_dry_run_persists_nothing(http: httpx.AsyncClient) -> None:
    dry = await http.post(f"{CM}?dryRun=All", json=configmap("dry"))
    assert dry.status_code == 201
    assert (await http.get(f"{CM}/dry")).status_code == 404


async def test_finalizers_hold_deletion(http: httpx.AsyncClient) -> None:
    body = configmap("fin")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await http.post(CM, json=body)
    deleted = await http.delete(f"{CM}/fin")
    assert deleted.status_code == 200
    held = (await http.get(f"{CM}/fin")).json()
    assert held["metadata"]["deletionTimestamp"]
    # New finalizers can't be added to an object being deleted.
    refused = await http.patch(
        f"{CM}/fin",
        content=json.dumps({"metadata": {"finalizers": ["example.com/hold", "another/one"]}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert refused.status_code == 422
    await http.patch(
        f"{CM}/fin",
        content=b'{"metadata":{"finalizers":null}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert (await http.get(f"{CM}/fin")).status_code == 404


async def test_namespace_terminates_then_disappears(http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/namespaces", json={"metadata": {"name": "tmp"}})
    await http.post("/api/v1/namespaces/tmp/configmaps", json=configmap("x"))
    other = await http.post(CM, json=configmap("same-name-elsewhere"))
    assert other.status_code == 201
    deleted = (await http.delete("/api/v1/namespaces/tmp")).json()
    assert deleted["status"]["phase"] == "Terminating"
    refused = await http.post("/api/v1/namespaces/tmp/configmaps", json=configmap("y"))
    assert refused.status_code in (403, 404)
    with trio.fail_after(10):
        while (await http.get("/api/v1/namespaces/tmp")).status_code != 404:
            await trio.sleep(0.1)
    assert (await http.get("/api/v1/namespaces/tmp/configmaps/x")).status_code == 404
    assert (await http.get(f"{CM}/same-name-elsewhere")).status_code == 200


async def test_create_in_missing_namespace_is_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/namespaces/nowhere/configmaps", json=configmap("x"))
    assert response.status_code == 404
    assert 'namespaces "nowhere" not found' in response.json()["message"]


async def test_services_get_unique_stable_cluster_ips(http: httpx.AsyncClient) -> None:
    svc = "/api/v1/namespaces/default/services"
    ips = set()
    for i in range(5):
        body = {
            "metadata": {"name": f"s{i}"},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]},
        }
        created = (await http.post(svc, json=body)).json()
        ips.add(created["spec"]["clusterIP"])
        assert 30000 <= created["spec"]["ports"][0]["nodePort"] <= 32767
        assert created["spec"]["ports"][0]["targetPort"] == 80
    assert len(ips) == 5
    before = (await http.get(f"{svc}/s0")).json()
    after = await http.patch(
        f"{svc}/s0",
        content=b'{"metadata":{"labels":{"a":"b"}}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert after.json()["spec"]["clusterIP"] == before["spec"]["clusterIP"]
    changed = await http.patch(
        f"{svc}/s0",
        content=b'{"spec":{"clusterIP":"10.96.0.99"}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert changed.status_code == 422
    taken = await http.post(
        svc,
        json={
            "metadata": {"name": "dup"},
            "spec": {"clusterIP": before["spec"]["clusterIP"], "ports": [{"port": 80}]},
        },
    )
    assert taken.status_code == 422 and "already allocated" in taken.json()["message"]
    await http.delete(f"{svc}/s0")
    reuse = await http.post(
        svc,
        json={
            "metadata": {"name": "reuse"},
            "spec": {"clusterIP": before["spec"]["clusterIP"], "ports": [{"port": 80}]},
        },
    )
    assert reuse.status_code == 201  # released with its service


async def test_pod_binding(http: httpx.AsyncClient) -> None:
    pods = "/api/v1/namespaces/default/pods"
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    created = (await http.post(pods, json=pod)).json()
    assert created["status"]["phase"] == "Pending"
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"},
    }
    assert (await http.post(f"{pods}/p/binding", json=binding)).status_code == 201
    assert (await http.get(f"{pods}/p")).json()["spec"]["nodeName"] == "node-1"
    again = await http.post(f"{pods}/p/binding", json=binding)
    assert again.status_code == 409
    # A pod bound to a node waits for its node agent: deletion marks it first.
    marked = (await http.delete(f"{pods}/p")).json()
    assert marked["metadata"]["deletionTimestamp"]
    assert (await http.get(f"{pods}/p")).status_code == 200
    await http.delete(f"{pods}/p?gracePeriodSeconds=0")
    assert (await http.get(f"{pods}/p")).status_code == 404


async def _watch_lines(
    apiserver: RunningApiServer, path: str, count: int, params: dict[str, str]
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=apiserver.url, timeout=10) as client,
        client.stream("GET", path, params={"watch": "true", **params}) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line:
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


async def test_watch_replays_and_streams_in_order(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    start = (await http.post(CM, json=configmap("w0"))).json()["metadata"]["resourceVersion"]
    await http.post(CM, json=configmap("w1", tier="x"))
    async with trio.open_nursery() as nursery:
        received: list[dict[str, Any]] = []

        async def watch() -> None:
            received.extend(await _watch_lines(apiserver, CM, 5, {"resourceVersion": start}))

        nursery.start_soon(watch)
        await trio.sleep(0.2)
        await http.patch(
            f"{CM}/w1",
            content=b'{"data":{"k":"changed"}}',
            headers={"content-type": "application/merge-patch+json"},
        )
        await http.delete(f"{CM}/w0")
        await http.post(CM, json=configmap("w2"))
        await http.post(CM, json=configmap("w3"))
    types = [(e["type"], e["object"]["metadata"]["name"]) for e in received]
    assert types == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w0"),
        ("ADDED", "w2"),
        ("ADDED", "w3"),
    ]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in received]
    assert revisions == sorted(revisions) and len(set(revisions)) == 5
    assert all(e["object"]["kind"] == "ConfigMap" for e in received)


async def test_watch_from_zero_lists_first_and_filters(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    await http.post(CM, json=configmap("a", tier="x"))
    await http.post(CM, json=configmap("b", tier="y"))
    async with trio.open_nursery() as nursery:
        received: list[dict[str, Any]] = []

        async def watch() -> None:
            received.extend(
                await _watch_lines(
                    apiserver, CM, 3, {"resourceVersion": "0", "labelSelector": "tier=x"}
                )
            )

        nursery.start_soon(watch)
        await trio.sleep(0.2)
        # b joins the selection (ADDED to this watcher), then a leaves it (DELETED).
        await http.patch(
            f"{CM}/b",
            content=b'{"metadata":{"labels":{"tier":"x"}}}',
            headers={"content-type": "application/merge-patch+json"},
        )
        await http.patch(
            f"{CM}/a",
            content=b'{"metadata":{"labels":{"tier":"z"}}}',
            headers={"content-type": "application/merge-patch+json"},
        )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in received] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]


async def test_watch_timeout_ends_stream(apiserver: RunningApiServer) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=apiserver.url, timeout=10) as client:
            response = await client.get(
                CM, params={"watch": "1", "timeoutSeconds": "1", "resourceVersion": "1"}
            )
    assert response.status_code == 200


async def test_table_output(http: httpx.AsyncClient) -> None:
    await http.post(DEPLOY, json=deployment("t", replicas=3))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = (await http.get(DEPLOY, headers={"accept": accept})).json()
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    [row] = table["rows"]
    assert row["cells"][:2] == ["t", "0/3"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["namespace"] == "default"


async def test_access_reviews_use_the_authorizers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kubetrio import plugins
    from kubetrio.apiserver import open_apiserver
    from kubetrio.store import open_store

    tokens = tmp_path / "tokens.csv"
    tokens.write_text('admin-token,admin,1,"system:masters"\nuser-token,jane,2,devs\n')
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(tokens)}})
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"verb": "delete", "resource": "pods", "namespace": "default"}
        },
    }
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_apiserver(store, plugins=manager) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        admin = await http.post(path, json=review, headers={"authorization": "Bearer admin-token"})
        assert admin.status_code == 201 and admin.json()["status"]["allowed"] is True
        whoami = await http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            headers={"authorization": "Bearer user-token"},
        )
        assert whoami.json()["status"]["userInfo"] == {
            "username": "jane",
            "uid": "2",
            "groups": ["devs", "system:authenticated"],
        }
        bad = await http.get("/api/v1/pods", headers={"authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
        token_review = await http.post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": "user-token"},
            },
        )
        assert token_review.json()["status"]["user"]["username"] == "jane"
