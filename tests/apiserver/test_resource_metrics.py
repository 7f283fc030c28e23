"""``metrics.k8s.io/v1beta1`` served by the API server from node agents' resource metrics:
the rate computation and formatting as metrics-server's, its storage of two points, and
the API end to end against a fake agent (discovery, get/list, selectors, bad input)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import msgspec
import pytest
import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.apiserver._resourcemetrics import (
    Batch,
    MetricsStore,
    Point,
    _may_have_agent,
    cpu_quantity,
    decode_resource_metrics,
    memory_quantity,
    usage,
)

T0 = 1_700_000_000.0
MiB = 1024 * 1024


def test_usage_is_the_cpu_rate_between_two_points_and_the_last_working_set() -> None:
    prev = Point(timestamp=T0, cpu_ns=10_000_000_000, memory=MiB)
    last = Point(timestamp=T0 + 15, cpu_ns=10_000_000_000 + 15 * 250_000_000, memory=634824 * 1024)
    found = usage(last, prev)
    assert found is not None
    resources, stamp, window = found
    assert resources == {"cpu": "250m", "memory": "634824Ki"}
    assert (stamp, window) == (T0 + 15, 15)


def test_usage_refuses_counters_that_went_back() -> None:
    prev = Point(timestamp=T0, cpu_ns=500, start_time=T0 - 100)
    assert usage(Point(timestamp=T0 + 15, cpu_ns=400, start_time=T0 - 100), prev) is None
    assert usage(Point(timestamp=T0 + 15, cpu_ns=900, start_time=T0 - 200), prev) is None
    assert usage(Point(timestamp=T0, cpu_ns=900), prev) is None  # no time passed


def test_quantities_as_metrics_server_prints_them() -> None:
    assert cpu_quantity(43_629_237) == "43629237n"
    assert cpu_quantity(2_000_000_000) == "2"
    assert cpu_quantity(0) == "0"
    assert memory_quantity(64 * MiB) == "64Mi"
    assert memory_quantity(4096 * 3) == "12Ki"


def batch(stamp: float, cpu: int, *, start: float = T0 - 1000, node: bool = True) -> Batch:
    found = Batch()
    if node:
        found.nodes["n1"] = Point(timestamp=stamp, cpu_ns=cpu * 4, memory=MiB)
    found.pods[("default", "web")] = {
        "app": Point(timestamp=stamp, cpu_ns=cpu, memory=2 * MiB, start_time=start)
    }
    return found


def pod(name: str = "web") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": name}}}


def test_store_needs_two_points_and_forgets_what_a_round_lacks() -> None:
    store = MetricsStore()
    node = {"metadata": {"name": "n1"}}
    store.store(batch(T0, 1_000_000_000))
    assert store.pod_metrics(pod()) is None and store.node_metrics(node) is None
    store.store(batch(T0 + 15, 2_500_000_000))
    metrics = store.pod_metrics(pod())
    assert metrics is not None
    assert metrics["containers"] == [{"name": "app", "usage": {"cpu": "100m", "memory": "2Mi"}}]
    assert metrics["window"] == "15s"
    assert metrics["metadata"]["labels"] == {"app": "web"}
    node_metrics = store.node_metrics(node)
    assert node_metrics is not None and node_metrics["usage"]["cpu"] == "400m"
    # The same sample again (the agent did not read anew): the previous point stays.
    store.store(batch(T0 + 15, 2_500_000_000))
    assert store.pod_metrics(pod()) is not None
    # A round without the node: its metrics are gone, not stale.
    store.store(batch(T0 + 30, 4_000_000_000, node=False))
    assert store.node_metrics(node) is None


def test_a_restarted_container_starts_over() -> None:
    store = MetricsStore()
    store.store(batch(T0, 5_000_000_000))
    store.store(batch(T0 + 15, 6_000_000_000))
    # restarted at T0 + 20: its counter began again, the old points are dropped
    store.store(batch(T0 + 45, 100_000_000, start=T0 + 20))
    assert store.pod_metrics(pod()) is None
    store.store(batch(T0 + 60, 400_000_000, start=T0 + 20))
    metrics = store.pod_metrics(pod())
    assert metrics is not None and metrics["containers"][0]["usage"]["cpu"] == "20m"


def test_a_fresh_container_has_metrics_after_one_scrape() -> None:
    store = MetricsStore()
    store.store(batch(T0, 1_200_000_000, start=T0 - 12))  # 12 s old: its start counts
    metrics = store.pod_metrics(pod())
    assert metrics is not None
    assert metrics["containers"][0]["usage"]["cpu"] == "100m"
    assert metrics["window"] == "12s"


def exposition(stamp: float, container_cpu: float, node_cpu: float) -> str:
    ms = int(stamp * 1000)
    web = 'container="app",namespace="default",pod="web"'
    return (
        "# TYPE container_cpu_usage_seconds_total counter\n"
        f"container_cpu_usage_seconds_total{{{web}}} {container_cpu} {ms}\n"
        "# TYPE container_memory_working_set_bytes gauge\n"
        f"container_memory_working_set_bytes{{{web}}} 2.097152e+06 {ms}\n"
        "# TYPE container_start_time_seconds gauge\n"
        f"container_start_time_seconds{{{web}}} {T0 - 3600} {int((T0 - 3600) * 1000)}\n"
        "# TYPE node_cpu_usage_seconds_total counter\n"
        f"node_cpu_usage_seconds_total {node_cpu} {ms}\n"
        "# TYPE node_memory_working_set_bytes gauge\n"
        f"node_memory_working_set_bytes 1.048576e+06 {ms}\n"
        "# TYPE scrape_error gauge\nscrape_error 0\n"
    )


def test_decode_reads_kubelets_metric_names_and_timestamps() -> None:
    found = decode_resource_metrics(exposition(T0, 1.5, 30.25), "n1")
    assert found.nodes == {"n1": Point(timestamp=T0, cpu_ns=30_250_000_000, memory=MiB)}
    assert found.pods == {
        ("default", "web"): {
            "app": Point(timestamp=T0, cpu_ns=1_500_000_000, memory=2 * MiB, start_time=T0 - 3600)
        }
    }


class FakeAgent:
    """An HTTP endpoint answering ``/metrics/resource`` with the next of ``answers``
    (a status and a body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str]] = []
        self.paths: list[str] = []
        self.port = 0

    async def serve(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        self.paths.append(data.split(b" ")[1].decode())
        status, body = self.answers.pop(0) if self.answers else (500, "no answer")
        payload = body.encode()
        head = (
            f"HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
        )
        await stream.send_all(head.encode() + payload)
        await stream.aclose()


@pytest.fixture
async def agent() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.serve, 0, host="127.0.0.1"))
        fake.port = listeners[0].socket.getsockname()[1]
        yield fake
        nursery.cancel_scope.cancel()


