"""Scheduler throughput, modelled on kube-scheduler's scheduler_perf.

Each workload follows scheduler_perf's ``performance-config.yaml``: create the nodes
(``node-default.yaml``: 4 cpu, 32Gi, 110 pods, Ready), create the initial pods and wait
until they are all bound, then create the measured pods and time them from the first
create to the last binding. Everything goes end to end through the API: an in-process
API server on the SQLite store, the client creating nodes and pods (16 concurrent
writers), the scheduler watching through informers and binding through
``pods/binding`` (and recording its events), all in this one process.

Workloads (name: nodes / initial pods / measured pods, the pod templates of scheduler_perf):

* SchedulingBasic 5000/1000/10000 — ``pod-default.yaml`` (100m cpu, 500Mi);
* SchedulingNodeAffinity 5000/5000/10000 — required zone affinity, nodes in ``zone1``;
* SchedulingPodAntiAffinity 5000/1000/2000 — required anti-affinity on hostname;
* SchedulingPodAffinity 5000/5000/5000 — required affinity on zone;
* TopologySpreading 5000/5000/5000 — ``maxSkew`` 5 over hostnames and 3 zones.

Gates: kube-scheduler's CI thresholds for the same workloads (pods/s). GATES holds the
ones of the release the issue quotes (270, 220, 70, 35, 85: the ``5000Nodes_*``
workloads of ``test/integration/scheduler_perf/config/performance-config.yaml`` before
the 1.33 split); SchedulingBasic's threshold on current master
(``misc/performance-config.yaml``, ``5000Nodes_10000Pods``) is 680, printed beside it.

Baselines, measured in the same run on the same cluster shape:

* ``naive``: a scheduler that, for every pod, walks *all* nodes and the raw Node/Pod
  objects of the informer caches (parsing quantities, no node cache, no
  percentageOfNodesToScore), then binds through the same API — what a first
  implementation would do. Measured over fewer pods (it is slow), same pods/s formula.
* ``api_floor``: the same creates and bindings, same counts, with no decision at all
  (round-robin nodes, no scheduler informers, no events): the ceiling the API path puts
  on any scheduler in this process.

The last line is one JSON object with the figures and ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from kubetrio import plugins
from kubetrio.api import Quantity
from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client, Informer
from kubetrio.handler import Request, RequestHandler, Response
from kubetrio.scheduler import Scheduler, SchedulerConfig
from kubetrio.store import open_store

GATES = {
    "SchedulingBasic": 270.0,
    "SchedulingNodeAffinity": 220.0,
    "SchedulingPodAntiAffinity": 70.0,
    "SchedulingPodAffinity": 35.0,
    "TopologySpreading": 85.0,
}
"""kube-scheduler CI thresholds (pods/s) of the 5000-node workloads the issue quotes."""
CURRENT_GATES = {"SchedulingBasic": 680.0}
"""Thresholds on kube-scheduler master (misc/performance-config.yaml) where they moved."""

WRITERS = 16
CPU_SPLIT = [True]
"""Whether runs time their task steps (:class:`CpuSplit`; costs ~5% of the loop)."""


def node_default(index: int, zone: str | None) -> dict[str, Any]:
    """scheduler_perf's node-default.yaml (plus the hostname label a kubelet sets)."""
    name = f"scheduler-perf-{index}"
    labels = {"kubernetes.io/hostname": name}
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    resources = {"pods": "110", "cpu": "4", "memory": "32Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
            "phase": "Running",
        },
    }


def _pod(name: str, namespace: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    resources = {"cpu": "100m", "memory": "500Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": resources, "requests": resources},
                }
            ],
            **spec,
        },
    }


def pod_default(name: str, namespace: str) -> dict[str, Any]:
    """scheduler_perf's pod-default.yaml."""
    return _pod(name, namespace, {})


def pod_with_node_affinity(name: str, namespace: str) -> dict[str, Any]:
    """pod-with-node-affinity.yaml: required zone In [zone1, zone2]."""
    term = {
        "matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone1", "zone2"]}
        ]
    }
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }
    return _pod(name, namespace, {}, affinity=affinity)


