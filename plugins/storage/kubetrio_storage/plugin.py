"""Entry point of the ``storage`` plugin: registers the local volume driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import StorageDriver

from .local import LocalVolumes

DEFAULT_ROOT = Path("/var/lib/kubetrio/volumes")

_root = DEFAULT_ROOT


@hookimpl
def kubetrio_configure(config: dict[str, Any]) -> None:
    """Take the volume root from ``config["storage"]["root"]``."""
    global _root
    _root = Path((config.get("storage") or {}).get("root") or DEFAULT_ROOT)


@hookimpl
def kubetrio_register_storage_drivers(register: Callable[[StorageDriver], None]) -> None:
    """Register the local volume driver."""
    register(LocalVolumes(_root))
