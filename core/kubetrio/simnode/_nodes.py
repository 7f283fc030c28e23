"""Simulated nodes: Node objects, heartbeats and pod status, with no processes (KWOK-style).

:class:`SimulatedNodes` plays the kubelet of any number of fake nodes through the
ordinary client:

* **Registration.** Each node gets a Node object (labels ``kubernetes.io/hostname``,
  ``kubernetes.io/os``, ``kubetrio.io/simulated``; a ``podCIDR``; capacity and
  allocatable; Ready/pressure conditions; addresses; nodeInfo), created or taken over.
* **Heartbeats.** A ``coordination.k8s.io/v1`` Lease per node in ``kube-node-lease`` is
  renewed every ``heartbeat`` seconds, as the kubelet does; node status (the Ready
  condition's ``lastHeartbeatTime``) is refreshed every ``status_interval``. One task
  renews every node with bounded concurrency, so thousands of nodes cost a few
  coroutines, not thousands. :meth:`SimulatedNodes.stop_heartbeat` simulates a node
  losing contact.
* **Pods.** One pod informer (no per-node watches) feeds a work queue: a pod bound to
  one of these nodes becomes Running with Initialized/ContainersReady/Ready conditions,
  a podIP from the node's podCIDR and running container statuses; a pod marked for
  deletion is deleted with ``gracePeriodSeconds=0`` (there is nothing to stop); an
  ephemeral container added to a running pod is reported terminated (``StartError``).
* **Run to completion.** Pods with ``restartPolicy`` Never or OnFailure (Jobs) finish
  after ``kubetrio.io/sim-run-seconds`` (annotation; default
  :data:`DEFAULT_RUN_SECONDS`) with exit code ``kubetrio.io/sim-exit-code`` (default 0):
  phase Succeeded, or Failed for a non-zero code. ``restartPolicy: Always`` pods run
  until deleted.
* **Binding (opt-in).** With ``bind_unscheduled=True`` unscheduled pods are bound
  round-robin through ``pods/binding``; leave it off when a scheduler runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import uuid

import trio

import kubetrio
from kubetrio.client import Client, ClientError, Informer, KubeObject, WorkQueue

log = logging.getLogger("kubetrio.simnode")

SIMULATED_LABEL = "kubetrio.io/simulated"
RUN_SECONDS = "kubetrio.io/sim-run-seconds"
EXIT_CODE = "kubetrio.io/sim-exit-code"
DEFAULT_RUN_SECONDS = 0.5
KUBELET_VERSION = kubetrio.KUBERNETES_GIT_VERSION
"""Simulated nodes report the API server's release too (they are marked by a label)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class SimulatedNode:
    """The state kept for one simulated node."""

    name: str
    index: int
    heartbeat: bool = True
    status_due: bool = False
    next_ip: int = 2
    lease: KubeObject | None = None
    renewing: bool = False
    renewed_at: float | None = None
    """When (trio clock) the Lease was last renewed by the heartbeat."""

    @property
    def pod_cidr(self) -> str:
        """This node's pod range: a /24 out of 10.128.0.0/9."""
        return f"10.{128 + self.index // 256}.{self.index % 256}.0/24"

    @property
    def address(self) -> str:
        """The node's InternalIP (in 172.16.0.0/12)."""
        return f"172.{16 + self.index // 65536 % 16}.{self.index // 256 % 256}.{self.index % 256}"

    def allocate_ip(self) -> str:
        """The next pod IP of this node (wraps after 253: simulated pods never collide)."""
        host = self.next_ip
        self.next_ip = 2 + (self.next_ip - 1) % 253
        return f"10.{128 + self.index // 256}.{self.index % 256}.{host}"


