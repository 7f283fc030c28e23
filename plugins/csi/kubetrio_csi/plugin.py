"""Entry point of the ``csi`` plugin: a storage driver per external CSI driver configured.

``--csi-driver NAME=/path/to/csi.sock`` (comma-separated for several; in the configuration
file ``csi: {drivers: [NAME=PATH, …]}`` or the same string) names each driver and its
socket; ``--csi-timeout`` is each call's deadline. Each becomes a
:class:`~kubetrio_csi.driver.CSIDriver` registered through
``kubetrio_register_storage_drivers``, so the volume controllers provision through it and
node agents stage and publish through it (and register it in the node's ``CSINode``).

The plugin also registers a controller that creates each driver's ``CSIDriver`` object
when it is missing — what a driver's deployment manifest applies upstream: no attach
step (kubetrio does not call ``ControllerPublishVolume``), persistent volumes. An object
an administrator created first is left as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import trio

from kubetrio.client import Client, ClientError, KubeObject
from kubetrio.plugins import hookimpl
from kubetrio.providers import Controller, PluginOptions, StorageDriver

from .driver import CSIDriver

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
VERIFY_TIMEOUT = 3.0
"""How long configuring waits for each driver's ``GetPluginInfo`` (later calls check again)."""


def parse_drivers(value: str | Sequence[str] | None) -> dict[str, str]:
    """``NAME=SOCKET`` items (a comma-separated string or a list) as ``{name: socket}``."""
    if not value:
        return {}
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    drivers: dict[str, str] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, socket = item.partition("=")
        name, socket = name.strip(), socket.strip()
        if not sep or not name or not socket:
            raise ValueError(f"--csi-driver {item!r}: expected NAME=/path/to/csi.sock")
        path = socket.removeprefix("unix://")
        if not os.path.isabs(path):
            raise ValueError(f"--csi-driver {item!r}: the socket must be an absolute path")
        if name in drivers:
            raise ValueError(f"--csi-driver: driver {name!r} is given twice")
        drivers[name] = socket
    return drivers


def csidriver_object(name: str) -> KubeObject:
    """The ``storage.k8s.io/v1`` CSIDriver for a driver kubetrio reaches through this plugin."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kubetrio-csi"}},
        "spec": {
            "attachRequired": False,
            "podInfoOnMount": False,
            "volumeLifecycleModes": ["Persistent"],
        },
    }


class CSIDriverObjects:
    """Creates the configured drivers' CSIDriver objects if missing (retrying until the API
    answers), then idles."""

    name = "csi-driver-objects"

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Create what is missing; ``started`` at once (nothing to sync)."""
        task_status.started()
        pending = list(self.names)
        delay = 0.5
        while pending:
            for name in list(pending):
                try:
                    await client.create("storage.k8s.io/v1", "csidrivers", csidriver_object(name))
                    log.info("created CSIDriver %s", name)
                except ClientError as exc:
                    if exc.code != 409:  # 409: there already, kept as it is
                        log.warning("creating CSIDriver %s: %s (retrying)", name, exc)
                        continue
                pending.remove(name)
            if pending:
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)
        await trio.sleep_forever()


class CSIPlugin:
    """The ``csi`` plugin: its drivers live on the instance (one per plugin manager)."""

    def __init__(self) -> None:
        self.drivers: list[CSIDriver] = []

    @hookimpl
    def kubetrio_add_options(self, options: PluginOptions) -> None:
        """``--csi-driver`` and ``--csi-timeout`` for ``server``, ``agent`` and ``up``."""
        options.add(
            "csi-driver",
            help="External CSI drivers as NAME=/path/to/csi.sock, comma-separated (csi plugin).",
            section="csi",
            key="drivers",
        )
        options.add(
            "csi-timeout",
            help=f"Deadline of each call to a CSI driver, in seconds (default "
            f"{DEFAULT_TIMEOUT:g}; csi plugin).",
            type=float,
            section="csi",
            key="timeout",
        )

    @hookimpl
    def kubetrio_configure(self, config: dict[str, Any]) -> None:
        """Make a driver per ``config["csi"]["drivers"]`` entry and check the names of those
        already listening (a wrong name makes the plugin fail to configure)."""
        section = config.get("csi") or {}
        timeout = float(section.get("timeout") or DEFAULT_TIMEOUT)
        if timeout <= 0:
            raise ValueError(f"--csi-timeout {timeout:g}: must be positive")
        drivers = [
            CSIDriver(name, socket, timeout=timeout)
            for name, socket in parse_drivers(section.get("drivers")).items()
        ]
        try:
            for driver in drivers:
                driver.verify_now(min(timeout, VERIFY_TIMEOUT))
        except BaseException:
            for driver in drivers:  # the plugin is skipped: leave no channel open
                driver.close()
            raise
        self.drivers = drivers

    @hookimpl
    def kubetrio_register_storage_drivers(self, register: Callable[[StorageDriver], None]) -> None:
        """Register each configured CSI driver."""
        for driver in self.drivers:
            register(driver)

    @hookimpl
    def kubetrio_register_controllers(self, register: Callable[[Controller], None]) -> None:
        """Register the CSIDriver object maker, when drivers are configured."""
        if self.drivers:
            register(CSIDriverObjects([d.name for d in self.drivers]))

    @hookimpl
    def kubetrio_unconfigure(self) -> None:
        """Close the drivers' channels."""
        for driver in self.drivers:
            driver.close()
        self.drivers = []


__kubetrio_plugin__ = CSIPlugin
"""What the entry point instantiates once per plugin manager."""