def pod_with_pod_anti_affinity(name: str, namespace: str) -> dict[str, Any]:
    """pod-with-pod-anti-affinity.yaml: one ``color=green`` pod per hostname."""
    term = {
        "labelSelector": {"matchLabels": {"color": "green"}},
        "topologyKey": "kubernetes.io/hostname",
        "namespaces": ["sched-0", "sched-1"],
    }
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return _pod(name, namespace, {"color": "green"}, affinity=affinity)


def pod_with_pod_affinity(name: str, namespace: str) -> dict[str, Any]:
    """pod-with-pod-affinity.yaml: ``foo=`` pods together in one zone."""
    term = {
        "labelSelector": {"matchLabels": {"foo": ""}},
        "topologyKey": "topology.kubernetes.io/zone",
        "namespaces": ["sched-0", "sched-1"],
    }
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return _pod(name, namespace, {"foo": ""}, affinity=affinity)


def pod_with_topology_spreading(name: str, namespace: str) -> dict[str, Any]:
    """pod-with-topology-spreading.yaml: maxSkew 5 over hostnames and over zones."""
    constraints = [
        {
            "maxSkew": 5,
            "topologyKey": key,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}},
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]
    return _pod(name, namespace, {"color": "blue"}, topologySpreadConstraints=constraints)


PodTemplate = Callable[[str, str], dict[str, Any]]


@dataclass
class Workload:
    """One scheduler_perf workload: the cluster shape and the pod templates."""

    name: str
    nodes: int
    init_pods: int
    measure_pods: int
    init_template: PodTemplate
    measure_template: PodTemplate
    zones: list[str] = field(default_factory=list)
    init_namespace: str = "default"
    measure_namespace: str = "default"

    def scaled(self, factor: float) -> Workload:
        """The same workload with every count multiplied by ``factor``."""
        return Workload(
            self.name,
            max(5, int(self.nodes * factor)),
            int(self.init_pods * factor),
            max(10, int(self.measure_pods * factor)),
            self.init_template,
            self.measure_template,
            self.zones,
            self.init_namespace,
            self.measure_namespace,
        )


WORKLOADS = {
    w.name: w
    for w in (
        Workload("SchedulingBasic", 5000, 1000, 10000, pod_default, pod_default),
        Workload(
            "SchedulingNodeAffinity",
            5000,
            5000,
            10000,
            pod_with_node_affinity,
            pod_with_node_affinity,
            zones=["zone1"],
        ),
        Workload(
            "SchedulingPodAntiAffinity",
            5000,
            1000,
            2000,
            pod_with_pod_anti_affinity,
            pod_with_pod_anti_affinity,
            init_namespace="sched-0",
            measure_namespace="sched-1",
        ),
        Workload(
            "SchedulingPodAffinity",
            5000,
            5000,
            5000,
            pod_with_pod_affinity,
            pod_with_pod_affinity,
            zones=["zone1"],
            init_namespace="sched-0",
            measure_namespace="sched-1",
        ),
        Workload(
            "TopologySpreading",
            5000,
            5000,
            5000,
            pod_default,
            pod_with_topology_spreading,
            zones=["moon-1", "moon-2", "moon-3"],
        ),
    )
}


async def run_writers(count: int, make: Callable[[int], Awaitable[Any]]) -> None:
    """Call ``make(i)`` for i in range(count) with WRITERS concurrent writers."""
    indices = iter(range(count))

    async def writer() -> None:
        for i in indices:
            await make(i)

    async with trio.open_nursery() as nursery:
        for _ in range(WRITERS):
            nursery.start_soon(writer)


