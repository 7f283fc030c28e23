"""Secondary indexes over informer caches (by controller, by node), kept by handlers.

A controller that reconciles one owner should not scan every pod of the cluster to
find the owner's pods: an :class:`OwnerIndex` registered on the pod informer keeps
``controller uid → {key: object}`` current as events arrive, so a reconcile touches
only its own objects. :class:`NodeIndex` does the same by ``spec.nodeName``.
"""

from __future__ import annotations

from collections.abc import Callable

from kubetrio.client import KubeObject

from ._objects import controller_ref
from ._reconcile import object_key


class _Index:
    def __init__(self, value_of: Callable[[KubeObject], str]) -> None:
        self._value_of = value_of
        self.buckets: dict[str, dict[str, KubeObject]] = {}
        self._where: dict[str, str] = {}

    def _put(self, obj: KubeObject, *, gone: bool) -> None:
        key = object_key(obj)
        previous = self._where.pop(key, None)
        if previous is not None:
            bucket = self.buckets.get(previous, {})
            bucket.pop(key, None)
            if not bucket:
                self.buckets.pop(previous, None)
        if gone:
            return
        value = self._value_of(obj)
        if value:
            self.buckets.setdefault(value, {})[key] = obj
            self._where[key] = value

    def get(self, value: str) -> list[KubeObject]:
        """The objects indexed under ``value``."""
        return list(self.buckets.get(value, {}).values())

    def on_add(self, obj: KubeObject) -> None:
        """Informer handler: index a new object."""
        self._put(obj, gone=False)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        """Informer handler: re-index a changed object."""
        self._put(new, gone=False)

    def on_delete(self, obj: KubeObject) -> None:
        """Informer handler: drop a deleted object."""
        self._put(obj, gone=True)


def _controller_uid(obj: KubeObject) -> str:
    ref = controller_ref(obj)
    return str(ref.get("uid") or "") if ref is not None else ""


class OwnerIndex(_Index):
    """Objects by the uid of their controller (``get(uid)``)."""

    def __init__(self) -> None:
        super().__init__(_controller_uid)


class NodeIndex(_Index):
    """Pods by ``spec.nodeName`` (``get(node name)``)."""

    def __init__(self) -> None:
        super().__init__(lambda pod: str((pod.get("spec") or {}).get("nodeName") or ""))
