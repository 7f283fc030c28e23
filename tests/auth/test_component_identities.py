"""The cluster's own components act as upstream's least-privilege identities under RBAC:
each controller as its ServiceAccount in kube-system (``system:controller:*`` roles), the
controller manager as ``system:kube-controller-manager``, the scheduler as
``system:kube-scheduler`` — visible in the audit log, with the authorization decision."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubetrio_auth.rbac.bootstrap import cluster_role_bindings

from kubetrio import plugins
from kubetrio.apiserver import open_audit_log
from kubetrio.client import Client, ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.controllers import BUILT_IN, SERVICE_ACCOUNTS, controller_user
from kubetrio.handler import Request
from kubetrio.scheduler import USER as SCHEDULER
from kubetrio.store import open_store
from tests.kit.polling import wait_for

ADMIN_TOKEN = "admin-token"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


@pytest.fixture
async def audited(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Path]]:
    """An RBAC cluster with every built-in plugin's auth part, a simulated node, the
    controllers and the scheduler, auditing mutating requests to ``audit.log``."""
    log = tmp_path / "audit.log"
    audit = open_audit_log(str(log))
    try:
        async with (
            open_store(f"sqlite://{tmp_path}/state.db") as store,
            open_cluster(
                store,
                plugins=plugins.load(only=["auth", "rbac", "admission", "scheduler"]),
                token=ADMIN_TOKEN,
                simulated_nodes=1,
                audit=audit,
                plugin_config={"auth": {"authorization_mode": "RBAC"}},
            ) as running,
        ):
            yield running, log
    finally:
        audit.close()


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def replicaset(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def test_controllers_and_scheduler_act_as_their_own_users(
    audited: tuple[Cluster, Path],
) -> None:
    cluster, log = audited
    admin = cluster.client
    await admin.create("apps/v1", "replicasets", replicaset("web", 2), namespace="default")

    async def bound() -> bool:
        pods = (await admin.list("v1", "pods", namespace="default"))["items"]
        return len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods)

    await wait_for(bound)

    async def audited_bindings() -> list[dict[str, Any]]:
        return [
            e
            for e in events(log)
            if (e.get("objectRef") or {}).get("subresource") == "binding"
            and e["stage"] == "ResponseComplete"
        ]

    bindings = await wait_for(audited_bindings)
    created = [
        e
        for e in events(log)
        if e["verb"] == "create"
        and e["objectRef"].get("resource") == "pods"
        and not e["objectRef"].get("subresource")
        and e["stage"] == "ResponseComplete"
    ]
    assert len(created) == 2
    for event in created:
        assert event["user"]["username"] == REPLICASET_CONTROLLER
        assert "system:serviceaccounts:kube-system" in event["user"]["groups"]
        assert event["responseStatus"]["code"] == 201
        assert event["annotations"]["authorization.k8s.io/decision"] == "allow"
        assert event["annotations"]["authorization.k8s.io/reason"] == (
            'RBAC: allowed by ClusterRoleBinding "system:controller:replicaset-controller" '
            'of ClusterRole "system:controller:replicaset-controller" to ServiceAccount '
            '"replicaset-controller/kube-system"'
        )
    for event in bindings:
        assert event["user"]["username"] == "system:kube-scheduler"
        assert event["annotations"]["authorization.k8s.io/decision"] == "allow"
    # The admin's own create is audited as the admin, allowed as a master.
    (mine,) = [
        e
        for e in events(log)
        if e["objectRef"].get("resource") == "replicasets" and e["verb"] == "create"
    ]
    assert mine["user"]["username"] == "admin"
    assert mine["annotations"]["authorization.k8s.io/decision"] == "allow"
    # The manager campaigns for upstream's Lease as itself.
    lease = await admin.get(
        "coordination.k8s.io/v1", "leases", "kube-controller-manager", namespace="kube-system"
    )
    assert lease["spec"]["holderIdentity"]


async def test_a_controller_cannot_do_what_its_role_does_not_say(
    audited: tuple[Cluster, Path],
) -> None:
    cluster, log = audited
    await cluster.client.create(
        "v1", "secrets", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}, namespace="default"
    )
    request = Request(
        method="GET",
        target="/api/v1/namespaces/default/secrets/s",
        path="/api/v1/namespaces/default/secrets/s",
        query={},
        headers={},
        remote="in-process",
        user=controller_user("replicaset"),
    )
    response = await cluster.api.handle(request)
    assert response.status == 403
    assert json.loads(response.body)["message"] == (
        f'secrets "s" is forbidden: User "{REPLICASET_CONTROLLER}" cannot get resource '
        '"secrets" in API group "" in the namespace "default"'
    )
    # The scheduler may not create pods, the controller manager itself may not write them.
    scheduler = Client.in_process(cluster.api, user=SCHEDULER)
    manager = Client.in_process(cluster.api, user=controller_user("no-such-controller"))
    for client in (scheduler, manager):
        with pytest.raises(ClientError) as refused:
            await client.create("apps/v1", "replicasets", replicaset("x", 1), namespace="default")
        assert refused.value.code == 403
    # A forbidden request's audit Event says so.
    (denied,) = [
        e
        for e in events(log)
        if e["objectRef"].get("resource") == "replicasets" and e["responseStatus"]["code"] == 403
    ][:1]
    assert denied["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert "authorization.k8s.io/reason" in denied["annotations"]


async def test_every_controller_has_an_account_with_its_bindings() -> None:
    """A controller added without an identity would run as the controller manager itself
    (too few rights under RBAC): every built-in and plugin controller has an account
    whose ``system:controller:`` role (or, for loops upstream does not have, a
    ``kubetrio:controller:`` role) is bound to it by the default policy."""
    manager = plugins.load(only=["auth", "rbac", "admission", "storage", "csi", "certificates"])
    manager.configure(config={"auth": {"authorization_mode": "RBAC"}})
    try:
        names = set(BUILT_IN) | {"servicelb", "ingress-loadbalancer"}
        names |= {
            r.provider.name
            for r in manager.controllers()
            if not getattr(r.provider, "in_apiserver", False)
        }
    finally:
        manager.unconfigure()
    assert names <= set(SERVICE_ACCOUNTS), names - set(SERVICE_ACCOUNTS)
    bound = {
        subject["name"]
        for binding in cluster_role_bindings()
        if binding["metadata"]["name"].startswith(("system:controller:", "kubetrio:controller:"))
        for subject in binding["subjects"]
        if subject["kind"] == "ServiceAccount" and subject["namespace"] == "kube-system"
    }
    assert set(SERVICE_ACCOUNTS.values()) <= bound


async def test_pod_security_annotates_the_audit_event(audited: tuple[Cluster, Path]) -> None:
    """PodSecurity's audit mode writes its verdict into the pod's audit Event, with the
    enforced level, as upstream's annotations."""
    cluster, log = audited
    labels = {"pod-security.kubernetes.io/audit": "restricted"}
    await cluster.client.create("v1", "namespaces", {"metadata": {"name": "psa", "labels": labels}})
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }

    # Created again until the admission plugin's namespace cache has the labels.
    async def annotated() -> dict[str, str] | None:
        await cluster.client.create("v1", "pods", pod, namespace="psa")
        for event in events(log):
            notes = event.get("annotations") or {}
            if "pod-security.kubernetes.io/audit-violations" in notes:
                return dict(notes)
        await cluster.client.delete("v1", "pods", "p", namespace="psa", grace_period_seconds=0)
        return None

    notes = await wait_for(annotated)
    assert notes["pod-security.kubernetes.io/enforce-policy"] == "privileged:latest"
    assert notes["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
    )
    assert notes["authorization.k8s.io/decision"] == "allow"
