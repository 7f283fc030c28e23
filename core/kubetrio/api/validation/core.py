"""Validation of the core (``v1``) kinds (see :mod:`kubetrio.api.validation.kinds`).

:func:`validate_pod_spec` and :func:`validate_pod_template_spec` are shared with the
workload kinds (apps, batch), which embed a pod template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import FieldError
from .kinds import KindValidator

__all__ = ["VALIDATORS", "validate_pod_spec", "validate_pod_template_spec"]


def validate_pod_spec(spec: Mapping[str, Any], path: str) -> list[FieldError]:
    """Problems of a PodSpec found at ``path`` (e.g. ``spec`` or ``spec.template.spec``)."""
    return []


def validate_pod_template_spec(template: Mapping[str, Any], path: str) -> list[FieldError]:
    """Problems of a PodTemplateSpec at ``path`` (its labels and its pod spec)."""
    return []


VALIDATORS: dict[tuple[str, str], KindValidator] = {}
