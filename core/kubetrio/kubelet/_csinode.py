"""Storage driver registration on a node: the ``CSINode`` object and the node annotation.

What upstream's node-driver-registrar and kubelet do when a CSI driver's socket appears:
the kubelet asks the driver ``NodeGetInfo`` and records the answer where the control plane
looks for it —

* ``CSINode/<node>`` ``spec.drivers[]``: the driver's ``name``, its ``nodeID`` for this
  node, the ``topologyKeys`` of its accessible topology and ``allocatable.count`` (its
  ``max_volumes_per_node``, when it has a limit); the CSINode is owned by the Node;
* the Node's ``csi.volume.kubernetes.io/nodeid`` annotation (JSON ``{driver: nodeID}``) and
  the topology segments as Node labels.

Every storage driver the agent has is registered, in-process ones too (their node id is
the node's name), so the scheduler and the volume controllers find them all in one place.
A driver that does not answer is retried with back-off until it does (one without a node
service, ``UNIMPLEMENTED``, is skipped); entries of drivers this agent no longer has are
dropped, as kubelet drops a driver whose socket went away.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import trio

from kubetrio.client import Client, ClientError
from kubetrio.providers import KubeObject, StorageDriver, StorageDriverError, StorageNodeInfo

log = logging.getLogger(__name__)

NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"
STORAGE = "storage.k8s.io/v1"


async def register_storage_drivers(
    client: Client,
    node_name: str,
    node_uid: str,
    drivers: Mapping[str, StorageDriver],
    *,
    max_delay: float = 30.0,
) -> None:
    """Register every driver in the node's CSINode and annotation; return once all are.

    :param node_uid: the Node's uid, for the CSINode's owner reference.
    :param max_delay: the longest wait between two attempts for a driver that fails.
    """
    lock = trio.Lock()  # one writer of this node's CSINode and annotation at a time
    known = set(drivers)

    async def one(name: str, driver: StorageDriver) -> None:
        delay = 0.5
        while True:
            try:
                info = await driver.node_info(node_name=node_name)
                async with lock:
                    await _install(client, node_name, node_uid, name, info, known)
                log.info("storage driver %s registered on node %s", name, node_name)
                return
            except StorageDriverError as exc:
                if exc.code == "UNIMPLEMENTED":  # no node service: nothing to register
                    log.info("storage driver %s has no node service: %s", name, exc)
                    return
                log.warning("registering storage driver %s on node %s: %s", name, node_name, exc)
            except Exception as exc:  # the driver or the API: both are retried
                log.warning("registering storage driver %s on node %s: %s", name, node_name, exc)
            await trio.sleep(delay)
            delay = min(delay * 2, max_delay)

    async with trio.open_nursery() as nursery:
        for name, driver in drivers.items():
            nursery.start_soon(one, name, driver)


def _driver_entry(name: str, info: StorageNodeInfo) -> KubeObject:
    entry: KubeObject = {
        "name": name,
        "nodeID": info.node_id,
        "topologyKeys": sorted(info.accessible_topology),
    }
    if info.max_volumes_per_node > 0:
        entry["allocatable"] = {"count": info.max_volumes_per_node}
    return entry


async def _install(
    client: Client,
    node_name: str,
    node_uid: str,
    name: str,
    info: StorageNodeInfo,
    known: set[str],
) -> None:
    """Write one driver's registration, re-reading and retrying on write conflicts."""
    while True:
        try:
            await _update_node(client, node_name, name, info, known)
            await _update_csinode(client, node_name, node_uid, name, info, known)
            return
        except ClientError as exc:
            if not exc.conflict:
                raise


async def _update_node(
    client: Client, node_name: str, name: str, info: StorageNodeInfo, known: set[str]
) -> None:
    node = await client.get("v1", "nodes", node_name)
    metadata = node["metadata"]
    annotations: dict[str, str] = dict(metadata.get("annotations") or {})
    labels: dict[str, str] = dict(metadata.get("labels") or {})
    try:
        ids: dict[str, Any] = json.loads(annotations.get(NODE_ID_ANNOTATION) or "{}")
    except ValueError:
        ids = {}
    ids = {k: v for k, v in ids.items() if k in known}
    ids[name] = info.node_id
    value = json.dumps(ids, sort_keys=True, separators=(",", ":"))
    new_labels = {**labels, **info.accessible_topology}
    if annotations.get(NODE_ID_ANNOTATION) == value and new_labels == labels:
        return
    annotations[NODE_ID_ANNOTATION] = value
    metadata["annotations"] = annotations
    metadata["labels"] = new_labels
    await client.update("v1", "nodes", node)  # conditional on its resourceVersion


async def _update_csinode(
    client: Client,
    node_name: str,
    node_uid: str,
    name: str,
    info: StorageNodeInfo,
    known: set[str],
) -> None:
    entry = _driver_entry(name, info)
    try:
        csinode = await client.get(STORAGE, "csinodes", node_name)
    except ClientError as exc:
        if not exc.not_found:
            raise
        metadata: KubeObject = {"name": node_name}
        if node_uid:
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ]
        csinode = {"apiVersion": STORAGE, "kind": "CSINode", "metadata": metadata, "spec": {}}
        csinode["spec"]["drivers"] = [entry]
        await client.create(STORAGE, "csinodes", csinode)
        return
    spec = csinode.setdefault("spec", {})
    current = spec.get("drivers") or []
    drivers = [d for d in current if d.get("name") in known and d.get("name") != name]
    drivers.append(entry)
    drivers.sort(key=lambda d: str(d.get("name")))
    if drivers == current:
        return
    spec["drivers"] = drivers
    await client.update(STORAGE, "csinodes", csinode)  # a 409 (someone else wrote) retries
