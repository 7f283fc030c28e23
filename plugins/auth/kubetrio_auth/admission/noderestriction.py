"""NodeRestriction: a node agent may change only itself and the pods bound to it.

As upstream's ``plugin/pkg/admission/noderestriction``, for requests of users the Node
authorizer knows as nodes (``system:node:<name>`` in ``system:nodes``):

* Nodes: only its own (any subresource); on create no ``node-restriction.kubernetes.io/``
  labels and no ``kubernetes.io``/``k8s.io`` labels but the kubelet's own; on update no
  change of taints or of such labels.
* Pods: create only mirror pods bound to itself (owned by its Node, referencing no
  ServiceAccount, Secret, ConfigMap or claim), delete only pods bound to itself; update
  the ``status`` of pods bound to itself (not their labels); evict pods bound to itself;
  never their ephemeral containers.
* PersistentVolumeClaims: only ``status.capacity`` and ``status.conditions`` of the
  status. ServiceAccount tokens: only bound to a pod on the node (by uid). Leases: only
  its own in ``kube-node-lease``. CSINodes: only its own.

Messages are upstream's (``node "a" is not allowed to modify node "b"``).
"""

from __future__ import annotations

import copy

from kubetrio.providers import AdmissionRequest, KubeObject, ObjectCache

from ..node.authorizer import LEASE_NAMESPACE, node_name
from ..node.graph import pod_references

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
NODE_RESTRICTION_LABELS = "node-restriction.kubernetes.io"
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    }
)
"""The labels a kubelet may set on its Node (upstream's ``kubeletapis.IsKubeletLabel``)."""
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in_domain(domain: str, wanted: str) -> bool:
    return domain == wanted or domain.endswith("." + wanted)


