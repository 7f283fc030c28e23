"""kubectl 1.27 and 1.33, unmodified, against a ``kubetrio up`` cluster.

Each test runs with both binaries (parametrized): the commands users type every day —
wait, events, discovery, proxy, raw GETs, tokens, rollouts, label/annotate/edit, replace,
watching output, output formats and describe.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.compat.kit import KUBECTL_DIR, CompatCluster
from tests.kit import wait_until

VERSIONS = pytest.mark.parametrize("version", ["1.27", "1.33"])

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox
        command: ["sleep", "3600"]
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  labels: {app: sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo started; sleep 3600"]
"""


def _b64url_json(segment: str) -> dict[str, object]:
    padded = segment + "=" * (-len(segment) % 4)
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


@VERSIONS
def test_wait_for_condition_available_and_delete(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, version=version)
    out = k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    assert "deployment.apps/web condition met" in out
    k("delete", "-n", namespace, "deployment/web", "--wait=false", version=version)
    out = k(
        "wait",
        "-n",
        namespace,
        "--for=delete",
        "deployment/web",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    # kubectl prints "condition met" when it saw the deletion, nothing when already gone.
    assert "condition met" in out or out == ""
    assert k("get", "-n", namespace, "deployment/web", check=False, version=version).returncode


@VERSIONS
def test_wait_for_jsonpath_and_pod_ready(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=POD, version=version)
    out = k(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.phase}=Running",
        "pod/sleeper",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    assert "pod/sleeper condition met" in out
    out = k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=sleeper",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    assert "pod/sleeper condition met" in out


@VERSIONS
def test_events(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=POD, version=version)
    # `kubectl events` is beta (a top-level command) since 1.26.
    out = wait_until(
        lambda: (
            (text := k("events", "-n", namespace, version=version).stdout)
            and "Scheduled" in text
            and text
        ),
        timeout=60,
        what="a Scheduled event in kubectl events",
    )
    assert "pod/sleeper" in out.lower() or "Pod/sleeper" in out
    assert re.search(r"LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE", out), out
    out = k("events", "-n", namespace, "--for", "pod/sleeper", version=version).stdout
    assert "Scheduled" in out
    out = k("get", "events", "-n", namespace, version=version).stdout
    assert "Scheduled" in out


@VERSIONS
def test_discovery_commands(cluster: CompatCluster, version: str) -> None:
    k = cluster.kubectl
    versions = k("api-versions", version=version).stdout.split()
    for group_version in ("v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"):
        assert group_version in versions
    resources = k("api-resources", version=version).stdout
    assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", resources, re.M), (
        resources
    )
    assert re.search(r"^pods\s+po\s+v1\s+true\s+Pod$", resources, re.M)
    assert re.search(r"^nodes\s+no\s+v1\s+false\s+Node$", resources, re.M)
    names = k("api-resources", "--namespaced=false", "-o", "name", version=version).stdout.split()
    assert "namespaces" in names and "pods" not in names
    wide = k("api-resources", "--api-group=apps", "-o", "wide", version=version).stdout
    assert "VERBS" in wide and "statefulsets" in wide


