"""CustomResourceDefinitions as users expect them (apiextensions.k8s.io/v1), judged by the
clients: kubectl 1.27 and 1.33, the official Python client, lightkube and kr8s.

One CRD (``gadgets.compat.example.com``) with everything a CRD author uses: a described
schema with defaults at several depths, a preserved free-form field and an embedded
resource, status and scale subresources, printer columns (one for ``-o wide``), a short
name and the ``all`` category, and a deprecated second version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat.kit import CompatCluster
from tests.kit import wait_until

GROUP = "compat.example.com"
CRD_NAME = f"gadgets.{GROUP}"
CRD_YAML = f"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {CRD_NAME}
spec:
  group: {GROUP}
  scope: Namespaced
  names:
    plural: gadgets
    singular: gadget
    kind: Gadget
    shortNames: [gdg]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources: &subresources
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns: &columns
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Message
      type: string
      jsonPath: .spec.message
      description: What the gadget says.
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema: &schema
      openAPIV3Schema:
        type: object
        description: A gadget of the compatibility suite.
        properties:
          spec:
            type: object
            description: What the gadget should be.
            properties:
              message:
                type: string
                description: The message the gadget prints.
              replicas:
                type: integer
                default: 1
              mode:
                type: string
                enum: [fast, slow]
                default: fast
              limits:
                type: object
                default: {{}}
                properties:
                  depth:
                    type: integer
                    default: 3
              free:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              template:
                type: object
                x-kubernetes-embedded-resource: true
                properties:
                  data:
                    type: object
                    additionalProperties:
                      type: string
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
              phase:
                type: string
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    subresources: *subresources
    additionalPrinterColumns: *columns
    schema: *schema
"""
KUBECTL = ("1.27", "1.33")


@pytest.fixture(scope="module")
def gadgets(cluster: CompatCluster) -> Iterator[str]:
    """The CRD installed with kubectl and Established; deleted after the module."""
    cluster.kubectl("apply", "-f", "-", input=CRD_YAML)
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=30s", f"crd/{CRD_NAME}")
    yield CRD_NAME
    cluster.kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)


def gadget_yaml(name: str, spec: str = "  message: hi\n", version: str = "v1") -> str:
    return f"apiVersion: {GROUP}/{version}\nkind: Gadget\nmetadata:\n  name: {name}\nspec:\n{spec}"


def get_json(cluster: CompatCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


# --- kubectl --------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBECTL)
def test_kubectl_explain_crd_fields(cluster: CompatCluster, gadgets: str, version: str) -> None:
    """explain reads the CRD's schema (it said ``field "message" does not exist``)."""
    out = cluster.kubectl("explain", "gadgets.spec.message", version=version).stdout
    assert "FIELD: message <string>" in out or "FIELD:    message <string>" in out, out
    assert "The message the gadget prints." in out
    out = cluster.kubectl("explain", "gadget.spec", version=version).stdout
    assert "What the gadget should be." in out
    for field in ("message\t<string>", "replicas\t<integer>", "limits\t<Object>"):
        assert field in out, out
    out = cluster.kubectl("explain", "gadget", "--recursive", version=version).stdout
    assert "depth\t<integer>" in out and "phase\t<string>" in out, out
    assert "metadata\t<ObjectMeta>" in out
    bad = cluster.kubectl("explain", "gadget.spec.bogus", version=version, check=False)
    assert bad.returncode != 0 and 'field "bogus" does not exist' in bad.stderr
    # the Swagger 2.0 output reads the protobuf /openapi/v2
    out = cluster.kubectl(
        "explain", "gadget.spec", "--output=plaintext-openapiv2", version=version
    ).stdout
    assert f"VERSION:  {GROUP}/v1" in out and "The message the gadget prints." in out, out


@pytest.mark.parametrize("version", KUBECTL)
def test_kubectl_apply_validates_unknown_fields(
    cluster: CompatCluster, gadgets: str, namespace: str, version: str
) -> None:
    """--validate=strict (the default) refuses an unknown field, --validate=warn warns and
    stores the object without it, as kube-apiserver does; defaults are filled in."""
    bad = gadget_yaml("v", "  message: hi\n  bogus: 1\n")
    refused = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=bad, version=version, check=False
    )
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in refused.stderr, refused.stderr
    warned = cluster.kubectl(
        "apply", "-n", namespace, "--validate=warn", "-f", "-", input=bad, version=version
    )
    assert 'Warning: unknown field "spec.bogus"' in warned.stderr, warned.stderr
    assert "gadget.compat.example.com/v created" in warned.stdout
    changed = cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=gadget_yaml("v", "  message: changed\n"),
        version=version,
    )
    assert "gadget.compat.example.com/v configured" in changed.stdout
    stored = get_json(cluster, "gadget", "v", "-n", namespace)
    assert stored["spec"] == {
        "message": "changed",
        "replicas": 1,
        "mode": "fast",
        "limits": {"depth": 3},
    }
    invalid = cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=gadget_yaml("w", "  mode: sideways\n"),
        version=version,
        check=False,
    )
    assert invalid.returncode != 0
    assert 'spec.mode: Unsupported value: "sideways"' in invalid.stderr, invalid.stderr


