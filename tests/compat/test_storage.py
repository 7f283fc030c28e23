"""Persistent storage on a real node, as kubectl 1.27/1.33 and the Python client see it:
the default ``local-path`` class, dynamic provisioning and binding, data shared by two
pods, reclaim (Delete removes the directory, Retain keeps it), static hostPath volumes
bound by selector and by name, an unknown class, claim protection, refused expansion.

The ``local-path`` class binds ``WaitForFirstConsumer``: the scheduler names the node on
the claim (``volume.kubernetes.io/selected-node``). These tests write that annotation
themselves right after creating a claim, as the scheduler would, so they exercise the
controllers whether or not the scheduler's volume binding is there.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.compat.kit import CompatCluster
from tests.kit import wait_until

SELECTED_NODE = "volume.kubernetes.io/selected-node"


def node_name(cluster: CompatCluster) -> str:
    return cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout


def claim_yaml(name: str, size: str = "64Mi", extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: {size}
{extra}"""


def pod_yaml(name: str, claim: str, command: str, restart: str = "Never") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", {json.dumps(command)}]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {claim}
"""


def get_json(cluster: CompatCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def phase(cluster: CompatCluster, namespace: str, kind: str, name: str) -> str:
    ns = ["-n", namespace] if kind in ("pvc", "pod") else []
    result = cluster.kubectl("get", kind, name, *ns, "-o", "jsonpath={.status.phase}", check=False)
    return result.stdout if result.returncode == 0 else ""


def select_node(cluster: CompatCluster, namespace: str, claim: str) -> None:
    """What the scheduler does for a WaitForFirstConsumer claim once it picked a node."""
    annotations = (
        get_json(cluster, "pvc", claim, "-n", namespace)["metadata"].get("annotations") or {}
    )
    if SELECTED_NODE not in annotations:
        cluster.kubectl(
            "annotate",
            "pvc",
            claim,
            "-n",
            namespace,
            f"{SELECTED_NODE}={node_name(cluster)}",
        )


def events_for(cluster: CompatCluster, namespace: str, name: str) -> list[tuple[str, str]]:
    events = get_json(cluster, "events", "-n", namespace)["items"]
    return [
        (e.get("reason", ""), e.get("message", ""))
        for e in events
        if e["involvedObject"]["name"] == name
    ]


def run_to_completion(cluster: CompatCluster, namespace: str, name: str) -> None:
    wait_until(
        lambda: phase(cluster, namespace, "pod", name) in ("Succeeded", "Failed"),
        timeout=90,
        what=f"pod {name} to finish",
    )
    assert phase(cluster, namespace, "pod", name) == "Succeeded", cluster.kubectl(
        "describe", "pod", name, "-n", namespace
    ).stdout


def test_default_class_is_local_path(cluster: CompatCluster) -> None:
    for version in ("1.27", "1.33"):
        out = cluster.kubectl("get", "storageclass", version=version).stdout.splitlines()
        assert out[0].split() == [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE",
        ]
        row = next(line.split() for line in out[1:] if line.startswith("local-path"))
        assert row[:6] == [
            "local-path",
            "(default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false",
        ]


def test_claim_provisions_binds_and_shares_data_between_pods(
    cluster: CompatCluster, namespace: str
) -> None:
    n = ["-n", namespace]
    cluster.kubectl("apply", *n, "-f", "-", input=claim_yaml("data"))
    assert get_json(cluster, "pvc", "data", *n)["spec"]["storageClassName"] == "local-path"
    wait_until(
        lambda: (
            ("WaitForFirstConsumer", "waiting for first consumer to be created before binding")
            in events_for(cluster, namespace, "data")
        ),
        timeout=30,
        what="the WaitForFirstConsumer event",
    )
    select_node(cluster, namespace, "data")
    wait_until(
        lambda: phase(cluster, namespace, "pvc", "data") == "Bound",
        timeout=60,
        what="the claim to be Bound",
    )
    claim = get_json(cluster, "pvc", "data", *n)
    volume_name = claim["spec"]["volumeName"]
    assert volume_name == f"pvc-{claim['metadata']['uid']}"
    for version in ("1.27", "1.33"):
        table = cluster.kubectl("get", "pvc", *n, version=version).stdout.splitlines()
        assert table[0].split()[:7] == [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
        ]
        assert table[1].split()[:6] == ["data", "Bound", volume_name, "64Mi", "RWO", "local-path"]
    pv = get_json(cluster, "pv", volume_name)
    assert pv["spec"]["csi"]["driver"] == "rancher.io/local-path"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    node = node_name(cluster)
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]
        }
    ]
    directory = Path(pv["spec"]["csi"]["volumeAttributes"]["path"])
    assert directory.is_dir() and directory.parent.name == node
    pv_row = cluster.kubectl("get", "pv", volume_name).stdout.splitlines()[1].split()
    assert pv_row[1:6] == ["64Mi", "RWO", "Delete", "Bound", f"{namespace}/data"]

    message = f"written-{uuid.uuid4().hex[:8]}"
    cluster.kubectl(
        "apply", *n, "-f", "-", input=pod_yaml("writer", "data", f"echo {message} > /data/msg")
    )
    run_to_completion(cluster, namespace, "writer")
    assert (directory / "msg").read_text().strip() == message
    cluster.kubectl("apply", *n, "-f", "-", input=pod_yaml("reader", "data", "cat /data/msg"))
    run_to_completion(cluster, namespace, "reader")
    assert cluster.kubectl("logs", "reader", *n).stdout.strip() == message

    # Delete reclaim: the claim goes, then the volume and its directory.
    cluster.kubectl("delete", "pod", "writer", "reader", *n)
    cluster.kubectl("delete", "pvc", "data", *n)
    wait_until(
        lambda: cluster.kubectl("get", "pv", volume_name, check=False).returncode != 0,
        timeout=60,
        what="the volume to be deleted",
    )
    assert not directory.exists()


def test_retain_keeps_the_volume_released(cluster: CompatCluster, namespace: str) -> None:
    n = ["-n", namespace]
    class_name = f"keep-{namespace}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {class_name}
provisioner: rancher.io/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
""",
    )
    directory: Path | None = None
    volume_name = ""
    try:
        cluster.kubectl(
            "apply",
            *n,
            "-f",
            "-",
            input=claim_yaml("kept", extra=f"  storageClassName: {class_name}\n"),
        )
        select_node(cluster, namespace, "kept")
        wait_until(
            lambda: phase(cluster, namespace, "pvc", "kept") == "Bound",
            timeout=60,
            what="the claim to be Bound",
        )
        volume_name = get_json(cluster, "pvc", "kept", *n)["spec"]["volumeName"]
        pv = get_json(cluster, "pv", volume_name)
        directory = Path(pv["spec"]["csi"]["volumeAttributes"]["path"])
        (directory / "keep").write_text("me")
        cluster.kubectl("delete", "pvc", "kept", *n)
        wait_until(
            lambda: phase(cluster, namespace, "pv", volume_name) == "Released",
            timeout=60,
            what="the volume to be Released",
        )
        row = cluster.kubectl("get", "pv", volume_name).stdout.splitlines()[1].split()
        assert row[3:5] == ["Retain", "Released"]
        assert (directory / "keep").read_text() == "me"
    finally:
        if volume_name:
            cluster.kubectl("delete", "pv", volume_name, "--wait=false", check=False)
        cluster.kubectl("delete", "storageclass", class_name, check=False)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def test_static_host_path_volumes_by_selector_and_by_name(
    cluster: CompatCluster, namespace: str, tmp_path: Path
) -> None:
    n = ["-n", namespace]
    (tmp_path / "hello").write_text("from the host")
    tmp_path.chmod(0o755)
    names = [f"{namespace}-labelled", f"{namespace}-named", f"{namespace}-other"]
    for name in names:
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=f"""
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
  labels: {{owner: {name}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {{path: {tmp_path}}}
""",
        )
    try:
        cluster.kubectl(
            "apply",
            *n,
            "-f",
            "-",
            input=claim_yaml(
                "by-selector",
                extra=(
                    f'  storageClassName: ""\n  selector:\n    matchLabels: {{owner: {names[0]}}}\n'
                ),
            ),
        )
        cluster.kubectl(
            "apply",
            *n,
            "-f",
            "-",
            input=claim_yaml(
                "by-name", extra=f'  storageClassName: ""\n  volumeName: {names[1]}\n'
            ),
        )
        for claim, volume in (("by-selector", names[0]), ("by-name", names[1])):
            wait_until(
                lambda claim=claim: phase(cluster, namespace, "pvc", claim) == "Bound",
                timeout=60,
                what=f"{claim} to be Bound",
            )
            got = get_json(cluster, "pvc", claim, *n)
            assert got["spec"]["volumeName"] == volume
            assert got["status"]["capacity"] == {"storage": "1Gi"}
        assert phase(cluster, namespace, "pv", names[2]) == "Available"
        cluster.kubectl(
            "apply", *n, "-f", "-", input=pod_yaml("reader", "by-name", "cat /data/hello")
        )
        run_to_completion(cluster, namespace, "reader")
        assert cluster.kubectl("logs", "reader", *n).stdout.strip() == "from the host"
    finally:
        cluster.kubectl("delete", "pod", "reader", *n, "--wait=false", check=False)
        cluster.kubectl("delete", "pvc", "--all", *n, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", *names, "--wait=false", check=False)


def test_unknown_class_stays_pending_with_the_event(cluster: CompatCluster, namespace: str) -> None:
    n = ["-n", namespace]
    cluster.kubectl(
        "apply", *n, "-f", "-", input=claim_yaml("lost", extra="  storageClassName: nosuch\n")
    )
    wait_until(
        lambda: (
            ("ProvisioningFailed", 'storageclass.storage.k8s.io "nosuch" not found')
            in events_for(cluster, namespace, "lost")
        ),
        timeout=30,
        what="the ProvisioningFailed event",
    )
    described = cluster.kubectl("describe", "pvc", "lost", *n).stdout
    assert "ProvisioningFailed" in described
    assert 'storageclass.storage.k8s.io "nosuch" not found' in described
    assert phase(cluster, namespace, "pvc", "lost") == "Pending"


def test_claim_in_use_is_protected_until_the_pod_is_deleted(
    cluster: CompatCluster, namespace: str
) -> None:
    n = ["-n", namespace]
    cluster.kubectl("apply", *n, "-f", "-", input=claim_yaml("used"))
    select_node(cluster, namespace, "used")
    cluster.kubectl(
        "apply",
        *n,
        "-f",
        "-",
        input=pod_yaml("user", "used", "sleep 3600", restart="Always"),
    )
    wait_until(
        lambda: phase(cluster, namespace, "pod", "user") == "Running",
        timeout=90,
        what="the pod to run",
    )
    claim = get_json(cluster, "pvc", "used", *n)
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    volume_name = claim["spec"]["volumeName"]
    cluster.kubectl("delete", "pvc", "used", *n, "--wait=false")
    row = cluster.kubectl("get", "pvc", "used", *n).stdout.splitlines()[1].split()
    assert row[:2] == ["used", "Terminating"]
    assert phase(cluster, namespace, "pod", "user") == "Running"
    cluster.kubectl("delete", "pod", "user", *n, "--grace-period=1")
    wait_until(
        lambda: cluster.kubectl("get", "pvc", "used", *n, check=False).returncode != 0,
        timeout=60,
        what="the claim to go once the pod is gone",
    )
    wait_until(
        lambda: cluster.kubectl("get", "pv", volume_name, check=False).returncode != 0,
        timeout=60,
        what="its volume to be deleted",
    )


def test_expansion_refused_when_the_class_does_not_allow_it(
    cluster: CompatCluster, namespace: str
) -> None:
    n = ["-n", namespace]
    cluster.kubectl("apply", *n, "-f", "-", input=claim_yaml("fixed"))
    select_node(cluster, namespace, "fixed")
    wait_until(
        lambda: phase(cluster, namespace, "pvc", "fixed") == "Bound",
        timeout=60,
        what="the claim to be Bound",
    )
    for version in ("1.27", "1.33"):
        grown = cluster.kubectl(
            "patch",
            "pvc",
            "fixed",
            *n,
            "-p",
            '{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}',
            version=version,
            check=False,
        )
        assert grown.returncode != 0
        assert (
            'persistentvolumeclaims "fixed" is forbidden: only dynamically provisioned pvc can '
            "be resized and the storageclass that provisions the pvc must support resize"
        ) in grown.stderr
    shrunk = cluster.kubectl(
        "patch",
        "pvc",
        "fixed",
        *n,
        "-p",
        '{"spec":{"resources":{"requests":{"storage":"1Mi"}}}}',
        check=False,
    )
    assert "field can not be less than previous value" in shrunk.stderr


def test_python_client_sees_classes_claims_and_volumes(
    cluster: CompatCluster, namespace: str
) -> None:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        storage = client.StorageV1Api(api)
        classes = {c.metadata.name: c for c in storage.list_storage_class().items}
        local = classes["local-path"]
        assert local.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
        assert local.volume_binding_mode == "WaitForFirstConsumer"
        body = client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="py"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "32Mi"}),
            ),
        )
        core.create_namespaced_persistent_volume_claim(namespace, body)
        core.patch_namespaced_persistent_volume_claim(
            "py",
            namespace,
            {"metadata": {"annotations": {SELECTED_NODE: node_name(cluster)}}},
        )
        wait_until(
            lambda: (
                core.read_namespaced_persistent_volume_claim("py", namespace).status.phase
                == "Bound"
            ),
            timeout=60,
            what="the claim to be Bound",
        )
        claim = core.read_namespaced_persistent_volume_claim("py", namespace)
        assert claim.spec.storage_class_name == "local-path"
        assert claim.status.capacity == {"storage": "32Mi"}
        assert claim.status.access_modes == ["ReadWriteOnce"]
        volume = core.read_persistent_volume(claim.spec.volume_name)
        assert volume.spec.claim_ref.name == "py"
        assert volume.spec.csi.driver == "rancher.io/local-path"
        assert volume.status.phase == "Bound"
        core.delete_namespaced_persistent_volume_claim("py", namespace)
        wait_until(
            lambda: (
                not any(
                    v.metadata.name == claim.spec.volume_name
                    for v in core.list_persistent_volume().items
                )
            ),
            timeout=60,
            what="the volume to be deleted",
        )


