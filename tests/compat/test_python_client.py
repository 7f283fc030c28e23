"""The official ``kubernetes`` Python client, unmodified, against a ``kubetrio up`` cluster.

Typed APIs for CRUD on core, apps, batch and rbac kinds; ``utils.create_from_yaml`` and
``create_from_directory`` (conflicts reported per object); watches from a resourceVersion
through label selectors, bookmarks; list paging; the four patch types; delete collection;
pod logs (also followed); the DynamicClient; the SharedInformer.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic, utils, watch
from kubernetes.client.rest import ApiException

from tests.compat.kit import CompatCluster, recording_informer
from tests.kit import wait_until

SLEEP_POD_SPEC = {
    "terminationGracePeriodSeconds": 1,
    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
}


@pytest.fixture
def api(cluster: CompatCluster) -> Iterator[client.ApiClient]:
    """An ApiClient from the cluster's kubeconfig, as ``config.load_kube_config`` makes it."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


def _template(
    app: str, restart: str = "Always", command: list[str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {"name": "main", "image": "busybox", "command": command or ["sleep", "3600"]}
        ],
    }
    return {"metadata": {"labels": {"app": app}}, "spec": spec}


def _workloads() -> list[tuple[str, str, dict[str, Any]]]:
    """(API class, snake-case kind, body) for every kind the CRUD test drives."""
    selector = {"matchLabels": {"app": "x"}}
    return [
        ("CoreV1Api", "config_map", {"metadata": {"name": "x"}, "data": {"a": "1"}}),
        ("CoreV1Api", "secret", {"metadata": {"name": "x"}, "data": {"a": "MQ=="}}),
        (
            "CoreV1Api",
            "service",
            {
                "metadata": {"name": "x"},
                "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
            },
        ),
        ("CoreV1Api", "pod", {"metadata": {"name": "x"}, "spec": SLEEP_POD_SPEC}),
        ("CoreV1Api", "service_account", {"metadata": {"name": "x"}}),
        (
            "AppsV1Api",
            "deployment",
            {"metadata": {"name": "x"}, "spec": {"selector": selector, "template": _template("x")}},
        ),
        (
            "AppsV1Api",
            "stateful_set",
            {
                "metadata": {"name": "x"},
                "spec": {"selector": selector, "serviceName": "x", "template": _template("x")},
            },
        ),
        (
            "AppsV1Api",
            "daemon_set",
            {"metadata": {"name": "x"}, "spec": {"selector": selector, "template": _template("x")}},
        ),
        (
            "AppsV1Api",
            "replica_set",
            {
                "metadata": {"name": "x"},
                "spec": {"replicas": 0, "selector": selector, "template": _template("x")},
            },
        ),
        (
            "BatchV1Api",
            "job",
            {
                "metadata": {"name": "x"},
                "spec": {"suspend": True, "template": _template("x", "Never", ["true"])},
            },
        ),
        (
            "BatchV1Api",
            "cron_job",
            {
                "metadata": {"name": "x"},
                "spec": {
                    "schedule": "0 0 1 1 *",
                    "jobTemplate": {"spec": {"template": _template("x", "Never", ["true"])}},
                },
            },
        ),
        (
            "RbacAuthorizationV1Api",
            "role",
            {
                "metadata": {"name": "x"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
            },
        ),
        (
            "RbacAuthorizationV1Api",
            "role_binding",
            {
                "metadata": {"name": "x"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}],
            },
        ),
    ]


@pytest.mark.parametrize(
    ("api_class", "kind", "body"), _workloads(), ids=[w[1] for w in _workloads()]
)
def test_namespaced_crud(
    api: client.ApiClient, namespace: str, api_class: str, kind: str, body: dict[str, Any]
) -> None:
    typed = getattr(client, api_class)(api)
    create = getattr(typed, f"create_namespaced_{kind}")
    read = getattr(typed, f"read_namespaced_{kind}")
    replace = getattr(typed, f"replace_namespaced_{kind}")
    patch = getattr(typed, f"patch_namespaced_{kind}")
    listing = getattr(typed, f"list_namespaced_{kind}")
    delete = getattr(typed, f"delete_namespaced_{kind}")

    created = create(namespace, body)
    assert created.metadata.name == "x" and created.metadata.uid
    assert created.metadata.namespace == namespace
    got = read("x", namespace)
    assert got.metadata.uid == created.metadata.uid
    # Replace the object as read, with a new label (read-modify-write with its version).
    replaced = retry_conflicts(lambda: replace("x", namespace, _fresh_with_label(read, namespace)))
    assert replaced.metadata.labels["replaced"] == "yes"
    patched = patch("x", namespace, {"metadata": {"annotations": {"patched": "yes"}}})
    assert patched.metadata.annotations["patched"] == "yes"
    assert [item.metadata.name for item in listing(namespace).items if item.metadata.name == "x"]
    listed = listing(namespace, label_selector="replaced=yes")
    assert [item.metadata.name for item in listed.items] == ["x"]
    delete("x", namespace, propagation_policy="Background", grace_period_seconds=0)
    wait_until(lambda: _gone(lambda: read("x", namespace)), timeout=30, what=f"{kind} x deleted")