@VERSIONS
def test_get_raw(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("create", "configmap", "raw", "-n", namespace, "--from-literal=a=1", version=version)
    got = json.loads(
        k("get", "--raw", f"/api/v1/namespaces/{namespace}/configmaps/raw", version=version).stdout
    )
    assert got["kind"] == "ConfigMap" and got["data"] == {"a": "1"}
    listed = json.loads(
        k(
            "get", "--raw", f"/api/v1/namespaces/{namespace}/configmaps?limit=1", version=version
        ).stdout
    )
    assert listed["kind"] == "ConfigMapList"
    assert json.loads(k("get", "--raw", "/version", version=version).stdout)["major"] == "1"
    missing = k(
        "get", "--raw", "/api/v1/namespaces/nope/configmaps/x", check=False, version=version
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr


@VERSIONS
def test_proxy(cluster: CompatCluster, namespace: str, version: str) -> None:
    cluster.kubectl("create", "configmap", "via-proxy", "-n", namespace, version=version)
    with cluster.kubectl_proxy(version=version) as base:
        url = f"{base}/api/v1/namespaces/{namespace}/configmaps/via-proxy"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert json.load(response)["metadata"]["name"] == "via-proxy"
        with urllib.request.urlopen(f"{base}/apis/apps/v1", timeout=10) as response:
            assert json.load(response)["groupVersion"] == "apps/v1"


def test_auth_whoami_is_the_admin_certificate(cluster: CompatCluster) -> None:
    """kubectl presents the kubeconfig's client certificate over HTTPS: the server sees the
    admin (its CN) in system:masters (its O). kubectl 1.27 has no v1 SelfSubjectReview."""
    whoami = cluster.kubectl("auth", "whoami", "-o", "json", version="1.33")
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == "kubernetes-admin"
    assert info["groups"] == ["system:masters", "system:authenticated"]


@VERSIONS
def test_plain_http_is_refused(cluster: CompatCluster, version: str) -> None:
    """The API is HTTPS only: kubectl pointed at http:// gets Go's plain-text 400, which it
    reports as kube-apiserver's (the body is no Status)."""
    plain = cluster.server.replace("https://", "http://")
    refused = cluster.kubectl("--server", plain, "get", "ns", check=False, version=version)
    assert refused.returncode != 0
    assert "(BadRequest)" in refused.stderr
    assert "the server rejected our request for an unknown reason" in refused.stderr


@VERSIONS
def test_create_token(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("create", "serviceaccount", "robot", "-n", namespace, version=version)
    token = k("create", "token", "robot", "-n", namespace, version=version).stdout.strip()
    header, payload, signature = token.split(".")
    assert _b64url_json(header)["alg"] == "RS256" and signature
    claims = _b64url_json(payload)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:robot"
    assert claims["iss"] and claims["aud"]
    k8s = claims["kubernetes.io"]
    assert isinstance(k8s, dict)
    assert k8s["namespace"] == namespace
    assert k8s["serviceaccount"]["name"] == "robot"
    uid = k("get", "sa", "robot", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    assert k8s["serviceaccount"]["uid"] == uid
    exp, iat = claims["exp"], claims["iat"]
    assert isinstance(exp, int) and isinstance(iat, int)
    assert exp - iat == 3600  # kubectl's default request: no duration → the server's 1h

    token = k(
        "create",
        "token",
        "robot",
        "-n",
        namespace,
        "--duration=2h",
        "--audience=vault",
        "--audience=api",
        version=version,
    ).stdout.strip()
    claims = _b64url_json(token.split(".")[1])
    assert claims["aud"] == ["vault", "api"]
    assert claims["exp"] - claims["iat"] == 7200

    missing = k("create", "token", "ghost", "-n", namespace, check=False, version=version)
    assert missing.returncode != 0 and "not found" in missing.stderr


@VERSIONS
def test_rollout_restart_and_status(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, version=version)
    out = k(
        "rollout",
        "status",
        "-n",
        namespace,
        "deployment/web",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    assert 'deployment "web" successfully rolled out' in out
    out = k("rollout", "restart", "-n", namespace, "deployment/web", version=version).stdout
    assert "deployment.apps/web restarted" in out
    annotations = json.loads(
        k(
            "get",
            "-n",
            namespace,
            "deployment/web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations}",
        ).stdout
    )
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    out = k(
        "rollout",
        "status",
        "-n",
        namespace,
        "deployment/web",
        "--timeout=90s",
        version=version,
        timeout=120,
    ).stdout
    assert 'deployment "web" successfully rolled out' in out
    history = k("rollout", "history", "-n", namespace, "deployment/web", version=version).stdout
    assert re.search(r"^2\s", history, re.M), history


@VERSIONS
def test_label_annotate(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("create", "configmap", "tagged", "-n", namespace, version=version)
    assert "labeled" in k("label", "-n", namespace, "cm/tagged", "tier=db", version=version).stdout
    refused = k("label", "-n", namespace, "cm/tagged", "tier=web", check=False, version=version)
    assert refused.returncode != 0 and "already has a value" in refused.stderr
    k("label", "-n", namespace, "cm/tagged", "tier=web", "--overwrite", version=version)
    k("annotate", "-n", namespace, "cm/tagged", "owner=alice", version=version)
    meta = json.loads(k("get", "-n", namespace, "cm/tagged", "-o", "json").stdout)["metadata"]
    assert meta["labels"] == {"tier": "web"} and meta["annotations"]["owner"] == "alice"
    assert "tagged" in k("get", "cm", "-n", namespace, "-l", "tier=web", version=version).stdout
    k("label", "-n", namespace, "cm/tagged", "tier-", version=version)
    k("annotate", "-n", namespace, "cm/tagged", "owner-", version=version)
    meta = json.loads(k("get", "-n", namespace, "cm/tagged", "-o", "json").stdout)["metadata"]
    assert not meta.get("labels") and "owner" not in (meta.get("annotations") or {})


@VERSIONS
def test_edit_with_editor_script(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("create", "configmap", "edited", "-n", namespace, "--from-literal=color=red", version=version)
    env = {**cluster.env, "KUBE_EDITOR": "sed -i s/red/blue/", "EDITOR": "sed -i s/red/blue/"}
    result = subprocess.run(
        [
            str(KUBECTL_DIR / f"kubectl.{version}"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "edit",
            "-n",
            namespace,
            "configmap/edited",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "configmap/edited edited" in result.stdout
    got = k("get", "-n", namespace, "cm/edited", "-o", "jsonpath={.data.color}").stdout
    assert got == "blue"


@VERSIONS
def test_replace_force(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=POD, version=version)
    uid = k("get", "-n", namespace, "pod/sleeper", "-o", "jsonpath={.metadata.uid}").stdout
    # A pod's command is immutable: only --force (delete, then create) can change it.
    changed = POD.replace("echo started", "echo restarted")
    refused = k("replace", "-n", namespace, "-f", "-", input=changed, check=False, version=version)
    assert refused.returncode != 0 and "pod updates may not change fields" in refused.stderr
    out = k(
        "replace",
        "--force",
        "--grace-period=1",
        "-n",
        namespace,
        "-f",
        "-",
        input=changed,
        version=version,
        timeout=120,
    ).stdout
    assert "pod/sleeper replaced" in out
    new = json.loads(k("get", "-n", namespace, "pod/sleeper", "-o", "json").stdout)
    assert new["metadata"]["uid"] != uid
    assert "restarted" in new["spec"]["containers"][0]["command"][2]


@VERSIONS
def test_get_watch_output(cluster: CompatCluster, namespace: str, version: str) -> None:
    watcher = subprocess.Popen(
        [
            str(KUBECTL_DIR / f"kubectl.{version}"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "get",
            "configmaps",
            "-n",
            namespace,
            "-l",
            "watched=yes",
            "-w",
            "--output-watch-events",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        time.sleep(1)  # let the watch start; events after it are streamed either way
        k = cluster.kubectl
        k("create", "configmap", "w1", "-n", namespace)
        k("label", "-n", namespace, "cm/w1", "watched=yes")
        k("create", "configmap", "w2", "-n", namespace)  # not matching: never shown
        k("delete", "-n", namespace, "cm/w1")
        assert watcher.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("DELETED") for line in lines):
            line = watcher.stdout.readline()
            assert line, (
                f"watch ended early: {lines} {watcher.stderr.read() if watcher.stderr else ''}"
            )
            lines.append(line)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    events = [line.split()[:2] for line in lines if line.split() and line.split()[0] != "EVENT"]
    assert ["ADDED", "w1"] in events
    assert ["DELETED", "w1"] in events
    assert all(name == "w1" for _, name in events)


@VERSIONS
def test_output_formats(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    for name in ("one", "two"):
        k("create", "configmap", name, "-n", namespace, f"--from-literal=k={name}", version=version)
    out = k(
        "get",
        "cm",
        "-n",
        namespace,
        "-l",
        "!missing",
        "--field-selector=metadata.name!=kube-root-ca.crt",
        "-o",
        "custom-columns=NAME:.metadata.name,VALUE:.data.k",
        "--sort-by=.metadata.name",
        version=version,
    ).stdout
    assert out.split("\n")[0].split() == ["NAME", "VALUE"]
    assert [line.split() for line in out.strip().split("\n")[1:]] == [
        ["one", "one"],
        ["two", "two"],
    ]
    out = k(
        "get",
        "cm",
        "one",
        "two",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.data.k};{end}",
        version=version,
    ).stdout
    assert out == "one=one;two=two;"
    out = k(
        "get",
        "cm",
        "one",
        "-n",
        namespace,
        "-o",
        'go-template={{.metadata.name}}:{{index .data "k"}}',
        version=version,
    ).stdout
    assert out == "one:one"
    out = k("get", "cm", "-n", namespace, "-o", "name", version=version).stdout.split()
    assert "configmap/one" in out and "configmap/two" in out
    wide = k("get", "pods", "-n", namespace, "-o", "wide", version=version)
    assert wide.returncode == 0


@VERSIONS
def test_describe(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, version=version)
    k("expose", "-n", namespace, "deployment/web", "--port=80", version=version)
    k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
        timeout=90,
    )
    pod = k("get", "pods", "-n", namespace, "-l", "app=web", "-o", "name").stdout.split()[0]

    def described(*what: str) -> str:
        return k("describe", "-n", namespace, *what, version=version).stdout

    out = wait_until(
        lambda: "Started" in (text := described(pod)) and text,
        timeout=60,
        what="the pod's Started event in describe",
    )
    for field in ("Name:", "Namespace:", "Node:", "Status:", "IP:", "Containers:", "Events:"):
        assert field in out, (field, out)
    assert re.search(r"Normal\s+Scheduled", out), out
    out = described("deployment/web")
    for field in ("Replicas:", "StrategyType:", "Pod Template:", "Conditions:", "Events:"):
        assert field in out, (field, out)
    assert "ScalingReplicaSet" in out
    out = described("service/web")
    for field in ("Type:", "ClusterIP", "IP:", "Port:", "Endpoints:"):
        assert field in out, (field, out)
    node = k("get", "nodes", "-o", "name").stdout.split()[0]
    out = k("describe", node, version=version).stdout
    for field in (
        "Roles:",
        "Conditions:",
        "Capacity:",
        "Allocatable:",
        "System Info:",
        "Non-terminated Pods:",
    ):
        assert field in out, (field, out)


@VERSIONS
def test_cronjob_job_from_it_and_wait_complete(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    k = cluster.kubectl
    k(
        "create",
        "cronjob",
        "tick",
        "-n",
        namespace,
        "--image=busybox",
        "--schedule=0 0 1 1 *",
        "--",
        "sh",
        "-c",
        "echo tick",
        version=version,
    )
    out = k("create", "job", "manual", "-n", namespace, "--from=cronjob/tick", version=version)
    assert "job.batch/manual created" in out.stdout
    out = k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Complete",
        "job/manual",
        "--timeout=60s",
        version=version,
        timeout=90,
    ).stdout
    assert "job.batch/manual condition met" in out
    assert k("logs", "-n", namespace, "job/manual", version=version).stdout == "tick\n"
    owner = k(
        "get", "-n", namespace, "job/manual", "-o", "jsonpath={.metadata.ownerReferences[0].kind}"
    ).stdout
    assert owner == "CronJob"


@VERSIONS
def test_client_side_apply_three_way(cluster: CompatCluster, namespace: str, version: str) -> None:
    """Re-applying without a key removes it (last-applied-configuration), keeps what
    others set, and reports "unchanged" when nothing changes."""
    k = cluster.kubectl
    manifest = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n"
        "data:\n  keep: '1'\n  drop: '2'\n"
    )
    assert (
        "created" in k("apply", "-n", namespace, "-f", "-", input=manifest, version=version).stdout
    )
    k("label", "-n", namespace, "cm/applied", "other=set", version=version)
    out = k(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest.replace("  drop: '2'\n", ""),
        version=version,
    ).stdout
    assert "configured" in out
    got = json.loads(k("get", "-n", namespace, "cm/applied", "-o", "json").stdout)
    assert got["data"] == {"keep": "1"}
    assert got["metadata"]["labels"] == {"other": "set"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    out = k(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest.replace("  drop: '2'\n", ""),
        version=version,
    ).stdout
    assert "unchanged" in out


@VERSIONS
def test_patch_types(cluster: CompatCluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    k(
        "create",
        "deployment",
        "p",
        "-n",
        namespace,
        "--image=busybox",
        "--replicas=0",
        version=version,
    )
    k(
        "patch",
        "-n",
        namespace,
        "deployment/p",
        "--type=strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}',
        version=version,
    )
    names = k(
        "get",
        "-n",
        namespace,
        "deployment/p",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ).stdout.split()
    assert sorted(names) == ["busybox", "side"]
    k(
        "patch",
        "-n",
        namespace,
        "deployment/p",
        "--type=merge",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox"}]}}}}',
        version=version,
    )
    names = k(
        "get",
        "-n",
        namespace,
        "deployment/p",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ).stdout.split()
    assert names == ["only"]
    k(
        "patch",
        "-n",
        namespace,
        "deployment/p",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/patched","value":"json"}]',
        version=version,
    )
    labels = k("get", "-n", namespace, "deployment/p", "-o", "jsonpath={.metadata.labels}").stdout
    assert '"patched":"json"' in labels
    refused = k(
        "patch",
        "-n",
        namespace,
        "deployment/p",
        "--type=json",
        "-p",
        '[{"op":"test","path":"/spec/replicas","value":5}]',
        check=False,
        version=version,
    )
    assert refused.returncode != 0


@VERSIONS
def test_everyday_workload_commands(cluster: CompatCluster, namespace: str, version: str) -> None:
    """set image, scale, autoscale, get all, delete -l, secrets of each type, auth."""
    k = cluster.kubectl
    n = ("-n", namespace)
    k("create", "deployment", "app", *n, "--image=busybox", "--", "sleep", "3600", version=version)
    k("set", "image", *n, "deployment/app", "busybox=busybox:latest", version=version)
    image = k(
        "get", *n, "deployment/app", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).stdout
    assert image == "busybox:latest"
    assert "scaled" in k("scale", *n, "deployment/app", "--replicas=2", version=version).stdout
    k(
        "wait",
        *n,
        "--for=jsonpath={.status.readyReplicas}=2",
        "deployment/app",
        "--timeout=60s",
        version=version,
        timeout=90,
    )
    out = k("autoscale", *n, "deployment/app", "--min=1", "--max=3", version=version).stdout
    assert "autoscaled" in out
    assert "horizontalpodautoscaler" in k("get", "hpa", *n, "-o", "name", version=version).stdout
    everything = k("get", "all", *n, version=version).stdout
    assert "deployment.apps/app" in everything and "replicaset.apps/app-" in everything
    assert "pod/app-" in everything
    k("create", "secret", "generic", "gen", *n, "--from-literal=a=b", version=version)
    k(
        "create",
        "secret",
        "docker-registry",
        "pull",
        *n,
        "--docker-server=r.example",
        "--docker-username=u",
        "--docker-password=p",
        version=version,
    )
    types = k(
        "get", "secrets", *n, "-o", "jsonpath={range .items[*]}{.type} {end}", version=version
    ).stdout.split()
    assert {"Opaque", "kubernetes.io/dockerconfigjson"} <= set(types)
    k("label", *n, "secret/gen", "secret/pull", "batch=x", version=version)
    out = k("delete", *n, "secrets", "-l", "batch=x", version=version).stdout
    assert 'secret "gen" deleted' in out and 'secret "pull" deleted' in out
    assert k("auth", "can-i", "create", "pods", *n, version=version).stdout.strip() == "yes"
    out = k(
        "get", "pods", *n, "--field-selector=status.phase=Running", "--show-labels", version=version
    )
    assert "app=app" in out.stdout


@VERSIONS
def test_cordon_eviction_and_drain(cluster: CompatCluster, namespace: str, version: str) -> None:
    """cordon/uncordon flip spec.unschedulable; pods/eviction deletes a pod; drain evicts
    through it and waits while a PodDisruptionBudget forbids the eviction."""
    k = cluster.kubectl
    node = k("get", "nodes", "-o", "name").stdout.split()[0]
    try:
        assert "cordoned" in k("cordon", node, version=version).stdout
        assert k("get", node, "-o", "jsonpath={.spec.unschedulable}").stdout == "true"
    finally:
        k("uncordon", node, version=version)
    assert k("get", node, "-o", "jsonpath={.spec.unschedulable}").stdout in ("", "false")

    k("apply", "-n", namespace, "-f", "-", input=POD, version=version)
    eviction = json.dumps(
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "sleeper", "namespace": namespace},
        }
    )
    k(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/sleeper/eviction",
        "-f",
        "-",
        input=eviction,
        version=version,
    )
    k(
        "wait",
        "-n",
        namespace,
        "--for=delete",
        "pod/sleeper",
        "--timeout=60s",
        version=version,
        timeout=90,
    )

    k("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, version=version)
    k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
        timeout=90,
    )
    k("create", "pdb", "web", "-n", namespace, "--selector=app=web", "--min-available=1")
    selector = "--pod-selector=app=web,pod-template-hash"
    try:
        blocked = k(
            "drain",
            node.split("/")[1],
            selector,
            "--timeout=8s",
            check=False,
            version=version,
            timeout=60,
        )
        assert blocked.returncode != 0
        assert "disruption budget" in (blocked.stdout + blocked.stderr), blocked
        assert k("get", "pods", "-n", namespace, "-l", "app=web", "-o", "name").stdout.strip()
        k("delete", "pdb", "web", "-n", namespace)
        drained = k(
            "drain", node.split("/")[1], selector, "--timeout=60s", version=version, timeout=90
        )
        assert "evicted" in drained.stdout and "drained" in drained.stdout, drained
    finally:
        k("uncordon", node)


WEB = """\
apiVersion: v1
kind: Pod
metadata:
  name: site
  labels: {app: site}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    command:
    - sh
    - -c
    - >-
      mkdir -p /www/sub && echo hello > /www/index.html && echo deep > /www/sub/x.txt
      && exec httpd -f -p 8080 -h /www
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: site}
spec:
  selector: {app: site}
  ports: [{name: web, port: 80, targetPort: http}]
"""


@VERSIONS
def test_pod_and_service_proxy(cluster: CompatCluster, namespace: str, version: str) -> None:
    """pods/proxy and services/proxy through get --raw and through kubectl proxy."""
    k = cluster.kubectl
    k("apply", "-n", namespace, "-f", "-", input=WEB, version=version)
    k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "pod/site",
        "--timeout=60s",
        version=version,
        timeout=90,
    )
    base = f"/api/v1/namespaces/{namespace}"
    assert k("get", "--raw", f"{base}/pods/site:8080/proxy/", version=version).stdout == "hello\n"
    assert k("get", "--raw", f"{base}/pods/site:http/proxy/sub/x.txt").stdout == "deep\n"
    out = wait_until(
        lambda: k("get", "--raw", f"{base}/services/site:web/proxy/", check=False).stdout,
        timeout=30,
        what="the service's endpoints",
    )
    assert out == "hello\n"
    assert k("get", "--raw", f"{base}/services/site/proxy/sub/x.txt").stdout == "deep\n"
    missing = k("get", "--raw", f"{base}/pods/site:8080/proxy/nope", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    with cluster.kubectl_proxy(version=version) as proxy:
        url = f"{proxy}{base}/services/site:web/proxy/sub/x.txt"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"deep\n"


@VERSIONS
def test_logs_by_selector_kustomize_and_event_fields(
    cluster: CompatCluster, namespace: str, version: str, tmp_path: Path
) -> None:
    k = cluster.kubectl
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\nnamePrefix: k-\ncommonLabels: {made: kustomize}\n"
    )
    out = k("apply", "-n", namespace, "-k", str(tmp_path), version=version).stdout
    assert "configmap/k-base" in out
    assert "k-base" in k("get", "cm", "-n", namespace, "-l", "made=kustomize").stdout
    k("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT, version=version)
    k(
        "wait",
        "-n",
        namespace,
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
        timeout=90,
    )
    k(
        "run",
        "chatty",
        "-n",
        namespace,
        "--image=busybox",
        "--labels=app=web,chatty=yes",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo chatty here; sleep 3600",
    )
    k("wait", "-n", namespace, "--for=condition=Ready", "pod/chatty", "--timeout=60s", timeout=90)
    logs = wait_until(
        lambda: (
            "chatty here"
            in (
                text := k(
                    "logs", "-n", namespace, "-l", "chatty=yes", "--prefix", version=version
                ).stdout
            )
            and text
        ),
        timeout=30,
        what="logs by label",
    )
    assert logs.startswith("[pod/chatty/chatty] chatty here")
    assert k("logs", "-n", namespace, "deployment/web", version=version).returncode == 0
    normal = k(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "type=Normal,reason=Scheduled",
        "-o",
        "jsonpath={range .items[*]}{.reason} {end}",
        version=version,
    ).stdout.split()
    assert normal and set(normal) == {"Scheduled"}
