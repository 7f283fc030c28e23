"""Entry point of the ``storage`` plugin: registers the local volume drivers
(``kubetrio.io/local`` and ``rancher.io/local-path``) and the controller that creates the
default ``local-path`` StorageClass.

The plugin is a class: each plugin manager (each cluster) has its own volume root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetrio.plugins import hookimpl
from kubetrio.providers import Controller, PluginOptions, StorageDriver

from .local import LocalVolumes
from .localpath import DefaultStorageClass, LocalPathVolumes

DEFAULT_ROOT = Path("/var/lib/kubetrio/volumes")


class StoragePlugin:
    """The ``storage`` plugin: the ``kubetrio.io/local`` driver (``<root>/pvc-…``) and the
    ``rancher.io/local-path`` driver (``<root>/<node>/pvc-…``) under ``root``."""

    def __init__(self) -> None:
        self.root = DEFAULT_ROOT

    @hookimpl
    def kubetrio_add_options(self, options: PluginOptions) -> None:
        """``--volume-root`` for ``server`` and ``agent`` (and ``up``, which passes it on)."""
        options.add(
            "volume-root",
            help=f"Where local volumes are made, a folder per claim (default {DEFAULT_ROOT}; "
            "storage plugin).",
            section="storage",
            key="root",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Take the volume root from ``config["storage"]["root"]``."""
        self.root = Path((config.get("storage") or {}).get("root") or DEFAULT_ROOT)

    @hookimpl
    def kubetrio_register_storage_drivers(self, register: Callable[[StorageDriver], None]) -> None:
        """Register the local volume drivers."""
        register(LocalVolumes(self.root))
        register(LocalPathVolumes(self.root))

    @hookimpl
    def kubetrio_register_controllers(self, register: Callable[[Controller], None]) -> None:
        """Create the default ``local-path`` StorageClass (under the controller manager's
        Lease, so one server does it)."""
        register(DefaultStorageClass())


__kubetrio_plugin__ = StoragePlugin
"""What the entry point instantiates once per plugin manager."""
