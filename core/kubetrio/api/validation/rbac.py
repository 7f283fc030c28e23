"""Validation of the rbac kinds (see :mod:`kubetrio.api.validation.kinds`)."""

from __future__ import annotations

from .kinds import KindValidator

VALIDATORS: dict[tuple[str, str], KindValidator] = {}
