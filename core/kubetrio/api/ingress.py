"""The cluster's built-in IngressClass: what the API server creates on start, the
DefaultIngressClass admission reads and the node agents' nginx controller serves.

Named after what implements it, as k3s names its class ``traefik``; ``kubetrio-`` keeps it
apart from a real ingress-nginx installed beside it (whose class is ``nginx``).
"""

from __future__ import annotations

from typing import Any

INGRESS_CLASS = "kubetrio-nginx"
"""The name of the built-in IngressClass."""
INGRESS_CONTROLLER = "kubetrio.io/ingress-nginx"
"""Its ``spec.controller``: the node agents' nginx controller serves every class naming it."""
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
"""An IngressClass annotated ``"true"`` is the default for Ingresses without a class."""
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
"""The deprecated annotation naming an Ingress's class (still honoured, as upstream)."""


def builtin_ingress_class() -> dict[str, Any]:
    """The IngressClass the API server creates when it is missing: the default class."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": INGRESS_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
            "labels": {"app.kubernetes.io/managed-by": "kubetrio"},
        },
        "spec": {"controller": INGRESS_CONTROLLER},
    }
