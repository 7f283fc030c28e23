"""CustomResourceDefinitions are served like built-in kinds, by kubectl and the client."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.plugins import hookimpl
from kubetrio.providers import ResourceDefinition
from kubetrio.store import open_store
from tests.kit import crd

CRD = crd(
    "example.com",
    "widgets",
    "Widget",
    subresources={"status": {}},
    shortNames=["wd"],
    categories=["all"],
)
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def _wait_served(http: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        while (await http.get("/apis/example.com/v1")).status_code != 200:
            await trio.sleep(0.05)


async def test_crd_lifecycle_over_rest(http: httpx.AsyncClient) -> None:
    assert (
        await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
    ).status_code == 201
    await _wait_served(http)
    resources = (await http.get("/apis/example.com/v1")).json()["resources"]
    assert {r["name"] for r in resources} == {"widgets", "widgets/status"}
    with trio.fail_after(10):  # the server marks the CRD established just after serving it
        while True:
            crd = (
                await http.get(
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
                )
            ).json()
            conditions = (crd.get("status") or {}).get("conditions") or []
            if {c["type"]: c["status"] for c in conditions}.get("Established") == "True":
                break
            await trio.sleep(0.05)
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3, "colour": "blue"},
    }
    created = await http.post(WIDGETS, json=widget)
    assert created.status_code == 201 and created.json()["spec"] == {"size": 3, "colour": "blue"}
    merged = await http.patch(
        f"{WIDGETS}/w1",
        content=b'{"spec":{"size":4}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert merged.json()["spec"] == {"size": 4, "colour": "blue"}
    strategic = await http.patch(
        f"{WIDGETS}/w1",
        content=b'{"spec":{"size":5}}',
        headers={"content-type": "application/strategic-merge-patch+json"},
    )
    assert strategic.status_code == 415  # as kube-apiserver answers for custom resources
    bad = await http.post(WIDGETS, json={**widget, "metadata": {"name": "Bad_Name"}})
    assert bad.status_code == 422
    await http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    with trio.fail_after(10):
        while (await http.get("/apis/example.com/v1")).status_code != 404:
            await trio.sleep(0.05)
    assert (await http.get(f"{WIDGETS}/w1")).status_code == 404


async def test_custom_resources_are_checked_against_their_schema(
    http: httpx.AsyncClient,
) -> None:
    """Wrong types, values outside an enum and missing required fields are refused with
    422 naming each field; a refused patch changes nothing."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer"},
                    "colour": {"type": "string", "enum": ["red", "blue"]},
                    "ports": {"type": "array", "items": {"x-kubernetes-int-or-string": True}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        },
    }
    crd = json.loads(json.dumps(CRD))
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema
    assert (
        await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    ).status_code == 201
    await _wait_served(http)
    good = {"size": 3, "colour": "red", "ports": [80, "http"], "labels": {"a": "b"}}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert (await http.post(WIDGETS, json={**widget, "spec": good})).status_code == 201
    bad = {"size": "3", "colour": "green", "ports": [True], "labels": {"a": 1}}
    refused = await http.post(WIDGETS, json={**widget, "metadata": {"name": "v"}, "spec": bad})
    assert refused.status_code == 422
    causes = {c["field"]: c["reason"] for c in refused.json()["details"]["causes"]}
    assert causes == {
        "spec.size": "FieldValueTypeInvalid",
        "spec.colour": "FieldValueNotSupported",
        "spec.ports[0]": "FieldValueTypeInvalid",
        "spec.labels.a": "FieldValueTypeInvalid",
    }
    missing = await http.post(WIDGETS, json={**widget, "metadata": {"name": "u"}, "spec": {}})
    assert missing.status_code == 422
    assert missing.json()["details"]["causes"][0]["field"] == "spec.size"
    patched = await http.patch(
        f"{WIDGETS}/w",
        content=b'{"spec":{"size":"big"}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 422
    assert (await http.get(f"{WIDGETS}/w")).json()["spec"] == good
    assert (await http.get(f"{WIDGETS}/v")).status_code == 404


async def test_kubectl_uses_a_crd(
    apiserver: RunningApiServer, http: httpx.AsyncClient, kubeconfig: Path, tmp_path: Path
) -> None:
    kubectl = str(
        Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent / "kubectl.1.33"
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}

    async def run(*args: str, stdin: bytes = b"") -> str:
        with trio.fail_after(60):
            result = await trio.run_process(
                [kubectl, *args],
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                env=env,
                check=False,
            )
        return (result.stdout + result.stderr).decode()

    out = await run("apply", "-f", "-", stdin=json.dumps(CRD).encode())
    assert "created" in out, out
    out = await run(
        "wait", "--for", "condition=established", "--timeout=20s", "crd/widgets.example.com"
    )
    assert "condition met" in out, out
    out = await run(
        "apply",
        "-f",
        "-",
        stdin=b"apiVersion: example.com/v1\nkind: Widget\n"
        b"metadata:\n  name: w2\nspec:\n  size: 1\n",
    )
    assert "widget.example.com/w2 created" in out, out
    listed = await run("get", "wd")
    assert "w2" in listed, listed
    everything = await run("get", "all")
    assert "widget.example.com/w2" in everything, everything


@hookimpl
def kubetrio_register_resources(register):  # type: ignore[no-untyped-def]
    register(
        ResourceDefinition(
            group="plugin.example.com",
            version="v1alpha1",
            kind="Gadget",
            plural="gadgets",
            namespaced=False,
            short_names=("gd",),
        )
    )


async def test_plugin_kinds_are_served(tmp_path: Path) -> None:
    import sys

    manager = plugins.PluginManager()
    manager.register(sys.modules[__name__], name="gadgets")
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_apiserver(store, plugins=manager) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        gadget = {
            "apiVersion": "plugin.example.com/v1alpha1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
        }
        created = await http.post("/apis/plugin.example.com/v1alpha1/gadgets", json=gadget)
        assert created.status_code == 201
        assert "namespace" not in created.json()["metadata"]


# --- apiextensions v1 semantics: pruning, defaults, subresources, tables, versions -----

GADGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "message": {"type": "string", "description": "What the gadget says."},
                "mode": {"type": "string", "default": "fast", "enum": ["fast", "slow"]},
                "selector": {"type": "string"},
                "nested": {
                    "type": "object",
                    "default": {},
                    "properties": {"depth": {"type": "integer", "default": 3}},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {
                        "spec": {"type": "object", "properties": {"x": {"type": "string"}}}
                    },
                },
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}},
        },
    },
}


