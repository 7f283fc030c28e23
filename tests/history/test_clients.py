"""History through clients we did not write: ``kubectl history`` (the plugin installed in
the venv's bin, found by kubectl 1.27 and 1.33 on PATH), ``kubectl get --raw`` and the
official Python client's raw ``call_api``; and ``kubetrio history`` itself."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from kubernetes import client as k8s

from kubetrio.cluster import Cluster
from kubetrio.pki import ClusterPKI
from tests.auth.conftest import until_allowed

from .conftest import as_user, kubeconfig_for

BIN = Path(sys.executable).parent
_KUBECTL_DIR = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent
KUBECTLS = [str(_KUBECTL_DIR / v) for v in ("kubectl.1.27", "kubectl.1.33")]


async def run(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    """Run a command with the venv's bin first on PATH and ``kubeconfig`` as KUBECONFIG."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(kubeconfig),
        "HOME": str(kubeconfig.parent),
        "COLUMNS": "200",
    }
    with trio.fail_after(120):
        result = await trio.run_process(
            list(args), capture_stdout=True, capture_stderr=True, check=False, env=env
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def _story(cluster: Cluster) -> list[str]:
    """A ConfigMap written by jane, changed by bob, deleted by jane: its revisions."""
    jane, bob = as_user(cluster, "jane-token"), as_user(cluster, "bob-token")
    await until_allowed(lambda: jane.list("v1", "configmaps", namespace="team"))
    await until_allowed(lambda: bob.list("v1", "configmaps", namespace="team"))
    cm = await jane.create(
        "v1",
        "configmaps",
        {"metadata": {"name": "settings"}, "data": {"mode": "a"}},
        namespace="team",
    )
    cm["data"]["mode"] = "b"
    changed = await bob.update("v1", "configmaps", cm, namespace="team")
    gone = await jane.delete("v1", "configmaps", "settings", namespace="team")
    return [cm["metadata"]["resourceVersion"], changed["metadata"]["resourceVersion"],
            gone["metadata"]["resourceVersion"]]  # fmt: skip


@pytest.mark.parametrize("kubectl", KUBECTLS)
async def test_kubectl_history_plugin(
    cluster: Cluster, pki: ClusterPKI, tmp_path: Path, kubectl: str
) -> None:
    created, changed, deleted = await _story(cluster)
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", cluster, pki, "jane-token")

    code, out, err = await run(kubeconfig, kubectl, "plugin", "list")
    assert str(BIN / "kubectl-history") in out, out + err

    code, out, err = await run(kubeconfig, kubectl, "history", "cm/settings", "-n", "team")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (deleted, "DELETED", "jane"),
        (changed, "MODIFIED", "bob"),
        (created, "ADDED", "jane"),
    ]
    assert rows[1][-1] == "data.mode"  # the changed field

    code, out, err = await run(
        kubeconfig,
        kubectl,
        "history",
        "configmap/settings",
        "-n",
        "team",
        "--diff",
        f"{created}..{changed}",
    )
    assert code == 0, err
    assert out.splitlines()[1:] == ["~ data.mode: a → b"]

    code, out, err = await run(
        kubeconfig, kubectl, "history", "cm/settings", "-n", "team", "-o", "json"
    )
    listed = json.loads(out)
    assert [i["user"]["username"] for i in listed["items"]] == ["jane", "bob", "jane"]

    # get --raw reads the subresource as any path.
    path = "/api/v1/namespaces/team/configmaps/settings/history"
    code, out, err = await run(kubeconfig, kubectl, "get", "--raw", f"{path}/{changed}")
    assert code == 0, err
    assert json.loads(out)["object"]["data"] == {"mode": "b"}

    # Unknown objects and other namespaces: one line from the server's Status, exit 1.
    code, out, err = await run(kubeconfig, kubectl, "history", "cm/nope", "-n", "team")
    assert code == 1 and 'Error from server (NotFound): configmaps "nope" not found' in err
    code, out, err = await run(kubeconfig, kubectl, "history", "cm/settings", "-n", "other")
    assert code == 1 and "(Forbidden)" in err
    code, out, err = await run(kubeconfig, kubectl, "history", "widgets/x", "-n", "team")
    assert code == 1 and 'the server doesn\'t have a resource type "widgets"' in err

    # Restore the deleted ConfigMap; kubectl sees it again.
    code, out, err = await run(
        kubeconfig, kubectl, "history", "cm/settings", "-n", "team", "restore", changed
    )
    assert code == 0, err
    code, out, err = await run(
        kubeconfig, kubectl, "get", "cm/settings", "-n", "team", "-o", "json"
    )
    assert json.loads(out)["data"] == {"mode": "b"}

    # As of a time: the object between the create and the change.
    items = listed["items"]
    code, out, err = await run(
        kubeconfig,
        kubectl,
        "history",
        "cm/settings",
        "-n",
        "team",
        "--at",
        items[2]["time"],
        "-o",
        "json",
    )
    assert code == 0, err
    assert json.loads(out) == items[2]["object"]


def _python_client_reads(url: str, ca: str, token: str, name: str) -> tuple[Any, int]:
    configuration = k8s.Configuration()
    configuration.host = url
    configuration.ssl_ca_cert = ca
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}

    def raw_get(api: k8s.ApiClient, path: str, **path_params: str) -> Any:
        params = api.param_serialize(
            "GET", path, path_params=path_params, auth_settings=["BearerToken"]
        )
        response = api.call_api(*params)
        response.read()
        return api.response_deserialize(response, {"200": "object"}).data

    with k8s.ApiClient(configuration) as api:
        listed = raw_get(
            api,
            "/api/v1/namespaces/{namespace}/configmaps/{name}/history",
            namespace="team",
            name=name,
        )
        try:
            raw_get(api, "/api/v1/namespaces/other/configmaps/x/history")
        except k8s.ApiException as exc:
            return listed, exc.status
    return listed, 0


async def test_python_client_raw_calls(cluster: Cluster, pki: ClusterPKI) -> None:
    created, changed, deleted = await _story(cluster)
    ca = str(pki.ca.files.cert_file)
    listed, refused = await trio.to_thread.run_sync(
        _python_client_reads, cluster.url, ca, "bob-token", "settings"
    )
    assert listed["kind"] == "RevisionList"
    assert [i["revision"] for i in listed["items"]] == [deleted, changed, created]
    assert refused == 403


async def test_kubetrio_history_command(cluster: Cluster, pki: ClusterPKI, tmp_path: Path) -> None:
    _, changed, _ = await _story(cluster)
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", cluster, pki, "bob-token")
    kubetrio = str(BIN / "kubetrio")
    code, out, err = await run(
        kubeconfig,
        kubetrio,
        "history",
        "cm/settings",
        "-n",
        "team",
        "--diff",
        changed,
        "-o",
        "yaml",
    )
    assert code == 0, err
    assert "path: data.mode" in out and "old: a" in out and "new: b" in out
    code, out, err = await run(
        kubeconfig, kubetrio, "history", "cm/settings", "-n", "team", "--at", "yesterday"
    )
    assert code == 1 and "--at 'yesterday' is not an RFC 3339 time" in err
