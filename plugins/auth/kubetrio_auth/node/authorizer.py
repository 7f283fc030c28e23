"""The Node authorizer: what a node agent (``system:node:<name>`` in ``system:nodes``)
may do, as upstream's ``plugin/pkg/auth/authorizer/node``.

* Secrets and ConfigMaps: read (``get``, ``list``, ``watch`` by name) only when a pod
  bound to the node references them; PersistentVolumeClaims and PersistentVolumes:
  ``get`` likewise (a claim's ``status`` may be updated); ServiceAccounts: only
  ``create`` of the ``token`` subresource, for one a pod bound to the node runs as.
* Leases: only the node's own, in ``kube-node-lease``; CSINodes: only its own.
* Anything else: the rules of upstream's ``system:node`` ClusterRole, the same for every
  node (the NodeRestriction admission plugin narrows writes of Nodes and Pods to the
  node's own).

A request these rules do not allow gets no opinion (with a reason), so a later
authorizer — RBAC — may still allow it, as ``--authorization-mode=Node,RBAC`` does.
"""

from __future__ import annotations

from kubetrio.providers import ApiCaches, AuthorizationAttributes, ObjectCache, UserInfo

from ..rbac.bootstrap import cluster_roles
from ..rbac.rules import Rule, rule_allows
from .graph import NodeGraph

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
LEASE_NAMESPACE = "kube-node-lease"
WRITE_VERBS = ("get", "create", "update", "patch", "delete")

Decision = tuple[bool, str]
"""(allowed, reason): not allowed means no opinion, the reason says why."""


def node_name(user: UserInfo) -> str | None:
    """The node a user is (upstream's ``NodeIdentity``): None for users that are not
    nodes, ``""`` for a node user whose name is missing."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name.removeprefix(NODE_USER_PREFIX)


def node_rules() -> list[Rule]:
    """The rules every node holds: upstream's ``system:node`` ClusterRole."""
    for role in cluster_roles():
        if role["metadata"]["name"] == "system:node":
            return list(role["rules"])
    raise LookupError("system:node is missing from the bootstrap policy")


def _no_relationship(node: str) -> Decision:
    return False, f"no relationship found between node '{node}' and this object"


class NodeAuthorizer:
    """Decides node users' requests from the graph of their pods' references."""

    def __init__(self) -> None:
        self.graph = NodeGraph()
        self.rules = node_rules()
        self.pods: ObjectCache | None = None

    def ask_for_caches(self, caches: ApiCaches) -> None:
        """Pods and PersistentVolumes: the graph follows them."""
        self.pods = caches.informer("v1", "pods")
        self.graph.follow(self.pods, caches.informer("v1", "persistentvolumes"))

    def authorize(self, user: UserInfo, attrs: AuthorizationAttributes) -> Decision | None:
        """(allowed, reason) for a node user; None for anyone else."""
        node = node_name(user)
        if node is None:
            return None
        if not node:
            return False, f'unknown node for user "{user.name}"'
        if attrs.is_resource_request:
            resource = (attrs.api_group, attrs.resource)
            if resource in (("", "secrets"), ("", "configmaps")):
                return self._read_namespaced(node, attrs)
            if resource == ("", "persistentvolumeclaims"):
                if attrs.subresource == "status":
                    return self._status_update(node, attrs)
                return self._get(node, attrs)
            if resource == ("", "persistentvolumes"):
                return self._get(node, attrs)
            if resource == ("", "serviceaccounts"):
                return self._create_token(node, attrs)
            if resource == ("coordination.k8s.io", "leases"):
                return self._lease(node, attrs)
            if resource == ("storage.k8s.io", "csinodes"):
                return self._csi_node(node, attrs)
        if any(rule_allows(attrs, rule) for rule in self.rules):
            return True, ""
        return False, ""

    def _related(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if not attrs.name:
            return False, "No Object name found"
        if self.graph.reaches(node, attrs.resource, attrs.namespace, attrs.name):
            return True, ""
        return _no_relationship(node)

    def _read_namespaced(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb not in ("get", "list", "watch"):
            return False, "can only read resources of this type"
        if attrs.subresource:
            return False, "cannot read subresource"
        if not attrs.namespace:
            return False, "can only read namespaced object of this type"
        return self._related(node, attrs)

    def _get(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb != "get":
            return False, "can only get individual resources of this type"
        if attrs.subresource:
            return False, "cannot get subresource"
        return self._related(node, attrs)

    def _status_update(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb not in ("update", "patch"):
            return False, "can only get/update/patch this type"
        return self._related(node, attrs)

    def _create_token(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb != "create" or not attrs.name:
            return False, "can only create tokens for individual service accounts"
        if attrs.subresource != "token":
            return False, "can only create token subresource of serviceaccount"
        return self._related(node, attrs)

    def _lease(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb not in WRITE_VERBS:
            return False, "can only get, create, update, patch, or delete a node lease"
        if attrs.namespace != LEASE_NAMESPACE:
            return False, f'can only access leases in the "{LEASE_NAMESPACE}" system namespace'
        # The name of a create is the NodeRestriction admission plugin's to check.
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""

    def _csi_node(self, node: str, attrs: AuthorizationAttributes) -> Decision:
        if attrs.verb not in WRITE_VERBS:
            return False, "can only get, create, update, patch, or delete a CSINode"
        if attrs.subresource:
            return False, "cannot authorize CSINode subresources"
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access CSINode with the same name as the requesting node"
        return True, ""