def gadget_crd(versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CRD with every feature: defaults, status and scale, columns, two versions."""
    base = {
        "served": True,
        "storage": False,
        "schema": {"openAPIV3Schema": GADGET_SCHEMA},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        "additionalPrinterColumns": [
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
            {"name": "Created", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": versions
            or [
                {**base, "name": "v1", "storage": True},
                {**base, "name": "v1beta1", "deprecated": True},
            ],
        },
    }


GADGETS = "/apis/example.com/{v}/namespaces/default/gadgets"


async def _add_gadget_field(http: httpx.AsyncClient, name: str, schema: dict[str, Any]) -> None:
    """Add ``spec.<name>`` to the Gadget CRD's schema with a read-modify-replace, reading
    again on 409: the CRD controller writes the CRD's status meanwhile, as kubectl edit
    meets it too."""
    crd_url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
    while True:
        crd = (await http.get(crd_url)).json()
        properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        properties["spec"]["properties"][name] = schema
        replaced = await http.put(crd_url, json=crd)
        if replaced.status_code != 409:
            break
    assert replaced.status_code == 200, replaced.text


async def _install_gadgets(http: httpx.AsyncClient, crd: dict[str, Any] | None = None) -> None:
    created = await http.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd or gadget_crd()
    )
    assert created.status_code == 201, created.text
    with trio.fail_after(10):
        while (await http.get("/apis/example.com/v1")).status_code != 200:
            await trio.sleep(0.05)


async def test_unknown_fields_are_pruned_or_refused(http: httpx.AsyncClient) -> None:
    await _install_gadgets(http)
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g", "bogusMeta": 1},
        "spec": {
            "message": "hi",
            "x": 1,
            "free": {"anything": {"goes": [1]}},
            "template": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "junk": 2},
                "spec": {"x": "y", "z": 1},
            },
            "items": [{"name": "a", "extra": True}],
        },
        "extraTop": 1,
    }
    url = GADGETS.format(v="v1")
    strict = await http.post(url, params={"fieldValidation": "Strict"}, json=body)
    assert strict.status_code == 400
    message = strict.json()["message"]
    for path in ("spec.x", "extraTop", "spec.items[0].extra", "spec.template.spec.z"):
        assert f'unknown field "{path}"' in message, message
    warned = await http.post(url, params={"fieldValidation": "Warn"}, json=body)
    assert warned.status_code == 201
    # one Warning header per field, an HTTP quoted-string
    assert '299 - "unknown field \\"spec.x\\""' in warned.headers.get_list("warning")
    stored = (await http.get(f"{url}/g")).json()
    assert "extraTop" not in stored and "bogusMeta" not in stored["metadata"]
    spec = stored["spec"]
    assert "x" not in spec
    assert spec["free"] == {"anything": {"goes": [1]}}  # preserve-unknown-fields
    assert spec["template"]["apiVersion"] == "v1" and spec["template"]["kind"] == "Pod"
    assert spec["template"]["metadata"] == {"name": "p"}  # embedded: ObjectMeta only
    assert spec["template"]["spec"] == {"x": "y"}
    assert spec["items"] == [{"name": "a"}]
    # defaults, at every depth, before validation
    assert spec["replicas"] == 1 and spec["mode"] == "fast" and spec["nested"] == {"depth": 3}
    # a null the schema does not allow means "unset": defaulted when it can be, else dropped
    nulls = await http.post(
        url,
        json={**body, "metadata": {"name": "n"}, "spec": {"mode": None, "message": None}},
    )
    assert nulls.status_code == 201, nulls.text
    assert nulls.json()["spec"]["mode"] == "fast" and "message" not in nulls.json()["spec"]
    headless = await http.post(
        url,
        json={**body, "metadata": {"name": "h"}, "spec": {"template": {"metadata": {}}}},
    )
    assert headless.status_code == 422
    assert {c["field"] for c in headless.json()["details"]["causes"]} == {
        "spec.template.apiVersion",
        "spec.template.kind",
    }
    patched = await http.patch(
        f"{url}/g",
        params={"fieldValidation": "Strict"},
        content=b'{"spec":{"y":2}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 400 and 'unknown field "spec.y"' in patched.json()["message"]


async def test_status_and_scale_subresources(http: httpx.AsyncClient) -> None:
    await _install_gadgets(http)
    url = GADGETS.format(v="v1")
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "s"}}
    created = (
        await http.post(url, json={**body, "spec": {"replicas": 2}, "status": {"replicas": 9}})
    ).json()
    assert "status" not in created and created["metadata"]["generation"] == 1
    status = await http.put(
        f"{url}/s/status",
        json={
            **created,
            "metadata": {**created["metadata"], "labels": {"ignored": "yes"}},
            "spec": {"replicas": 7},
            "status": {"replicas": 2, "selector": "app=s"},
        },
    )
    assert status.status_code == 200, status.text
    after = status.json()
    assert after["status"] == {"replicas": 2, "selector": "app=s"}
    assert after["spec"]["replicas"] == 2 and "labels" not in after["metadata"]
    assert after["metadata"]["generation"] == 1
    main = await http.put(f"{url}/s", json={**after, "spec": {"replicas": 3}, "status": {}})
    assert main.json()["status"] == {"replicas": 2, "selector": "app=s"}
    assert main.json()["metadata"]["generation"] == 2
    scale = (await http.get(f"{url}/s/scale")).json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {"replicas": 2, "selector": "app=s"}
    scaled = await http.patch(
        f"{url}/s/scale",
        content=b'{"spec":{"replicas":5}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert scaled.json()["spec"]["replicas"] == 5
    assert (await http.get(f"{url}/s")).json()["spec"]["replicas"] == 5
    resources = {r["name"]: r for r in (await http.get("/apis/example.com/v1")).json()["resources"]}
    assert resources["gadgets/scale"]["group"] == "autoscaling"
    assert "gadgets/status" in resources


async def test_printer_columns_and_versions(http: httpx.AsyncClient) -> None:
    await _install_gadgets(http)
    body = {"apiVersion": "example.com/v1beta1", "kind": "Gadget", "metadata": {"name": "t"}}
    created = await http.post(GADGETS.format(v="v1beta1"), json={**body, "spec": {"replicas": 4}})
    assert created.status_code == 201
    warning = created.headers.get("warning", "")
    assert "example.com/v1beta1 Gadget is deprecated; use example.com/v1 Gadget" in warning
    got = (await http.get(f"{GADGETS.format(v='v1')}/t")).json()
    assert got["apiVersion"] == "example.com/v1"
    listed = (await http.get(GADGETS.format(v="v1beta1"))).json()
    assert [i["apiVersion"] for i in listed["items"]] == ["example.com/v1beta1"]
    patched = await http.patch(
        f"{GADGETS.format(v='v1beta1')}/t",
        content=b'{"spec":{"message":"m"}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["apiVersion"] == "example.com/v1beta1"
    groups = (await http.get("/apis/example.com")).json()
    assert groups["preferredVersion"]["version"] == "v1"
    table = (
        await http.get(
            GADGETS.format(v="v1"),
            headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
    ).json()
    names = [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]]
    assert names == [
        ("Name", "string", 0),
        ("Replicas", "integer", 0),
        ("Mode", "string", 1),
        ("Created", "date", 0),
    ]
    assert table["rows"][0]["cells"][:3] == ["t", 4, "fast"]
    crd = (
        await http.get(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
        )
    ).json()
    assert crd["status"]["storedVersions"] == ["v1"]


async def test_default_age_column_and_broken_crds(http: httpx.AsyncClient) -> None:
    await _install_gadgets(
        http,
        gadget_crd(
            [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": GADGET_SCHEMA},
                }
            ]
        ),
    )
    await http.post(
        GADGETS.format(v="v1"),
        json={"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "a"}},
    )
    table = (
        await http.get(
            GADGETS.format(v="v1"),
            headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
    ).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    # without a status subresource, status is an ordinary field: it bumps generation
    current = (await http.get(f"{GADGETS.format(v='v1')}/a")).json()
    assert current["metadata"]["generation"] == 1
    updated = await http.put(
        f"{GADGETS.format(v='v1')}/a", json={**current, "status": {"replicas": 1}}
    )
    assert updated.json()["status"] == {"replicas": 1}
    assert updated.json()["metadata"]["generation"] == 2
    broken = gadget_crd(
        [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"properties": {"a": {"type": "integer", "default": "x"}}}
                        },
                    }
                },
            },
            {
                "name": "v2",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            },
        ]
    )
    broken["metadata"]["name"] = "other.example.com"
    refused = await http.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=broken
    )
    assert refused.status_code == 422
    fields = {c["field"] for c in refused.json()["details"]["causes"]}
    assert {
        "metadata.name",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].default",
        "spec.versions",
    } <= fields, fields


async def test_openapi_v3_publishes_the_crd_schema(http: httpx.AsyncClient) -> None:
    await _install_gadgets(http)
    root = (await http.get("/openapi/v3")).json()["paths"]
    first = root["apis/example.com/v1"]["serverRelativeURL"]
    doc = (await http.get(first)).json()
    schema = doc["components"]["schemas"]["com.example.v1.Gadget"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "version": "v1", "kind": "Gadget"}
    ]
    assert schema["properties"]["spec"]["properties"]["message"]["type"] == "string"
    assert schema["properties"]["metadata"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    }
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}"]["patch"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert "/apis/example.com/v1/namespaces/{namespace}/gadgets/{name}/status" in doc["paths"]
    await _add_gadget_field(http, "colour", {"type": "string"})
    with trio.fail_after(10):
        while True:
            root = (await http.get("/openapi/v3")).json()["paths"]
            if root["apis/example.com/v1"]["serverRelativeURL"] != first:
                break
            await trio.sleep(0.05)
    doc = (await http.get(root["apis/example.com/v1"]["serverRelativeURL"])).json()
    spec = doc["components"]["schemas"]["com.example.v1.Gadget"]["properties"]["spec"]
    assert "colour" in spec["properties"]


async def test_defaults_on_read_and_schema_bounds(http: httpx.AsyncClient) -> None:
    """A default added to the CRD later shows on objects stored before it (upstream
    defaults on read from storage too); bounds are checked with kube-openapi's words."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 5},
                    "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
                    "tags": {
                        "type": "array",
                        "maxItems": 2,
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "string"},
                    },
                },
            }
        },
    }
    crd = gadget_crd(
        [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}]
    )
    await _install_gadgets(http, crd)
    url = GADGETS.format(v="v1")
    body = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "old"}}
    assert (await http.post(url, json={**body, "spec": {"size": 2}})).status_code == 201
    bad = await http.post(
        url,
        json={
            **body,
            "metadata": {"name": "bad"},
            "spec": {"size": 0, "name": "ABCD", "tags": ["a", "a", "b"]},
        },
    )
    assert bad.status_code == 422
    messages = {c["field"]: c["message"] for c in bad.json()["details"]["causes"]}
    assert messages["spec.size"] == (
        "Invalid value: 0: spec.size in body should be greater than or equal to 1"
    )
    assert messages["spec.name"] in (
        "Too long: may not be more than 3 bytes",
        "Invalid value: \"ABCD\": spec.name in body should match '^[a-z]+$'",
    )
    assert messages["spec.tags"] == "Too many: 3: must have at most 2 items"
    assert messages["spec.tags[1]"] == 'Duplicate value: "a"'
    await _add_gadget_field(http, "colour", {"type": "string", "default": "red"})
    with trio.fail_after(10):
        while (await http.get(f"{url}/old")).json()["spec"].get("colour") != "red":
            await trio.sleep(0.05)
    listed = (await http.get(url)).json()["items"]
    assert listed[0]["spec"] == {"size": 2, "colour": "red"}


