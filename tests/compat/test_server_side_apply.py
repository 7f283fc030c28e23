"""Server-side apply and managedFields as kubectl, lightkube and the Python client use them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.compat.kit import CompatCluster

VERSIONS = ["1.27", "1.33"]


def configmap(namespace: str, data: dict[str, str], name: str = "cm") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
    )


def get(cluster: CompatCluster, namespace: str, *what: str) -> dict[str, Any]:
    out = cluster.kubectl("get", *what, "-n", namespace, "-o", "json", "--show-managed-fields")
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (e["manager"], e["operation"]): e["fieldsV1"]
        for e in obj["metadata"].get("managedFields", [])
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_reapply_without_a_key_removes_it(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    """The defect: re-applying a ConfigMap without key1 left key1 in place."""
    first = configmap(namespace, {"key1": "a", "key2": "b"})
    cluster.kubectl("apply", "--server-side", "-f", "-", input=first, version=version)
    second = configmap(namespace, {"key2": "b"})
    out = cluster.kubectl("apply", "--server-side", "-f", "-", input=second, version=version)
    assert "serverside-applied" in out.stdout
    cm = get(cluster, namespace, "configmap", "cm")
    assert cm["data"] == {"key2": "b"}
    assert managers(cm) == {("kubectl", "Apply"): {"f:data": {"f:key2": {}}}}


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_conflict_names_the_field_and_force_conflicts_wins(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=configmap(namespace, {"key1": "a"}),
        version=version,
    )
    changed = configmap(namespace, {"key1": "b"})
    refused = cluster.kubectl(
        "apply", "--server-side", "--field-manager", "other", "-f", "-",
        input=changed, version=version, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .data.key1' in refused.stderr
    assert "--force-conflicts" in refused.stderr
    assert get(cluster, namespace, "configmap", "cm")["data"] == {"key1": "a"}
    cluster.kubectl(
        "apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-",
        input=changed, version=version,
    )  # fmt: skip
    cm = get(cluster, namespace, "configmap", "cm")
    assert cm["data"] == {"key1": "b"}
    assert managers(cm) == {("other", "Apply"): {"f:data": {"f:key1": {}}}}


def test_server_side_apply_conflicts_with_a_client_side_edit(
    cluster: CompatCluster, namespace: str
) -> None:
    cluster.kubectl("create", "-f", "-", input=configmap(namespace, {"key1": "a"}))
    refused = cluster.kubectl(
        "apply", "--server-side", "--field-manager", "mine", "-f", "-",
        input=configmap(namespace, {"key1": "b"}), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.key1'
        in refused.stderr
    )


def test_kubectl_moves_from_client_side_to_server_side_apply(
    cluster: CompatCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-f", "-", input=configmap(namespace, {"key1": "a", "key2": "b"}))
    # Fields the last client-side apply set are kubectl's to take over: no conflict.
    cluster.kubectl("apply", "--server-side", "-f", "-", input=configmap(namespace, {"key1": "c"}))
    cm = get(cluster, namespace, "configmap", "cm")
    assert cm["data"]["key1"] == "c"
    assert ("kubectl", "Apply") in managers(cm)


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_diff_uses_server_side_dry_run(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    applied = configmap(namespace, {"key1": "a", "key2": "b"})
    cluster.kubectl("apply", "--server-side", "-f", "-", input=applied, version=version)
    same = cluster.kubectl(
        "diff", "--server-side", "-f", "-", input=applied, version=version, check=False
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout == ""
    dropped = configmap(namespace, {"key2": "c"})
    changed = cluster.kubectl(
        "diff", "--server-side", "-f", "-", input=dropped, version=version, check=False
    )
    assert changed.returncode == 1, changed.stderr
    lines = changed.stdout.splitlines()
    assert "-  key1: a" in lines and "-  key2: b" in lines and "+  key2: c" in lines
    assert not any("resourceVersion" in line for line in lines if line[:1] in "+-")
    # A diff is a dry run: nothing changed.
    assert get(cluster, namespace, "configmap", "cm")["data"] == {"key1": "a", "key2": "b"}


@pytest.mark.parametrize("version", VERSIONS)
def test_kubectl_diff_of_a_client_side_apply(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    applied = configmap(namespace, {"key1": "a"})
    cluster.kubectl("apply", "-f", "-", input=applied, version=version)
    same = cluster.kubectl("diff", "-f", "-", input=applied, version=version, check=False)
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    changed = configmap(namespace, {"key1": "z"})
    diff = cluster.kubectl("diff", "-f", "-", input=changed, version=version, check=False)
    assert diff.returncode == 1, diff.stderr
    assert {"-  key1: a", "+  key1: z"} <= set(diff.stdout.splitlines())


def test_kubectl_shows_managed_fields_only_when_asked(
    cluster: CompatCluster, namespace: str
) -> None:
    cluster.kubectl("create", "-f", "-", input=configmap(namespace, {"key1": "a"}))
    cluster.kubectl("label", "configmap", "cm", "team=a", "-n", namespace)
    shown = yaml.safe_load(
        cluster.kubectl(
            "get", "configmap", "cm", "-n", namespace, "-o", "yaml", "--show-managed-fields"
        ).stdout
    )
    entries = shown["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"], e["apiVersion"]) for e in entries] == [
        ("kubectl-create", "Update", "v1"),
        ("kubectl-label", "Update", "v1"),
    ]
    assert all(e["fieldsType"] == "FieldsV1" and e["time"].endswith("Z") for e in entries)
    assert entries[0]["fieldsV1"] == {"f:data": {".": {}, "f:key1": {}}}
    assert entries[1]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}
    hidden = yaml.safe_load(
        cluster.kubectl("get", "configmap", "cm", "-n", namespace, "-o", "yaml").stdout
    )
    assert "managedFields" not in hidden["metadata"]


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: busybox
        env: {env}
{extra}
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_deployment_reapplied_without_a_container_and_an_env_entry(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    sidecar = "      - {name: side, image: busybox}"
    both_env = "[{name: A, value: '1'}, {name: B, value: '2'}]"
    first = DEPLOYMENT.format(namespace=namespace, env=both_env, extra=sidecar)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=first, version=version)
    second = DEPLOYMENT.format(namespace=namespace, env="[{name: A, value: '1'}]", extra="")
    cluster.kubectl("apply", "--server-side", "-f", "-", input=second, version=version)
    deploy = get(cluster, namespace, "deployment", "web")
    [container] = deploy["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "main"
    assert container["env"] == [{"name": "A", "value": "1"}]
    # Defaults the server filled in stay, owned by nobody.
    assert deploy["spec"]["revisionHistoryLimit"] == 10
    owned = managers(deploy)[("kubectl", "Apply")]
    containers = owned["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(containers) == ['k:{"name":"main"}']
    assert list(containers['k:{"name":"main"}']["f:env"]) == ['k:{"name":"A"}']


def test_lightkube_apply_with_field_manager_and_force(
    cluster: CompatCluster, namespace: str
) -> None:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap

    client = Client(KubeConfig.from_file(str(cluster.kubeconfig)), namespace=namespace)
    created = client.apply(
        ConfigMap(metadata=ObjectMeta(name="lk"), data={"a": "1", "b": "2"}), field_manager="lk"
    )
    assert created.metadata is not None and created.metadata.managedFields is not None
    assert [(m.manager, m.operation) for m in created.metadata.managedFields] == [("lk", "Apply")]
    again = client.apply(
        ConfigMap(metadata=ObjectMeta(name="lk"), data={"b": "2"}), field_manager="lk"
    )
    assert again.data == {"b": "2"}
    with pytest.raises(ApiError) as caught:
        client.apply(
            ConfigMap(metadata=ObjectMeta(name="lk"), data={"b": "9"}), field_manager="lk2"
        )
    assert caught.value.status.code == 409
    assert (
        caught.value.status.message == 'Apply failed with 1 conflict: conflict with "lk": .data.b'
    )
    forced = client.apply(
        ConfigMap(metadata=ObjectMeta(name="lk"), data={"b": "9"}), field_manager="lk2", force=True
    )
    assert forced.data == {"b": "9"}
    assert forced.metadata is not None and forced.metadata.managedFields is not None
    assert [m.manager for m in forced.metadata.managedFields] == ["lk2"]


def test_python_client_server_side_apply(cluster: CompatCluster, namespace: str) -> None:
    from kubernetes import client, config, dynamic
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    core = client.CoreV1Api(api_client)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "py", "namespace": namespace},
        "data": {"a": "1", "b": "2"},
    }
    core.patch_namespaced_config_map(
        "py", namespace, body, field_manager="py", _content_type="application/apply-patch+yaml"
    )
    body["data"] = {"b": "2"}
    patched = core.patch_namespaced_config_map(
        "py", namespace, body, field_manager="py", _content_type="application/apply-patch+yaml"
    )
    assert patched.data == {"b": "2"}
    assert patched.metadata.managed_fields[0].fields_v1 == {"f:data": {"f:b": {}}}
    dyn = dynamic.DynamicClient(api_client)
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    changed = {**body, "data": {"b": "3"}}
    with pytest.raises(ApiException) as caught:
        dyn.server_side_apply(configmaps, body=changed, field_manager="dyn")
    assert caught.value.status == 409
    assert ".data.b" in json.loads(caught.value.body)["details"]["causes"][0]["field"]
    applied = dyn.server_side_apply(
        configmaps, body=changed, field_manager="dyn", force_conflicts=True
    )
    assert applied.data.b == "3"
    assert [m.manager for m in applied.metadata.managedFields] == ["dyn"]


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
              tags: {{type: array, items: {{type: string}}}}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  properties:
                    name: {{type: string}}
                    port: {{type: integer}}
"""