@pytest.mark.parametrize("version", KUBECTL)
def test_kubectl_get_columns_names_and_scale(
    cluster: CompatCluster, gadgets: str, namespace: str, version: str
) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=gadget_yaml("g1", "  message: hello\n"),
        version=version,
    )
    out = cluster.kubectl("get", "gdg", "-n", namespace, version=version).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "REPLICAS", "AGE"], out
    assert row.split()[:2] == ["g1", "1"]
    wide = cluster.kubectl("get", "gadgets", "-o", "wide", "-n", namespace, version=version).stdout
    assert wide.splitlines()[0].split() == ["NAME", "REPLICAS", "MESSAGE", "AGE"], wide
    assert "hello" in wide
    crds = cluster.kubectl("get", "crd", CRD_NAME, version=version).stdout
    assert crds.splitlines()[0].split() == ["NAME", "CREATED", "AT"], crds
    everything = cluster.kubectl("get", "all", "-n", namespace, version=version).stdout
    assert "gadget.compat.example.com/g1" in everything, everything
    scaled = cluster.kubectl(
        "scale", "gadget", "g1", "--replicas=4", "-n", namespace, version=version
    )
    assert "gadget.compat.example.com/g1 scaled" in scaled.stdout
    assert get_json(cluster, "gadget", "g1", "-n", namespace)["spec"]["replicas"] == 4
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/{GROUP}/v1/namespaces/{namespace}/gadgets/g1/scale",
            version=version,
        ).stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 4}


@pytest.mark.parametrize("version", KUBECTL)
def test_kubectl_deprecated_version(
    cluster: CompatCluster, gadgets: str, namespace: str, version: str
) -> None:
    """A deprecated served version: each request warns; objects read through it carry its
    apiVersion (conversion None), the storage version is v1."""
    created = cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=gadget_yaml("old", version="v1beta1"),
        version=version,
    )
    warning = f"Warning: {GROUP}/v1beta1 Gadget is deprecated; use {GROUP}/v1 Gadget"
    assert warning in created.stderr, created.stderr
    read = cluster.kubectl(
        "get",
        f"gadgets.v1beta1.{GROUP}",
        "old",
        "-n",
        namespace,
        "-o",
        "jsonpath={.apiVersion}",
        version=version,
    )
    assert read.stdout == f"{GROUP}/v1beta1" and warning in read.stderr
    preferred = get_json(cluster, "gadget", "old", "-n", namespace)
    assert preferred["apiVersion"] == f"{GROUP}/v1"
    crd = get_json(cluster, "crd", CRD_NAME)
    assert crd["status"]["storedVersions"] == ["v1"]
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


