"""RBAC on a running cluster: roles and bindings honoured, defaults, aggregation,
escalation prevention, impersonation and the access reviews — through the in-process
client, the official ``kubernetes`` client and lightkube (bearer tokens over HTTP)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetrio.apiserver import merge_kubeconfig
from kubetrio.client import Client, ClientError
from kubetrio.cluster import Cluster
from tests.kit.polling import wait_for

from .conftest import ADMIN_TOKEN, RBAC, as_user, forbidden, until_allowed


def role(name: str, rules: list[dict[str, Any]], namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "rules": rules}


def binding(
    name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": subjects,
    }


JANE = {"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}
DEVS = {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}


async def test_a_role_allows_exactly_what_it_says(cluster: Cluster) -> None:
    admin = cluster.client
    for namespace in ("team", "other"):
        await admin.create("v1", "configmaps", {"metadata": {"name": "cm"}}, namespace=namespace)
        await admin.create("v1", "configmaps", {"metadata": {"name": "named"}}, namespace=namespace)
    await admin.create(
        RBAC,
        "roles",
        role(
            "reader",
            [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["named"],
                    "verbs": ["get"],
                },
                {"apiGroups": [""], "resources": ["namespaces/status"], "verbs": ["get"]},
            ],
        ),
        namespace="team",
    )
    await admin.create(
        RBAC, "rolebindings", binding("jane-reads", "Role", "reader", [JANE]), namespace="team"
    )
    jane = as_user(cluster, "jane-token")
    await until_allowed(lambda: jane.list("v1", "configmaps", namespace="team"))
    got = await jane.get("v1", "configmaps", "cm", namespace="team")
    assert got["metadata"]["name"] == "cm"

    message = await forbidden(lambda: jane.delete("v1", "configmaps", "cm", namespace="team"))
    assert message == (
        'configmaps "cm" is forbidden: User "jane" cannot delete resource "configmaps" '
        'in API group "" in the namespace "team"'
    )
    message = await forbidden(lambda: jane.list("v1", "configmaps", namespace="other"))
    assert message == (
        'configmaps is forbidden: User "jane" cannot list resource "configmaps" '
        'in API group "" in the namespace "other"'
    )
    message = await forbidden(lambda: jane.list("v1", "configmaps"))
    assert message.endswith(
        'cannot list resource "configmaps" in API group "" at the cluster scope'
    )

    # resourceNames: that one secret (it does not exist: allowed, then 404), no other, no list
    await admin.create("v1", "secrets", {"metadata": {"name": "other-secret"}}, namespace="team")
    with pytest.raises(ClientError) as missing:
        await jane.get("v1", "secrets", "named", namespace="team")
    assert missing.value.code == 404
    await forbidden(lambda: jane.get("v1", "secrets", "other-secret", namespace="team"))
    await forbidden(lambda: jane.list("v1", "secrets", namespace="team"))


async def test_subresources_need_their_own_rule(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "clusterroles",
        {
            "metadata": {"name": "scaler"},
            "rules": [
                {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get", "update"]},
                {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get"]},
            ],
        },
    )
    await admin.create(
        RBAC, "rolebindings", binding("scalers", "ClusterRole", "scaler", [JANE]), namespace="team"
    )
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    await admin.create("apps/v1", "deployments", deployment, namespace="team")
    jane = as_user(cluster, "jane-token")
    await until_allowed(
        lambda: jane.get("apps/v1", "deployments", "web", namespace="team", subresource="scale")
    )
    status = await jane.get("apps/v1", "deployments", "web", namespace="team", subresource="status")
    assert status["metadata"]["name"] == "web"
    message = await forbidden(lambda: jane.get("apps/v1", "deployments", "web", namespace="team"))
    assert message == (
        'deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments" '
        'in API group "apps" in the namespace "team"'
    )


async def test_non_resource_urls_and_anonymous_public_info(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        for path in ("/version", "/healthz", "/readyz", "/livez"):
            assert (await http.get(path)).status_code == 200, path
        denied = await http.get("/api/v1/namespaces/default/pods")
        assert denied.status_code == 403
        assert denied.json()["message"] == (
            'pods is forbidden: User "system:anonymous" cannot list resource "pods" '
            'in API group "" in the namespace "default"'
        )
        discovery = await http.get("/apis")
        assert discovery.status_code == 403
        assert discovery.json()["message"] == (
            'forbidden: User "system:anonymous" cannot get path "/apis"'
        )
        assert (await http.post("/api/v1/namespaces", json={})).status_code == 403

        # authenticated users get discovery (system:discovery) but not /metrics ...
        jane = {"authorization": "Bearer jane-token"}
        assert (await http.get("/apis", headers=jane)).status_code == 200
        assert (await http.get("/metrics", headers=jane)).status_code == 403
        # ... until a ClusterRole with nonResourceURLs grants it
        await cluster.client.create(
            RBAC,
            "clusterroles",
            {
                "metadata": {"name": "metrics"},
                "rules": [{"nonResourceURLs": ["/metric*"], "verbs": ["get"]}],
            },
        )
        await cluster.client.create(
            RBAC, "clusterrolebindings", binding("jane-metrics", "ClusterRole", "metrics", [JANE])
        )

        async def served() -> bool:
            answer = await http.get("/metrics", headers=jane)
            return answer.status_code == 200 and "apiserver_request_total{" in answer.text

        await wait_for(served)


async def test_cluster_role_through_role_binding_to_a_group(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "clusterroles",
        {
            "metadata": {"name": "secret-reader"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
    )
    await admin.create(
        RBAC,
        "rolebindings",
        binding("devs-read-secrets", "ClusterRole", "secret-reader", [DEVS]),
        namespace="team",
    )
    jane = as_user(cluster, "jane-token")
    await until_allowed(lambda: jane.list("v1", "secrets", namespace="team"))
    await forbidden(lambda: jane.list("v1", "secrets", namespace="other"))
    await forbidden(lambda: jane.list("v1", "secrets"))
    # bob is not in devs
    await forbidden(lambda: as_user(cluster, "bob-token").list("v1", "secrets", namespace="team"))


async def test_default_roles_aggregate_view_edit_admin(cluster: Cluster) -> None:
    admin = cluster.client
    roles = {r["metadata"]["name"]: r for r in (await admin.list(RBAC, "clusterroles"))["items"]}
    view, edit, admin_role = roles["view"], roles["edit"], roles["admin"]
    assert view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] == "true"

    def grants(r: dict[str, Any], group: str, resource: str, verb: str) -> bool:
        return any(
            group in rule.get("apiGroups", ())
            and resource in rule.get("resources", ())
            and verb in rule.get("verbs", ())
            for rule in r.get("rules") or ()
        )

    assert grants(view, "apps", "deployments", "list")
    assert not grants(view, "apps", "deployments", "delete")
    assert grants(edit, "apps", "deployments", "delete") and grants(
        edit, "apps", "deployments", "list"
    )
    assert grants(admin_role, "rbac.authorization.k8s.io", "roles", "create")
    assert grants(admin_role, "apps", "deployments", "delete")
    bindings = {
        b["metadata"]["name"]: b for b in (await admin.list(RBAC, "clusterrolebindings"))["items"]
    }
    assert bindings["cluster-admin"]["subjects"][0]["name"] == "system:masters"

    # a new role labelled aggregate-to-view reaches view (and edit, and admin)
    await admin.create(
        RBAC,
        "clusterroles",
        {
            "metadata": {
                "name": "widgets-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}],
        },
    )

    async def reached_admin() -> bool:
        current = await admin.get(RBAC, "clusterroles", "admin")
        return grants(current, "example.com", "widgets", "get")

    await wait_for(reached_admin)

    # and a user bound to view may read, not write
    await admin.create(
        RBAC,
        "rolebindings",
        binding("bob-views", "ClusterRole", "view", [{"kind": "User", "name": "bob"}]),
        namespace="team",
    )
    bob = as_user(cluster, "bob-token")
    await until_allowed(lambda: bob.list("apps/v1", "deployments", namespace="team"))
    await forbidden(
        lambda: bob.create("v1", "configmaps", {"metadata": {"name": "x"}}, namespace="team")
    )


async def test_a_custom_aggregated_cluster_role_follows_its_selector(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "clusterroles",
        {
            "metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"monitor": "true"}}]},
        },
    )
    part = {
        "metadata": {"name": "monitor-pods", "labels": {"monitor": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    await admin.create(RBAC, "clusterroles", part)

    async def rules() -> list[Any]:
        return list((await admin.get(RBAC, "clusterroles", "monitoring")).get("rules") or [])

    await wait_for(rules)
    assert await rules() == part["rules"]
    await admin.delete(RBAC, "clusterroles", "monitor-pods")

    async def emptied() -> bool:
        return await rules() == []

    await wait_for(emptied)


ESCALATION = (
    'roles.rbac.authorization.k8s.io "deleter" is forbidden: user "jane" '
    '(groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not '
    'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'
)


async def test_escalation_is_forbidden_unless_escalate_or_bind(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "roles",
        role(
            "role-manager",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles", "rolebindings"],
                    "verbs": ["create", "get", "update"],
                },
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            ],
        ),
        namespace="team",
    )
    await admin.create(
        RBAC,
        "rolebindings",
        binding("jane-manages", "Role", "role-manager", [JANE]),
        namespace="team",
    )
    jane = as_user(cluster, "jane-token")
    getter = role("getter", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    await until_allowed(lambda: jane.create(RBAC, "roles", getter, namespace="team"))

    deleter = role("deleter", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}])
    assert await forbidden(lambda: jane.create(RBAC, "roles", deleter, namespace="team")) == (
        ESCALATION
    )
    with pytest.raises(ClientError):
        await admin.get(RBAC, "roles", "deleter", namespace="team")  # nothing stored

    # binding a role whose rules jane lacks (edit) is an escalation too ...
    edit_binding = binding("jane-edits", "ClusterRole", "edit", [JANE])
    message = await forbidden(
        lambda: jane.create(RBAC, "rolebindings", edit_binding, namespace="team")
    )
    assert message.startswith(
        'rolebindings.rbac.authorization.k8s.io "jane-edits" is forbidden: user "jane" '
        '(groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions'
    )
    # ... binding one whose rules she holds is not
    await jane.create(
        RBAC, "rolebindings", binding("bob-gets", "Role", "getter", [JANE]), namespace="team"
    )

    # escalate on roles, bind on the edit ClusterRole: both go through
    await admin.create(
        RBAC,
        "roles",
        role(
            "escalator",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "verbs": ["escalate"],
                },
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["clusterroles"],
                    "resourceNames": ["edit"],
                    "verbs": ["bind"],
                },
            ],
        ),
        namespace="team",
    )
    await admin.create(
        RBAC,
        "rolebindings",
        binding("jane-escalates", "Role", "escalator", [JANE]),
        namespace="team",
    )
    await until_allowed(lambda: jane.create(RBAC, "roles", deleter, namespace="team"))
    created = await jane.create(RBAC, "rolebindings", edit_binding, namespace="team")
    assert created["roleRef"]["name"] == "edit"


async def test_impersonation_needs_the_impersonate_verb(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "roles",
        role("cm-reader", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        namespace="team",
    )
    await admin.create(
        RBAC,
        "rolebindings",
        binding("bob-reads", "Role", "cm-reader", [{"kind": "User", "name": "bob"}]),
        namespace="team",
    )
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        team = "/api/v1/namespaces/team/configmaps"
        # the admin may impersonate anyone: as bob, bob's rights
        as_bob = {"authorization": f"Bearer {ADMIN_TOKEN}", "impersonate-user": "bob"}

        async def bob_can_read() -> bool:
            return (await http.get(team, headers=as_bob)).status_code == 200

        await wait_for(bob_can_read)
        denied = await http.get("/api/v1/namespaces/other/configmaps", headers=as_bob)
        assert denied.status_code == 403
        assert 'User "bob" cannot list resource "configmaps"' in denied.json()["message"]

        # jane may not impersonate ...
        jane_as_bob = {"authorization": "Bearer jane-token", "impersonate-user": "bob"}
        refused = await http.get(team, headers=jane_as_bob)
        assert refused.status_code == 403
        assert refused.json()["message"] == (
            'users "bob" is forbidden: User "jane" cannot impersonate resource "users" '
            'in API group "" at the cluster scope'
        )
        # ... until allowed to impersonate bob (but no group)
        await admin.create(
            RBAC,
            "clusterroles",
            {
                "metadata": {"name": "impersonate-bob"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["users"],
                        "resourceNames": ["bob"],
                        "verbs": ["impersonate"],
                    }
                ],
            },
        )
        await admin.create(
            RBAC,
            "clusterrolebindings",
            binding("jane-is-bob", "ClusterRole", "impersonate-bob", [JANE]),
        )

        async def jane_reads_as_bob() -> bool:
            return (await http.get(team, headers=jane_as_bob)).status_code == 200

        await wait_for(jane_reads_as_bob)
        masters = await http.get(
            team, headers={**jane_as_bob, "impersonate-group": "system:masters"}
        )
        assert masters.status_code == 403
        assert masters.json()["message"].startswith(
            'groups "system:masters" is forbidden: User "jane" cannot impersonate resource "groups"'
        )
        who = await http.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            headers=jane_as_bob,
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        assert who.json()["status"]["userInfo"] == {
            "username": "bob",
            "groups": ["system:authenticated"],
        }


async def test_access_reviews_answer_from_rbac(cluster: Cluster) -> None:
    admin = cluster.client
    await admin.create(
        RBAC,
        "roles",
        role(
            "pod-reader",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        ),
        namespace="team",
    )
    await admin.create(
        RBAC, "rolebindings", binding("jane-pods", "Role", "pod-reader", [JANE]), namespace="team"
    )
    jane = as_user(cluster, "jane-token")

    def ssar(verb: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {"verb": verb, "resource": "pods", "namespace": namespace}
            },
        }

    async def jane_may_list() -> bool:
        review = await jane.create(
            "authorization.k8s.io/v1", "selfsubjectaccessreviews", ssar("list", "team")
        )
        return bool(review["status"]["allowed"])

    await wait_for(jane_may_list)
    review = await jane.create(
        "authorization.k8s.io/v1", "selfsubjectaccessreviews", ssar("list", "team")
    )
    assert review["status"]["reason"] == (
        'RBAC: allowed by RoleBinding "jane-pods/team" of Role "pod-reader" to User "jane"'
    )
    review = await jane.create(
        "authorization.k8s.io/v1", "selfsubjectaccessreviews", ssar("delete", "team")
    )
    assert review["status"]["allowed"] is False

    # SubjectAccessReview: the admin asks about jane (and bob)
    sar: dict[str, Any] = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "jane",
            "groups": ["devs"],
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "team"},
        },
    }
    answered = await admin.create("authorization.k8s.io/v1", "subjectaccessreviews", sar)
    assert answered["status"]["allowed"] is True
    sar["spec"]["user"] = "bob"
    answered = await admin.create("authorization.k8s.io/v1", "subjectaccessreviews", sar)
    assert answered["status"]["allowed"] is False
    # jane may not ask about others (no create on subjectaccessreviews)
    await forbidden(lambda: jane.create("authorization.k8s.io/v1", "subjectaccessreviews", sar))

    # SelfSubjectRulesReview: jane's rules in team (the Role plus the default bindings)
    rules = await jane.create(
        "authorization.k8s.io/v1",
        "selfsubjectrulesreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": "team"},
        },
    )
    status = rules["status"]
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in status[
        "resourceRules"
    ]
    assert {
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    } in status["resourceRules"]
    assert any("/version" in r["nonResourceURLs"] for r in status["nonResourceRules"])
    assert status["incomplete"] is False
    other = await jane.create(
        "authorization.k8s.io/v1",
        "selfsubjectrulesreviews",
        {"kind": "SelfSubjectRulesReview", "spec": {"namespace": "other"}},
    )
    assert all("pods" not in r["resources"] for r in other["status"]["resourceRules"])


def _python_client(url: str, token: str) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return k8s.ApiClient(configuration)


def _python_client_sees(url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with _python_client(url, "builder-token") as api:
        core = k8s.CoreV1Api(api)
        seen["team"] = [cm.metadata.name for cm in core.list_namespaced_config_map("team").items]
        try:
            core.list_namespaced_config_map("other")
        except ApiException as exc:
            seen["other"] = (exc.status, exc.reason)
        try:
            core.delete_namespaced_config_map("cm", "team")
        except ApiException as exc:
            seen["delete"] = exc.status
    return seen


async def test_a_service_account_limited_by_a_role_through_real_clients(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The official client and lightkube, with the ServiceAccount's bearer token."""
    admin = cluster.client
    await admin.create("v1", "configmaps", {"metadata": {"name": "cm"}}, namespace="team")
    await admin.create(
        RBAC,
        "roles",
        role("cm-reader", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        namespace="team",
    )
    await admin.create(
        RBAC,
        "rolebindings",
        binding(
            "builder-reads",
            "Role",
            "cm-reader",
            [{"kind": "ServiceAccount", "name": "builder", "namespace": "team"}],
        ),
        namespace="team",
    )
    builder = Client.in_process(cluster.api, token="builder-token")
    await until_allowed(lambda: builder.list("v1", "configmaps", namespace="team"))

    seen = await trio.to_thread.run_sync(_python_client_sees, cluster.url)
    assert seen == {"team": ["cm"], "other": (403, "Forbidden"), "delete": 403}

    kubeconfig = tmp_path / "kubeconfig"
    merge_kubeconfig(kubeconfig, name="builder", server=cluster.url, token="builder-token")
    names, refused = await trio.to_thread.run_sync(_lightkube_sees, kubeconfig)
    assert names == ["cm"]
    assert refused == (
        403,
        'configmaps "cm" is forbidden: User "system:serviceaccount:team:builder" cannot '
        'get resource "configmaps" in API group "" in the namespace "team"',
    )


def _lightkube_sees(kubeconfig: Path) -> tuple[list[str], tuple[int, str]]:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap

    lightkube = Client(config=KubeConfig.from_file(kubeconfig))
    names = [
        str(cm.metadata and cm.metadata.name) for cm in lightkube.list(ConfigMap, namespace="team")
    ]
    try:
        lightkube.get(ConfigMap, "cm", namespace="team")
    except ApiError as exc:
        return names, (exc.status.code or 0, exc.status.message or "")
    raise AssertionError("lightkube's get was allowed")


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    """Run kubectl 1.33 (isolated from ~/.kube); its exit code and output."""
    binary = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent / "kubectl.1.33"
    with trio.fail_after(60):
        result = await trio.run_process(
            [str(binary), f"--kubeconfig={kubeconfig}", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "HOME": str(kubeconfig.parent)},
        )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def test_kubectl_over_plain_http_is_anonymous_and_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    """kubectl sends no bearer token over plain HTTP, so until TLS it is anonymous: under
    RBAC it gets upstream's 403s, also when it asks to impersonate someone."""
    config = tmp_path / "jane" / "config"
    config.parent.mkdir()
    merge_kubeconfig(config, name="jane", server=cluster.url, token="jane-token")
    # kubectl prints the Status of a raw request with its quotes escaped
    code, out = await kubectl(config, "get", "--raw", "/api")
    assert code == 1
    assert 'User "system:anonymous" cannot get path "/api"' in out.replace('\\"', '"'), out
    code, out = await kubectl(config, "get", "--raw", "/version", "--as", "jane")
    assert code == 1
    refused = 'users "jane" is forbidden: User "system:anonymous" cannot impersonate resource'
    assert refused in out.replace('\\"', '"'), out
    code, out = await kubectl(config, "get", "--raw", "/version")
    assert code == 0 and '"gitVersion"' in out
