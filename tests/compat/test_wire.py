"""The API server's generic semantics as real clients see them.

Each test is the regression test of a defect a client hit: the Python client's
``watch=True``, reason phrases in its errors, Secrets' ``stringData`` through kubectl
apply, 409s on a delete right after a create, the status a created object starts with,
APIServices, and one Kubernetes version everywhere.
"""

from __future__ import annotations

import base64
import json
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.compat.kit import CompatCluster
from tests.kit import wait_until


@pytest.fixture(scope="module")
def api(cluster: CompatCluster) -> Iterator[client.ApiClient]:
    """The official Python client, configured from the cluster's kubeconfig."""
    with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api_client:
        yield api_client


def _json(cluster: CompatCluster, *args: str, version: str = "1.33", stdin: str = "") -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json", version=version, input=stdin).stdout)


# --- 1. boolean query parameters ------------------------------------------------------------


class BooleansAsUpTo36(client.ApiClient):
    """The official client as releases up to 36.x send booleans: ``watch=True``.

    Their ``parameters_to_tuples`` wrote ``str(value)``; 37.0 (a new generator) writes
    ``true``. Everything else is the installed client.
    """

    def parameters_to_url_query(self, params: Any, collection_formats: Any) -> str:
        items = params.items() if isinstance(params, dict) else params
        spelled = [(k, str(v) if isinstance(v, bool) else v) for k, v in items]
        query: str = super().parameters_to_url_query(spelled, collection_formats)
        return query


@pytest.mark.parametrize("booleans", ["37", "up to 36"])
def test_python_client_watch_stream_from_a_resource_version(
    cluster: CompatCluster, api: client.ApiClient, namespace: str, booleans: str
) -> None:
    """``watch.Watch().stream`` must get events, not a List, however ``watch`` is spelled."""
    if booleans == "up to 36":
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(cluster.kubeconfig), client_configuration=configuration
        )
        api = BooleansAsUpTo36(configuration)
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    labels = {"app": "watched"}
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "other", "labels": {"app": "other"}}, "data": {"k": "0"}},
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm", "labels": labels}, "data": {"k": "1"}}
    )
    core.patch_namespaced_config_map("cm", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("cm", namespace)

    seen: list[tuple[str, str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="app=watched",
        resource_version=start,
        timeout_seconds=20,
    ):
        obj = event["object"]
        seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("k", "")))
        if event["type"] == "DELETED":
            stream.stop()
    assert seen == [("ADDED", "cm", "1"), ("MODIFIED", "cm", "2"), ("DELETED", "cm", "2")]


@pytest.mark.parametrize(
    ("value", "is_watch"),
    [("True", True), ("1", True), ("t", True), ("False", False), ("f", False), ("FALSE", False)],
)
def test_watch_parameter_spellings(
    cluster: CompatCluster, namespace: str, value: str, is_watch: bool
) -> None:
    """``watch`` parses as Go's strconv.ParseBool (a value outside it is 400: see below)."""
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch={value}&timeoutSeconds=1"
    out = cluster.kubectl("get", "--raw", path).stdout
    if is_watch:
        # A watch without a resourceVersion: ADDED events of what exists, ended after 1s.
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert all(set(event) == {"type", "object"} for event in events), out
    else:
        assert json.loads(out)["kind"] == "ConfigMapList"


def test_a_bad_boolean_parameter_is_refused_naming_it(
    cluster: CompatCluster, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps?watch=yes"
    refused = cluster.kubectl("get", "--raw", path, check=False)
    assert refused.returncode != 0
    assert "invalid boolean value 'yes' for query parameter 'watch'" in refused.stderr


# --- 2. reason phrases --------------------------------------------------------------------


def test_python_client_errors_carry_the_reason_phrase(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("absent", namespace)
    assert missing.value.status == 404
    assert missing.value.reason == "Not Found"
    assert "(404)\nReason: Not Found" in str(missing.value)

    core.create_namespaced_config_map(namespace, {"metadata": {"name": "twice"}})
    with pytest.raises(ApiException) as again:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "twice"}})
    assert again.value.status == 409
    assert again.value.reason == "Conflict"
    assert json.loads(again.value.body)["reason"] == "AlreadyExists"


# --- 3. Secret stringData -------------------------------------------------------------------


SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: {password}
  extra: only-in-string-data
data:
  password: {shadowed}
  kept: {kept}
