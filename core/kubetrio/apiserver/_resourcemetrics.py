"""``metrics.k8s.io/v1beta1``: metrics-server living inside the API server.

Every :data:`RESOLUTION` seconds (metrics-server's ``--metric-resolution``) each Node's
agent is asked for ``/metrics/resource`` (kubelet's resource metrics, Prometheus text)
over the same path as ``pods/log`` (:mod:`._nodeproxy`: HTTPS with the API server's
client certificate, or a token). The points are kept as metrics-server's storage keeps
them — the last and the previous point of each node and container, a restarted
container's old points dropped — and the API answers from that cache:

- ``nodes`` (``NodeMetrics``, cluster-scoped) and ``pods`` (``PodMetrics``,
  namespaced), ``get`` and ``list``, with label selectors (and field selectors as on the
  Node or Pod they describe); the labels are the Node's or Pod's own.
- ``usage.cpu`` is the rate between the two points in nanocores (``123456n``, as
  metrics-server's ``NewScaledQuantity(v, -9)`` prints), ``usage.memory`` the last
  working set in bytes, binary SI (``1234Ki``); ``timestamp`` is the last point's time
  and ``window`` the time between the two.

A node that cannot be scraped is left out of that round (logged, as metrics-server does):
its NodeMetrics and its pods' PodMetrics disappear until a later scrape succeeds. A pod
whose containers have no two points yet has no PodMetrics: ``get`` answers 404
``podmetrics.metrics.k8s.io "<ns>/<name>" not found`` as metrics-server does.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from kubetrio.api import selectors
from kubetrio.api.quantity import Quantity, QuantityFormat
from kubetrio.api.scheme import ResourceInfo
from kubetrio.handler import Request, Response
from kubetrio.kubeobject import KubeObject

from . import _objects as objects
from ._nodeproxy import agent_endpoint, agent_url
from ._registry import Registry
from ._status import ApiError, bad_request, not_found
from ._tables import table
from .protobuf import go_duration

if TYPE_CHECKING:
    from kubetrio.api.scheme import Scheme

log = logging.getLogger(__name__)

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
RESOLUTION = 15.0
"""Seconds between scrapes (metrics-server's default ``--metric-resolution``)."""
SIMULATED_LABEL = "kubetrio.io/simulated"
"""The label of simnode's nodes, which advertise an agent endpoint no one serves."""
_AGENT_KEY = b'"kubeletEndpoint":{"Port":'
_NO_PORT = b'"kubeletEndpoint":{"Port":0}'
_ADDRESS = b'"address":'
_SIMULATED_PAIR = b'"%s":"true"' % SIMULATED_LABEL.encode()


def _may_have_agent(raw: bytes) -> bool:
    """False for a stored Node (canonical JSON) that surely has no agent to scrape: no
    address, no or a zero ``daemonEndpoints.kubeletEndpoint.Port``, or simulated."""
    return (
        _AGENT_KEY in raw and _NO_PORT not in raw and _ADDRESS in raw and _SIMULATED_PAIR not in raw
    )


FRESH_CONTAINER_MIN = 10.0
"""A container younger than one resolution but at least this old gets its start as the
previous point (usage 0 then), so it has metrics after one scrape (metrics-server's
``freshContainerMinMetricsResolution``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One sample of a node or container: cumulative CPU and working set at a time."""

    timestamp: float
    cpu_ns: int = 0
    memory: int = 0
    start_time: float = 0.0


@dataclasses.dataclass
class Batch:
    """What one round of scrapes found: nodes by name, containers by (namespace, pod)."""

    nodes: dict[str, Point] = dataclasses.field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Point]] = dataclasses.field(default_factory=dict)

    def merge(self, other: Batch) -> None:
        """Add another node's batch."""
        self.nodes.update(other.nodes)
        self.pods.update(other.pods)


