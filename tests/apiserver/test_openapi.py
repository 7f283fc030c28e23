"""OpenAPI v3 generated from the models: document shape, and kubectl explain / validation."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import trio

from kubetrio.api import KubeStruct
from kubetrio.api.generated import meta_v1
from kubetrio.api.scheme import ResourceInfo, Scheme
from kubetrio.apiserver import RunningApiServer
from kubetrio.apiserver._openapi import OpenAPIDocuments, gv_path

KUBECTL_DIR = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent
needs_kubectl = pytest.mark.skipif(
    not (KUBECTL_DIR / "kubectl.1.33").exists(), reason="versioned kubectl binaries not installed"
)
REF = "#/components/schemas/"


class WidgetSpec(KubeStruct, kw_only=True):
    """A plugin's own model: not in the generated tables."""

    size: int | str | None = None
    mode: Literal["fast", "slow"] = "fast"
    parts: list[str]


class Widget(KubeStruct, kw_only=True):
    """A plugin kind with a model."""

    api_version: str | None = None
    kind: str | None = None
    metadata: meta_v1.ObjectMeta | None = None
    spec: WidgetSpec | None = None


@pytest.fixture(scope="module")
def documents() -> OpenAPIDocuments:
    return OpenAPIDocuments(Scheme.builtin(), version="v1.31.0")


