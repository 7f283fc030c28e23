"""Filters that look at the node alone: ``spec.nodeName`` and cordoned nodes.

Reasons are worded as kube-scheduler words them, so ``FailedScheduling`` events read the
same (``0/3 nodes are available: 3 node(s) were unschedulable.``).
"""

from __future__ import annotations

from typing import Any

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


class NodeName:
    """Keeps only the node a pod names in ``spec.nodeName``, when it names one."""

    name = "NodeName"
    reason = "node(s) didn't match the requested node name"

    def filter(self, pod: dict[str, Any], node: dict[str, Any]) -> str | None:
        """Return a reason when the pod asks for another node, else None."""
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node["metadata"]["name"]:
            return self.reason
        return None


class NodeUnschedulable:
    """Refuses cordoned nodes (``spec.unschedulable``) unless the pod tolerates the taint."""

    name = "NodeUnschedulable"
    reason = "node(s) were unschedulable"

    def filter(self, pod: dict[str, Any], node: dict[str, Any]) -> str | None:
        """Return a reason when the node is cordoned and the pod does not tolerate it."""
        if not (node.get("spec") or {}).get("unschedulable"):
            return None
        for toleration in (pod.get("spec") or {}).get("tolerations") or ():
            key = toleration.get("key", "")
            operator = toleration.get("operator", "Equal")
            effect = toleration.get("effect", "")
            key_matches = key == UNSCHEDULABLE_TAINT or (operator == "Exists" and not key)
            if key_matches and effect in ("", "NoSchedule"):
                return None
        return self.reason
