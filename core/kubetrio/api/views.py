"""Small "view" models for hot paths that need only part of an object.

Filtering a watch by labels, routing by namespace/name or building a Table row's
``PartialObjectMetadata`` needs ``metadata`` only. Decoding stored bytes into
:class:`ObjectHeader` skips everything else (msgspec does not build the ignored
fields), which is several times cheaper than decoding the full kind — and the bytes
themselves stay the thing that is sent.
"""

from __future__ import annotations

from .codec import decode, to_builtins
from .generated import meta_v1
from .model import KubeStruct

__all__ = ["ObjectHeader", "decode_header", "partial_object_metadata"]


class ObjectHeader(KubeStruct, kw_only=True):
    """``apiVersion``, ``kind`` and ``metadata`` of any object; other fields ignored."""

    api_version: str | None = None
    kind: str | None = None
    metadata: meta_v1.ObjectMeta | None = None


def decode_header(data: bytes | str) -> ObjectHeader:
    """Decode just the header of an encoded object."""
    return decode(data, ObjectHeader)


def partial_object_metadata(meta: meta_v1.ObjectMeta | None) -> dict[str, object]:
    """The ``PartialObjectMetadata`` a Table row carries as ``object`` (kubectl reads the
    namespace and labels from it for ``-A`` and ``--show-labels``)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": to_builtins(meta) if meta is not None else {},
    }
