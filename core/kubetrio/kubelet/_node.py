"""This machine as a Kubernetes Node: registration, status, and the Lease heartbeat.

The Node's capacity comes from the machine (CPUs, memory from ``/proc/meminfo``,
ephemeral storage from the agent's disk, 110 pods as kubelet's default), its
``nodeInfo`` from the kernel and OS files. The agent renews its Lease in
``kube-node-lease`` every ``lease_duration / 4`` seconds — the cheap heartbeat the node
lifecycle controller watches — and posts the full status less often, as kubelet does.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kubetrio
from kubetrio.client import Client, ClientError
from kubetrio.providers import KubeObject

KUBELET_VERSION = kubetrio.KUBERNETES_GIT_VERSION
"""Reported as kubeletVersion and kubeProxyVersion: the same release as the API server."""
LEASE_NAMESPACE = "kube-node-lease"
MAX_PODS = 110


def now_rfc3339() -> str:
    """The current time as Kubernetes writes ``metav1.Time`` (seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The current time as ``metav1.MicroTime`` (Lease ``renewTime``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _memory_available_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 1 << 30


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return "Linux"


def machine_architecture() -> str:
    """The Go-style architecture name (amd64, arm64)."""
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def default_address() -> str:
    """This host's address for ``InternalIP``: the first non-loopback IPv4, else 127.0.0.1."""
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            address = str(info[4][0])
            if not address.startswith("127."):
                return address
    except OSError:
        pass
    return "127.0.0.1"


def node_object(
    name: str, *, labels: Mapping[str, str], taints: Sequence[KubeObject]
) -> KubeObject:
    """The Node's metadata and spec as the agent registers them."""
    arch = machine_architecture()
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
        **labels,
    }
    spec: KubeObject = {}
    if taints:
        spec["taints"] = list(taints)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": spec,
    }


def node_status(
    name: str,
    *,
    address: str,
    root_dir: Path,
    runtime_version: str,
    images: Sequence[KubeObject] = (),
    ready: bool = True,
    kubelet_port: int = 0,
) -> KubeObject:
    """Capacity, allocatable, conditions, addresses, nodeInfo and images of this machine."""
    now = now_rfc3339()
    try:
        disk = shutil.disk_usage(root_dir if root_dir.exists() else "/").total
    except OSError:
        disk = 0
    capacity = {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_kib()}Ki",
        "ephemeral-storage": f"{disk // 1024}Ki",
        "pods": str(MAX_PODS),
        "hugepages-2Mi": "0",
    }

    def condition(type_: str, status: str, reason: str, message: str) -> KubeObject:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    # kubelet's default hard eviction thresholds: memory.available < 100Mi,
    # nodefs.available < 10%. (Only reported here; the agent does not evict.)
    memory_pressure = _memory_available_kib() < 100 * 1024
    disk_pressure = False
    try:
        usage = shutil.disk_usage(root_dir if root_dir.exists() else "/")
        disk_pressure = usage.free < usage.total * 0.10
    except OSError:
        pass
    status: KubeObject = {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            condition(
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
            if memory_pressure
            else condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure")
            if disk_pressure
            else condition(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True" if ready else "False",
                "KubeletReady" if ready else "KubeletNotReady",
                "kubelet is posting ready status" if ready else "runtime is not ready",
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": machine_architecture(),
        },
        "images": list(images),
    }
    return status


async def register_node(client: Client, node: KubeObject) -> KubeObject:
    """Create the Node, or take over an existing one (labels merged); return it."""
    try:
        return await client.create("v1", "nodes", node)
    except ClientError as exc:
        if exc.code != 409:
            raise
    name = node["metadata"]["name"]
    patch: dict[str, Any] = {"metadata": {"labels": node["metadata"]["labels"]}}
    return await client.patch("v1", "nodes", name, patch)


class LeaseKeeper:
    """Creates and renews the node's Lease (``kube-node-lease/<node>``)."""

    def __init__(self, client: Client, node_name: str, *, duration: int = 40) -> None:
        self.client = client
        self.node_name = node_name
        self.duration = duration
        self.lease: KubeObject | None = None
        self.node_uid = ""

    async def renew(self) -> None:
        """One renewal: update the cached Lease, re-reading or creating it when needed."""
        if self.lease is not None:
            lease = dict(self.lease)
            lease["spec"] = {**(lease.get("spec") or {}), "renewTime": now_micro()}
            try:
                self.lease = await self.client.update(
                    "coordination.k8s.io/v1", "leases", lease, namespace=LEASE_NAMESPACE
                )
                return
            except ClientError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
                self.lease = None
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": self.duration,
            "renewTime": now_micro(),
        }
        try:
            current = await self.client.get(
                "coordination.k8s.io/v1", "leases", self.node_name, namespace=LEASE_NAMESPACE
            )
            current["spec"] = {**(current.get("spec") or {}), **spec}
            self.lease = await self.client.update(
                "coordination.k8s.io/v1", "leases", current, namespace=LEASE_NAMESPACE
            )
            return
        except ClientError as exc:
            if not exc.not_found:
                raise
        metadata: KubeObject = {"name": self.node_name, "namespace": LEASE_NAMESPACE}
        if self.node_uid:
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": self.node_uid}
            ]
        self.lease = await self.client.create(
            "coordination.k8s.io/v1",
            "leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": metadata,
                "spec": spec,
            },
            namespace=LEASE_NAMESPACE,
        )