async def test_name_conflicts_are_reported(http: httpx.AsyncClient) -> None:
    """A CRD whose kind another CRD of the group serves is NamesAccepted=False and not
    served; it is served once the other one is gone."""
    await _install_gadgets(http)
    rival = gadget_crd()
    rival["metadata"]["name"] = "gizmos.example.com"
    rival["spec"]["names"] = {"plural": "gizmos", "singular": "gizmo", "kind": "Gadget"}
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert (await http.post(crds, json=rival)).status_code == 201

    async def conditions() -> dict[str, tuple[str, str]]:
        crd = (await http.get(f"{crds}/gizmos.example.com")).json()
        return {
            c["type"]: (c["status"], c["reason"])
            for c in (crd.get("status") or {}).get("conditions") or []
        }

    with trio.fail_after(10):
        while not await conditions():
            await trio.sleep(0.05)
    assert await conditions() == {
        "NamesAccepted": ("False", "KindConflict"),
        "Established": ("False", "NotAccepted"),
    }
    assert (await http.get("/apis/example.com/v1/namespaces/default/gizmos")).status_code == 404
    await http.delete(f"{crds}/gadgets.example.com")
    with trio.fail_after(10):
        while (await conditions()).get("Established") != ("True", "InitialNamesAccepted"):
            await trio.sleep(0.05)
    assert (await http.get("/apis/example.com/v1/namespaces/default/gizmos")).status_code == 200