def _label_domain(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def forbidden_labels(modified: set[str]) -> list[str]:
    """The label keys among ``modified`` a node may not set, add or remove, sorted."""
    refused = set()
    for key in modified:
        domain = _label_domain(key)
        if _in_domain(domain, NODE_RESTRICTION_LABELS):
            refused.add(key)
        kubernetes = _in_domain(domain, "kubernetes.io") or _in_domain(domain, "k8s.io")
        kubelet = key in KUBELET_LABELS or any(
            _in_domain(domain, allowed) for allowed in KUBELET_LABEL_DOMAINS
        )
        if kubernetes and not kubelet:
            refused.add(key)
    return sorted(refused)


def _labels(obj: KubeObject | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _modified(new: dict[str, str], old: dict[str, str]) -> set[str]:
    return {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}


def _node_of(pod: KubeObject | None) -> str:
    return str(((pod or {}).get("spec") or {}).get("nodeName") or "")


class NodeRestriction:
    """The plugin; reads pods and nodes from the API server's caches."""

    def __init__(self) -> None:
        self.enabled = False
        self.pods: ObjectCache | None = None
        self.nodes: ObjectCache | None = None

    def validate(self, request: AdmissionRequest) -> list[str]:
        """What is wrong with a node's request (nothing for other users)."""
        node = node_name(request.user) if self.enabled else None
        if node is None:
            return []
        if not node:
            return [f'could not determine node from user "{request.user.name}"']
        group, resource = request.api_group, request.resource
        if (group, resource) == ("", "pods"):
            return self._pod(node, request)
        if (group, resource) == ("", "nodes"):
            return self._node(node, request)
        if (group, resource) == ("", "persistentvolumeclaims"):
            if request.subresource != "status":
                return ["may only update PVC status"]
            return self._claim_status(node, request)
        if (group, resource) == ("", "serviceaccounts"):
            return self._token(node, request)
        if (group, resource) == ("coordination.k8s.io", "leases"):
            if request.namespace != LEASE_NAMESPACE:
                return [f'can only access leases in the "{LEASE_NAMESPACE}" system namespace']
            if request.name != node:
                return ["can only access node lease with the same name as the requesting node"]
        if (group, resource) == ("storage.k8s.io", "csinodes") and request.name != node:
            return ["can only access CSINode with the same name as the requesting node"]
        return []

    # --- pods ---------------------------------------------------------------------------

    def _pod(self, node: str, request: AdmissionRequest) -> list[str]:
        if request.subresource == "status":
            if request.operation != "UPDATE":
                return [f'unexpected operation "{request.operation}"']
            if _node_of(request.old_object) != node:
                return [
                    f'node "{node}" can only update pod status for pods with spec.nodeName '
                    "set to itself"
                ]
            if _labels(request.object) != _labels(request.old_object):
                return [f'node "{node}" cannot update labels through pod status']
            return []
        if request.subresource == "eviction":
            if request.operation != "CREATE":
                return [f"unexpected operation {request.operation}"]
            name = request.name or ((request.object or {}).get("metadata") or {}).get("name")
            if not name:
                return ["could not determine pod from request data"]
            pod = self.pods.get(str(name), request.namespace) if self.pods else None
            if pod is None:
                return [f'pods "{name}" not found']
            if _node_of(pod) != node:
                return [f"node {node} can only evict pods with spec.nodeName set to itself"]
            return []
        if request.subresource == "ephemeralcontainers":
            # Debug containers are a user's tool, never a node's (upstream's wording).
            if request.operation != "UPDATE":
                return [f"unexpected operation {request.operation}"]
            return [
                f'node "{node}" is forbidden to update pod "{request.name}" ephemeral containers'
            ]
        if request.subresource:
            return [
                f"unexpected pod subresource \"{request.subresource}\", only 'status' and "
                "'eviction' are allowed"
            ]
        if request.operation == "CREATE":
            return self._mirror_pod(node, request.object or {})
        if request.operation == "DELETE":
            if _node_of(request.old_object) != node:
                return [f'node "{node}" can only delete pods with spec.nodeName set to itself']
            return []
        return [
            f'unexpected operation "{request.operation}", node "{node}" can only create and '
            "delete mirror pods"
        ]

    def _mirror_pod(self, node: str, pod: KubeObject) -> list[str]:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        if MIRROR_POD_ANNOTATION not in (meta.get("annotations") or {}):
            return [
                f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can '
                "only create mirror pods"
            ]
        if spec.get("nodeName") != node:
            return [f'node "{node}" can only create pods with spec.nodeName set to itself']
        owners = meta.get("ownerReferences") or []
        if len(owners) > 1:
            return [
                f'node "{node}" can only create pods with a single owner reference set to itself'
            ]
        if not owners:
            return [f'node "{node}" can only create pods with an owner reference set to itself']
        owner = owners[0]
        if (owner.get("apiVersion"), owner.get("kind"), owner.get("name")) != ("v1", "Node", node):
            return [f'node "{node}" can only create pods with an owner reference set to itself']
        if not owner.get("controller"):
            return [
                f'node "{node}" can only create pods with a controller owner reference set '
                "to itself"
            ]
        if owner.get("blockOwnerDeletion"):
            return [f'node "{node}" must not set blockOwnerDeletion on an owner reference']
        found = self.nodes.get(node) if self.nodes else None
        if found is None:
            return [f'nodes "{node}" not found']
        if owner.get("uid") != found["metadata"].get("uid"):
            return [
                f"node {node} UID mismatch: expected {owner.get('uid')} got "
                f"{found['metadata'].get('uid')}"
            ]
        if spec.get("serviceAccountName"):
            return [f'node "{node}" can not create pods that reference a service account']
        kinds = {ref[0] for ref in pod_references(pod) if ref[0] != "serviceaccounts"}
        for resource in ("secrets", "configmaps"):
            if resource in kinds:
                return [f'node "{node}" can not create pods that reference {resource}']
        for volume in spec.get("volumes") or ():
            for source in (volume.get("projected") or {}).get("sources") or ():
                if source.get("clusterTrustBundle") is not None:
                    return [f'node "{node}" can not create pods that reference clustertrustbundles']
        if any(v.get("persistentVolumeClaim") for v in spec.get("volumes") or ()):
            return [f'node "{node}" can not create pods that reference persistentvolumeclaims']
        return []

    # --- nodes, claims, tokens ----------------------------------------------------------

    def _node(self, node: str, request: AdmissionRequest) -> list[str]:
        if request.name != node:
            return [f'node "{node}" is not allowed to modify node "{request.name}"']
        new = request.object or {}
        if request.operation == "CREATE":
            if (new.get("spec") or {}).get("configSource") is not None:
                return [f'node "{node}" is not allowed to create pods with a non-nil configSource']
            refused = forbidden_labels(set(_labels(new)))
            if refused:
                return [
                    f'node "{node}" is not allowed to set the following labels: '
                    + ", ".join(refused)
                ]
        if request.operation == "UPDATE":
            old = request.old_object or {}
            source = (new.get("spec") or {}).get("configSource")
            if source is not None and source != (old.get("spec") or {}).get("configSource"):
                return [
                    f'node "{node}" is not allowed to update configSource to a new non-nil '
                    "configSource"
                ]
            if (new.get("spec") or {}).get("taints") != (old.get("spec") or {}).get("taints"):
                return [f'node "{node}" is not allowed to modify taints']
            refused = forbidden_labels(_modified(_labels(new), _labels(old)))
            if refused:
                return ["is not allowed to modify labels: " + ", ".join(refused)]
        return []

    def _claim_status(self, node: str, request: AdmissionRequest) -> list[str]:
        if request.operation != "UPDATE":
            return [f'unexpected operation "{request.operation}"']

        def comparable(claim: KubeObject | None) -> KubeObject:
            claim = copy.deepcopy(claim or {})
            meta = claim.setdefault("metadata", {})
            for key in ("resourceVersion", "managedFields"):
                meta.pop(key, None)
            status = claim.setdefault("status", {})
            for key in ("capacity", "conditions", "allocatedResourceStatuses"):
                status.pop(key, None)
            status.pop("allocatedResources", None)
            return claim

        if comparable(request.object) != comparable(request.old_object):
            return [
                f'node "{node}" is not allowed to update fields other than status.capacity '
                "and status.conditions"
            ]
        return []

    def _token(self, node: str, request: AdmissionRequest) -> list[str]:
        if request.operation != "CREATE" or request.subresource != "token":
            return []
        ref = ((request.object or {}).get("spec") or {}).get("boundObjectRef") or {}
        if (ref.get("apiVersion"), ref.get("kind")) != ("v1", "Pod") or not ref.get("name"):
            return ["node requested token not bound to a pod"]
        if not ref.get("uid"):
            return ["node requested token with a pod binding without a uid"]
        pod = self.pods.get(str(ref["name"]), request.namespace) if self.pods else None
        if pod is None:
            return [f'pods "{ref["name"]}" not found']
        if ref["uid"] != pod["metadata"].get("uid"):
            return [
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                "in record. The object might have been deleted and then recreated"
            ]
        if _node_of(pod) != node:
            return ["node requested token bound to a pod scheduled on a different node"]
        return []
