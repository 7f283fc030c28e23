"""NamespaceLifecycle's one rule the core does not apply itself: the namespaces every
cluster relies on cannot be deleted. (Creating in a missing or terminating namespace is
refused by the API server before admission.)"""

from __future__ import annotations

from kubetrio.providers import AdmissionRequest

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
"""As kube-apiserver's NamespaceLifecycle plugin (kube-node-lease may be deleted)."""


def validate(request: AdmissionRequest) -> list[str] | None:
    """Refuse deleting an immortal namespace, worded as upstream."""
    if (
        request.operation == "DELETE"
        and request.api_group == ""
        and request.resource == "namespaces"
        and not request.subresource
        and request.name in IMMORTAL_NAMESPACES
    ):
        return ["this namespace may not be deleted"]
    return None