def refs_in(node: Any) -> Iterator[str]:
    """Every ``$ref`` anywhere in a JSON value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            elif key == "properties":
                # keys here are field names (JSONSchemaProps has a field called "$ref")
                for prop in value.values():
                    yield from refs_in(prop)
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs_in(value)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in ("get", "put", "post", "patch", "delete"):
            if method in item:
                yield path, method, item[method]


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


# ---- documents -------------------------------------------------------------------------


def test_root_builds_every_document() -> None:
    # How long this takes is printed, not asserted: a loaded CI machine makes any time
    # limit flaky, and a figure belongs in benchmarks/.
    started = time.perf_counter()
    fresh = OpenAPIDocuments(Scheme.builtin(), version="v1.31.0")
    fresh.root()  # the root needs every document's hash, so this builds them all
    elapsed = time.perf_counter() - started
    print(f"built {len(fresh.group_versions())} OpenAPI v3 documents in {elapsed * 1000:.0f} ms")
    assert all(fresh.document(g, v) for g, v in fresh.group_versions())


def test_root_lists_every_group_version_with_its_hash(documents: OpenAPIDocuments) -> None:
    import msgspec

    root = msgspec.json.decode(documents.root())
    expected = {gv_path(g, v) for g, v in documents.group_versions()}
    assert set(root["paths"]) == expected
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/autoscaling/v2"} <= expected
    for group, version in documents.group_versions():
        doc = documents.document(group, version)
        assert doc is not None
        url = root["paths"][gv_path(group, version)]["serverRelativeURL"]
        assert url == f"/openapi/v3/{gv_path(group, version)}?hash={doc.hash}"


def test_documents_are_openapi_3_and_every_ref_resolves(documents: OpenAPIDocuments) -> None:
    for group, version in documents.group_versions():
        doc = documents.parsed(group, version)
        assert doc is not None
        assert doc["openapi"] == "3.0.0"
        assert doc["info"] == {"title": "Kubernetes", "version": "v1.31.0"}
        names = set(doc["components"]["schemas"])
        for ref in refs_in(doc):
            assert ref.startswith(REF), ref
            assert ref.removeprefix(REF) in names, f"{group}/{version}: dangling {ref}"


def test_every_kind_has_a_gvk_schema_and_gvk_operations(documents: OpenAPIDocuments) -> None:
    scheme = documents.scheme
    for group, version in documents.group_versions():
        doc = documents.parsed(group, version)
        assert doc is not None
        annotated: dict[tuple[str, str, str], list[str]] = {}
        for name, body in doc["components"]["schemas"].items():
            for gvk in body.get("x-kubernetes-group-version-kind", []):
                annotated.setdefault((gvk["group"], gvk["version"], gvk["kind"]), []).append(name)
        op_gvks = {
            tuple(op["x-kubernetes-group-version-kind"][k] for k in ("group", "version", "kind"))
            for _, _, op in operations(doc)
        }
        info: ResourceInfo
        for info in scheme.resources(group, version):
            gvk = (info.group, info.version, info.kind)
            assert gvk in op_gvks, gvk
            # exactly one schema per kind: kubectl explain takes the first it finds
            assert len(annotated.get(gvk, [])) == 1, (gvk, annotated.get(gvk))
            if info.definition:
                assert annotated[gvk] == [info.definition]


def test_every_patch_operation_lists_field_validation(documents: OpenAPIDocuments) -> None:
    # kubectl decides from the first PATCH operation of a GVK it meets, in map order,
    # so every one of them must say it (status and scale included).
    checked = 0
    for group, version in documents.group_versions():
        doc = documents.parsed(group, version)
        assert doc is not None
        for path, method, op in operations(doc):
            if method != "patch" or op["x-kubernetes-action"] == "connect":
                continue
            names = {(p["name"], p["in"]) for p in op["parameters"]}
            assert ("fieldValidation", "query") in names, path
            checked += 1
    assert checked > 50


def test_resource_paths_follow_the_rest_layout(documents: OpenAPIDocuments) -> None:
    doc = documents.parsed("apps", "v1")
    assert doc is not None
    paths = doc["paths"]
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert set(item) >= {"get", "put", "patch", "delete", "parameters"}
    assert item["get"]["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    listing = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"]
    assert listing["x-kubernetes-action"] == "list"
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "io.k8s.api.apps.v1.DeploymentList"
    }
    assert "get" in paths["/apis/apps/v1/deployments"]  # across namespaces
    patch = item["patch"]["requestBody"]["content"]
    assert "application/strategic-merge-patch+json" in patch
    assert patch["application/apply-patch+yaml"]["schema"] == {
        "$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    }
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    assert "io.k8s.api.autoscaling.v1.Scale" in doc["components"]["schemas"]
    core = documents.parsed("", "v1")
    assert core is not None
    assert "/api/v1/nodes/{name}" in core["paths"]  # cluster-scoped: no namespace
    log = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert log["responses"]["200"]["content"]["*/*"]["schema"] == {"type": "string"}


def test_schemas_carry_types_required_and_kubernetes_extensions(
    documents: OpenAPIDocuments,
) -> None:
    apps = documents.parsed("apps", "v1")
    core = documents.parsed("", "v1")
    assert apps is not None and core is not None

    spec = schema(apps, "io.k8s.api.apps.v1.DeploymentSpec")
    assert spec["type"] == "object"
    assert spec["required"] == ["selector", "template"]
    assert spec["properties"]["replicas"] == {"type": "integer"}
    assert spec["properties"]["strategy"] == {
        "allOf": [{"$ref": REF + "io.k8s.api.apps.v1.DeploymentStrategy"}],
        "x-kubernetes-patch-strategy": "retainKeys",
    }
    rolling = schema(apps, "io.k8s.api.apps.v1.RollingUpdateDeployment")["properties"]
    assert rolling["maxSurge"] == {"$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}

    int_or_string = schema(apps, "io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    assert int_or_string["x-kubernetes-int-or-string"] is True
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schema(core, "io.k8s.apimachinery.pkg.apis.meta.v1.Time") == {
        "type": "string",
        "format": "date-time",
    }
    quantity = schema(core, "io.k8s.apimachinery.pkg.api.resource.Quantity")
    assert quantity == {"oneOf": [{"type": "string"}, {"type": "number"}]}

    pod_spec = schema(core, "io.k8s.api.core.v1.PodSpec")
    containers = pod_spec["properties"]["containers"]
    assert containers["type"] == "array"
    assert containers["items"] == {"$ref": REF + "io.k8s.api.core.v1.Container"}
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert "containers" in pod_spec["required"]
    container = schema(core, "io.k8s.api.core.v1.Container")
    assert container["properties"]["image"] == {"type": "string"}
    assert container["required"] == ["name"]
    limits = schema(core, "io.k8s.api.core.v1.ResourceRequirements")["properties"]["limits"]
    assert limits == {
        "type": "object",
        "additionalProperties": {"$ref": REF + "io.k8s.apimachinery.pkg.api.resource.Quantity"},
    }
    selector = schema(core, "io.k8s.api.core.v1.ObjectReference")
    assert selector["x-kubernetes-map-type"] == "atomic"
    pod = schema(core, "io.k8s.api.core.v1.Pod")
    assert {"group": "", "version": "v1", "kind": "Pod"} in pod["x-kubernetes-group-version-kind"]


def test_no_prose_is_served(documents: OpenAPIDocuments) -> None:
    doc = documents.parsed("", "v1")
    assert doc is not None
    for body in doc["components"]["schemas"].values():
        assert "description" not in body
        for prop in body.get("properties", {}).values():
            assert "description" not in prop


def test_resources_registered_later_appear(documents: OpenAPIDocuments) -> None:
    scheme = Scheme.builtin()
    docs = OpenAPIDocuments(scheme)
    assert docs.document("stable.example.com", "v1") is None
    before = docs.document("", "v1")
    scheme.register(
        ResourceInfo(
            group="stable.example.com",
            version="v1",
            resource="crontabs",
            kind="CronTab",
            namespaced=True,
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            singular="crontab",
        )
    )
    doc = docs.parsed("stable.example.com", "v1")
    assert doc is not None
    crontab = schema(doc, "com.example.stable.v1.CronTab")
    assert crontab["x-kubernetes-preserve-unknown-fields"] is True
    assert crontab["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "version": "v1", "kind": "CronTab"}
    ]
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
    assert any(p["name"] == "fieldValidation" for p in patch["patch"]["parameters"])
    # no strategic merge for custom resources: kubectl must send a JSON merge patch
    assert set(patch["patch"]["requestBody"]["content"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    }
    assert docs.document("", "v1") is before  # untouched group/versions stay cached
    assert "apis/stable.example.com/v1" in docs.root().decode()


def test_plugin_kinds_with_models_get_schemas() -> None:
    scheme = Scheme.builtin()
    scheme.register(
        ResourceInfo(
            group="example.kubetrio.io",
            version="v1",
            resource="widgets",
            kind="Widget",
            namespaced=True,
            verbs=("get", "list", "patch"),
            model=Widget,
        )
    )
    doc = OpenAPIDocuments(scheme).parsed("example.kubetrio.io", "v1")
    assert doc is not None
    widget = schema(doc, f"{Widget.__module__}.Widget")
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.kubetrio.io", "version": "v1", "kind": "Widget"}
    ]
    spec = schema(doc, f"{WidgetSpec.__module__}.WidgetSpec")
    assert spec["required"] == ["parts"]
    assert spec["properties"]["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert spec["properties"]["size"] == {
        "$ref": REF + "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    }
    names = set(doc["components"]["schemas"])
    assert all(ref.removeprefix(REF) in names for ref in refs_in(doc))


# ---- over HTTP ---------------------------------------------------------------------------


async def test_http_answers_root_documents_caching_and_v2(http: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        root = await http.get("/openapi/v3")
        assert root.status_code == 200
        assert root.headers["content-type"] == "application/json"
        url = root.json()["paths"]["apis/apps/v1"]["serverRelativeURL"]
        digest = url.partition("?hash=")[2]

        hashed = await http.get(url)
        assert hashed.status_code == 200
        assert hashed.json()["openapi"] == "3.0.0"
        assert hashed.headers["etag"] == f'"{digest}"'
        assert hashed.headers["cache-control"] == "public, immutable"

        stale = await http.get("/openapi/v3/apis/apps/v1?hash=0000")
        assert stale.status_code == 200
        assert stale.content == hashed.content
        assert stale.headers["cache-control"] == "no-cache, private"

        again = await http.get(url, headers={"if-none-match": f'"{digest}"'})
        assert again.status_code == 304
        assert again.content == b""

        for missing in ("/openapi/v3/apis/nope/v1", "/openapi/v3/apis/apps", "/openapi/v3/x"):
            assert (await http.get(missing)).status_code == 404

        assert (await http.post("/openapi/v3", content=b"{}")).status_code == 405

        v2 = await http.get("/openapi/v2")
        assert v2.status_code == 200
        # gnostic Document: field 1 "2.0" (swagger), then info, paths and definitions
        assert v2.content.startswith(b"\x0a\x032.0")
        assert b"io.k8s.api.apps.v1.Deployment" in v2.content
        assert v2.headers["content-type"] == (
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )


# ---- kubectl --------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: default
spec:
  {extra}replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
"""


