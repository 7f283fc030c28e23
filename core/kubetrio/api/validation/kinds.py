"""Per-kind validation of built-in objects, as upstream's ``pkg/apis/*/validation`` does.

Each API group has a module here (``core``, ``apps``, ``batch``, ``networking``,
``policy``, ``rbac``, ``other``) holding a ``VALIDATORS`` table from
``(group, resource)`` to a :data:`KindValidator`. :func:`validate` looks the object's
resource up and returns every :class:`FieldError` with its field path; the API server
turns a non-empty list into a 422 ``Invalid`` Status. Object metadata is checked
elsewhere (:func:`kubetrio.api.validation.validate_object_meta`); these validators check
what is particular to a kind (its spec, its data, what may not change on update).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import FieldError

__all__ = ["KindValidator", "validate", "validated_kinds"]

KindValidator = Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[FieldError]]
"""``(object, old object or None on create) -> errors``."""


def _table() -> dict[tuple[str, str], KindValidator]:
    from . import apps, batch, certificates, core, networking, other, policy, rbac, scheduling

    table: dict[tuple[str, str], KindValidator] = {}
    for module in (core, apps, batch, networking, policy, rbac, other, certificates, scheduling):
        table.update(module.VALIDATORS)
    return table


_VALIDATORS: dict[tuple[str, str], KindValidator] | None = None


def _validators() -> dict[tuple[str, str], KindValidator]:
    global _VALIDATORS
    if _VALIDATORS is None:
        _VALIDATORS = _table()
    return _VALIDATORS


def validate(
    group: str, resource: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> list[FieldError]:
    """Every kind-specific problem of ``obj`` (``old`` on update), in field-path order."""
    validator = _validators().get((group, resource))
    return validator(obj, old) if validator is not None else []


def validated_kinds() -> list[tuple[str, str]]:
    """The ``(group, resource)`` pairs that have a kind validator."""
    return sorted(_validators())
