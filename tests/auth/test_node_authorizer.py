"""The Node authorizer and NodeRestriction: a node agent (``system:node:<name>`` in
``system:nodes``) reaches only what the pods bound to it need and changes only itself
and those pods — through the in-process client, on a ``Node,RBAC`` cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio import plugins
from kubetrio.client import ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.store import open_store
from tests.kit.polling import wait_for

from .conftest import as_user, forbidden, until_allowed

TOKENS = """node-a-token,system:node:a,u-a,"system:nodes"
node-b-token,system:node:b,u-b,"system:nodes"
fake-node-token,system:node:c,u-c
"""


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A ``Node,RBAC`` cluster with nodes ``a`` and ``b``, and in namespace ``team`` a pod
    on each using its own Secret, ConfigMap and ServiceAccount."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac", "node", "admission"]),
            token="admin-token",
            scheduler=False,
            plugin_config={
                "auth": {"token_auth_file": str(tokens), "authorization_mode": "Node,RBAC"}
            },
        ) as running,
    ):
        admin = running.client
        await admin.create("v1", "namespaces", {"metadata": {"name": "team"}})
        for node in ("a", "b"):
            await admin.create("v1", "nodes", {"metadata": {"name": node}})
            await admin.create(
                "v1", "secrets", {"metadata": {"name": f"s-{node}"}}, namespace="team"
            )
            await admin.create(
                "v1", "configmaps", {"metadata": {"name": f"cm-{node}"}}, namespace="team"
            )
            await admin.create(
                "v1", "serviceaccounts", {"metadata": {"name": f"sa-{node}"}}, namespace="team"
            )
        for node in ("a", "b"):
            await create_when_account_cached(admin, pod(node))
        await admin.create("v1", "secrets", {"metadata": {"name": "unused"}}, namespace="team")
        yield running


async def create_when_account_cached(admin: Any, body: dict[str, Any]) -> None:
    """Create a pod once ServiceAccount admission's cache has its just-made account
    (upstream's admission looks an uncached account up live; kubetrio's waits for the
    watch, milliseconds)."""
    for _ in range(100):
        try:
            await admin.create("v1", "pods", body, namespace="team")
            return
        except ClientError as exc:
            if "error looking up service account" not in exc.message:
                raise
            await trio.sleep(0.05)
    raise AssertionError("the ServiceAccount never reached the admission cache")


def pod(node: str) -> dict[str, Any]:
    """A pod bound to ``node`` using the node's Secret (volume), ConfigMap (env) and
    ServiceAccount."""
    return {
        "metadata": {"name": f"p-{node}"},
        "spec": {
            "nodeName": node,
            "serviceAccountName": f"sa-{node}",
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "env": [
                        {
                            "name": "X",
                            "valueFrom": {"configMapKeyRef": {"name": f"cm-{node}", "key": "x"}},
                        }
                    ],
                }
            ],
            "volumes": [{"name": "s", "secret": {"secretName": f"s-{node}"}}],
        },
    }


def token_request(pod: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"audiences": ["https://kubernetes.default.svc"]}
    if pod is not None:
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        }
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


async def test_a_node_reads_only_what_its_pods_use(cluster: Cluster) -> None:
    node_a = as_user(cluster, "node-a-token")
    await until_allowed(lambda: node_a.get("v1", "secrets", "s-a", namespace="team"))
    await node_a.get("v1", "configmaps", "cm-a", namespace="team")
    message = await forbidden(lambda: node_a.get("v1", "secrets", "s-b", namespace="team"))
    assert message == (
        'secrets "s-b" is forbidden: User "system:node:a" cannot get resource "secrets" in '
        'API group "" in the namespace "team": no relationship found between node \'a\' '
        "and this object"
    )
    await forbidden(lambda: node_a.get("v1", "configmaps", "cm-b", namespace="team"))
    await forbidden(lambda: node_a.get("v1", "secrets", "unused", namespace="team"))
    listing = await forbidden(lambda: node_a.list("v1", "secrets", namespace="team"))
    assert listing.endswith(": No Object name found")
    await forbidden(lambda: node_a.list("v1", "secrets"))
    # A node may not write Secrets at all, even its pods' ones.
    await forbidden(
        lambda: node_a.create("v1", "secrets", {"metadata": {"name": "x"}}, namespace="team")
    )
    # What every node may do (upstream's system:node rules): list pods and nodes.
    await node_a.list("v1", "pods")
    await node_a.get("v1", "nodes", "b")


async def test_the_graph_follows_pods(cluster: Cluster) -> None:
    """A pod moving to node a gives a its Secret; deleting it takes the Secret away."""
    admin, node_a = cluster.client, as_user(cluster, "node-a-token")
    moved = pod("a")
    moved["metadata"]["name"] = "p-new"
    moved["spec"]["volumes"][0]["secret"]["secretName"] = "unused"
    await admin.create("v1", "pods", moved, namespace="team")
    await until_allowed(lambda: node_a.get("v1", "secrets", "unused", namespace="team"))
    await admin.delete("v1", "pods", "p-new", namespace="team", grace_period_seconds=0)

    async def refused() -> bool:
        try:
            await node_a.get("v1", "secrets", "unused", namespace="team")
        except ClientError as exc:
            if exc.code == 403:
                return True
            raise
        return False

    await wait_for(refused)


async def test_a_node_changes_only_itself_and_its_pods(cluster: Cluster) -> None:
    node_a = as_user(cluster, "node-a-token")
    # Its own Node and its pods' status: allowed.
    await node_a.patch("v1", "nodes", "a", {"metadata": {"annotations": {"k": "v"}}})
    await node_a.patch("v1", "nodes", "a", {"status": {"phase": "Running"}}, subresource="status")
    await until_allowed(
        lambda: node_a.patch(
            "v1", "pods", "p-a", {"status": {"message": "hi"}}, namespace="team",
            subresource="status",
        )
    )  # fmt: skip
    # Another node: refused by NodeRestriction with upstream's words.
    message = await forbidden(
        lambda: node_a.patch("v1", "nodes", "b", {"metadata": {"annotations": {"k": "v"}}})
    )
    assert message == 'nodes "b" is forbidden: node "a" is not allowed to modify node "b"'
    await forbidden(
        lambda: node_a.patch(
            "v1", "nodes", "b", {"status": {"phase": "Running"}}, subresource="status"
        )
    )
    await forbidden(lambda: node_a.delete("v1", "nodes", "b"))
    message = await forbidden(
        lambda: node_a.patch(
            "v1", "pods", "p-b", {"status": {"message": "x"}}, namespace="team",
            subresource="status",
        )
    )  # fmt: skip
    assert message == (
        'pods "p-b" is forbidden: node "a" can only update pod status for pods with '
        "spec.nodeName set to itself"
    )
    message = await forbidden(
        lambda: node_a.delete("v1", "pods", "p-b", namespace="team", grace_period_seconds=0)
    )
    assert message.endswith('node "a" can only delete pods with spec.nodeName set to itself')
    # Pods it may delete: its own.
    await node_a.delete("v1", "pods", "p-a", namespace="team", grace_period_seconds=0)


async def test_a_node_cannot_steer_workloads_to_itself(cluster: Cluster) -> None:
    node_a = as_user(cluster, "node-a-token")
    message = await forbidden(
        lambda: node_a.patch(
            "v1",
            "nodes",
            "a",
            {"metadata": {"labels": {"node-restriction.kubernetes.io/secure": "true"}}},
        )
    )
    assert message == (
        'nodes "a" is forbidden: is not allowed to modify labels: '
        "node-restriction.kubernetes.io/secure"
    )
    await forbidden(
        lambda: node_a.patch(
            "v1", "nodes", "a", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}
        )
    )
    # The kubelet's own labels are fine.
    await node_a.patch(
        "v1", "nodes", "a", {"metadata": {"labels": {"node.kubernetes.io/instance-type": "x"}}}
    )
    message = await forbidden(
        lambda: node_a.create("v1", "pods", pod("a") | {"metadata": {"name": "n"}},
                              namespace="team")
    )  # fmt: skip
    assert message == (
        'pods "n" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, '
        'node "a" can only create mirror pods'
    )
    node_b = as_user(cluster, "node-b-token")
    lease = {"metadata": {"name": "a"}, "spec": {"holderIdentity": "b"}}
    message = await forbidden(
        lambda: node_b.create("coordination.k8s.io/v1", "leases", lease,
                              namespace="kube-node-lease")
    )  # fmt: skip
    assert message.endswith("can only access node lease with the same name as the requesting node")


async def test_service_account_tokens_only_for_the_nodes_pods(cluster: Cluster) -> None:
    admin, node_a = cluster.client, as_user(cluster, "node-a-token")
    pod_a = await admin.get("v1", "pods", "p-a", namespace="team")
    pod_b = await admin.get("v1", "pods", "p-b", namespace="team")

    async def create(account: str, bound: dict[str, Any] | None) -> Any:
        return await node_a.create(
            "v1", "serviceaccounts", token_request(bound), namespace="team",
            name=account, subresource="token",
        )  # fmt: skip

    await until_allowed(lambda: create("sa-a", pod_a))
    message = await forbidden(lambda: create("sa-b", pod_b))
    assert message.endswith("no relationship found between node 'a' and this object")
    message = await forbidden(lambda: create("sa-a", None))
    assert message.endswith("node requested token not bound to a pod")
    message = await forbidden(lambda: create("sa-a", pod_b))
    assert message.endswith("node requested token bound to a pod scheduled on a different node")


async def test_not_a_node_without_the_group(cluster: Cluster) -> None:
    """``system:node:c`` outside ``system:nodes`` is no node: nothing of a node's rights."""
    fake = as_user(cluster, "fake-node-token")
    await forbidden(lambda: fake.list("v1", "pods"))
    await forbidden(lambda: fake.patch("v1", "nodes", "a", {"metadata": {"labels": {}}}))


