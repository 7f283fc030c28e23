"""Which of several classes is the cluster's default, as upstream's admission plugins pick it.

DefaultStorageClass and DefaultIngressClass share the rule: among the classes annotated
default, the newest wins (then the name), as upstream since 1.28.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def newest_default(
    classes: Iterable[dict[str, Any]], annotations: Iterable[str]
) -> dict[str, Any] | None:
    """The newest class (then by name) carrying any of ANNOTATIONS set to ``"true"``."""
    names = tuple(annotations)
    defaults = [
        c
        for c in classes
        if any(((c.get("metadata") or {}).get("annotations") or {}).get(a) == "true" for a in names)
    ]
    if not defaults:
        return None
    return max(
        defaults,
        key=lambda c: (str(c["metadata"].get("creationTimestamp") or ""), c["metadata"]["name"]),
    )
