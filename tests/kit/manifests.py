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