class BoundCounter:
    """Counts bound pods per namespace from a pod informer (what scheduler_perf polls)."""

    def __init__(self) -> None:
        self.bound: set[tuple[str, str]] = set()
        self.counts: dict[tuple[str, str], int] = {}
        self.marks: list[tuple[str, int, float]] = []
        """(prefix, bound count, time) at every 1000th bound pod of a group."""
        self.changed = trio.Event()

    def _seen(self, obj: dict[str, Any]) -> None:
        if (obj.get("spec") or {}).get("nodeName"):
            metadata = obj["metadata"]
            key = (metadata["namespace"], metadata["name"])
            if key not in self.bound:
                self.bound.add(key)
                group = (metadata["namespace"], metadata["name"].split("-", 1)[0] + "-")
                count = self.counts[group] = self.counts.get(group, 0) + 1
                if count % 1000 == 0:
                    self.marks.append((group[1], count, time.perf_counter()))
                self.changed.set()

    def on_add(self, obj: dict[str, Any]) -> None:
        self._seen(obj)

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._seen(new)

    def on_delete(self, obj: dict[str, Any]) -> None:
        pass

    async def wait(self, namespace: str, prefix: str, count: int, timeout: float) -> None:
        with trio.fail_after(timeout):
            while True:
                if self.counts.get((namespace, prefix), 0) >= count:
                    return
                self.changed = trio.Event()
                await self.changed.wait()


# --- whose CPU ---------------------------------------------------------------------------