async def test_crd_deletion_waits_for_its_objects_finalizers(http: httpx.AsyncClient) -> None:
    """Deleting a CRD marks it Terminating and deletes its objects through the API, so
    their finalizers hold it (as an operator's would); creates are refused meanwhile."""
    await _install_gadgets(http)
    url = GADGETS.format(v="v1")
    body = {"apiVersion": "example.com/v1", "kind": "Gadget"}
    held = {**body, "metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}}
    assert (await http.post(url, json=held)).status_code == 201
    crd_url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"
    deleted = await http.delete(crd_url)
    assert deleted.status_code == 200
    assert "customresourcecleanup.apiextensions.k8s.io" in deleted.json()["metadata"]["finalizers"]
    with trio.fail_after(10):
        while not (await http.get(f"{url}/held")).json()["metadata"].get("deletionTimestamp"):
            await trio.sleep(0.05)
    crd = (await http.get(crd_url)).json()
    conditions = {c["type"]: c["reason"] for c in crd["status"]["conditions"]}
    assert conditions["Terminating"] == "InstanceDeletionInProgress"
    refused = await http.post(url, json={**body, "metadata": {"name": "late"}})
    assert refused.status_code == 405
    assert "terminating" in refused.json()["message"]
    released = await http.patch(
        f"{url}/held",
        content=b'{"metadata":{"finalizers":null}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert released.status_code == 200
    with trio.fail_after(10):
        while (await http.get(crd_url)).status_code != 404:
            await trio.sleep(0.05)
        while (await http.get("/apis/example.com/v1")).status_code != 404:
            await trio.sleep(0.05)