def decode_resource_metrics(text: str, node_name: str) -> Batch:
    """A node agent's ``/metrics/resource`` answer as a :class:`Batch`.

    Points without a timestamp, with zero usage, or lacking CPU or memory are dropped,
    as metrics-server's decoder drops them.
    """
    node: dict[str, Any] = {}
    containers: dict[tuple[str, str, str], dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stamp = sample.timestamp
            seconds = float(stamp) if stamp is not None else 0.0
            if sample.name == "node_cpu_usage_seconds_total":
                node.update(timestamp=seconds, cpu_ns=round(sample.value * 1e9))
            elif sample.name == "node_memory_working_set_bytes":
                node.update(memory=int(sample.value))
            elif sample.name.startswith("container_"):
                labels = sample.labels
                key = (labels.get("namespace", ""), labels.get("pod", ""), labels["container"])
                entry = containers.setdefault(key, {})
                if sample.name == "container_cpu_usage_seconds_total":
                    entry.update(timestamp=seconds, cpu_ns=round(sample.value * 1e9))
                elif sample.name == "container_memory_working_set_bytes":
                    entry.update(memory=int(sample.value))
                    entry.setdefault("timestamp", seconds)
                elif sample.name == "container_start_time_seconds":
                    entry.update(start_time=sample.value)
    batch = Batch()
    if node.get("timestamp") and node.get("cpu_ns") and node.get("memory"):
        batch.nodes[node_name] = Point(**node)
    for (namespace, pod, container), entry in containers.items():
        if not entry.get("timestamp") or "cpu_ns" not in entry or "memory" not in entry:
            continue
        batch.pods.setdefault((namespace, pod), {})[container] = Point(**entry)
    return batch


def cpu_quantity(nanocores: int) -> str:
    """CPU usage as metrics-server prints it (a DecimalSI quantity of nanocores)."""
    return Quantity.from_nanos(nanocores).canonical()


def memory_quantity(size: int) -> str:
    """A working set as metrics-server prints it (BinarySI bytes: ``1234Ki``)."""
    return Quantity.from_nanos(size * 1_000_000_000, QuantityFormat.BINARY_SI).canonical()


def usage(last: Point, prev: Point) -> tuple[dict[str, str], float, float] | None:
    """(usage, timestamp, window) from two points; None when the counters went back
    (a restart between them) or no time passed."""
    if last.start_time < prev.start_time or last.cpu_ns < prev.cpu_ns:
        return None
    window = last.timestamp - prev.timestamp
    if window <= 0:
        return None
    nanocores = int((last.cpu_ns - prev.cpu_ns) / window)
    return (
        {"cpu": cpu_quantity(nanocores), "memory": memory_quantity(last.memory)},
        last.timestamp,
        window,
    )


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _window(seconds: float) -> str:
    return go_duration(round(seconds * 1e9))


class MetricsStore:
    """The last two points of every node and container (metrics-server's storage)."""

    def __init__(self, resolution: float = RESOLUTION) -> None:
        self.resolution = resolution
        self.nodes_last: dict[str, Point] = {}
        self.nodes_prev: dict[str, Point] = {}
        self.pods_last: dict[tuple[str, str], dict[str, Point]] = {}
        self.pods_prev: dict[tuple[str, str], dict[str, Point]] = {}

    def store(self, batch: Batch) -> None:
        """Take one round's points; whatever the round lacks is forgotten."""
        nodes_prev: dict[str, Point] = {}
        for name, point in batch.nodes.items():
            kept = _previous(point, self.nodes_last.get(name), self.nodes_prev.get(name))
            if kept is not None:
                nodes_prev[name] = kept
        self.nodes_last, self.nodes_prev = dict(batch.nodes), nodes_prev
        pods_prev: dict[tuple[str, str], dict[str, Point]] = {}
        for key, containers in batch.pods.items():
            last_pod = self.pods_last.get(key, {})
            prev_pod = self.pods_prev.get(key, {})
            kept_pod: dict[str, Point] = {}
            for name, point in containers.items():
                age = point.timestamp - point.start_time
                if point.start_time and FRESH_CONTAINER_MIN <= age < self.resolution:
                    # A fresh container: its start is a point with no CPU used yet.
                    kept_pod[name] = Point(timestamp=point.start_time, start_time=point.start_time)
                    continue
                last = last_pod.get(name)
                if last is not None and point.start_time >= last.timestamp:
                    continue  # restarted since: its old points say nothing of this run
                kept = _previous(point, last, prev_pod.get(name))
                if kept is not None:
                    kept_pod[name] = kept
            if kept_pod:
                pods_prev[key] = kept_pod
        self.pods_last, self.pods_prev = dict(batch.pods), pods_prev

    def node_metrics(self, node: KubeObject) -> KubeObject | None:
        """The NodeMetrics of a Node, if it has two points."""
        name = node["metadata"]["name"]
        last, prev = self.nodes_last.get(name), self.nodes_prev.get(name)
        if last is None or prev is None:
            return None
        found = usage(last, prev)
        if found is None:
            log.warning("skipping the usage of node %s: its CPU counter went back", name)
            return None
        resources, stamp, window = found
        return {
            "kind": "NodeMetrics",
            "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": _metadata(node),
            "timestamp": _rfc3339(stamp),
            "window": _window(window),
            "usage": resources,
        }

    def pod_metrics(self, pod: KubeObject) -> KubeObject | None:
        """The PodMetrics of a Pod, if every container it reported has two points."""
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        last_pod, prev_pod = self.pods_last.get(key), self.pods_prev.get(key)
        if last_pod is None or prev_pod is None:
            return None
        containers = []
        earliest: tuple[float, float] | None = None
        for name in sorted(last_pod):
            prev = prev_pod.get(name)
            if prev is None:
                return None  # as metrics-server: all of the pod's containers or nothing
            found = usage(last_pod[name], prev)
            if found is None:
                log.warning("skipping the usage of container %s of pod %s/%s", name, *key)
                continue
            resources, stamp, window = found
            containers.append({"name": name, "usage": resources})
            if earliest is None or stamp < earliest[0]:
                earliest = (stamp, window)
        stamp, window = earliest or (time.time(), 0.0)
        return {
            "kind": "PodMetrics",
            "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": _metadata(pod),
            "timestamp": _rfc3339(stamp),
            "window": _window(window),
            "containers": containers,
        }


def _previous(point: Point, last: Point | None, prev: Point | None) -> Point | None:
    """Which point becomes the previous one when ``point`` arrives."""
    if last is not None and point.timestamp > last.timestamp:
        return last
    if prev is not None and prev.timestamp < point.timestamp:
        return prev  # the same sample again (the agent's clock did not move): keep prev
    return None


def _metadata(obj: KubeObject) -> KubeObject:
    """A metrics object's metadata: the name, namespace and labels of what it describes,
    created now (metrics-server sets ``creationTimestamp`` to the time of the answer)."""
    meta = obj["metadata"]
    out: KubeObject = {"name": meta["name"]}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    out["creationTimestamp"] = objects.now_rfc3339()
    if meta.get("labels"):
        out["labels"] = meta["labels"]
    return out


class ResourceMetrics:
    """Scrapes the node agents and serves ``metrics.k8s.io`` from what they said.

    :param registry, scheme: where Nodes and Pods are read.
    :param credentials: how to reach agents, asked at each round: the API server's TLS
        context for them (None: plain HTTP) and the Bearer token sent without TLS.
    """

    def __init__(
        self,
        registry: Registry,
        scheme: Scheme,
        credentials: Callable[[], tuple[ssl.SSLContext | None, str]],
        *,
        resolution: float = RESOLUTION,
    ) -> None:
        self.registry = registry
        self.scheme = scheme
        self.credentials = credentials
        self.resolution = resolution
        self.store = MetricsStore(resolution)
        self._client: httpx.AsyncClient | None = None
        self._client_for: tuple[ssl.SSLContext | None, str] | None = None

    def _info(self, resource: str) -> ResourceInfo:
        info = self.scheme.resource("", "v1", resource)
        assert info is not None
        return info

    # --- scraping ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Scrape every node once per resolution, until cancelled."""
        task_status.started()
        try:
            while True:
                started = trio.current_time()
                try:
                    await self.scrape_all()
                except Exception:
                    log.exception("scraping the node agents' resource metrics failed")
                await trio.sleep_until(started + self.resolution)
        finally:
            if self._client is not None:
                with trio.CancelScope(shield=True):
                    await self._client.aclose()
                self._client = None

    async def _http(self, tls: ssl.SSLContext | None, token: str) -> httpx.AsyncClient:
        """The HTTP client for agents, kept across rounds (making one loads CA
        certificates) while the credentials stay the same."""
        if self._client is None or self._client_for != (tls, token):
            if self._client is not None:
                await self._client.aclose()
            headers = {"authorization": f"Bearer {token}"} if token and tls is None else {}
            timeout = min(10.0, self.resolution * 0.9)
            self._client = httpx.AsyncClient(timeout=timeout, verify=tls or True, headers=headers)
            self._client_for = (tls, token)
        return self._client

    async def scrape_all(self) -> None:
        """One round: every node's agent concurrently; then the batch is stored."""
        page = await self.registry.list(self._info("nodes"), "")
        # Only nodes that advertise an agent and are not simulated can be scraped: the
        # others are passed over on the stored bytes, not decoded and given a task each
        # (thousands of simulated or status-only nodes paused the API server's loop
        # every round otherwise).
        nodes = [objects.decode(raw) for raw in page.items if _may_have_agent(raw)]
        batch = Batch()
        tls, token = self.credentials()
        client = await self._http(tls, token)
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(self._scrape_node, client, tls, node, batch)
        self.store.store(batch)

    async def _scrape_node(
        self,
        client: httpx.AsyncClient,
        tls: ssl.SSLContext | None,
        node: KubeObject,
        batch: Batch,
    ) -> None:
        name = node["metadata"]["name"]
        if (node["metadata"].get("labels") or {}).get(SIMULATED_LABEL) == "true":
            return  # simulated nodes (simnode) run no agent: nothing to scrape
        try:
            endpoint = agent_endpoint(node)
        except ApiError:
            return  # a node without an agent endpoint has no metrics
        try:
            response = await client.get(agent_url(tls, endpoint, "/metrics/resource"))
            response.raise_for_status()
            found = await trio.to_thread.run_sync(decode_resource_metrics, response.text, name)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("leaving node %s out: scraping its resource metrics failed: %s", name, exc)
            return
        batch.merge(found)

    # --- serving ----------------------------------------------------------------------

    async def serve(
        self,
        request: Request,
        info: ResourceInfo,
        namespace: str,
        name: str,
        verb: str,
        *,
        as_table: bool = False,
    ) -> Response:
        """Answer ``get`` or ``list`` of ``nodes`` or ``pods`` in ``metrics.k8s.io``
        (``as_table``: a Table, as ``kubectl get podmetrics`` asks)."""
        resource = info.resource
        if verb not in ("get", "list"):
            raise ApiError(
                405,
                "the server does not allow this method on the requested resource",
                reason="MethodNotAllowed",
            )
        source = self._info(resource)
        build = self.store.node_metrics if resource == "nodes" else self.store.pod_metrics
        if verb == "get":
            obj = await self.registry.get_object(source, namespace, name)  # 404 when absent
            found = build(obj)
            if found is None:
                shown = f"{namespace}/{name}" if namespace else name
                raise not_found(f"{resource[:-1]}metrics", GROUP, shown)
            if as_table:
                return Response(body=objects.encode(self._table(request, info, [found])))
            return Response(body=objects.encode(found))
        matches = _filter(request, source)
        page = await self.registry.list(source, namespace, matches=matches)
        items = _built(build, (objects.decode(raw) for raw in page.items))
        if as_table:
            return Response(body=objects.encode(self._table(request, info, items)))
        kind = "NodeMetricsList" if resource == "nodes" else "PodMetricsList"
        body = {"kind": kind, "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}, "items": items}
        return Response(body=objects.encode(body))

    @staticmethod
    def _table(request: Request, info: ResourceInfo, items: list[KubeObject]) -> KubeObject:
        include = request.param("includeObject", "Metadata")
        return table(info, items, "", include_object=include)


def _built(
    build: Callable[[KubeObject], KubeObject | None], sources: Iterable[KubeObject]
) -> list[KubeObject]:
    out = [m for m in (build(obj) for obj in sources) if m is not None]
    out.sort(key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"]))
    return out


def _filter(request: Request, source: ResourceInfo) -> Callable[[KubeObject], bool]:
    """The label and field selectors of a list, applied to the Nodes or Pods."""
    try:
        labels = selectors.parse_label_selector(request.param("labelSelector"))
        fields = selectors.parse_field_selector(request.param("fieldSelector"))
        fields.check_supported(source.group, source.resource)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc

    def matches(obj: KubeObject) -> bool:
        if not labels.matches((obj.get("metadata") or {}).get("labels") or {}):
            return False
        return fields.is_empty() or fields.matches(
            selectors.object_fields(source.group, source.resource, obj)
        )

    return matches