def test_openapi_hash_follows_the_crd(cluster: CompatCluster) -> None:
    """``/openapi/v3`` lists each CRD version with a hash that changes with the CRD,
    and a broken CRD is refused with 422 naming the field."""
    crd = (
        CRD_YAML.replace("gadgets", "widgets")
        .replace("Gadget", "Widget")
        .replace("gadget", "widget")
        .replace("[gdg]", "[wdg]")
    )
    cluster.kubectl("apply", "-f", "-", input=crd)
    try:
        cluster.kubectl(
            "wait", "--for", "condition=established", "--timeout=30s", f"crd/widgets.{GROUP}"
        )

        def url() -> str:
            root = json.loads(cluster.kubectl("get", "--raw", "/openapi/v3").stdout)
            return str(root["paths"][f"apis/{GROUP}/v1"]["serverRelativeURL"])

        before = url()
        cluster.kubectl(
            "patch",
            "crd",
            f"widgets.{GROUP}",
            "--type=json",
            "-p",
            '[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/'
            'properties/colour","value":{"type":"string"}}]',
        )
        after = wait_until(lambda: url() != before and url(), what="a new OpenAPI hash")
        doc = json.loads(cluster.kubectl("get", "--raw", after).stdout)
        spec = doc["components"]["schemas"]["com.example.compat.v1.Widget"]["properties"]["spec"]
        assert "colour" in spec["properties"]
        broken = cluster.kubectl(
            "patch",
            "crd",
            f"widgets.{GROUP}",
            "--type=json",
            "-p",
            '[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/'
            'properties/size","value":{"description":"no type"}}]',
            check=False,
        )
        assert broken.returncode != 0
        assert (
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: "
            "Required value" in broken.stderr
        ), broken.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{GROUP}", "--wait=false", check=False)


# --- the official Python client ------------------------------------------------------------


