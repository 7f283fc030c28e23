"""Schema facts about fields, as the patch and apply code needs them.

The generator writes one :class:`FieldMeta` per field that either nests another object
(so patch code can descend into it) or carries Kubernetes list/map/patch extensions.
Plain scalar fields without extensions are left out: for merge purposes they are simply
replaced. Tables are keyed by swagger definition id (``io.k8s.api.core.v1.PodSpec``).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["FieldMeta"]


class FieldMeta(NamedTuple):
    """What the schema says about one field of one definition.

    ``ref`` is the definition id of the object held by the field — directly, as list
    items or as map values, per ``container`` (``""``, ``"list"`` or ``"map"``); None
    for scalars. ``patch_strategy`` is the split ``x-kubernetes-patch-strategy``
    (``("merge",)``, ``("merge", "retainKeys")``, ``("replace",)``), ``merge_key`` its
    ``x-kubernetes-patch-merge-key``. ``list_type`` (``atomic``/``set``/``map``),
    ``list_map_keys`` and ``map_type`` are the server-side-apply extensions.
    """

    ref: str | None = None
    container: str = ""
    merge_key: str | None = None
    patch_strategy: tuple[str, ...] = ()
    list_type: str | None = None
    list_map_keys: tuple[str, ...] = ()
    map_type: str | None = None
