"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies (kubectl 1.32+).

Not built yet: such bodies are refused with 415 and a message saying so.
"""

from __future__ import annotations

from typing import Any

from ._status import ApiError


def decode_protobuf_body(body: bytes) -> Any:
    """Refuse protobuf bodies with 415 until the decoder lands."""
    raise ApiError(
        415,
        "the body of the request was in an unknown format - protobuf request bodies are not "
        "supported yet; accepted media types include: application/json, application/yaml",
        reason="UnsupportedMediaType",
    )
