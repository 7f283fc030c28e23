"""The ``local-path`` driver and StorageClass, shaped like k3s' local-path provisioner.

A volume is a directory ``<root>/<node>/pvc-<claim uid>`` on the node the scheduler
picked: the class binds ``WaitForFirstConsumer``, so ``CreateVolume`` gets that node as
requisite topology (``kubernetes.io/hostname``) and answers with it as the volume's
accessible topology, which becomes the PV's node affinity — a pod using the claim later
goes to the same node. The volume id is ``<node>/<pv name>`` so ``DeleteVolume`` finds
the directory again; the path is in the volume context (``spec.csi.volumeAttributes``,
what ``kubectl get pv -o yaml`` shows). As k3s, a request without a node is refused.

:class:`DefaultStorageClass` is a controller the plugin registers: on leading, it creates
the ``local-path`` StorageClass (default, ``WaitForFirstConsumer``, ``Delete``) unless
one of that name exists, so an administrator's edits are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

from kubetrio.client import ClientError
from kubetrio.providers import (
    CreatedVolume,
    CreateVolumeRequest,
    StorageDriverError,
    StorageDriverInfo,
    StorageNodeInfo,
)

from .local import LocalVolumes

log = logging.getLogger("kubetrio.storage")

PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "local-path"
HOSTNAME = "kubernetes.io/hostname"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _part(text: str, what: str) -> str:
    if not text or "/" in text or text in (".", ".."):
        raise StorageDriverError("INVALID_ARGUMENT", f"unusable {what} {text!r}")
    return text


class LocalPathVolumes(LocalVolumes):
    """Per-node directory volumes (``rancher.io/local-path``)."""

    name = PROVISIONER

    def _path_of(self, volume_id: str) -> Path:
        node, _, volume = volume_id.rpartition("/")
        return self.root / _part(node, "node in volume id") / _part(volume, "volume id")

    async def get_info(self) -> StorageDriverInfo:
        """As the local driver, plus topology (volumes live on one node)."""
        info = await super().get_info()
        return StorageDriverInfo(
            name=self.name,
            vendor_version=info.vendor_version,
            plugin_capabilities=info.plugin_capabilities | {"VOLUME_ACCESSIBILITY_CONSTRAINTS"},
            controller_capabilities=info.controller_capabilities,
            node_capabilities=info.node_capabilities,
        )

    async def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        """Make ``<root>/<node>/<name>`` for the node of the requisite (or preferred)
        topology."""
        nodes = [
            segment[HOSTNAME]
            for segment in (*request.requisite_topology, *request.preferred_topology)
            if segment.get(HOSTNAME)
        ]
        if not nodes:
            raise StorageDriverError(
                "INVALID_ARGUMENT",
                "configuration error, no node was specified "
                "(the local-path class binds WaitForFirstConsumer)",
            )
        node = _part(nodes[0], "node")
        volume_id = f"{node}/{_part(request.name, 'volume name')}"
        path = self._path_of(volume_id)
        await trio.to_thread.run_sync(lambda: path.mkdir(parents=True, exist_ok=True))
        path.chmod(0o777)  # as k3s: any pod user may write
        return CreatedVolume(
            volume_id=volume_id,
            capacity_bytes=request.capacity_bytes,
            volume_context={"path": str(path), "node": node},
            accessible_topology=({HOSTNAME: node},),
        )

    async def node_info(self, *, node_name: str) -> StorageNodeInfo:
        """The node's name is its id and its ``kubernetes.io/hostname`` topology."""
        return StorageNodeInfo(node_id=node_name, accessible_topology={HOSTNAME: node_name})


def local_path_class() -> dict[str, Any]:
    """The ``local-path`` StorageClass, annotated as the default, as k3s ships it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


class DefaultStorageClass:
    """A controller that creates the ``local-path`` StorageClass when it is missing."""

    name = "local-path-storageclass"

    async def run(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Create the class (once per leadership; an existing one is left as it is)."""
        task_status.started()
        while True:
            try:
                await client.create("storage.k8s.io/v1", "storageclasses", local_path_class())
                log.info("created the %s StorageClass", CLASS_NAME)
            except ClientError as exc:
                if exc.code != 409:  # 409: it exists, perhaps edited; keep it
                    log.warning("creating the %s StorageClass: %s", CLASS_NAME, exc)
                    await trio.sleep(5)
                    continue
            await trio.sleep_forever()
