"""Rule matching and coverage of the RBAC plugin, against upstream's semantics."""

from __future__ import annotations

from typing import Any

from kubetrio_auth.rbac.aggregation import aggregated_rules
from kubetrio_auth.rbac.bootstrap import cluster_role_bindings, cluster_roles
from kubetrio_auth.rbac.escalation import not_held_message
from kubetrio_auth.rbac.rules import rule_allows, uncovered

from kubetrio.providers import AuthorizationAttributes, UserInfo


def pods(
    verb: str, *, name: str = "", subresource: str = "", group: str = ""
) -> AuthorizationAttributes:
    return AuthorizationAttributes(
        verb=verb,
        api_group=group,
        resource="pods",
        subresource=subresource,
        name=name,
        namespace="ns",
    )


def test_verbs_groups_and_resources_including_wildcards() -> None:
    rule = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
    assert rule_allows(pods("get"), rule) and rule_allows(pods("list"), rule)
    assert not rule_allows(pods("delete"), rule)
    assert not rule_allows(pods("get", group="apps"), rule)
    assert not rule_allows(pods("get", subresource="log"), rule)  # pods does not cover pods/log
    everything = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    assert rule_allows(pods("delete", subresource="log", group="x"), everything)


def test_subresources_and_star_slash_subresource() -> None:
    log = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}
    assert rule_allows(pods("get", subresource="log"), log)
    assert not rule_allows(pods("get"), log)
    scale = {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["*/scale"]}
    deployments_scale = AuthorizationAttributes(
        verb="get", api_group="apps", resource="deployments", subresource="scale", name="d"
    )
    assert rule_allows(deployments_scale, scale)
    assert not rule_allows(
        AuthorizationAttributes(verb="get", api_group="apps", resource="deployments"), scale
    )


def test_resource_names_limit_the_rule() -> None:
    rule = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}
    assert rule_allows(pods("get", name="a"), rule)
    assert not rule_allows(pods("get", name="b"), rule)
    assert not rule_allows(pods("get"), rule)  # a list has no name


def test_non_resource_urls_with_trailing_star() -> None:
    rule = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}
    assert rule_allows(AuthorizationAttributes(verb="get", path="/healthz"), rule)
    assert rule_allows(AuthorizationAttributes(verb="get", path="/apis/apps/v1"), rule)
    assert not rule_allows(AuthorizationAttributes(verb="get", path="/healthz/etcd"), rule)
    assert not rule_allows(AuthorizationAttributes(verb="post", path="/healthz"), rule)
    # a resource rule says nothing about paths, and the other way round
    assert not rule_allows(
        AuthorizationAttributes(verb="get", path="/api"),
        {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    )


def test_coverage_as_upstream_covers() -> None:
    held = [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["*/scale"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"]},
        {"verbs": ["get"], "nonResourceURLs": ["/logs/*"]},
    ]
    assert uncovered(held, [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]) == []
    assert (
        uncovered(
            held, [{"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments/scale"]}]
        )
        == []
    )
    assert (
        uncovered(
            held,
            [
                {
                    "verbs": ["get"],
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["s"],
                }
            ],
        )
        == []
    )
    assert uncovered(held, [{"verbs": ["get"], "nonResourceURLs": ["/logs/a"]}]) == []
    # holding one name does not cover all names
    assert uncovered(held, [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}])
    missing = uncovered(
        held, [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}]
    )
    assert missing == [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]


def test_escalation_message_is_upstreams() -> None:
    user = UserInfo(name="jane", groups=("devs", "system:authenticated"))
    missing = [
        {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]},
    ]
    assert not_held_message(user, missing) == (
        'user "jane" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC '
        "permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}'
    )


def test_aggregation_unions_selected_roles_in_name_order() -> None:
    aggregate = {
        "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "true"}}]},
    }
    b = {"metadata": {"name": "b", "labels": {"x": "true"}}, "rules": [{"verbs": ["get"]}]}
    a = {"metadata": {"name": "a", "labels": {"x": "true"}}, "rules": [{"verbs": ["list"]}]}
    dup = {"metadata": {"name": "c", "labels": {"x": "true"}}, "rules": [{"verbs": ["get"]}]}
    other = {"metadata": {"name": "d"}, "rules": [{"verbs": ["delete"]}]}
    assert aggregated_rules(aggregate, [aggregate, b, other, dup, a]) == [
        {"verbs": ["list"]},
        {"verbs": ["get"]},
    ]


def test_default_policy_has_upstreams_roles_and_bindings() -> None:
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    for name in (
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:node-proxier",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node",
        "system:monitoring",
    ):
        role = roles[name]
        assert role["metadata"]["annotations"] == {
            "rbac.authorization.kubernetes.io/autoupdate": "true"
        }
        assert role["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    assert roles["view"]["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
    ]
    bindings = {b["metadata"]["name"]: b for b in cluster_role_bindings()}
    assert bindings["cluster-admin"]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}
    ]
    assert [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]] == [
        "system:authenticated",
        "system:unauthenticated",
    ]
    assert bindings["system:kube-dns"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"}
    ]


def test_authorization_mode_chain_and_bad_modes_fail_closed() -> None:
    from kubetrio import plugins

    jane = UserInfo(name="jane", groups=("system:authenticated",))
    get = AuthorizationAttributes(verb="get", resource="pods", namespace="ns")
    for mode, allowed in (("AlwaysAllow", True), ("RBAC", False), ("RBAC,AlwaysAllow", True)):
        manager = plugins.load(only=["rbac"])
        manager.configure(config={"auth": {"authorization_mode": mode}})
        decision = manager.authorize(user=jane, attributes=get)
        assert decision is not None and decision.allowed is allowed, mode
        manager.unconfigure()
    manager = plugins.load(only=["rbac"])
    manager.configure(config={"auth": {"authorization_mode": "RBAC,Webhook"}})
    decision = manager.authorize(user=jane, attributes=get)
    assert decision is not None and not decision.allowed
    assert decision.reason == (
        "--authorization-mode: unknown mode 'Webhook' (one of AlwaysAllow, AlwaysDeny, Node, RBAC)"
    )
    assert "rbac" not in manager.broken


def test_a_binding_to_a_missing_role_is_named_in_the_reason() -> None:
    from kubetrio_auth.rbac.authorizer import RBACAuthorizer

    class Cache:
        def __init__(self, objects: list[dict[str, Any]]) -> None:
            self.objects = objects

        def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
            return None

        def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
            return self.objects

    rbac = RBACAuthorizer()
    rbac.cluster_role_bindings = Cache(  # type: ignore[assignment]
        [
            {
                "metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "gone"},
                "subjects": [{"kind": "User", "name": "jane"}],
            }
        ]
    )
    rbac.cluster_roles = Cache([])  # type: ignore[assignment]
    allowed, reason = rbac.authorize(UserInfo(name="jane"), pods("get"))
    assert not allowed
    assert reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