class SimulatedNodes:
    """A fleet of simulated nodes (see the module docstring).

    :param client: any client (in-process is cheapest).
    :param count: how many nodes, named ``<prefix>-<i>``; or give ``names``.
    :param bind_unscheduled: bind pods without ``nodeName`` round-robin (no scheduler).
    :param heartbeat: seconds between Lease renewals.
    :param status_interval: seconds between node status refreshes.
    """

    def __init__(
        self,
        client: Client,
        *,
        count: int = 1,
        prefix: str = "sim-node",
        names: list[str] | None = None,
        bind_unscheduled: bool = False,
        cpu: str = "32",
        memory: str = "256Gi",
        max_pods: int = 110,
        labels: dict[str, str] | None = None,
        taints: list[KubeObject] | None = None,
        heartbeat: float = 10.0,
        lease_duration: int = 40,
        status_interval: float = 60.0,
        workers: int = 8,
        concurrency: int = 32,
    ) -> None:
        self.client = client
        self.bind_unscheduled = bind_unscheduled
        self.capacity = {
            "cpu": cpu,
            "memory": memory,
            "pods": str(max_pods),
            "ephemeral-storage": "100Gi",
        }
        self.labels = dict(labels or {})
        self.taints = list(taints or [])
        self.heartbeat = heartbeat
        self.lease_duration = lease_duration
        self.status_interval = status_interval
        self.workers = workers
        self.limiter = trio.CapacityLimiter(concurrency)
        self.nodes: dict[str, SimulatedNode] = {}
        self._indexes = itertools.count()
        for name in names or [f"{prefix}-{i}" for i in range(count)]:
            self.nodes[name] = SimulatedNode(name, next(self._indexes))
        self.queue = WorkQueue()
        self.pods: Informer = Informer(client, "v1", "pods")
        self.pods.add_handler(_PodHandler(self))
        self._round_robin = itertools.count()
        self._started: set[str] = set()  # pod UIDs already made Running (the cache lags)
        self._finish_at: dict[str, float] = {}  # pod UID -> when its containers "exit"
        self._nursery: trio.Nursery | None = None
        self.max_renew_gap = 0.0
        """The longest time (s) between two heartbeat renewals of one node's Lease."""

    # --- nodes --------------------------------------------------------------------------

    def node_object(self, node: SimulatedNode) -> KubeObject:
        """The Node object registered for ``node`` (spec and metadata)."""
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            SIMULATED_LABEL: "true",
            **self.labels,
        }
        spec: KubeObject = {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]}
        if self.taints:
            spec["taints"] = list(self.taints)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels},
            "spec": spec,
        }

    def node_status(self, node: SimulatedNode) -> KubeObject:
        """The node's status: capacity, Ready and pressure conditions, addresses, info."""
        now = _now()

        def condition(type_: str, status: str, reason: str, message: str) -> KubeObject:
            return {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": node.address},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, node.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, node.name)),
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_OID, node.name)),
                "kernelVersion": "6.0.0-simulated",
                "osImage": "kubetrio simulated node",
                "containerRuntimeVersion": "sim://1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "phase": "Running",
        }

    async def register(self, node: SimulatedNode) -> None:
        """Create (or take over) the Node object and post its status and Lease."""
        async with self.limiter:
            try:
                created = await self.client.create("v1", "nodes", self.node_object(node))
            except ClientError as exc:
                if exc.code != 409:
                    raise
                created = await self.client.get("v1", "nodes", node.name)
            await self.post_status(node)
            await self.renew_lease(node, created)

    async def post_status(self, node: SimulatedNode) -> None:
        """Write the node's status (the kubelet's node status update)."""
        for attempt in range(5):
            try:
                await self.client.patch(
                    "v1",
                    "nodes",
                    node.name,
                    {"status": self.node_status(node)},
                    subresource="status",
                )
                return
            except ClientError as exc:
                if not exc.conflict or attempt == 4:
                    raise
                await trio.sleep(0.01 * 2**attempt)  # a concurrent writer (taints): try again

    async def renew_lease(self, node: SimulatedNode, node_obj: KubeObject | None = None) -> None:
        """Create or renew the node's Lease in ``kube-node-lease``."""
        if node.lease is not None:
            lease = dict(node.lease)
            lease["spec"] = {**(lease.get("spec") or {}), "renewTime": _now_micro()}
            try:
                node.lease = await self.client.update(
                    "coordination.k8s.io/v1", "leases", lease, namespace="kube-node-lease"
                )
                return
            except ClientError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
                node.lease = None  # someone else wrote it: start from the server's copy
        try:
            lease = await self.client.get(
                "coordination.k8s.io/v1", "leases", node.name, namespace="kube-node-lease"
            )
            lease["spec"] = {
                **(lease.get("spec") or {}),
                "holderIdentity": node.name,
                "leaseDurationSeconds": self.lease_duration,
                "renewTime": _now_micro(),
            }
            node.lease = await self.client.update(
                "coordination.k8s.io/v1", "leases", lease, namespace="kube-node-lease"
            )
        except ClientError as exc:
            if not exc.not_found:
                raise
            metadata: KubeObject = {"name": node.name, "namespace": "kube-node-lease"}
            if node_obj is not None:
                metadata["ownerReferences"] = [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": node.name,
                        "uid": node_obj["metadata"]["uid"],
                    }
                ]
            node.lease = await self.client.create(
                "coordination.k8s.io/v1",
                "leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": metadata,
                    "spec": {
                        "holderIdentity": node.name,
                        "leaseDurationSeconds": self.lease_duration,
                        "renewTime": _now_micro(),
                    },
                },
                namespace="kube-node-lease",
            )

    async def add_node(self, name: str) -> SimulatedNode:
        """Register one more node (while running)."""
        node = SimulatedNode(name, next(self._indexes))
        self.nodes[name] = node
        await self.register(node)
        return node

    async def remove_node(self, name: str) -> None:
        """Stop simulating ``name`` and delete its Node object and Lease."""
        self.nodes.pop(name, None)
        for api_version, resource, namespace in (
            ("coordination.k8s.io/v1", "leases", "kube-node-lease"),
            ("v1", "nodes", ""),
        ):
            try:
                await self.client.delete(api_version, resource, name, namespace=namespace)
            except ClientError as exc:
                if not exc.not_found:
                    raise

    def stop_heartbeat(self, name: str) -> None:
        """Simulate losing contact: stop renewing the Lease and posting status."""
        self.nodes[name].heartbeat = False

    def resume_heartbeat(self, name: str) -> None:
        """Contact is back: Lease and status (Ready again) at the next heartbeat."""
        self.nodes[name].heartbeat = True
        self.nodes[name].status_due = True

    # --- running ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register the nodes, then heartbeat and run pods until cancelled."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as registering:
                for node in list(self.nodes.values()):
                    registering.start_soon(self.register, node)
            await nursery.start(self.pods.run)
            for _ in range(self.workers):
                nursery.start_soon(self._worker)
            nursery.start_soon(self._heartbeats)
            nursery.start_soon(self._status_updates)
            self._nursery = nursery
            task_status.started()

    async def _each_node_status(self) -> None:
        async def one(node: SimulatedNode) -> None:
            if not node.heartbeat or node.name not in self.nodes:
                return
            async with self.limiter:
                try:
                    await self.post_status(node)
                except ClientError as exc:
                    log.info("status of %s failed: %s", node.name, exc)

        async with trio.open_nursery() as nursery:
            for node in list(self.nodes.values()):
                nursery.start_soon(one, node)

    async def _heartbeats(self) -> None:
        """Renew every Lease once per ``heartbeat``, each node at its own fixed phase.

        Renewing the whole fleet and then sleeping a period stretched every node's period
        by the time the round took (20 s and more at 5,000 nodes), and sent the renewals
        in one burst; kubelets renew on their own clocks, spread over the period. A node
        whose previous renewal is still in flight skips its turn rather than queueing a
        second, conflicting update.
        """
        async with trio.open_nursery() as nursery:
            # The first round is spread over the first period too: registration wrote
            # every Lease just now, so no node may wait longer than one period for its
            # first renewal.
            due = trio.current_time() + self.heartbeat / max(1, len(self.nodes))
            while True:
                fleet = list(self.nodes.values())
                step = self.heartbeat / max(1, len(fleet))
                for node in fleet:
                    await trio.sleep_until(due)
                    due += step
                    if node.heartbeat and not node.renewing and node.name in self.nodes:
                        node.renewing = True
                        nursery.start_soon(self._beat, node)
                if not fleet:
                    await trio.sleep_until(due)
                    due += self.heartbeat

    async def _beat(self, node: SimulatedNode) -> None:
        """One heartbeat of ``node``: renew its Lease (and post status when due)."""
        try:
            async with self.limiter:
                await self.renew_lease(node)
                now = trio.current_time()
                if node.renewed_at is not None:
                    self.max_renew_gap = max(self.max_renew_gap, now - node.renewed_at)
                node.renewed_at = now
                if node.status_due:
                    node.status_due = False
                    await self.post_status(node)
        except ClientError as exc:
            log.info("lease of %s failed: %s", node.name, exc)
        finally:
            node.renewing = False

    async def _status_updates(self) -> None:
        while True:
            await trio.sleep(self.status_interval)
            await self._each_node_status()

    # --- pods ---------------------------------------------------------------------------

    def wants(self, pod: KubeObject) -> bool:
        """Whether the pod needs something from us (start, delete or bind)."""
        spec = pod.get("spec") or {}
        node_name = spec.get("nodeName")
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if not node_name:
            return self.bind_unscheduled and not deleting
        node = self.nodes.get(node_name)
        if node is None or not node.heartbeat:
            return False
        if deleting:
            return True
        status = pod.get("status") or {}
        uid = pod["metadata"].get("uid")
        if uid in self._started and unreported_ephemeral(pod):
            return True
        if uid in self._finish_at and status.get("phase") == "Running":
            return True
        if uid in self._started:
            return False
        return status.get("phase") == "Pending" or not status.get("podIP")

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._handle(key)
                self.queue.forget(key)
            except ClientError as exc:
                if not exc.not_found:
                    log.info("pod %s: %s (retrying)", key, exc)
                    self.queue.add_rate_limited(key)
            except Exception:
                log.exception("pod %s failed (retrying)", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    async def _handle(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        pod = self.pods.get(name, namespace)
        if pod is None or not self.wants(pod):
            return
        metadata = pod["metadata"]
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            await self._bind(pod)
        elif metadata.get("deletionTimestamp"):
            await self.client.delete(
                "v1",
                "pods",
                name,
                namespace=namespace,
                grace_period_seconds=0,
                preconditions={"uid": metadata["uid"]},
            )
        elif metadata.get("uid") in self._started and unreported_ephemeral(pod):
            await self._refuse_ephemeral(pod, node_name)
        elif metadata.get("uid") in self._finish_at:
            if trio.current_time() >= self._finish_at[metadata["uid"]]:
                await self._finish(pod)
            else:
                self.queue.add_after(key, self._finish_at[metadata["uid"]] - trio.current_time())
        else:
            await self._start(pod, self.nodes[node_name])
            if spec_restart(pod) != "Always":
                annotations = metadata.get("annotations") or {}
                try:
                    seconds = float(annotations.get(RUN_SECONDS, DEFAULT_RUN_SECONDS))
                except ValueError:
                    seconds = DEFAULT_RUN_SECONDS
                self._finish_at[metadata["uid"]] = trio.current_time() + seconds
                self.queue.add_after(key, seconds)

    async def _finish(self, pod: KubeObject) -> None:
        """The pod's containers exit: Succeeded, or Failed with a non-zero exit code."""
        metadata = pod["metadata"]
        annotations = metadata.get("annotations") or {}
        try:
            code = int(annotations.get(EXIT_CODE, "0"))
        except ValueError:
            code = 1
        now = _now()
        status = dict(pod.get("status") or {})
        conditions = []
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Ready", "ContainersReady"):
                condition = {
                    **condition,
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": now,
                }
            conditions.append(condition)
        reason = "Completed" if code == 0 else "Error"
        container_statuses = []
        for container in status.get("containerStatuses") or []:
            started = ((container.get("state") or {}).get("running") or {}).get("startedAt", now)
            container_statuses.append(
                {
                    **container,
                    "ready": False,
                    "started": False,
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": reason,
                            "startedAt": started,
                            "finishedAt": now,
                            "containerID": container.get("containerID", ""),
                        }
                    },
                }
            )
        await self.client.patch(
            "v1",
            "pods",
            metadata["name"],
            {
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "conditions": conditions,
                    "containerStatuses": container_statuses,
                }
            },
            namespace=metadata["namespace"],
            subresource="status",
        )
        self._finish_at.pop(metadata["uid"], None)

    async def _bind(self, pod: KubeObject) -> None:
        names = [n for n, node in self.nodes.items() if node.heartbeat]
        if not names:
            return
        target = names[next(self._round_robin) % len(names)]
        metadata = pod["metadata"]
        try:
            await self.client.create(
                "v1",
                "pods",
                {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target},
                },
                namespace=metadata["namespace"],
                name=metadata["name"],
                subresource="binding",
            )
        except ClientError as exc:
            if exc.code != 409:  # already bound (by us earlier, or by a scheduler)
                raise

    async def _start(self, pod: KubeObject, node: SimulatedNode) -> None:
        now = _now()
        spec = pod.get("spec") or {}
        ip = node.allocate_ip()

        def condition(type_: str) -> KubeObject:
            return {"type": type_, "status": "True", "lastTransitionTime": now}

        statuses = [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": f"sim://{container.get('image', '')}",
                "containerID": f"sim://{uuid.uuid4().hex}",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for container in spec.get("containers") or []
        ]
        status = {
            "phase": "Running",
            "conditions": [
                condition("PodReadyToStartContainers"),
                condition("Initialized"),
                condition("Ready"),
                condition("ContainersReady"),
                condition("PodScheduled"),
            ],
            "hostIP": node.address,
            "hostIPs": [{"ip": node.address}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        self._started.add(pod["metadata"]["uid"])
        try:
            await self.client.patch(
                "v1",
                "pods",
                pod["metadata"]["name"],
                {"status": status},
                namespace=pod["metadata"]["namespace"],
                subresource="status",
            )
        except BaseException:
            self._started.discard(pod["metadata"]["uid"])
            raise

    async def _refuse_ephemeral(self, pod: KubeObject, node_name: str) -> None:
        """A simulated node runs no processes: each new ephemeral container is reported
        as failed to start (not left waiting, so ``kubectl debug`` does not hang)."""
        now = _now()
        statuses = list((pod.get("status") or {}).get("ephemeralContainerStatuses") or [])
        for container in unreported_ephemeral(pod):
            statuses.append(
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 128,
                            "reason": "StartError",
                            "message": f"node {node_name} is simulated and runs no "
                            "containers: ephemeral containers cannot start there",
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            )
        await self.client.patch(
            "v1",
            "pods",
            pod["metadata"]["name"],
            {"status": {"ephemeralContainerStatuses": statuses}},
            namespace=pod["metadata"]["namespace"],
            subresource="status",
        )


def unreported_ephemeral(pod: KubeObject) -> list[KubeObject]:
    """The pod's ephemeral containers that have no status yet."""
    reported = {
        s.get("name") for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []
    }
    spec = pod.get("spec") or {}
    return [c for c in spec.get("ephemeralContainers") or [] if c.get("name") not in reported]


def spec_restart(pod: KubeObject) -> str:
    """The pod's restartPolicy (Always when unset)."""
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


class _PodHandler:
    """Enqueues the pods the simulated kubelets must act on."""

    def __init__(self, nodes: SimulatedNodes) -> None:
        self.nodes = nodes

    def on_add(self, pod: KubeObject) -> None:
        if self.nodes.wants(pod):
            metadata = pod["metadata"]
            self.nodes.queue.add(f"{metadata['namespace']}/{metadata['name']}")

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self.on_add(new)

    def on_delete(self, pod: KubeObject) -> None:
        self.nodes._started.discard(pod["metadata"].get("uid", ""))
        self.nodes._finish_at.pop(pod["metadata"].get("uid", ""), None)