def _fresh_with_label(read: Callable[..., Any], namespace: str) -> Any:
    obj = read("x", namespace)
    obj.metadata.labels = {**(obj.metadata.labels or {}), "replaced": "yes"}
    return obj


def retry_conflicts(write: Callable[[], Any], attempts: int = 5) -> Any:
    """Controllers write too: a replace with a stale version is retried, as clients do."""
    for attempt in range(attempts):
        try:
            return write()
        except ApiException as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def test_cluster_scoped_crud(api: client.ApiClient, namespace: str) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    core = client.CoreV1Api(api)
    name = f"{namespace}-reader"
    role = rbac.create_cluster_role(
        {
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        }
    )
    assert role.rules[0].verbs == ["get", "list"]
    binding = rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        }
    )
    assert binding.role_ref.name == name
    rbac.patch_cluster_role(name, {"metadata": {"labels": {"tier": "x"}}})
    assert [r.metadata.name for r in rbac.list_cluster_role(label_selector="tier=x").items] == [
        name
    ]
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)
    assert _gone(lambda: rbac.read_cluster_role(name))

    ns = core.create_namespace({"metadata": {"name": f"{namespace}-extra"}})
    assert ns.status.phase == "Active"
    core.patch_namespace(ns.metadata.name, {"metadata": {"labels": {"a": "b"}}})
    assert core.read_namespace(ns.metadata.name).metadata.labels["a"] == "b"
    core.delete_namespace(ns.metadata.name)
    wait_until(
        lambda: _gone(lambda: core.read_namespace(ns.metadata.name)),
        timeout=60,
        what="the namespace to finish terminating",
    )


