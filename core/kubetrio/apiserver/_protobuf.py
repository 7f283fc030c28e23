"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies (kubectl 1.32+).

The work happens in :mod:`kubetrio.apiserver.protobuf`; this module is the request-body
gate's door to it, turning every decoding failure into a 400 BadRequest.
"""

from __future__ import annotations

from typing import Any

from ._status import ApiError


def decode_protobuf_body(body: bytes) -> Any:
    """The JSON-shaped dict of a protobuf request body.

    :raises ApiError: 400 BadRequest when the body is malformed or of an unknown kind.
    """
    from .protobuf import ProtobufError, WireError, decode_object

    try:
        return decode_object(body)
    except (ProtobufError, WireError) as exc:
        raise ApiError(400, f"the request body is not a valid protobuf object: {exc}") from exc
    except RecursionError as exc:  # defence in depth: MAX_DEPTH should stop it first
        raise ApiError(400, "the request body is nested too deeply") from exc
