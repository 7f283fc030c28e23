"""The built-in IngressClass and DefaultIngressClass admission, on a real API server."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.api.ingress import DEFAULT_CLASS_ANNOTATION, INGRESS_CLASS, INGRESS_CONTROLLER
from kubetrio.client import Client
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.plugins import load
from kubetrio.store import open_store

from .objects import ingress, path

INGRESSES = "networking.k8s.io/v1"


KUBECTLS = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent
"""Where kubectl 1.27 and 1.33 are installed, beside ``kubectl``."""


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with (
        open_store(f"sqlite://{tmp_path}/s.db") as store,
        open_cluster(
            store, plugins=load(only=["admission"]), controllers=False, scheduler=False
        ) as cluster,
    ):
        yield cluster


@pytest.fixture
def client(cluster: Cluster) -> Client:
    return cluster.client


def _new(name: str, *, class_name: str | None) -> dict[str, Any]:
    """An Ingress to create (no server-set fields)."""
    obj = ingress(name, [{"host": "a.io", "paths": [path("/", "web")]}], class_name=class_name)
    for field in ("uid", "creationTimestamp"):
        del obj["metadata"][field]
    return obj


async def test_the_builtin_class_is_the_default(client: Client) -> None:
    found = await client.get(INGRESSES, "ingressclasses", INGRESS_CLASS)
    assert found["spec"] == {"controller": INGRESS_CONTROLLER}
    assert found["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true"


async def test_new_ingresses_get_the_default_class(client: Client) -> None:
    made = await client.create(
        INGRESSES, "ingresses", _new("a", class_name=None), namespace="default"
    )
    assert made["spec"]["ingressClassName"] == INGRESS_CLASS
    # An explicit class, and the old annotation, are kept as given.
    other = await client.create(
        INGRESSES, "ingresses", _new("b", class_name="traefik"), namespace="default"
    )
    assert other["spec"]["ingressClassName"] == "traefik"
    legacy = _new("c", class_name=None)
    legacy["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    kept = await client.create(INGRESSES, "ingresses", legacy, namespace="default")
    assert "ingressClassName" not in kept["spec"]


async def _defaulted_to(client: Client, expected: str | None) -> None:
    """Admission reads a cache: wait until a new Ingress gets ``expected`` (dry run)."""
    with trio.fail_after(10):
        while True:
            made = await client.create(
                INGRESSES,
                "ingresses",
                _new("x", class_name=None),
                namespace="default",
                dry_run=True,
            )
            if made["spec"].get("ingressClassName") == expected:
                return
            await trio.sleep(0.05)


async def test_the_newest_default_wins_and_none_leaves_it_unset(client: Client) -> None:
    await client.create(
        INGRESSES,
        "ingressclasses",
        {
            "apiVersion": INGRESSES,
            "kind": "IngressClass",
            "metadata": {"name": "newer", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": "example.com/other"},
        },
    )
    await _defaulted_to(client, "newer")
    for name in ("newer", INGRESS_CLASS):
        await client.delete(INGRESSES, "ingressclasses", name)
    await _defaulted_to(client, None)


@pytest.mark.parametrize("version", ["1.27", "1.33"])
async def test_kubectl_columns(cluster: Cluster, version: str) -> None:
    made = await cluster.client.create(
        INGRESSES,
        "ingresses",
        _new("site", class_name=None)
        | {"spec": {"rules": [{"host": "a.io"}, {"host": "b.io"}], "tls": [{"hosts": ["a.io"]}]}},
        namespace="default",
    )
    made["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}}
    await cluster.client.update(
        INGRESSES, "ingresses", made, namespace="default", subresource="status"
    )

    async def kubectl(*args: str) -> list[list[str]]:
        argv = [str(KUBECTLS / f"kubectl.{version}"), "--kubeconfig", "/dev/null"]
        done = await trio.run_process(
            [*argv, "--server", cluster.url, *args], capture_stdout=True, capture_stderr=True
        )
        return [line.split() for line in done.stdout.decode().splitlines()]

    ingresses = await kubectl("get", "ingress", "-n", "default")
    assert ingresses[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert ingresses[1][:6] == [
        "site",
        INGRESS_CLASS,
        "a.io,b.io",
        "10.0.0.1,10.0.0.2",
        "80,",
        "443",
    ]
    classes = await kubectl("get", "ingressclass")
    assert classes[0] == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert classes[1][:3] == [INGRESS_CLASS, INGRESS_CONTROLLER, "<none>"]
