"""``KubeObject``: a Kubernetes object as decoded JSON, the one alias every layer uses.

Objects travel as plain dicts through the client, controllers, node agent and plugins
(typed models are for validation at the API server's edge), so the alias lives at the
bottom, importing nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KubeObject"]

KubeObject = dict[str, Any]
"""A Kubernetes object (or any part of one) as decoded JSON."""
