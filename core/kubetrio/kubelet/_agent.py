"""The node agent: registers the node, heartbeats, and runs a worker per bound pod.

``NodeAgent.run`` follows trio's start protocol. It starts the container runtime and
the network plugin's node services, registers the Node (or takes it over), starts the
Lease heartbeat and the periodic status update, and watches the pods bound to this node
(``fieldSelector=spec.nodeName=<node>``). Each pod gets a
:class:`~kubetrio.kubelet._worker.PodWorker`; a deleted pod's worker stops its
containers within the grace period and then deletes the pod with
``gracePeriodSeconds=0``, which is what lets the API server drop it.

The agent reaches the cluster only through its :class:`~kubetrio.client.Client`, so the
same code runs in ``kubetrio server`` (in-process client) and ``kubetrio agent`` (HTTP).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.client import Client, ClientError, EventRecorder, Informer
from kubetrio.images import (
    ImageStore,
    RegistryClient,
    RegistryConfig,
    credentials_from_secrets,
)
from kubetrio.pki import TLSConfig
from kubetrio.plugins import PluginManager
from kubetrio.providers import ContainerRuntime, KubeObject, NetworkPlugin, StorageDriver

from ._csi import NodeVolumes, directory_usage, remove_unmounted
from ._csinode import register_storage_drivers
from ._logs_reader import read_log
from ._nfs import unmount_pod as unmount_nfs_volumes
from ._node import LeaseKeeper, default_address, node_object, node_status, register_node
from ._prom import NodeMetrics
from ._resources import (
    ResourceSampler,
    Snapshot,
    cpu_stats,
    memory_stats,
    resource_metrics,
    summary_containers,
)
from ._server import KubeletServer
from ._volumes import unmount_memory_volumes
from ._worker import PodWorker

log = logging.getLogger(__name__)


def _runc_version() -> str:
    try:
        out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=5)
        return "runc://" + out.stdout.split()[2]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "runc://unknown"


class NodeAgent:
    """The kubelet of kubetrio. See the module docstring.

    :param client: how the agent reaches the API server.
    :param node_name: the Node's name.
    :param plugins: loaded plugins: network plugins (by ``network`` name) and container
        runtimes (by ``runtime`` name) come from them.
    :param runtime: a :class:`~kubetrio.providers.ContainerRuntime`, the name of one a
        plugin registered, or ``"runc"`` (the built-in :class:`~kubetrio.runtime.RuncRuntime`).
    :param root_dir: the agent's state: images, sandboxes, container bundles, volumes.
    :param log_dir: container logs (``<ns>_<pod>_<uid>/<container>/<n>.log``);
        default ``<root_dir>/logs``.
    :param registries: registry mirrors (k3s ``registries.yaml`` shape) for image pulls.
    :param network: the network plugin's name; ``""`` (the default) the only one the
        plugins registered (none registered: loopback only); None runs pods with
        loopback only.
    :param address: the node's InternalIP (default: this host's first non-loopback IPv4).
    :param backoff_base, backoff_max: container restart back-off (kubelet: 10 s, 300 s).
    :param sync_period: how often ConfigMap/Secret volumes are refreshed.
    :param kubelet_port: serve container logs on this port (0: any free port; None: no
        server); advertised in the Node's ``daemonEndpoints``. ``kubelet_host`` is the
        address to bind (default: the node address). ``kubelet_tls``: serve HTTPS with
        this certificate and admit callers by a client certificate of its client CA and a
        SubjectAccessReview (what the API server presents); without it, plain HTTP and
        ``kubelet_token`` the Bearer token the API server must send.
    :param container_log_max_size, container_log_max_files: log rotation (kubelet's
        ``containerLogMaxSize``/``containerLogMaxFiles``).
    :param image_gc_high_percent, image_gc_low_percent: when the image disk is fuller
        than the high mark, unused images are removed until it is below the low mark
        (checked every ``image_gc_interval`` seconds), as kubelet's image GC.
    :param cluster_dns, cluster_domain: the cluster DNS servers and domain that
        ``dnsPolicy: ClusterFirst`` pods resolve with (kubelet's ``--cluster-dns``); with
        no servers, pods use the node's resolv.conf.
    :param startup_concurrency: how many pods are brought up at once; the rest queue in
        arrival order, so a burst's first pods are Running early instead of all at the end.
    :param eviction_interval: how often emptyDir usage is measured against ``sizeLimit``
        (a pod over it is evicted, as kubelet's eviction manager does).
    """

    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        plugins: PluginManager | None = None,
        runtime: ContainerRuntime | str = "runc",
        root_dir: str | Path = "/var/lib/kubetrio/agent",
        log_dir: str | Path | None = None,
        registries: RegistryConfig | Mapping[str, Any] | None = None,
        network: str | None = "",
        address: str | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[KubeObject] = (),
        backoff_base: float = 10.0,
        backoff_max: float = 300.0,
        sync_period: float = 10.0,
        lease_duration: int = 40,
        status_interval: float = 60.0,
        cgroup_parent: str = "/kubetrio",
        netns_prefix: str = "kubetrio-",
        startup_concurrency: int = 4,
        kubelet_port: int | None = None,
        kubelet_host: str | None = None,
        kubelet_token: str = "",
        kubelet_tls: TLSConfig | None = None,
        container_log_max_size: int = 10 * 1024 * 1024,
        container_log_max_files: int = 5,
        image_gc_high_percent: float = 85.0,
        image_gc_low_percent: float = 80.0,
        image_gc_interval: float = 300.0,
        cluster_dns: Sequence[str] = (),
        cluster_domain: str = "cluster.local",
        eviction_interval: float = 10.0,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.plugins = plugins
        self.root_dir = Path(root_dir)
        self.pods_dir = self.root_dir / "pods"
        self.log_dir = Path(log_dir) if log_dir else self.root_dir / "logs"
        if isinstance(registries, Mapping):
            registries = RegistryConfig.from_dict(registries)
        self.registries = registries or RegistryConfig()
        self.address = address or default_address()
        self.labels = dict(labels or {})
        self.taints = list(taints)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sync_period = sync_period
        self.lease_duration = lease_duration
        self.status_interval = status_interval
        self.network = self._find_network(network)
        self.storage_drivers: dict[str, StorageDriver] = {}
        """Storage drivers from the plugins, by name (PersistentVolume ``spec.csi.driver``)."""
        if plugins is not None:
            for registered in plugins.storage_drivers():
                self.storage_drivers[registered.provider.name] = registered.provider
        self.node_volumes = NodeVolumes(
            self.storage_drivers, root_dir=self.root_dir, pods_dir=self.pods_dir
        )
        """Staging and publishing of PersistentVolumes on this node (CSI node calls)."""
        self.eviction_interval = eviction_interval
        self._registry_client: RegistryClient | None = None
        self.images: ImageStore | None = None
        self.cluster_dns = list(cluster_dns)
        self.cluster_domain = cluster_domain
        self.image_gc_high_percent = image_gc_high_percent
        self.image_gc_low_percent = image_gc_low_percent
        self.image_gc_interval = image_gc_interval
        self.container_log_max_size = container_log_max_size
        self.container_log_max_files = container_log_max_files
        self.metrics = NodeMetrics()
        """This agent's Prometheus metrics (its endpoint's ``/metrics``)."""
        self.runtime = self.metrics.timed(self._make_runtime(runtime, cgroup_parent, netns_prefix))
        # Pods' cgroups are where the runc runtime puts them; a plugin's runtime has
        # none we know of, and then only the node's figures are reported.
        self.resources = ResourceSampler(getattr(self.runtime, "cgroup_parent", None))
        """CPU and memory of the node, pods and containers (Summary API, /metrics/resource)."""
        self.workers: dict[str, PodWorker] = {}
        self.events = EventRecorder(client, "kubelet", host=node_name)
        """Pod events (Pulled, Created, Started, Killing, BackOff, Unhealthy, …)."""
        self.startup_limiter = trio.CapacityLimiter(startup_concurrency)
        """Pods being brought up at once (sandbox to first container start), FIFO."""
        self.pods: Informer | None = None
        self._nursery: trio.Nursery | None = None
        self.kubelet_port = kubelet_port
        self.kubelet_host = kubelet_host
        self.kubelet_token = kubelet_token
        self.kubelet_tls = kubelet_tls

    # --- construction -------------------------------------------------------------------

    def _find_network(self, name: str | None) -> NetworkPlugin | None:
        if name is None or self.plugins is None:
            return None
        found = {r.provider.name: r.provider for r in self.plugins.network_plugins()}
        if not name:  # the only one there is, if any
            if len(found) > 1:
                raise ValueError(
                    f"network plugins {', '.join(sorted(found))} are loaded: choose one "
                    "(--network-plugin)"
                )
            return next(iter(found.values()), None)
        if name not in found:
            loaded = ", ".join(sorted(found)) or "none"
            raise ValueError(f"no network plugin named {name!r} is loaded (loaded: {loaded})")
        return found[name]

    def _make_runtime(
        self, runtime: ContainerRuntime | str, cgroup_parent: str, netns_prefix: str
    ) -> ContainerRuntime:
        if not isinstance(runtime, str):
            return runtime
        if runtime != "runc":
            if self.plugins is not None:
                for registered in self.plugins.container_runtimes():
                    if registered.provider.name == runtime:
                        return registered.provider
            raise ValueError(f"no container runtime named {runtime!r}")
        from kubetrio.runtime import RuncRuntime

        self._registry_client = RegistryClient(self.registries)
        self.images = ImageStore(self.root_dir / "images", self._registry_client)
        return RuncRuntime(
            root_dir=self.root_dir,
            images=self.images,
            network=self.network,
            cgroup_parent=cgroup_parent,
            netns_prefix=netns_prefix,
            log_max_bytes=self.container_log_max_size,
            log_max_files=self.container_log_max_files,
        )

    @property
    def nursery(self) -> trio.Nursery:
        """The agent's nursery (background work of workers)."""
        if self._nursery is None:
            raise RuntimeError("NodeAgent.run() is not running")
        return self._nursery

    # --- run ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``started`` once registered and pods are listed.

        Cancelling leaves running containers running (as stopping kubelet does); call
        :meth:`shutdown` first to stop every pod of this node.
        """
        for path in (self.root_dir, self.pods_dir, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.runtime.run)
                await nursery.start(self.events.run)
                if self.network is not None:
                    await nursery.start(self.network.run_node_services, self.client, self.node_name)
                if self.kubelet_port is not None:
                    server = KubeletServer(
                        self,
                        host=self.kubelet_host or self.address,
                        port=self.kubelet_port,
                        token=self.kubelet_token,
                        tls=self.kubelet_tls,
                    )
                    self.kubelet_port = await nursery.start(server.run)
                lease = await self._register()
                # NodeGetInfo per storage driver → CSINode and the node's nodeid annotation.
                nursery.start_soon(
                    register_storage_drivers,
                    self.client,
                    self.node_name,
                    lease.node_uid,
                    self.storage_drivers,
                )
                nursery.start_soon(self._heartbeat, lease)
                nursery.start_soon(self._status_loop)
                nursery.start_soon(self._image_gc_loop)
                self.pods = Informer(
                    self.client, "v1", "pods", field_selector=f"spec.nodeName={self.node_name}"
                )
                self.pods.add_handler(_PodEvents(self))
                await nursery.start(self.pods.run)
                # Sandboxes and pod directories (with their published volumes) left by
                # an earlier run whose pods are gone: release them.
                orphans = set(self.runtime.list_sandboxes())
                orphans.update(p.name for p in self.pods_dir.iterdir() if p.is_dir())
                for uid in sorted(orphans - set(self.workers)):
                    nursery.start_soon(self._remove_orphan, uid)
                nursery.start_soon(self._eviction_loop)
                task_status.started()
        finally:
            self._nursery = None
            if self._registry_client is not None:
                with trio.CancelScope(shield=True):
                    await self._registry_client.aclose()

    async def _register(self) -> LeaseKeeper:
        """Register the node, take its Lease and post its status; retry until the API answers."""
        delay = 0.5
        while True:
            try:
                node = await register_node(
                    self.client,
                    node_object(self.node_name, labels=self.labels, taints=self.taints),
                )
                lease = LeaseKeeper(self.client, self.node_name, duration=self.lease_duration)
                lease.node_uid = node["metadata"].get("uid", "")
                await lease.renew()
                await self.post_status()
                return lease
            except (ClientError, httpx.HTTPError, OSError) as exc:
                if isinstance(exc, ClientError) and exc.code in (401, 403):
                    raise  # wrong credentials: retrying will not help
                log.warning("registering node %s: %s (retrying)", self.node_name, exc)
            await trio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _remove_orphan(self, sandbox_id: str) -> None:
        log.info("removing sandbox %s: its pod is gone", sandbox_id)
        if sandbox_id in self.runtime.list_sandboxes():
            try:
                await self.runtime.stop_pod_sandbox(sandbox_id, grace_period=0)
            except Exception as exc:
                log.warning("removing orphaned sandbox %s: %s", sandbox_id, exc)
        try:
            # Unpublish (and unstage) its volumes before its directory goes, or the
            # volumes' data would be removed with it.
            await self.node_volumes.release_pod(sandbox_id)
            await trio.to_thread.run_sync(unmount_memory_volumes, self.pods_dir / sandbox_id)
            await trio.to_thread.run_sync(unmount_nfs_volumes, self.pods_dir / sandbox_id)
        except Exception as exc:
            log.warning("releasing the volumes of orphaned pod %s: %s", sandbox_id, exc)
        await trio.to_thread.run_sync(remove_unmounted, self.pods_dir / sandbox_id)

    async def _eviction_loop(self) -> None:
        """Evict pods whose disk emptyDirs use more than their ``sizeLimit``."""
        while True:
            await trio.sleep(self.eviction_interval)
            for worker in list(self.workers.values()):
                if worker.final_phase or not worker.volumes.empty_dirs:
                    continue
                try:
                    usage = await trio.to_thread.run_sync(worker.volumes.empty_dir_usage)
                except OSError as exc:
                    log.warning("measuring emptyDirs of %s: %s", worker.name, exc)
                    continue
                for name, used, limit in usage:
                    if limit and used > limit:
                        size = (self._empty_dir_limit(worker.pod, name)) or str(limit)
                        worker.evict(
                            f'Usage of EmptyDir volume "{name}" exceeds the limit "{size}". '
                        )
                        break

    @staticmethod
    def _empty_dir_limit(pod: KubeObject, name: str) -> str:
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if volume.get("name") == name:
                return str((volume.get("emptyDir") or {}).get("sizeLimit") or "")
        return ""

    async def resource_snapshot(self) -> Snapshot:
        """One read of the node's, pods' and containers' CPU and memory (cgroups)."""
        workers = list(self.workers.values())
        return await trio.to_thread.run_sync(self.resources.sample, workers)

    async def resource_metrics(self) -> bytes:
        """``/metrics/resource``: kubelet's resource metrics in the Prometheus text format."""
        return resource_metrics(await self.resource_snapshot())

    async def stats_summary(self) -> KubeObject:
        """The kubelet Summary API document (``/stats/summary``): the node, and per pod
        its volumes (emptyDirs measured here, claims through the driver's
        NodeGetVolumeStats) with ``pvcRef`` for claims; CPU and memory of the node, the
        pods and their running containers from cgroups."""
        now = _now()
        usage = await trio.to_thread.run_sync(shutil.disk_usage, self.root_dir)
        snapshot = await self.resource_snapshot()
        sampled = {p.uid: p for p in snapshot.pods}
        pods = []
        for worker in list(self.workers.values()):
            volumes = []
            for name, (claim, _pv, target) in list(worker.volumes.claims.items()):
                data = next(
                    (d for t, d in self.node_volumes.published(worker.uid) if t == target), None
                )
                if data is None:
                    continue
                try:
                    stats = await self.node_volumes.stats(target, data)
                except Exception as exc:
                    log.warning("volume stats of %s in %s: %s", name, worker.name, exc)
                    continue
                if stats is None:
                    continue
                volumes.append(
                    {
                        "time": now,
                        "availableBytes": stats.available_bytes,
                        "capacityBytes": stats.total_bytes,
                        "usedBytes": stats.used_bytes,
                        "inodesFree": stats.available_inodes,
                        "inodes": stats.total_inodes,
                        "inodesUsed": stats.used_inodes,
                        "name": name,
                        "pvcRef": {"name": claim, "namespace": worker.namespace},
                    }
                )
            for name, _limit in list(worker.volumes.empty_dirs.items()):
                path = worker.volumes.paths.get(name)
                if path is None:
                    continue
                used, inodes = await trio.to_thread.run_sync(directory_usage, path)
                fs = await trio.to_thread.run_sync(os.statvfs, path)
                volumes.append(
                    {
                        "time": now,
                        "availableBytes": fs.f_bavail * fs.f_frsize,
                        "capacityBytes": fs.f_blocks * fs.f_frsize,
                        "usedBytes": used,
                        "inodesFree": fs.f_favail,
                        "inodes": fs.f_files,
                        "inodesUsed": inodes,
                        "name": name,
                    }
                )
            pods.append(
                {
                    "podRef": {
                        "name": worker.name,
                        "namespace": worker.namespace,
                        "uid": worker.uid,
                    },
                    "startTime": worker.start_time,
                    "containers": [],
                    "volume": volumes,
                }
            )
            sample = sampled.get(worker.uid)
            if sample is not None:
                pods[-1]["containers"] = summary_containers(sample)
                if sample.usage is not None:
                    pods[-1]["cpu"] = cpu_stats(sample.usage, sample.nano_cores)
                    pods[-1]["memory"] = memory_stats(sample.usage)
        node: KubeObject = {"nodeName": self.node_name, "startTime": now}
        if snapshot.node is not None:
            node["cpu"] = cpu_stats(snapshot.node, snapshot.node_nano_cores)
            node["memory"] = memory_stats(snapshot.node, self.resources.memory_capacity())
        node["fs"] = {
            "time": now,
            "availableBytes": usage.free,
            "capacityBytes": usage.total,
            "usedBytes": usage.used,
        }
        return {"node": node, "pods": pods}

    async def _heartbeat(self, lease: LeaseKeeper) -> None:
        while True:
            await trio.sleep(self.lease_duration / 4)
            try:
                await lease.renew()
            except Exception as exc:
                log.warning("renewing the node lease: %s", exc)

    async def _status_loop(self) -> None:
        while True:
            await trio.sleep(self.status_interval)
            try:
                await self.post_status()
            except Exception as exc:
                log.warning("posting node status: %s", exc)

    async def _image_gc_loop(self) -> None:
        while True:
            await trio.sleep(self.image_gc_interval)
            try:
                await self.collect_images()
            except Exception as exc:
                log.warning("image garbage collection: %s", exc)

    def _disk_percent(self) -> float:
        usage = shutil.disk_usage(self.root_dir)
        return 100.0 * usage.used / usage.total if usage.total else 0.0

    async def collect_images(self, *, force: bool = False) -> list[str]:
        """Remove images no container uses while the disk is above the high mark.

        ``force`` removes every unused image whatever the disk usage. Returns the
        references removed.
        """
        if self.images is None:
            return []
        if not force and self._disk_percent() < self.image_gc_high_percent:
            return []
        in_use = set()
        for sandbox_id in self.runtime.list_sandboxes():
            for container in self.runtime.list_containers(sandbox_id):
                in_use.add(container.image_id)
        removed = []
        for image in self.images.list():
            if image.image_id in in_use:
                continue
            await self.images.remove(image.reference)
            removed.append(image.reference)
            await self.images.collect_garbage()
            if not force and self._disk_percent() < self.image_gc_low_percent:
                break
        if removed:
            log.info("image garbage collection removed %s", ", ".join(removed))
        return removed

    async def post_status(self) -> None:
        """Write the Node's status (capacity, conditions, addresses, images)."""
        images: list[KubeObject] = []
        if self.images is not None:
            for image in sorted(self.images.list(), key=lambda i: -i.size)[:50]:
                # kubelet reports the 50 largest images (nodeStatusMaxImages).
                images.append(
                    {"names": [image.repo_digest, image.reference], "sizeBytes": image.size}
                )
        runtime_version = _runc_version() if self.runtime.name == "runc" else self.runtime.name
        status = await trio.to_thread.run_sync(
            lambda: node_status(
                self.node_name,
                address=self.address,
                root_dir=self.root_dir,
                runtime_version=runtime_version,
                images=images,
                kubelet_port=self.kubelet_port or 0,
            )
        )
        await self.client.patch(
            "v1", "nodes", self.node_name, {"status": status}, subresource="status"
        )

    async def shutdown(self, *, grace_period: float | None = None) -> None:
        """Stop every pod worker of this node (containers, sandboxes, volumes).

        ``grace_period`` caps each pod's own ``terminationGracePeriodSeconds`` (and the
        grace of a pod already terminating), as upstream's graceful node shutdown does: a
        pod that asks for less gets less.
        """
        for worker in list(self.workers.values()):
            worker._delete_from_api = False
            if grace_period is not None:
                own = (worker.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
                grace = grace_period if own is None else min(grace_period, float(own))
                worker._grace = min(grace, worker._grace) if worker._terminate.is_set() else grace
            worker._terminate.set()
        for worker in list(self.workers.values()):
            await worker.done.wait()

    # --- pods ---------------------------------------------------------------------------

    def pod_changed(self, pod: KubeObject) -> None:
        """Start or update the worker of a pod bound to this node."""
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
            return  # finished before this agent started: nothing runs
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        self.nursery.start_soon(self._run_worker, worker)

    def pod_deleted(self, pod: KubeObject) -> None:
        """The pod left the API: its worker releases everything at once."""
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        if worker is not None:
            worker.deleted()

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(worker.uid, None)

    async def pull_credentials(self, pod: KubeObject) -> dict[str, tuple[str, str]]:
        """Registry credentials from the pod's ``imagePullSecrets``."""
        secrets = []
        namespace = pod["metadata"].get("namespace") or "default"
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            try:
                secrets.append(
                    await self.client.get("v1", "secrets", ref["name"], namespace=namespace)
                )
            except ClientError as exc:
                if not exc.not_found:
                    raise
        return credentials_from_secrets(secrets)

    async def services_for(self, pod: KubeObject) -> list[KubeObject]:
        """The Services whose variables go into the pod's containers: those of its
        namespace (unless ``enableServiceLinks: false``) and, always, the ``kubernetes``
        Service of ``default`` (``KUBERNETES_SERVICE_HOST`` …), as kubelet does."""
        namespace = pod["metadata"].get("namespace") or "default"
        items: list[KubeObject] = []
        if (pod.get("spec") or {}).get("enableServiceLinks") is not False:
            try:
                listed = await self.client.list("v1", "services", namespace=namespace)
            except ClientError:
                return []
            items = listed.get("items") or []
        if not any(s["metadata"].get("name") == "kubernetes" for s in items):
            with contextlib.suppress(ClientError):
                items.append(
                    await self.client.get("v1", "services", "kubernetes", namespace="default")
                )
        return items

    # --- logs ---------------------------------------------------------------------------

    def log_path(self, pod: KubeObject, container: str, attempt: int) -> Path:
        """Where a container run's CRI log is written."""
        meta = pod["metadata"]
        directory = f"{meta.get('namespace') or 'default'}_{meta['name']}_{meta['uid']}"
        return self.log_dir / directory / container / f"{attempt}.log"

    async def read_logs(
        self,
        namespace: str,
        name: str,
        container: str = "",
        *,
        follow: bool = False,
        previous: bool = False,
        tail_lines: int | None = None,
        since_seconds: int | None = None,
        since_time: str = "",
        timestamps: bool = False,
        limit_bytes: int | None = None,
    ) -> AsyncIterator[bytes]:
        """The ``pods/log`` body of a container on this node, as chunks.

        Raises ``LookupError`` (404) for an unknown pod or container, ``ValueError`` (400)
        when ``container`` is needed or ``previous`` has no earlier run.
        """
        worker = next(
            (w for w in self.workers.values() if w.name == name and w.namespace == namespace),
            None,
        )
        if worker is None:
            # A pod that finished before this agent started: its files are still here.
            async for chunk in self._read_finished_logs(
                namespace,
                name,
                container,
                previous=previous,
                tail_lines=tail_lines,
                since_seconds=since_seconds,
                since_time=since_time,
                timestamps=timestamps,
                limit_bytes=limit_bytes,
            ):
                yield chunk
            return
        records = worker.records + worker.init_records + worker.ephemeral_records
        if not container:
            if len(worker.records) != 1:
                names = " ".join(r.name for r in worker.records)
                raise ValueError(
                    f"a container name must be specified for pod {name}, choose one of: [{names}]"
                )
            container = worker.records[0].name
        record = next((r for r in records if r.name == container), None)
        if record is None:
            raise LookupError(f"container {container} is not valid for pod {name}")
        attempt = record.restart_count - 1 if previous else record.restart_count
        if attempt < 0:
            raise ValueError(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        path = self.log_path(worker.pod, container, attempt)

        def running() -> bool:
            return (
                worker.uid in self.workers
                and record.restart_count == attempt
                and "running" in record.state
            )

        async for chunk in read_log(
            path,
            follow=follow and not previous,
            still_running=running,
            tail_lines=tail_lines,
            since_seconds=since_seconds,
            since_time=since_time,
            timestamps=timestamps,
            limit_bytes=limit_bytes,
        ):
            yield chunk

    async def _read_finished_logs(
        self, namespace: str, name: str, container: str, *, previous: bool, **options: Any
    ) -> AsyncIterator[bytes]:
        pod = self.pods.get(name, namespace) if self.pods is not None else None
        if pod is None:
            raise LookupError(f'pods "{name}" not found')
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if not container:
            if len(containers) != 1:
                raise ValueError(
                    f"a container name must be specified for pod {name}, "
                    f"choose one of: [{' '.join(containers)}]"
                )
            container = containers[0]
        directory = self.log_path(pod, container, 0).parent
        runs = sorted(
            (int(p.stem) for p in directory.glob("*.log") if p.stem.isdigit()), reverse=True
        )
        index = 1 if previous else 0
        if len(runs) <= index:
            if previous:
                raise ValueError(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            raise LookupError(f"container {container} of pod {name} has no log on this node")
        async for chunk in read_log(directory / f"{runs[index]}.log", **options):
            yield chunk


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _PodEvents:
    """Informer handler that forwards pod events to the agent."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def on_add(self, obj: KubeObject) -> None:
        self.agent.pod_changed(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.agent.pod_changed(new)

    def on_delete(self, obj: KubeObject) -> None:
        self.agent.pod_deleted(obj)
