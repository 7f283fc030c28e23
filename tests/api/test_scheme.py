"""Scheme: what ``kubectl api-resources`` and discovery need to see."""

import pytest

from kubetrio.api.codec import to_builtins
from kubetrio.api.generated import apps_v1, autoscaling_v1, core_v1, meta_v1
from kubetrio.api.scheme import BUILTIN, GroupVersionKind, ResourceInfo, Scheme


@pytest.mark.parametrize(
    ("group", "resource", "short", "namespaced", "kind", "categories"),
    [
        ("", "pods", ["po"], True, "Pod", ["all"]),
        ("", "services", ["svc"], True, "Service", ["all"]),
        ("", "namespaces", ["ns"], False, "Namespace", []),
        ("", "nodes", ["no"], False, "Node", []),
        ("", "configmaps", ["cm"], True, "ConfigMap", []),
        ("", "secrets", [], True, "Secret", []),
        ("apps", "deployments", ["deploy"], True, "Deployment", ["all"]),
        ("apps", "statefulsets", ["sts"], True, "StatefulSet", ["all"]),
        ("batch", "jobs", [], True, "Job", ["all"]),
        ("batch", "cronjobs", ["cj"], True, "CronJob", ["all"]),
        ("networking.k8s.io", "ingresses", ["ing"], True, "Ingress", []),
        ("rbac.authorization.k8s.io", "clusterroles", [], False, "ClusterRole", []),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            ["crd", "crds"],
            False,
            "CustomResourceDefinition",
            ["api-extensions"],
        ),
    ],
)
def test_api_resources(
    group: str, resource: str, short: list[str], namespaced: bool, kind: str, categories: list[str]
) -> None:
    info = BUILTIN.resource(group, "v1", resource)
    assert info is not None
    assert list(info.short_names) == short
    assert info.namespaced is namespaced
    assert info.kind == kind
    assert list(info.categories) == categories


def test_deployment_discovery_entries() -> None:
    doc = BUILTIN.api_resource_list("apps", "v1")
    assert doc is not None
    entries = {r["name"]: r for r in to_builtins(doc)["resources"]}
    assert entries["deployments"] == {
        "name": "deployments",
        "singularName": "deployment",
        "namespaced": True,
        "kind": "Deployment",
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "shortNames": ["deploy"],
        "categories": ["all"],
    }
    assert entries["deployments/scale"] == {
        "name": "deployments/scale",
        "singularName": "",
        "namespaced": True,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    assert entries["deployments/status"]["kind"] == "Deployment"
    assert "group" not in entries["deployments/status"]
    out = to_builtins(doc)
    assert out["kind"] == "APIResourceList" and out["groupVersion"] == "apps/v1"


def test_pod_subresources() -> None:
    pods = BUILTIN.resource("", "v1", "pods")
    assert pods is not None
    assert set(pods.subresources) >= {
        "status",
        "log",
        "exec",
        "portforward",
        "attach",
        "eviction",
        "binding",
    }
    assert pods.subresources["log"].verbs == ("get",)
    assert pods.subresources["exec"].verbs == ("create", "get")
    ev = pods.subresources["eviction"]
    assert (ev.kind.group, ev.kind.kind) == ("policy", "Eviction")
    assert pods.model is core_v1.Pod and pods.list_model is core_v1.PodList


def test_namespaces_have_no_deletecollection() -> None:
    ns = BUILTIN.resource("", "v1", "namespaces")
    assert ns is not None and not ns.has_verb("deletecollection")
    assert set(ns.subresources) == {"status", "finalize"}


def test_groups_and_preferred_versions() -> None:
    groups = {g.name: g for g in BUILTIN.api_group_list().groups or []}
    assert groups["autoscaling"].preferred_version == meta_v1.GroupVersionForDiscovery(
        group_version="autoscaling/v2", version="v2"
    )
    # kube-apiserver's order: by group priority, apiregistration.k8s.io (18000) first.
    assert [g[0] for g in BUILTIN.groups()][:3] == ["", "apiregistration.k8s.io", "apps"]
    for needed in ("authorization.k8s.io", "authentication.k8s.io", "events.k8s.io", "batch"):
        assert needed in groups
    assert BUILTIN.api_resource_list("apps", "v2") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("po", ("", "pods")),
        ("pod", ("", "pods")),
        ("Pods", ("", "pods")),
        ("deploy", ("apps", "deployments")),
        ("deployment.apps", ("apps", "deployments")),
        ("deployments.v1.apps", ("apps", "deployments")),
        ("svc", ("", "services")),
        ("ev", ("", "events")),
        ("events.events.k8s.io", ("events.k8s.io", "events")),
        ("hpa", ("autoscaling", "horizontalpodautoscalers")),
        ("netpol", ("networking.k8s.io", "networkpolicies")),
    ],
)
def test_resolve(name: str, expected: tuple[str, str]) -> None:
    found = BUILTIN.resolve(name)
    assert found, name
    assert (found[0].group, found[0].resource) == expected


def test_hpa_prefers_v2() -> None:
    assert BUILTIN.resolve("hpa")[0].version == "v2"


def test_type_for() -> None:
    assert BUILTIN.type_for(GroupVersionKind("apps", "v1", "Deployment")) is apps_v1.Deployment
    assert BUILTIN.type_for(GroupVersionKind.of("autoscaling/v1", "Scale")) is autoscaling_v1.Scale
    assert BUILTIN.type_for(GroupVersionKind("", "v1", "Status")) is meta_v1.Status
    assert (
        BUILTIN.type_for(GroupVersionKind.of("apps/v1", "DeploymentList")) is apps_v1.DeploymentList
    )


def test_register_custom_resource() -> None:
    scheme = Scheme.builtin()
    scheme.register(
        ResourceInfo(
            group="example.com",
            version="v1",
            resource="widgets",
            kind="Widget",
            namespaced=True,
            verbs=("get", "list"),
            singular="widget",
            short_names=("wd",),
        )
    )
    assert scheme.resolve("wd")[0].kind == "Widget"
    assert any(g.name == "example.com" for g in scheme.api_group_list().groups or [])
    scheme.unregister("example.com", "v1", "widgets")
    assert scheme.resolve("wd") == []
    assert BUILTIN.resolve("wd") == []


def test_aggregated_discovery() -> None:
    doc = BUILTIN.aggregated_discovery(core=False)
    assert doc["kind"] == "APIGroupDiscoveryList"
    apps = next(i for i in doc["items"] if i["metadata"]["name"] == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and deploy["shortNames"] == ["deploy"]
    scale = next(s for s in deploy["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    core = BUILTIN.aggregated_discovery(core=True)
    assert [i["metadata"]["name"] for i in core["items"]] == [""]
