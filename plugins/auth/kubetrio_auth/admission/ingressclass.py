"""kube-apiserver's **DefaultIngressClass** admission plugin.

A new Ingress without ``spec.ingressClassName`` and without the deprecated
``kubernetes.io/ingress.class`` annotation gets the default IngressClass: the one
annotated ``ingressclass.kubernetes.io/is-default-class: "true"`` — the newest when
several are, as upstream since 1.28 (before, it refused the Ingress). Updates are left alone.
"""

from __future__ import annotations

from typing import Any

from kubetrio.api.ingress import DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION
from kubetrio.providers import AdmissionRequest, ObjectCache

from ._default_class import newest_default


def default_class(classes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The default IngressClass: the newest of those annotated default (then by name)."""
    return newest_default(classes, (DEFAULT_CLASS_ANNOTATION,))


def mutate(request: AdmissionRequest, classes: ObjectCache | None) -> None:
    """Set a new Ingress's ``spec.ingressClassName`` to the default class's name."""
    if (
        request.operation != "CREATE"
        or request.api_group != "networking.k8s.io"
        or request.resource != "ingresses"
        or request.subresource
        or request.object is None
        or classes is None
    ):
        return
    spec = request.object.setdefault("spec", {})
    annotations = (request.object.get("metadata") or {}).get("annotations") or {}
    if spec.get("ingressClassName") is not None or LEGACY_CLASS_ANNOTATION in annotations:
        return
    chosen = default_class(classes.list())
    if chosen is not None:
        spec["ingressClassName"] = chosen["metadata"]["name"]