"""


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_apply_secret_string_data(
    cluster: CompatCluster, namespace: str, version: str
) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def apply(password: str) -> dict[str, Any]:
        manifest = SECRET.format(password=password, shadowed=b64("loses"), kept=b64("kept"))
        cluster.kubectl("apply", "-n", namespace, "-f", "-", version=version, input=manifest)
        secret: dict[str, Any] = _json(cluster, "get", "secret", "creds", "-n", namespace)
        return secret

    first = apply("s3cret")
    assert "stringData" not in first
    # stringData wins over data for the same key; other data keys stay.
    assert first["data"] == {
        "password": b64("s3cret"),
        "extra": b64("only-in-string-data"),
        "kept": b64("kept"),
    }
    second = apply("changed")
    assert "stringData" not in second
    assert second["data"]["password"] == b64("changed")

    pod = textwrap.dedent(
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: reader
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
            command: ["sh", "-c", "echo password=$PASSWORD; sleep 3600"]
            env:
            - name: PASSWORD
              valueFrom:
                secretKeyRef: {name: creds, key: password}
        """
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", version=version, input=pod)
    wait_until(
        lambda: (
            _json(cluster, "get", "pod", "reader", "-n", namespace)["status"].get("phase")
            == "Running"
        ),
        timeout=90,
        what="the pod reading the Secret to run",
    )
    wait_until(
        lambda: "password=changed" in cluster.kubectl("logs", "reader", "-n", namespace).stdout,
        timeout=30,
        what="the Secret's value in the pod's log",
    )
    cluster.kubectl("delete", "pod", "reader", "-n", namespace, "--grace-period=0", "--wait=false")


# --- 4. no 409 from the server's own read-modify-write -----------------------------------------


def _unschedulable_template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubetrio.io/test": "nowhere"},
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


def test_delete_right_after_create_never_conflicts(api: client.ApiClient, namespace: str) -> None:
    """Controllers write right after a create; a delete without preconditions still succeeds."""
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    conflicts: list[str] = []
    for i in range(30):
        for kind in ("deployment", "job", "daemonset"):
            name = f"{kind}-{i}"
            selector = {"matchLabels": {"app": name}}
            template = _unschedulable_template(name)
            try:
                if kind == "deployment":
                    body = {"metadata": {"name": name}, "spec": {"selector": selector}}
                    body["spec"]["template"] = template
                    apps.create_namespaced_deployment(namespace, body)
                    apps.delete_namespaced_deployment(name, namespace)
                elif kind == "daemonset":
                    body = {"metadata": {"name": name}, "spec": {"selector": selector}}
                    body["spec"]["template"] = template
                    apps.create_namespaced_daemon_set(namespace, body)
                    apps.delete_namespaced_daemon_set(name, namespace)
                else:
                    template["spec"]["restartPolicy"] = "Never"
                    body = {"metadata": {"name": name}, "spec": {"template": template}}
                    batch.create_namespaced_job(namespace, body)
                    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 409:
                    raise
                conflicts.append(f"{name}: {exc.body}")
    assert conflicts == []


def test_delete_with_a_stale_precondition_conflicts(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "guarded"}, "data": {"k": "1"}}
    )
    stale = created.metadata.resource_version
    core.patch_namespaced_config_map("guarded", namespace, {"data": {"k": "2"}})
    for preconditions in (
        client.V1Preconditions(resource_version=stale),
        client.V1Preconditions(uid=str(uuid.uuid4())),
    ):
        with pytest.raises(ApiException) as refused:
            core.delete_namespaced_config_map(
                "guarded", namespace, body=client.V1DeleteOptions(preconditions=preconditions)
            )
        assert refused.value.status == 409
        assert "Precondition failed" in json.loads(refused.value.body)["message"]
    core.delete_namespaced_config_map(
        "guarded",
        namespace,
        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=created.metadata.uid)),
    )


# --- 5. the status a created object starts with --------------------------------------------


def _create(cluster: CompatCluster, manifest: dict[str, Any], namespace: str = "") -> Any:
    scope = ["-n", namespace] if namespace else []
    return _json(cluster, "create", *scope, "-f", "-", stdin=json.dumps(manifest))