def test_statefulset_pod_keeps_its_data_and_delete_policy_removes_claims(
    cluster: CompatCluster, namespace: str
) -> None:
    n = ["-n", namespace]
    cluster.kubectl(
        "apply",
        *n,
        "-f",
        "-",
        input="""
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 1
  serviceName: web
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command:
        - sh
        - -c
        - test -f /data/first || cat /proc/sys/kernel/random/uuid > /data/first;
          cat /data/first; sleep 3600
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 16Mi}
""",
    )
    wait_until(
        lambda: cluster.kubectl("get", "pvc", "data-web-0", *n, check=False).returncode == 0,
        timeout=60,
        what="the StatefulSet's claim",
    )
    select_node(cluster, namespace, "data-web-0")

    def running_uid() -> str:
        pod = cluster.kubectl("get", "pod", "web-0", *n, "-o", "json", check=False)
        if pod.returncode != 0:
            return ""
        obj = json.loads(pod.stdout)
        return str(obj["metadata"]["uid"]) if obj["status"].get("phase") == "Running" else ""

    first_uid = wait_until(running_uid, timeout=120, what="web-0 to run")
    first = wait_until(
        lambda: cluster.kubectl("logs", "web-0", *n).stdout.strip(),
        timeout=30,
        what="web-0's first line",
    )
    cluster.kubectl("delete", "pod", "web-0", *n)
    wait_until(
        lambda: running_uid() not in ("", first_uid),
        timeout=120,
        what="web-0 to come back",
    )
    again = wait_until(
        lambda: cluster.kubectl("logs", "web-0", *n).stdout.strip(),
        timeout=30,
        what="the new web-0's first line",
    )
    assert again == first  # the same claim, the same data
    volume_name = get_json(cluster, "pvc", "data-web-0", *n)["spec"]["volumeName"]
    cluster.kubectl("delete", "statefulset", "web", *n)
    wait_until(
        lambda: cluster.kubectl("get", "pvc", "data-web-0", *n, check=False).returncode != 0,
        timeout=90,
        what="the claim to be deleted with its StatefulSet (whenDeleted: Delete)",
    )
    wait_until(
        lambda: cluster.kubectl("get", "pv", volume_name, check=False).returncode != 0,
        timeout=60,
        what="its volume to be deleted",
    )