async def test_rbac_may_still_grant_what_the_node_authorizer_does_not(cluster: Cluster) -> None:
    """No opinion, not a deny: a binding naming the node lets it read the Secret."""
    admin, node_a = cluster.client, as_user(cluster, "node-a-token")
    rbac = "rbac.authorization.k8s.io/v1"
    await admin.create(
        rbac,
        "roles",
        {
            "metadata": {"name": "read-unused"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        },
        namespace="team",
    )
    await admin.create(
        rbac,
        "rolebindings",
        {
            "metadata": {"name": "read-unused"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "read-unused"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "system:node:a"}],
        },
        namespace="team",
    )  # fmt: skip
    await until_allowed(lambda: node_a.get("v1", "secrets", "unused", namespace="team"))


async def test_nodes_never_add_ephemeral_containers(cluster: Cluster) -> None:
    """Even granted by RBAC, NodeRestriction refuses a node the debug subresource."""
    admin, node_a = cluster.client, as_user(cluster, "node-a-token")
    rbac = "rbac.authorization.k8s.io/v1"
    rule = {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]}
    await admin.create(rbac, "roles", {"metadata": {"name": "debug"}, "rules": [rule]},
                       namespace="team")  # fmt: skip
    await admin.create(
        rbac,
        "rolebindings",
        {
            "metadata": {"name": "debug"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "debug"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "system:node:a"}],
        },
        namespace="team",
    )  # fmt: skip
    refusal = 'node "a" is forbidden to update pod "p-a" ephemeral containers'

    async def refused_by_admission() -> bool:
        message = await forbidden(
            lambda: node_a.patch(
                "v1", "pods", "p-a",
                {"spec": {"ephemeralContainers": [{"name": "d", "image": "busybox"}]}},
                namespace="team", patch_type="strategic", subresource="ephemeralcontainers",
            )
        )  # fmt: skip
        return refusal in message

    await wait_for(refused_by_admission)
    pod = await admin.get("v1", "pods", "p-a", namespace="team")
    assert not pod["spec"].get("ephemeralContainers")
