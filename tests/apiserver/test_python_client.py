"""The official ``kubernetes`` Python client against the API server: CRUD, watch, all patches."""

from __future__ import annotations

import trio
from kubernetes import client, watch

from kubetrio.apiserver import RunningApiServer


def api_client(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "any-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def exercise(url: str) -> dict[str, object]:
    """Drive the client synchronously (it is blocking) and report what it saw."""
    seen: dict[str, object] = {}
    with api_client(url) as api:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        created = core.create_namespaced_config_map(
            "default",
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="py", labels={"a": "1"}), data={"k": "v"}
            ),
        )
        seen["created_rv"] = created.metadata.resource_version
        listed = core.list_namespaced_config_map("default", label_selector="a=1")
        seen["listed"] = [item.metadata.name for item in listed.items]

        # strategic merge (dict body), JSON merge, JSON patch (list body), server-side apply
        core.patch_namespaced_config_map("py", "default", {"data": {"strategic": "1"}})
        core.patch_namespaced_config_map(
            "py",
            "default",
            {"data": {"merge": "1"}},
            _content_type="application/merge-patch+json",
        )
        core.patch_namespaced_config_map(
            "py", "default", [{"op": "add", "path": "/data/jsonpatch", "value": "1"}]
        )
        core.patch_namespaced_config_map(
            "py",
            "default",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "py"},
                "data": {"applied": "1"},
            },
            field_manager="pytest",
            _content_type="application/apply-patch+yaml",
        )
        seen["data"] = core.read_namespaced_config_map("py", "default").data

        deployment = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="pyd"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "pyd"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "pyd"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x:1")]),
                ),
            ),
        )
        apps.create_namespaced_deployment("default", deployment)
        apps.patch_namespaced_deployment_scale("pyd", "default", {"spec": {"replicas": 3}})
        seen["replicas"] = apps.read_namespaced_deployment("pyd", "default").spec.replicas

        events = []
        stream = watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=created.metadata.resource_version,
            timeout_seconds=2,
        )
        for event in stream:
            events.append((event["type"], event["object"].metadata.name))
            if len(events) == 4:
                break
        seen["events"] = events

        core.delete_namespaced_config_map("py", "default")
        try:
            core.read_namespaced_config_map("py", "default")
        except client.ApiException as exc:
            seen["after_delete"] = exc.status
    return seen


async def test_official_python_client(apiserver: RunningApiServer) -> None:
    with trio.fail_after(60):
        seen = await trio.to_thread.run_sync(exercise, apiserver.url)
    assert seen["listed"] == ["py"]
    assert seen["data"] == {
        "k": "v",
        "strategic": "1",
        "merge": "1",
        "jsonpatch": "1",
        "applied": "1",
    }
    assert seen["replicas"] == 3
    assert seen["events"] == [("MODIFIED", "py")] * 4
    assert seen["after_delete"] == 404