def test_created_objects_start_with_upstream_status(
    cluster: CompatCluster, api: client.ApiClient, namespace: str
) -> None:
    service = client.CoreV1Api(api).create_namespaced_service(
        namespace, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert service.status is not None and service.status.load_balancer is not None

    name = f"t-{uuid.uuid4().hex[:8]}"
    template = _unschedulable_template("w")
    selector = {"matchLabels": {"app": "w"}}
    expected: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc"},
                "spec": {"ports": [{"port": 80}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
            },
            namespace,
            {"loadBalancer": {}},
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {"selector": selector, "template": template},
                "status": {"replicas": 7},
            },
            namespace,
            {},
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "rs"},
                "spec": {"replicas": 0, "selector": selector, "template": template},
            },
            namespace,
            {"replicas": 0},
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "ss"},
                "spec": {
                    "replicas": 0,
                    "serviceName": "ss",
                    "selector": selector,
                    "template": template,
                },
            },
            namespace,
            {"replicas": 0, "availableReplicas": 0},
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "ds"},
                "spec": {"selector": selector, "template": template},
            },
            namespace,
            {
                "currentNumberScheduled": 0,
                "numberMisscheduled": 0,
                "desiredNumberScheduled": 0,
                "numberReady": 0,
            },
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {
                    "suspend": True,
                    "template": {
                        **template,
                        "spec": {**template["spec"], "restartPolicy": "Never"},
                    },
                },
            },
            namespace,
            {},
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "claim"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Mi"}},
                    "storageClassName": "none-such",
                },
            },
            namespace,
            {"phase": "Pending"},
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "status": {"phase": "Terminating"},
            },
            "",
            {"phase": "Active"},
        ),
    ]
    for manifest, scope, status in expected:
        created = _create(cluster, manifest, scope)
        assert created.get("status") == status, manifest["kind"]
    cluster.kubectl("delete", "namespace", name, "--wait=false")

    pod = _create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                **template["spec"],
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "resources": {"limits": {"cpu": "100m", "memory": "16Mi"}},
                    }
                ],
            },
            "status": {"phase": "Running"},
        },
        namespace,
    )
    assert pod["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "100m",
        "memory": "16Mi",
    }

    pv_name = f"pv-{uuid.uuid4().hex[:8]}"
    pv = _create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Mi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/nonexistent"},
                "storageClassName": "none-such",
            },
        },
    )
    assert pv["status"]["phase"] == "Pending"
    assert pv["status"]["lastPhaseTransitionTime"]
    cluster.kubectl("delete", "pv", pv_name, "--wait=false")

    node_name = f"fake-{uuid.uuid4().hex[:8]}"
    node = _create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node_name},
            "spec": {"unschedulable": True},
        },
    )
    cluster.kubectl("delete", "node", node_name, "--wait=false")
    assert node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    assert node["status"]["nodeInfo"]["kubeletVersion"] == ""


# --- 6. APIServices -------------------------------------------------------------------------


def test_python_client_apiservices(api: client.ApiClient) -> None:
    registration = client.ApiregistrationV1Api(api)
    local = {s.metadata.name: s for s in registration.list_api_service().items}
    for name in ("v1.", "v1.apps", "v1.batch", "v2.autoscaling", "v1.apiregistration.k8s.io"):
        assert name in local, sorted(local)
        assert local[name].spec.service is None
        available = [c for c in local[name].status.conditions if c.type == "Available"]
        assert [(c.status, c.reason) for c in available] == [("True", "Local")]

    name = f"v1alpha1.{uuid.uuid4().hex[:8]}.example.com"
    body = client.V1APIService(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1APIServiceSpec(
            group=name.split(".", 1)[1],
            version="v1alpha1",
            group_priority_minimum=1000,
            version_priority=15,
            insecure_skip_tls_verify=True,
            service=client.ApiregistrationV1ServiceReference(namespace="default", name="api"),
        ),
    )
    created = registration.create_api_service(body)
    assert created.metadata.uid
    got = registration.read_api_service(name)
    assert got.spec.service.name == "api" and got.spec.version == "v1alpha1"
    assert name in {s.metadata.name for s in registration.list_api_service().items}
    registration.delete_api_service(name)
    with pytest.raises(ApiException) as gone:
        registration.read_api_service(name)
    assert gone.value.status == 404


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_get_apiservices(cluster: CompatCluster, version: str) -> None:
    out = cluster.kubectl("get", "apiservices", version=version).stdout
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    cells = {row.split()[0]: row.split()[1:3] for row in rows}
    assert cells["v1."] == ["Local", "True"]
    assert cells["v1.apps"] == ["Local", "True"]
    resources = cluster.kubectl(
        "api-resources", "--api-group=apiregistration.k8s.io", version=version
    )
    assert "apiservices" in resources.stdout


# --- 7. one Kubernetes version ------------------------------------------------------------------


def test_server_and_node_versions_agree(cluster: CompatCluster, api: client.ApiClient) -> None:
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "33")
    assert server["gitVersion"].startswith("v1.33.")
    nodes = client.CoreV1Api(api).list_node().items
    assert nodes
    for node in nodes:
        info = node.status.node_info
        for reported in (info.kubelet_version, info.kube_proxy_version):
            assert reported.split(".")[:2] == ["v1", server["minor"]], reported
    assert client.VersionApi(api).get_code().minor == server["minor"]
