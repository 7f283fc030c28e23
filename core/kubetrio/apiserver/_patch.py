"""Applying the four PATCH content types to a stored object (the work is in kubetrio.api.patch)."""

from __future__ import annotations

from typing import Any

from kubetrio.api import patch as patches
from kubetrio.kubeobject import KubeObject

from . import _objects as objects
from . import _validation
from ._status import ApiError, bad_request


def apply_patch(
    media_type: str, current: KubeObject, body: Any, definition: str | None
) -> KubeObject:
    """``current`` with the patch applied; 400/415/422 on a patch that can't apply.

    ``definition`` is the swagger id of the object's type (for strategic merge keys).
    """
    document = objects.deep_copy(current)
    try:
        if media_type == _validation.MERGE_PATCH:
            result = patches.json_merge_patch(document, body)
        elif media_type == _validation.JSON_PATCH:
            result = patches.json_patch(document, body)
        elif media_type == _validation.STRATEGIC_PATCH:
            if definition is None:
                # Kinds without a schema (custom resources) merge as JSON merge patches,
                # as kube-apiserver answers for them.
                raise ApiError(
                    415,
                    "strategic merge patch is not supported for this kind; "
                    "use application/merge-patch+json",
                    reason="UnsupportedMediaType",
                )
            result = patches.strategic_merge_patch(document, body, definition)
        else:
            raise ApiError(
                415,
                f"the patch content type {media_type!r} is not supported; use one of "
                f"{_validation.JSON_PATCH}, {_validation.MERGE_PATCH}, "
                f"{_validation.STRATEGIC_PATCH}, {_validation.APPLY_PATCH}",
                reason="UnsupportedMediaType",
            )
    except ApiError:
        raise
    except patches.JSONPatchTestFailed as exc:
        raise ApiError(
            422,
            f"the server rejected our request due to an error in our request: {exc}",
            reason="Invalid",
        ) from exc
    except (patches.PatchError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise bad_request(f"the patch could not be applied: {exc}") from exc
    if not isinstance(result, dict):
        raise bad_request("the patch turned the object into something that is not an object")
    return result