async def kubectl(minor: int, kubeconfig: Path, cache: Path, *args: str) -> tuple[int, str]:
    """Run ``kubectl.1.<minor>``; return its exit code and stdout+stderr."""
    command = [
        str(KUBECTL_DIR / f"kubectl.1.{minor}"),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(cache),
        *args,
    ]
    with trio.fail_after(60):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    return done.returncode, (done.stdout + done.stderr).decode()


@needs_kubectl
@pytest.mark.parametrize("minor", [29, 33])
async def test_kubectl_explain(
    apiserver: RunningApiServer, kubeconfig: Path, tmp_path: Path, minor: int
) -> None:
    cache = tmp_path / "cache"
    code, out = await kubectl(minor, kubeconfig, cache, "explain", "deployment.spec.strategy")
    assert code == 0, out
    assert "KIND:       Deployment" in out
    assert "FIELD: strategy <DeploymentStrategy>" in out
    assert "rollingUpdate\t<RollingUpdateDeployment>" in out
    assert "type\t<string>" in out

    code, out = await kubectl(minor, kubeconfig, cache, "explain", "pods.spec.containers")
    assert code == 0, out
    assert "FIELD: containers <[]Container>" in out
    assert "image\t<string>" in out
    assert "name\t<string> -required-" in out
    assert "ports\t<[]ContainerPort>" in out
    assert "resources\t<ResourceRequirements>" in out

    code, out = await kubectl(
        minor, kubeconfig, cache, "explain", "deployment.spec.strategy.rollingUpdate"
    )
    assert code == 0, out
    assert "maxSurge\t<IntOrString>" in out

    code, out = await kubectl(minor, kubeconfig, cache, "explain", "deployment.spec.bogus")
    assert code != 0
    assert 'field "bogus" does not exist' in out