def test_python_client_custom_objects(cluster: CompatCluster, gadgets: str, namespace: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "py", "labels": {"app": "py"}},
        "spec": {"message": "from python", "free": {"any": {"thing": [1, 2]}}, "x": 1},
        "status": {"phase": "ignored on create"},
    }
    created = api.create_namespaced_custom_object(GROUP, "v1", namespace, "gadgets", body)
    assert created["spec"] == {
        "message": "from python",
        "free": {"any": {"thing": [1, 2]}},
        "replicas": 1,
        "mode": "fast",
        "limits": {"depth": 3},
    }
    assert "status" not in created
    status = api.patch_namespaced_custom_object_status(
        GROUP,
        "v1",
        namespace,
        "gadgets",
        "py",
        {
            "status": {"phase": "Ready", "replicas": 1, "selector": "app=py"},
            "spec": {"replicas": 9},
        },
    )
    assert status["status"]["phase"] == "Ready" and status["spec"]["replicas"] == 1
    assert status["metadata"]["generation"] == 1
    scale = api.get_namespaced_custom_object_scale(GROUP, "v1", namespace, "gadgets", "py")
    assert scale["spec"]["replicas"] == 1
    assert scale["status"] == {"replicas": 1, "selector": "app=py"}
    api.patch_namespaced_custom_object_scale(
        GROUP, "v1", namespace, "gadgets", "py", {"spec": {"replicas": 2}}
    )
    got = api.get_namespaced_custom_object(GROUP, "v1", namespace, "gadgets", "py")
    assert got["spec"]["replicas"] == 2 and got["metadata"]["generation"] == 2
    assert got["status"]["phase"] == "Ready"
    listed = api.list_namespaced_custom_object(
        GROUP, "v1", namespace, "gadgets", label_selector="app=py"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == ["py"]
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(
            GROUP,
            "v1",
            namespace,
            "gadgets",
            {**body, "metadata": {"name": "bad"}, "spec": {"replicas": "many"}},
        )
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert causes[0]["field"] == "spec.replicas"
    # the DynamicClient finds the kind, its versions and subresources through discovery
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(config.new_client_from_config(str(cluster.kubeconfig)))
    gadgets_v1 = dynamic.resources.get(api_version=f"{GROUP}/v1", kind="Gadget")
    found = gadgets_v1.get(name="py", namespace=namespace)
    assert found.spec.replicas == 2
    gadgets_v1.status.patch(
        name="py",
        namespace=namespace,
        body={"status": {"phase": "Dynamic"}},
        content_type="application/merge-patch+json",
    )
    old = dynamic.resources.get(api_version=f"{GROUP}/v1beta1", kind="Gadget")
    assert old.get(name="py", namespace=namespace).status.phase == "Dynamic"


# --- lightkube -----------------------------------------------------------------------------


def test_lightkube_generic_resources(cluster: CompatCluster, gadgets: str, namespace: str) -> None:
    from lightkube import Client, KubeConfig, codecs
    from lightkube.generic_resource import (
        create_namespaced_resource,
        get_generic_resource,
        load_in_cluster_generic_resources,
    )
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.types import PatchType

    kube = Client(KubeConfig.from_file(str(cluster.kubeconfig)), namespace=namespace)
    # Loading the CRD's manifest registers the generic resources it defines.
    loaded = codecs.load_all_yaml(
        CRD_YAML + "---\n" + gadget_yaml("lk"), create_resources_for_crds=True
    )
    assert loaded[0].kind == "CustomResourceDefinition"
    kube.create(loaded[1])
    Gadget = create_namespaced_resource(GROUP, "v1", "Gadget", "gadgets")
    got = kube.get(Gadget, "lk")
    assert got.spec["replicas"] == 1 and got.apiVersion == f"{GROUP}/v1"
    kube.create(Gadget(metadata=ObjectMeta(name="lk2"), spec={"message": "two", "replicas": 2}))
    assert sorted(g.metadata.name for g in kube.list(Gadget)) == ["lk", "lk2"]
    kube.patch(
        Gadget.Status,
        "lk",
        {"status": {"phase": "Done", "replicas": 1}},
        patch_type=PatchType.MERGE,
    )
    assert kube.get(Gadget, "lk").status == {"phase": "Done", "replicas": 1}
    scale = kube.get(Gadget.Scale, "lk")
    assert scale.spec.replicas == 1 and scale.status.replicas == 1
    kube.replace(
        Gadget.Scale(metadata=ObjectMeta(name="lk", namespace=namespace), spec={"replicas": 3})
    )
    assert kube.get(Gadget, "lk").spec["replicas"] == 3
    # lightkube can also learn the kinds from the served CRDs themselves
    load_in_cluster_generic_resources(kube)
    learned = get_generic_resource(f"{GROUP}/v1", "Gadget")
    assert learned is not None
    assert kube.get(learned, "lk2").spec["message"] == "two"


# --- kr8s --------------------------------------------------------------------------------------


def test_kr8s_generic_objects(cluster: CompatCluster, gadgets: str, namespace: str) -> None:
    import kr8s
    from kr8s.objects import new_class

    api = kr8s.api(kubeconfig=str(cluster.kubeconfig))
    Gadget = new_class(
        kind="Gadget", version=f"{GROUP}/v1", namespaced=True, scalable=True, asyncio=False
    )
    gadget = Gadget(
        {
            "metadata": {"name": "k8s", "namespace": namespace},
            "spec": {"message": "kr8s", "bogus": 1},
        },
        api=api,
    )
    gadget.create()
    gadget.refresh()
    assert gadget.spec["mode"] == "fast" and "bogus" not in gadget.spec
    gadget.scale(2)
    assert gadget.replicas == 2
    gadget.patch({"status": {"phase": "Scaled", "replicas": 2}}, subresource="status")
    gadget.refresh()
    assert gadget.status["phase"] == "Scaled"
    found = list(kr8s.get("gadgets", namespace=namespace, api=api))
    assert [g.name for g in found] == ["k8s"]
    gadget.delete()