class CpuSplit(trio.abc.Instrument):
    """This thread's CPU time by who spent it: the scheduler's tasks (its cycles,
    informers, binding and event tasks), the API server answering the scheduler's
    requests (in-process, inside those same tasks: see :class:`ServerSide`), or the
    rest (the benchmark's writers, its own informers, the server's other work).

    kube-scheduler's CPU is the first bucket alone; the second is what its requests cost
    the API server, which runs in another process there. Task steps are timed with
    ``perf_counter`` (a per-thread CPU clock is a system call, 2.4 µs here, and there are
    dozens of steps per pod); :meth:`cpu` shares the thread's CPU time out in proportion.
    """

    def __init__(self) -> None:
        self.seconds = {"scheduler": 0.0, "server_for_scheduler": 0.0, "other": 0.0}
        self.root: trio.lowlevel.Task | None = None
        self._kind: dict[trio.lowlevel.Task, str] = {}
        self._in_server: dict[trio.lowlevel.Task, int] = {}
        self._mark = 0.0

    def _owner(self, task: trio.lowlevel.Task) -> str:
        found = self._kind.get(task)
        if found is None:
            found, parent = "other", task
            while parent is not None:
                if parent is self.root:
                    found = "scheduler"
                    break
                nursery = parent.parent_nursery
                parent = nursery.parent_task if nursery is not None else None
            self._kind[task] = found
        return found

    def _charge(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        owner = self._owner(task)
        if owner == "scheduler" and self._in_server.get(task):
            owner = "server_for_scheduler"
        self.seconds[owner] += now - self._mark
        self._mark = now

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._mark = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self._charge(task)

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        # A task the server starts while answering (a watch's pump) works for it too.
        nursery = task.parent_nursery
        if nursery is not None and self._in_server.get(nursery.parent_task):
            self._in_server[task] = 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._kind.pop(task, None)
        self._in_server.pop(task, None)

    def enter_server(self) -> None:
        task = trio.lowlevel.current_task()
        self._charge(task)
        self._in_server[task] = self._in_server.get(task, 0) + 1

    def leave_server(self) -> None:
        task = trio.lowlevel.current_task()
        self._charge(task)
        self._in_server[task] -= 1

    def snapshot(self) -> dict[str, float]:
        """The step seconds so far, per bucket, and this thread's CPU seconds."""
        return {**self.seconds, "thread_cpu": time.thread_time()}

    @staticmethod
    def cpu(started: dict[str, float], ended: dict[str, float]) -> dict[str, float]:
        """The thread's CPU seconds between two snapshots, shared out by step time."""
        spent = {k: ended[k] - started[k] for k in ("scheduler", "server_for_scheduler", "other")}
        steps = sum(spent.values()) or 1.0
        thread_cpu = ended["thread_cpu"] - started["thread_cpu"]
        return {k: v / steps * thread_cpu for k, v in spent.items()}


class ServerSide:
    """The API server's handler, telling :class:`CpuSplit` when a task is inside it
    (and for the whole life of a watch stream's producer)."""

    def __init__(self, handler: RequestHandler, split: CpuSplit) -> None:
        self.handler = handler
        self.split = split

    async def handle(self, request: Request) -> Response:
        self.split.enter_server()
        try:
            response = await self.handler.handle(request)
        finally:
            self.split.leave_server()
        producer = response.stream
        if producer is None:
            return response

        async def stream(send: trio.MemorySendChannel[bytes]) -> None:
            self.split.enter_server()
            try:
                await producer(send)
            finally:
                self.split.leave_server()

        return replace(response, stream=stream)


# --- baselines ----------------------------------------------------------------------------


def _cpu_mem(resources: dict[str, Any] | None) -> tuple[int, int]:
    resources = resources or {}
    return (
        Quantity(str(resources.get("cpu", "0"))).milli_value(),
        Quantity(str(resources.get("memory", "0"))).value(),
    )


class NaiveScheduler:
    """The baseline: every pod checks every node from the raw objects, then binds."""

    def __init__(self, client: Client, nodes: Informer, pods: Informer) -> None:
        self.client = client
        self.nodes = nodes
        self.pods = pods
        self.done: set[str] = set()

    def choose(self, pod: dict[str, Any]) -> str | None:
        want_cpu = want_mem = 0
        for container in pod["spec"]["containers"]:
            cpu, mem = _cpu_mem((container.get("resources") or {}).get("requests"))
            want_cpu += cpu
            want_mem += mem
        used: dict[str, list[int]] = {}
        for other in self.pods.list():
            node_name = other["spec"].get("nodeName")
            if node_name:
                entry = used.setdefault(node_name, [0, 0, 0])
                for container in other["spec"]["containers"]:
                    cpu, mem = _cpu_mem((container.get("resources") or {}).get("requests"))
                    entry[0] += cpu
                    entry[1] += mem
                entry[2] += 1
        best, best_score = None, -1
        for node in self.nodes.list():
            name = node["metadata"]["name"]
            cap_cpu, cap_mem = _cpu_mem(node["status"]["allocatable"])
            max_pods = int(node["status"]["allocatable"]["pods"])
            cpu, mem, count = used.get(name, (0, 0, 0))
            if cpu + want_cpu > cap_cpu or mem + want_mem > cap_mem or count + 1 > max_pods:
                continue
            score = (cap_cpu - cpu - want_cpu) * 50 // cap_cpu
            score += (cap_mem - mem - want_mem) * 50 // cap_mem
            if score > best_score:
                best, best_score = name, score
        return best

    async def run(self, namespace: str, prefix: str, count: int) -> None:
        bound = 0
        while bound < count:
            pending = [
                p
                for p in self.pods.list(namespace)
                if p["metadata"]["name"].startswith(prefix)
                and not p["spec"].get("nodeName")
                and p["metadata"]["name"] not in self.done
            ]
            if not pending:
                await trio.sleep(0.001)
                continue
            for pod in pending:
                node = self.choose(pod)
                if node is None:
                    continue
                await bind(self.client, pod, node)
                self.done.add(pod["metadata"]["name"])
                bound += 1


async def bind(client: Client, pod: dict[str, Any], node: str) -> None:
    """Bind through ``pods/binding``, as the scheduler does."""
    name = pod["metadata"]["name"]
    await client.create(
        "v1",
        "pods",
        {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        },
        namespace=pod["metadata"]["namespace"],
        subresource="binding",
        name=name,
    )


# --- the run ------------------------------------------------------------------------------


async def create_nodes(client: Client, workload: Workload) -> None:
    zones = itertools.cycle(workload.zones or [None])
    zone_of = [next(zones) for _ in range(workload.nodes)]
    await run_writers(
        workload.nodes, lambda i: client.create("v1", "nodes", node_default(i, zone_of[i]))
    )


async def create_namespaces(client: Client, workload: Workload) -> None:
    for namespace in {workload.init_namespace, workload.measure_namespace} - {"default"}:
        await client.create(
            "v1",
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )


async def create_pods(
    client: Client, template: PodTemplate, namespace: str, prefix: str, count: int
) -> None:
    await run_writers(
        count,
        lambda i: client.create(
            "v1", "pods", template(f"{prefix}{i}", namespace), namespace=namespace
        ),
    )


async def measure(
    workload: Workload, mode: str, measure_pods: int, timeout: float
) -> tuple[float, int, float, dict[str, float]]:
    """Run one workload with ``mode`` (kubetrio | naive | api_floor): pods/s (wall clock),
    failed scheduling attempts, pods per CPU-second of this process, and this thread's
    CPU seconds by who spent them (:class:`CpuSplit`)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            open_store(f"sqlite://{tmp}/s.db") as store,
            open_apiserver(store) as running,
            Client.in_process(running.api) as client,
            trio.open_nursery() as nursery,
        ):
            counter = BoundCounter()
            pods = Informer(client, "v1", "pods")
            pods.add_handler(counter)
            await nursery.start(pods.run)
            await create_namespaces(client, workload)
            nodes_informer = Informer(client, "v1", "nodes")
            await nursery.start(nodes_informer.run)
            scheduler: Scheduler | None = None
            split = CpuSplit()
            if CPU_SPLIT[0]:
                trio.lowlevel.add_instrument(split)
            if mode == "kubetrio":
                scheduler = Scheduler(
                    Client.in_process(ServerSide(running.api, split)),
                    plugins=plugins.load(only=["scheduler"]),
                    config=SchedulerConfig(),
                )
                run_scheduler = scheduler.run

                async def scheduler_root(task_status: trio.TaskStatus[None]) -> None:
                    split.root = trio.lowlevel.current_task()
                    await run_scheduler(task_status=task_status)

                await nursery.start(scheduler_root)
            await create_nodes(client, workload)
            with trio.fail_after(120):
                while len(nodes_informer.cache) < workload.nodes:
                    await trio.sleep(0.05)
            naive = NaiveScheduler(client, nodes_informer, pods)
            node_names = [f"scheduler-perf-{i}" for i in range(workload.nodes)]

            async def schedule_phase(namespace: str, prefix: str, count: int) -> None:
                if mode == "naive":
                    await naive.run(namespace, prefix, count)
                elif mode == "api_floor":
                    targets = itertools.cycle(node_names)
                    await counter.wait(namespace, prefix, 0, timeout)
                    done: set[str] = set()
                    while len(done) < count:
                        pending = [
                            p
                            for p in pods.list(namespace)
                            if p["metadata"]["name"].startswith(prefix)
                            and not p["spec"].get("nodeName")
                            and p["metadata"]["name"] not in done
                        ]
                        if not pending:
                            await trio.sleep(0.001)
                            continue
                        done.update(p["metadata"]["name"] for p in pending)
                        batch = [(p, next(targets)) for p in pending]
                        await run_writers(len(batch), lambda i, b=batch: bind(client, *b[i]))
                await counter.wait(namespace, prefix, count, timeout)

            async def phase(template: PodTemplate, namespace: str, prefix: str, count: int) -> None:
                async with trio.open_nursery() as inner:
                    inner.start_soon(create_pods, client, template, namespace, prefix, count)
                    inner.start_soon(schedule_phase, namespace, prefix, count)

            # The naive baseline starts on an empty cluster (it is slow; emptiness favours it).
            init_pods = 0 if mode == "naive" else workload.init_pods
            if init_pods:
                await phase(workload.init_template, workload.init_namespace, "init-", init_pods)
            started = time.perf_counter()
            cpu_started = time.process_time()
            split_started = split.snapshot()
            await phase(
                workload.measure_template, workload.measure_namespace, "measure-", measure_pods
            )
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            failed = scheduler.failed_attempts if scheduler else 0
            share = cpu / elapsed
            print(
                f"  [{mode}] {measure_pods / cpu:.1f} pods per CPU-second of this process "
                f"(it got {share:.2f} CPUs on average: the machine is shared)"
            )
            spent = CpuSplit.cpu(split_started, split.snapshot())
            sched_cpu = spent["scheduler"]
            if scheduler is not None and sched_cpu > 0:
                server = spent["server_for_scheduler"]
                print(
                    f"  [{mode}] {measure_pods / sched_cpu:.1f} pods per scheduler CPU-second "
                    f"(scheduler tasks {sched_cpu:.2f} s, the API server answering them "
                    f"{server:.2f} s, everything else {spent['other']:.2f} s)"
                )
            if scheduler is not None:
                queue = getattr(scheduler, "events", None)
                dropped = getattr(queue, "dropped", 0)
                print(f"  [{mode}] events dropped under pressure: {dropped}")
            if CPU_SPLIT[0]:
                trio.lowlevel.remove_instrument(split)
            marks = [(n, t) for prefix, n, t in counter.marks if prefix == "measure-"]
            if len(marks) > 2:
                steps = [
                    f"{1000 / (t - t0):.0f}"
                    for (_, t0), (_, t) in itertools.pairwise([(0, started), *marks])
                ]
                print(f"  [{mode}] pods/s per 1000 measured pods: {' '.join(steps)}")
            nursery.cancel_scope.cancel()
    return measure_pods / elapsed, failed, measure_pods / cpu, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workloads",
        default="SchedulingBasic",
        help=f"comma-separated, or 'all' ({', '.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every count (e.g. 0.1 for a quick run)"
    )
    parser.add_argument("--baseline-pods", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the naive and api_floor runs (A/B runs of the scheduler alone)",
    )
    parser.add_argument(
        "--no-cpu-split",
        action="store_true",
        help="do not time task steps (no pods per scheduler CPU-second; ~5%% less overhead)",
    )
    args = parser.parse_args()
    CPU_SPLIT[0] = not args.no_cpu_split
    names = list(WORKLOADS) if args.workloads == "all" else args.workloads.split(",")
    results: dict[str, Any] = {"bench": "scheduler_perf"}
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.2f} on {os.cpu_count()} cpus (shared machine)")
    results["loadavg_at_start"] = round(load, 2)
    if args.scale != 1.0:
        results["scale"] = args.scale
    for name in names:
        workload = WORKLOADS[name].scaled(args.scale) if args.scale != 1.0 else WORKLOADS[name]
        shape = f"{workload.nodes} nodes / {workload.init_pods} init / {workload.measure_pods}"
        print(f"{name} ({shape} measured pods){' SCALED' if args.scale != 1.0 else ''}")
        rate, failed, per_cpu, spent = trio.run(
            measure, workload, "kubetrio", workload.measure_pods, args.timeout
        )
        gate = GATES[name]
        print(
            f"  kubetrio: {rate:.1f} pods/s (gate {gate:g}: x{rate / gate:.2f}; "
            f"{failed} failed attempts)"
        )
        results[f"{name}_pods_per_s"] = round(rate, 1)
        results[f"{name}_pods_per_cpu_s"] = round(per_cpu, 1)
        if spent["scheduler"] > 0:
            results[f"{name}_pods_per_scheduler_cpu_s"] = round(
                workload.measure_pods / spent["scheduler"], 1
            )
            results[f"{name}_pods_per_scheduler_and_its_requests_cpu_s"] = round(
                workload.measure_pods / (spent["scheduler"] + spent["server_for_scheduler"]), 1
            )
        results[f"{name}_ratio_vs_gate"] = round(rate / gate, 2)
        if name in CURRENT_GATES:
            current = CURRENT_GATES[name]
            print(f"  kube-scheduler master gate {current:g}: x{rate / current:.2f}")
            results[f"{name}_ratio_vs_master_gate"] = round(rate / current, 2)
        if name == "SchedulingBasic":
            results["ratio_vs_gate"] = results[f"{name}_ratio_vs_gate"]
        if name == "SchedulingBasic" and not args.no_baselines:
            count = min(args.baseline_pods, workload.measure_pods)
            naive, _, naive_cpu, _ = trio.run(measure, workload, "naive", count, args.timeout)
            floor, _, floor_cpu, _ = trio.run(
                measure, workload, "api_floor", workload.measure_pods, args.timeout
            )
            print(f"  baseline naive (all nodes, raw objects, {count} pods): {naive:.1f} pods/s")
            print(f"  api floor (no decision, same shape): {floor:.1f} pods/s")
            results["baseline_naive_pods_per_s"] = round(naive, 1)
            results["ratio_vs_naive"] = round(rate / naive, 2)
            results["api_floor_pods_per_s"] = round(floor, 1)
            results["share_of_api_floor"] = round(rate / floor, 2)
            results["baseline_naive_pods_per_cpu_s"] = round(naive_cpu, 1)
            results["api_floor_pods_per_cpu_s"] = round(floor_cpu, 1)
        sys.stdout.flush()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