@needs_kubectl
async def test_kubectl_133_validates_on_the_server(
    apiserver: RunningApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEPLOYMENT.format(name="strict", extra="bogus: 1\n  "))
    good = tmp_path / "good.yaml"
    good.write_text(DEPLOYMENT.format(name="strict", extra=""))

    code, out = await kubectl(33, kubeconfig, cache, "apply", "-f", str(bad))
    assert code != 0
    # The server's message: kubectl found fieldValidation in our OpenAPI and sent Strict
    # rather than validating client-side (which would say "ValidationError").
    assert 'strict decoding error: unknown field "spec.bogus"' in out, out
    assert "ValidationError" not in out

    code, out = await kubectl(33, kubeconfig, cache, "apply", "-f", str(good))
    assert code == 0, out
    assert "deployment.apps/strict created" in out

    # the same through PATCH (the object exists now)
    code, out = await kubectl(33, kubeconfig, cache, "apply", "-f", str(bad))
    assert code != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in out, out

    # A changed container list: kubectl computes the strategic merge patch from our
    # schemas' merge keys (it warns when it cannot) and the server merges by name.
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        DEPLOYMENT.format(name="strict", extra="").replace(
            "image: busybox:1.36", "image: busybox:1.37\n      - name: side\n        image: pause"
        )
    )
    code, out = await kubectl(33, kubeconfig, cache, "apply", "-f", str(changed))
    assert code == 0, out
    assert "deployment.apps/strict configured" in out
    assert "warning" not in out.lower()
    code, out = await kubectl(
        33,
        kubeconfig,
        cache,
        "get",
        "deployment",
        "strict",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].image}",
    )
    assert code == 0, out
    assert out.split() == ["busybox:1.37", "pause"]


@needs_kubectl
@pytest.mark.parametrize("minor", [27, 33])
async def test_kubectl_explain_openapiv2_output(
    apiserver: RunningApiServer, kubeconfig: Path, tmp_path: Path, minor: int
) -> None:
    """``--output=plaintext-openapiv2`` reads the protobuf /openapi/v2 document."""
    cache = tmp_path / "cache"
    args = ("explain", "--output=plaintext-openapiv2")
    code, out = await kubectl(minor, kubeconfig, cache, *args, "deployment.spec.strategy")
    assert code == 0, out
    assert "KIND:     Deployment" in out
    assert "rollingUpdate\t<Object>" in out and "type\t<string>" in out
    code, out = await kubectl(minor, kubeconfig, cache, *args, "pods.spec.containers")
    assert code == 0, out
    assert "name\t<string> -required-" in out


@needs_kubectl
async def test_kubectl_127_applies_with_the_v2_document(
    apiserver: RunningApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DEPLOYMENT.format(name="old", extra=""))
    code, out = await kubectl(27, kubeconfig, tmp_path / "cache", "apply", "-f", str(good))
    assert code == 0, out
    assert "deployment.apps/old created" in out
