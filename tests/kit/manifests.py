"""Manifests the tests build again and again."""

from __future__ import annotations

from typing import Any


def deployment(
    name: str, replicas: int = 3, image: str = "nginx:1.25", **spec: Any
) -> dict[str, Any]:
    """A Deployment manifest with ``app=<name>`` labels; ``spec`` adds to its spec."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
    }


PRESERVE_UNKNOWN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
"""A CRD schema that keeps whatever its objects hold."""


def crd(
    group: str,
    plural: str,
    kind: str,
    *,
    scope: str = "Namespaced",
    schema: dict[str, Any] | None = None,
    subresources: dict[str, Any] | None = None,
    singular: str = "",
    **names: Any,
) -> dict[str, Any]:
    """A CustomResourceDefinition with one served and stored version ``v1``; ``names``
    adds to ``spec.names`` (``shortNames``, ``categories``)."""
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema or PRESERVE_UNKNOWN},
    }
    if subresources is not None:
        version["subresources"] = subresources
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": singular or kind.lower(),
                "kind": kind,
                **names,
            },
            "versions": [version],
        },
    }