MULTI = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: first}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {selector: {app: web}, ports: [{port: 80}]}
"""


def test_create_from_yaml_and_directory(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(MULTI)
    created = utils.create_from_yaml(api, str(manifest), namespace=namespace)
    kinds = sorted(obj.kind for group in created for obj in group)
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    assert core.read_namespaced_config_map("first", namespace).data == {"a": "1"}
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 1

    # Creating again: every object conflicts and each conflict is reported.
    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_yaml(api, str(manifest), namespace=namespace)
    reasons = [exc.reason for exc in failed.value.api_exceptions]
    assert [exc.status for exc in failed.value.api_exceptions] == [409, 409, 409]
    assert all(reason == "Conflict" or not reason or "Conflict" in reason for reason in reasons)
    assert all('"reason":"AlreadyExists"' in exc.body for exc in failed.value.api_exceptions)

    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-dir}\n")
    (folder / "b.yml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"  # exists: conflicts
    )
    with pytest.raises(utils.FailToCreateError) as failed:
        utils.create_from_directory(api, str(folder), namespace=namespace)
    assert len(failed.value.api_exceptions) == 1
    assert '\\"first\\" already exists' in str(failed.value) or "first" in str(failed.value)
    assert core.read_namespaced_config_map("from-dir", namespace).metadata.name == "from-dir"


def test_watch_from_resource_version_with_labels(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "seen", "labels": {"w": "yes"}}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "unseen", "labels": {"w": "no"}}}
    )
    core.patch_namespaced_config_map("seen", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("seen", namespace)
    events: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="w=yes",
        resource_version=start,
        timeout_seconds=10,
    ):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            stream.stop()
    assert events == [("ADDED", "seen"), ("MODIFIED", "seen"), ("DELETED", "seen")]


def test_watch_bookmarks(api: client.ApiClient, namespace: str) -> None:
    """allow_watch_bookmarks: BOOKMARK events carry only a resourceVersion; the Watch
    helper remembers it so a restarted stream resumes there."""
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    stream = watch.Watch()
    kinds: list[str] = []
    for event in stream.stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=start,
        allow_watch_bookmarks=True,
        timeout_seconds=15,
        _preload_content=False,
    ):
        kinds.append(event["type"])
        if event["type"] == "BOOKMARK":
            assert event["raw_object"]["metadata"]["resourceVersion"]
            stream.stop()
    assert "BOOKMARK" in kinds


def test_list_paging(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for index in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{index}"}})
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(
            namespace, limit=3, _continue=token, label_selector=""
        )
        pages += 1
        names += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count is None or page.metadata.remaining_item_count > 0
    assert pages >= 3
    assert sorted(n for n in names if n.startswith("page-")) == [f"page-{i}" for i in range(7)]
    assert len(names) == len(set(names))


def test_four_patch_types(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "p"}},
                "template": _template("p"),
            },
        },
    )
    # Strategic merge (a dict body): containers merge by name.
    apps.patch_namespaced_deployment(
        "p",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}},
    )
    got = apps.read_namespaced_deployment("p", namespace)
    assert [c.name for c in got.spec.template.spec.containers] == ["main", "side"] or [
        c.name for c in got.spec.template.spec.containers
    ] == ["side", "main"]
    # JSON merge patch: a list is replaced whole.
    apps.patch_namespaced_deployment(
        "p",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "busybox"}]}}}},
        _content_type="application/merge-patch+json",
    )
    got = apps.read_namespaced_deployment("p", namespace)
    assert [c.name for c in got.spec.template.spec.containers] == ["only"]
    # JSON patch: a list body.
    apps.patch_namespaced_deployment(
        "p",
        namespace,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 0},
            {"op": "add", "path": "/metadata/labels", "value": {"patched": "json"}},
        ],
    )
    assert apps.read_namespaced_deployment("p", namespace).metadata.labels == {"patched": "json"}
    # Apply patch (server-side apply): needs a field manager.
    apps.patch_namespaced_deployment(
        "p",
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "p", "annotations": {"applied": "yes"}},
        },
        field_manager="compat-test",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    got = apps.read_namespaced_deployment("p", namespace)
    assert got.metadata.annotations["applied"] == "yes"


def test_delete_collection_with_label_selector(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    for name, keep in (("a", "no"), ("b", "no"), ("c", "yes")):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"keep": keep}}}
        )
    core.delete_collection_namespaced_config_map(namespace, label_selector="keep=no")
    left = sorted(
        item.metadata.name
        for item in core.list_namespaced_config_map(namespace, label_selector="keep").items
    )
    assert left == ["c"]


def test_pod_logs(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "talker"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            "echo one; echo two; sleep 2; echo three; sleep 3600",
                        ],
                    }
                ],
            },
        },
    )
    text = wait_until(
        lambda: "two" in (log := core.read_namespaced_pod_log("talker", namespace)) and log,
        timeout=60,
        what="the pod's log",
    )
    assert text.startswith("one\ntwo\n")
    assert core.read_namespaced_pod_log("talker", namespace, tail_lines=1) in ("two\n", "three\n")
    response = core.read_namespaced_pod_log(
        "talker", namespace, follow=True, _preload_content=False
    )
    lines: list[bytes] = []
    try:
        for line in response.stream(amt=1024):
            lines.append(line)
            if b"three" in b"".join(lines):
                break
    finally:
        response.release_conn()
    assert b"".join(lines).startswith(b"one\ntwo\n")
    # The Watch helper streams a followed log line by line, as the client documents.
    seen: list[str] = []
    stream = watch.Watch()
    for line in stream.stream(core.read_namespaced_pod_log, "talker", namespace, follow=True):
        seen.append(line)
        if line == "three":
            stream.stop()
    assert seen == ["one", "two", "three"]


def test_dynamic_client(api: client.ApiClient, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api)
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and "scale" in deployments.subresources
    start = configmaps.get(namespace=namespace).metadata.resourceVersion
    created = configmaps.create(
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}},
        namespace=namespace,
    )
    assert created.metadata.name == "dyn"
    patched = configmaps.patch(
        body={"data": {"k": "v"}},
        name="dyn",
        namespace=namespace,
        content_type="application/merge-patch+json",
    )
    assert patched.data.k == "v"
    assert configmaps.get(name="dyn", namespace=namespace).data.k == "v"
    configmaps.delete(name="dyn", namespace=namespace)
    seen = []
    for event in configmaps.watch(
        namespace=namespace, resource_version=start, field_selector="metadata.name=dyn", timeout=10
    ):
        seen.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert seen == ["ADDED", "MODIFIED", "DELETED"]
    nodes = dyn.resources.get(api_version="v1", kind="Node").get()
    assert nodes.items


def test_shared_informer_follows_and_resyncs(api: client.ApiClient, namespace: str) -> None:
    """The client's informer: a list, then a watch; the cache follows every change."""
    core = client.CoreV1Api(api)
    informer, events = recording_informer(core, namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    informer.start()
    try:
        wait_until(lambda: ("ADDED", "before") in events, timeout=30, what="the initial list")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
        core.patch_namespaced_config_map("after", namespace, {"data": {"k": "v"}})
        core.delete_namespaced_config_map("before", namespace)
        wait_until(
            lambda: (
                {("ADDED", "after"), ("DELETED", "before")} <= set(events)
                and ("MODIFIED", "after") in events
            ),
            timeout=30,
            what=f"the informer's events (so far {events})",
        )
        names = wait_until(
            lambda: (
                {_name(obj) for obj in informer.cache.list()} == {"after", "kube-root-ca.crt"}
                or {_name(obj) for obj in informer.cache.list()} == {"after"}
            ),
            timeout=30,
            what="the informer's cache",
        )
        assert names
    finally:
        informer.stop()


def _name(obj: Any) -> str:
    return str(obj.metadata.name if hasattr(obj, "metadata") else obj["metadata"]["name"])


def test_service_account_token_request(api: client.ApiClient, namespace: str) -> None:
    """TokenRequest through the typed client (what in-cluster tools use)."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    answer = core.create_namespaced_service_account_token(
        "robot",
        namespace,
        {"spec": {"audiences": ["vault"], "expirationSeconds": 900}},
    )
    assert answer.status.token.count(".") == 2
    assert answer.spec.audiences == ["vault"] and answer.spec.expiration_seconds == 900
    assert answer.status.expiration_timestamp is not None
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_service_account_token(
            "robot", namespace, {"spec": {"expirationSeconds": 60}}
        )
    assert refused.value.status == 422


def test_scale_subresource_and_events(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "s"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "s"}},
                "template": _template("s"),
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale("s", namespace)
    assert scale.spec.replicas == 1 and scale.kind == "Scale"
    apps.patch_namespaced_deployment_scale("s", namespace, {"spec": {"replicas": 0}})
    assert apps.read_namespaced_deployment("s", namespace).spec.replicas == 0
    reasons = wait_until(
        lambda: (
            {
                e.reason
                for e in core.list_namespaced_event(
                    namespace, field_selector="involvedObject.kind=Deployment,involvedObject.name=s"
                ).items
            }
            >= {"ScalingReplicaSet"}
        ),
        timeout=30,
        what="the Deployment's events",
    )
    assert reasons


LEADER = """
import sys
from kubernetes import client, config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

config.load_kube_config()
lock = LeaseLock("compat-leader", sys.argv[1], sys.argv[2])
leaderelection.LeaderElection(
    electionconfig.Config(
        lock,
        lease_duration=17,
        renew_deadline=15,
        retry_period=1,
        onstarted_leading=lambda: print("I am leader", flush=True),
        onstopped_leading=None,
    )
).run()
"""


def test_leader_election_with_a_lease(
    cluster: CompatCluster, api: client.ApiClient, namespace: str
) -> None:
    """The client's own leaderelection module (LeaseLock) in a process of its own."""
    candidate = subprocess.Popen(
        [sys.executable, "-c", LEADER, namespace, "candidate-1"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert candidate.stdout is not None
        assert candidate.stdout.readline().strip() == "I am leader"
        lease = client.CoordinationV1Api(api).read_namespaced_lease("compat-leader", namespace)
        assert lease.spec.holder_identity == "candidate-1"
        assert lease.spec.lease_duration_seconds == 17
    finally:
        candidate.kill()
        candidate.wait(timeout=10)