def test_custom_resources_merge_by_their_schema(cluster: CompatCluster, namespace: str) -> None:
    group = f"{namespace}.ssa.example.com"
    cluster.kubectl("apply", "-f", "-", input=CRD.format(group=group))
    try:
        cluster.kubectl(
            "wait", "--for", "condition=established", f"crd/widgets.{group}", "--timeout=30s"
        )

        def widget(spec: str) -> str:
            return (
                f"apiVersion: {group}/v1\nkind: Widget\n"
                f"metadata: {{name: w, namespace: {namespace}}}\nspec: {spec}\n"
            )

        first = "{size: 1, tags: [a, b], ports: [{name: http, port: 80}, {name: tls, port: 443}]}"
        cluster.kubectl("apply", "--server-side", "-f", "-", input=widget(first))
        cluster.kubectl(
            "apply", "--server-side", "-f", "-",
            input=widget("{tags: [a], ports: [{name: http, port: 80}]}"),
        )  # fmt: skip
        obj = get(cluster, namespace, f"widgets.{group}", "w")
        assert obj["spec"] == {"tags": ["a"], "ports": [{"name": "http", "port": 80}]}
        other = widget("{ports: [{name: http, port: 8080}, {name: metrics, port: 9}]}")
        refused = cluster.kubectl(
            "apply", "--server-side", "--field-manager", "other", "-f", "-",
            input=other, check=False,
        )  # fmt: skip
        assert 'conflict with "kubectl": .spec.ports[name="http"].port' in refused.stderr
        cluster.kubectl(
            "apply", "--server-side", "--field-manager", "other", "--force-conflicts",
            "-f", "-", input=other,
        )  # fmt: skip
        obj = get(cluster, namespace, f"widgets.{group}", "w")
        # The list merges item by item (its map key is name); tags stay kubectl's.
        assert obj["spec"]["ports"] == [
            {"name": "http", "port": 8080},
            {"name": "metrics", "port": 9},
        ]
        assert obj["spec"]["tags"] == ["a"]
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)