BASE = "/apis/metrics.k8s.io/v1beta1"


async def setup_objects(http: httpx.AsyncClient, port: int) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"role": "worker"}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        },
    }
    (await http.post("/api/v1/nodes", json=node)).raise_for_status()
    # A simulated node (simnode) advertises an endpoint nobody serves: never scraped.
    simulated = {**node, "metadata": {"name": "sim", "labels": {"kubetrio.io/simulated": "true"}}}
    (await http.post("/api/v1/nodes", json=simulated)).raise_for_status()
    for name in ("web", "idle"):
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        }
        (await http.post("/api/v1/namespaces/default/pods", json=body)).raise_for_status()


def test_nodes_without_an_agent_are_passed_over_on_their_stored_bytes() -> None:
    """A scrape round decodes only nodes that may have an agent: thousands of simulated or
    status-only nodes (the API server's zero Port, no address) are skipped undecoded."""
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"role": "worker"}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }
    assert _may_have_agent(msgspec.json.encode(node))
    zero_port = {
        **node,
        "status": {**node["status"], "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}},
    }
    assert not _may_have_agent(msgspec.json.encode(zero_port))
    no_address = {**node, "status": {**node["status"], "addresses": []}}
    assert not _may_have_agent(msgspec.json.encode(no_address))
    simulated = {**node, "metadata": {"name": "s", "labels": {"kubetrio.io/simulated": "true"}}}
    assert not _may_have_agent(msgspec.json.encode(simulated))


def status_message(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("reason", ""), body.get("message", "")


async def test_api_serves_scraped_metrics(
    apiserver: RunningApiServer,
    http: httpx.AsyncClient,
    agent: FakeAgent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await setup_objects(http, agent.port)
    metrics = apiserver.api.resource_metrics
    agent.answers = [(200, exposition(T0, 10.0, 100.0)), (200, exposition(T0 + 15, 13.75, 130.0))]
    await metrics.scrape_all()
    # One point only: no rate yet, so nothing is served (a list is empty, a get 404).
    assert (await http.get(f"{BASE}/nodes")).json()["items"] == []
    await metrics.scrape_all()
    assert agent.paths == ["/metrics/resource", "/metrics/resource"]  # n1 only, not sim

    nodes = (await http.get(f"{BASE}/nodes")).json()
    assert nodes["kind"] == "NodeMetricsList" and nodes["apiVersion"] == "metrics.k8s.io/v1beta1"
    (node,) = nodes["items"]
    assert node["metadata"]["name"] == "n1" and node["metadata"]["labels"] == {"role": "worker"}
    assert node["usage"] == {"cpu": "2", "memory": "1Mi"}
    assert node["window"] == "15s" and node["timestamp"] == "2023-11-14T22:13:35Z"
    assert (await http.get(f"{BASE}/nodes?labelSelector=role%3Dother")).json()["items"] == []
    assert (await http.get(f"{BASE}/nodes/n1")).json()["usage"]["cpu"] == "2"

    listed = (await http.get(f"{BASE}/namespaces/default/pods?labelSelector=app%3Dweb")).json()
    assert listed["kind"] == "PodMetricsList"
    (web,) = listed["items"]
    assert web["kind"] == "PodMetrics"
    assert web["metadata"]["namespace"] == "default" and web["metadata"]["name"] == "web"
    assert web["containers"] == [{"name": "app", "usage": {"cpu": "250m", "memory": "2Mi"}}]
    every = (await http.get(f"{BASE}/pods")).json()["items"]  # all namespaces
    assert [p["metadata"]["name"] for p in every] == ["web"]
    one = (await http.get(f"{BASE}/namespaces/default/pods/web")).json()
    assert one["containers"] == web["containers"]
    # kubectl get podmetrics: a Table with metrics-server's columns
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = (await http.get(f"{BASE}/namespaces/default/pods", headers={"accept": accept})).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "cpu", "memory", "Window"]
    assert [r["cells"] for r in table["rows"]] == [["web", "250m", "2Mi", "15s"]]
    node_table = (await http.get(f"{BASE}/nodes/n1", headers={"accept": accept})).json()
    assert [r["cells"] for r in node_table["rows"]] == [["n1", "2", "1Mi", "15s"]]

    # A pod without a sample: NotFound worded as metrics-server's.
    idle = await http.get(f"{BASE}/namespaces/default/pods/idle")
    assert status_message(idle) == (
        404,
        "NotFound",
        'podmetrics.metrics.k8s.io "default/idle" not found',
    )
    missing = await http.get(f"{BASE}/namespaces/default/pods/nope")
    assert status_message(missing) == (404, "NotFound", 'pods "nope" not found')
    watch = await http.get(f"{BASE}/namespaces/default/pods?watch=true")
    assert watch.status_code == 405
    create = await http.post(f"{BASE}/namespaces/default/pods", json={})
    assert create.status_code == 405
    bad = await http.get(f"{BASE}/namespaces/default/pods?labelSelector=%3D%3D")
    assert bad.status_code == 400

    # The agent fails: the node and its pods are left out and logged, never a 500.
    agent.answers = [(500, "boom")]
    await metrics.scrape_all()
    assert "leaving node n1 out" in caplog.text
    assert (await http.get(f"{BASE}/nodes")).json()["items"] == []
    assert (await http.get(f"{BASE}/namespaces/default/pods")).json()["items"] == []
    gone = await http.get(f"{BASE}/nodes/n1")
    assert status_message(gone) == (404, "NotFound", 'nodemetrics.metrics.k8s.io "n1" not found')


async def test_discovery_and_apiservice(http: httpx.AsyncClient) -> None:
    groups = (await http.get("/apis")).json()["groups"]
    metrics = next(g for g in groups if g["name"] == "metrics.k8s.io")
    assert metrics["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    resources = (await http.get(BASE)).json()["resources"]
    by_name: dict[str, Any] = {r["name"]: r for r in resources}
    assert by_name["nodes"]["kind"] == "NodeMetrics" and not by_name["nodes"]["namespaced"]
    assert by_name["pods"]["kind"] == "PodMetrics" and by_name["pods"]["namespaced"]
    assert by_name["pods"]["verbs"] == ["get", "list"]
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    aggregated = (await http.get("/apis", headers={"accept": accept})).json()
    item = next(i for i in aggregated["items"] if i["metadata"]["name"] == "metrics.k8s.io")
    assert sorted(r["resource"] for r in item["versions"][0]["resources"]) == ["nodes", "pods"]
    service = (
        await http.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
    ).json()
    (available,) = service["status"]["conditions"]
    assert (available["type"], available["status"]) == ("Available", "True")
