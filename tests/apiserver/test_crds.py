"""CustomResourceDefinitions are served like built-in kinds, by kubectl and the client."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import trio

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, open_apiserver
from kubetrio.plugins import hookimpl
from kubetrio.providers import ResourceDefinition
from kubetrio.store import open_store

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
            "categories": ["all"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}
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
