"""Filters that look at the node alone: ``spec.nodeName`` and cordoned nodes.

Reasons are worded as kube-scheduler words them, so ``FailedScheduling`` events read the
same (``0/3 nodes are available: 3 node(s) were unschedulable.``).
"""

from __future__ import annotations

from typing import Any

from kubetrio.providers import SKIP, CycleState, PodInfo, Unresolvable

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


class NodeName:
    """Keeps only the node a pod names in ``spec.nodeName``, when it names one."""

    name = "NodeName"
    requeue_on = frozenset({"NodeAdd"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    node_local = True  # results depend on the pod and this node only (memoised)
    reason = Unresolvable("node(s) didn't match the requested node name")

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Any:
        """Nothing to check for pods that name no node (nearly all of them)."""
        return None if (pod.pod.get("spec") or {}).get("nodeName") else SKIP

    def filter(
        self, pod: dict[str, Any], node: dict[str, Any], state: CycleState | None = None
    ) -> str | None:
        """Return a reason when the pod asks for another node, else None."""
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node["metadata"]["name"]:
            return self.reason
        return None


class NodeUnschedulable:
    """Refuses cordoned nodes (``spec.unschedulable``) unless the pod tolerates the taint."""

    name = "NodeUnschedulable"
    requeue_on = frozenset({"NodeAdd", "NodeUpdate"})
    """The cluster changes that may let a pod this plugin rejected fit."""
    node_local = True  # results depend on the pod and this node only (memoised)
    reason = Unresolvable("node(s) were unschedulable")

    def filter(
        self, pod: dict[str, Any], node: dict[str, Any], state: CycleState | None = None
    ) -> str | None:
        """Return a reason when the node is cordoned and the pod does not tolerate it."""
        spec = node.get("spec")
        if not spec or not spec.get("unschedulable"):
            return None
        for toleration in (pod.get("spec") or {}).get("tolerations") or ():
            key = toleration.get("key", "")
            operator = toleration.get("operator", "Equal")
            effect = toleration.get("effect", "")
            key_matches = key == UNSCHEDULABLE_TAINT or (operator == "Exists" and not key)
            if key_matches and effect in ("", "NoSchedule"):
                return None
        return self.reason
