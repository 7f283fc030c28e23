"""API Priority and Fairness (``apiserver/_fairness``): the bootstrap FlowSchemas and
PriorityLevelConfigurations, classification headers, a flooding user refused with 429 while
another user and a node keep being served, long-running requests not holding seats, and
the 429 as kubectl and the official Python client see it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, merge_kubeconfig, open_apiserver
from kubetrio.store import open_store
from tests.kit.polling import wait_for
from tests.kit.prom import kubectl, samples, value

FC = "/apis/flowcontrol.apiserver.k8s.io/v1"
TOKENS = """admin-token,admin,1,"system:masters"
alice-token,alice,2
flood-token,flooder,3
node-token,system:node:n1,4,"system:nodes"
"""
ADMIN = {"authorization": "Bearer admin-token"}
ALICE = {"authorization": "Bearer alice-token"}
FLOOD = {"authorization": "Bearer flood-token"}
NODE = {"authorization": "Bearer node-token"}
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[RunningApiServer]:
    """An API server with static tokens (no RBAC: every authenticated request allowed)."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(tokens)}})
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store, plugins=manager) as running,
    ):
        yield running


@pytest.fixture
async def http(apiserver: RunningApiServer) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=apiserver.url, timeout=30, limits=limits) as c:
        yield c


async def _create(http: httpx.AsyncClient, resource: str, obj: dict[str, Any]) -> None:
    answer = await http.post(f"{FC}/{resource}", json=obj, headers=ADMIN)
    assert answer.status_code == 201, answer.text


async def limit_flooder(
    http: httpx.AsyncClient, limited: dict[str, Any], user: str = "flooder"
) -> None:
    """A priority level ``flood-test`` for ``user`` alone, and wait until the server
    classifies that user's requests there."""
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": "flood-test"},
        "spec": {"type": "Limited", "limited": limited},
    }
    await _create(http, "prioritylevelconfigurations", level)
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": "flooders"},
        "spec": {
            "priorityLevelConfiguration": {"name": "flood-test"},
            "matchingPrecedence": 50,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "User", "user": {"name": user}}],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }
    await _create(http, "flowschemas", schema)
    created = (await http.get(f"{FC}/flowschemas/flooders", headers=ADMIN)).json()

    async def classified() -> bool:
        headers = FLOOD if user == "flooder" else {}  # else anonymous
        answer = await http.get("/api/v1/namespaces/default/configmaps", headers=headers)
        uid: str = created["metadata"]["uid"]
        return bool(answer.headers.get("x-kubernetes-pf-flowschema-uid") == uid)

    await wait_for(classified)


def _lease(name: str, renew: str = "2024-01-01T00:00:00.000000Z") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew},
    }


async def test_bootstrap_configuration_is_served_and_names_each_request(
    http: httpx.AsyncClient,
) -> None:
    schemas = (await http.get(f"{FC}/flowschemas", headers=ADMIN)).json()["items"]
    precedence = {s["metadata"]["name"]: s["spec"]["matchingPrecedence"] for s in schemas}
    assert precedence == {
        "exempt": 1,
        "probes": 2,
        "system-leader-election": 100,
        "endpoint-controller": 150,
        "workload-leader-election": 200,
        "system-node-high": 400,
        "system-nodes": 500,
        "kube-controller-manager": 800,
        "kube-scheduler": 800,
        "kube-system-service-accounts": 900,
        "service-accounts": 9000,
        "global-default": 9900,
        "catch-all": 10000,
    }
    levels = (await http.get(f"{FC}/prioritylevelconfigurations", headers=ADMIN)).json()
    shares = {
        pl["metadata"]["name"]: (pl["spec"].get("limited") or {}).get("nominalConcurrencyShares")
        for pl in levels["items"]
    }
    assert shares == {
        "exempt": None,
        "catch-all": 5,
        "system": 30,
        "node-high": 40,
        "leader-election": 10,
        "workload-high": 40,
        "workload-low": 100,
        "global-default": 20,
    }
    uid = {s["metadata"]["name"]: s["metadata"]["uid"] for s in schemas}
    level_uid = {pl["metadata"]["name"]: pl["metadata"]["uid"] for pl in levels["items"]}

    def names(answer: httpx.Response) -> tuple[str | None, str | None]:
        return (
            answer.headers.get("x-kubernetes-pf-flowschema-uid"),
            answer.headers.get("x-kubernetes-pf-prioritylevel-uid"),
        )

    # The uids name objects: a FlowSchema's and a PriorityLevelConfiguration's.
    alice = await http.get("/api/v1/namespaces/default/configmaps", headers=ALICE)
    assert alice.status_code == 200
    assert names(alice) == (uid["global-default"], level_uid["global-default"])
    node = await http.post(LEASE, json=_lease("n1"), headers=NODE)
    assert node.status_code == 201, node.text
    by_uid = {v: k for k, v in uid.items()}
    assert names(node) == (uid["system-node-high"], level_uid["node-high"]), by_uid.get(
        names(node)[0]
    )
    node_other = await http.get("/api/v1/namespaces/default/configmaps", headers=NODE)
    assert names(node_other) == (uid["system-nodes"], level_uid["system"])
    admin = await http.get("/api/v1/namespaces", headers=ADMIN)
    assert names(admin) == (uid["exempt"], level_uid["exempt"])

    # kubectl's columns, as upstream prints them.
    table = await http.get(
        f"{FC}/flowschemas/global-default",
        headers={**ADMIN, "accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    columns = [c["name"] for c in table.json()["columnDefinitions"]]
    assert columns == [
        "Name", "PriorityLevel", "MatchingPrecedence", "DistinguisherMethod", "Age", "MissingPL"
    ]  # fmt: skip
    assert table.json()["rows"][0]["cells"][1:4] == ["global-default", 9900, "ByUser"]


async def test_a_deleted_mandatory_object_comes_back(http: httpx.AsyncClient) -> None:
    gone = await http.delete(f"{FC}/flowschemas/catch-all", headers=ADMIN)
    assert gone.status_code == 200, gone.text

    async def back() -> bool:
        answer = await http.get(f"{FC}/flowschemas/catch-all", headers=ADMIN)
        return answer.status_code == 200

    await wait_for(back)


async def test_a_flooding_user_gets_429_while_a_node_and_another_user_are_served(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    # A small level for the flooder: a few seats, two short queues.
    await limit_flooder(
        http,
        {
            "nominalConcurrencyShares": 1,
            "limitResponse": {
                "type": "Queue",
                "queuing": {"queues": 2, "handSize": 1, "queueLengthLimit": 2},
            },
        },
    )
    for i in range(30):
        cm = {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 200}}
        await http.post("/api/v1/namespaces/default/configmaps", json=cm, headers=ADMIN)
    assert (await http.post(LEASE, json=_lease("n1"), headers=NODE)).status_code == 201
    refusals: list[httpx.Response] = []
    flood_ok = 0
    others: list[int] = []
    stop = trio.Event()

    async def flood() -> None:
        nonlocal flood_ok
        while not stop.is_set():
            answer = await http.get("/api/v1/namespaces/default/configmaps", headers=FLOOD)
            if answer.status_code == 429:
                refusals.append(answer)
            else:
                assert answer.status_code == 200, answer.text
                flood_ok += 1

    async def node_and_alice() -> None:
        for i in range(5):
            lease = (await http.get(f"{LEASE}/n1", headers=NODE)).json()
            lease["spec"]["renewTime"] = f"2024-01-01T00:00:{i:02d}.000000Z"
            answer = await http.put(f"{LEASE}/n1", json=lease, headers=NODE)
            others.append(answer.status_code)
            cm = {"metadata": {"name": f"alice-{i}"}}
            answer = await http.post(
                "/api/v1/namespaces/default/configmaps", json=cm, headers=ALICE
            )
            others.append(answer.status_code)
            others.append(
                (await http.get("/api/v1/namespaces/default/pods", headers=ALICE)).status_code
            )

    async with trio.open_nursery() as nursery:
        for _ in range(20):  # well past 3 seats and 2 queues of 2
            nursery.start_soon(flood)
        with trio.fail_after(60):
            while not refusals:
                await trio.sleep(0.05)
            await node_and_alice()
        stop.set()

    assert others == [200, 201, 200] * 5  # never refused, never failed
    assert flood_ok > 0  # the flooder is served, in its share
    refusal = refusals[0]
    assert refusal.headers["retry-after"] == "1"
    status = refusal.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "TooManyRequests"
    assert status["code"] == 429
    assert status["message"] == "Too many requests, please try again later."
    assert status["details"]["retryAfterSeconds"] == 1
    metrics = samples((await http.get("/metrics", headers=ADMIN)).text)
    rejected = value(
        metrics,
        "apiserver_flowcontrol_rejected_requests_total",
        priority_level="flood-test",
        flow_schema="flooders",
    )
    assert rejected == len(refusals) > 0
    assert (
        value(
            metrics,
            "apiserver_flowcontrol_rejected_requests_total",
            priority_level="node-high",
        )
        == 0
    )
    assert (
        value(
            metrics,
            "apiserver_flowcontrol_dispatched_requests_total",
            priority_level="node-high",
            flow_schema="system-node-high",
        )
        >= 11  # the create, then a get and an update five times
    )
    assert value(metrics, "apiserver_flowcontrol_nominal_limit_seats", priority_level="node-high")


async def test_default_levels_queue_a_flood_fairly(tmp_path: Path) -> None:
    """With the bootstrap configuration only and few seats, a flooding user waits in its
    own queues of global-default; another user of the same level and a node are served."""
    from kubetrio.apiserver import ServerLimits

    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    manager = plugins.load(only=["auth"])
    manager.configure(config={"auth": {"token_auth_file": str(tokens)}})
    limits = ServerLimits(max_requests_inflight=10, max_mutating_requests_inflight=5)
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_apiserver(store, plugins=manager, limits=limits) as running,
        httpx.AsyncClient(
            base_url=running.url, timeout=30, limits=httpx.Limits(max_connections=100)
        ) as http,
    ):
        level = running.api.fairness.config.levels["global-default"]
        assert level.limit == 2  # ceil(15 seats * 20 / 245 shares)
        assert (await http.post(LEASE, json=_lease("n1"), headers=NODE)).status_code == 201
        stop = trio.Event()
        queued_seen = 0

        async def flood() -> None:
            while not stop.is_set():
                answer = await http.get("/api/v1/namespaces/default/configmaps", headers=FLOOD)
                assert answer.status_code == 200

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(flood)
            with trio.fail_after(60):
                while not level.waiting:
                    await trio.sleep(0.01)
                queued_seen = level.waiting
                for _ in range(5):
                    alice = await http.get("/api/v1/namespaces/default/pods", headers=ALICE)
                    assert alice.status_code == 200
                    lease = (await http.get(f"{LEASE}/n1", headers=NODE)).json()
                    answer = await http.put(f"{LEASE}/n1", json=lease, headers=NODE)
                    assert answer.status_code == 200, answer.text
            stop.set()
        assert queued_seen > 0


async def test_long_running_requests_hold_no_seat(http: httpx.AsyncClient) -> None:
    # The flooder's level has no seats: every counted request of theirs is refused.
    await limit_flooder(http, {"nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}})
    listed = await http.get("/api/v1/namespaces/default/configmaps", headers=FLOOD)
    assert listed.status_code == 429
    # A pod's log is long-running: not counted, so answered (404: no such pod).
    log = await http.get("/api/v1/namespaces/default/pods/nope/log", headers=FLOOD)
    assert log.status_code == 404, log.text
    # A watch is counted while it starts: refused too.
    watch = await http.get("/api/v1/namespaces/default/configmaps?watch=true", headers=FLOOD)
    assert watch.status_code == 429


async def test_a_watch_gives_its_seat_back_once_it_streams(http: httpx.AsyncClient) -> None:
    await limit_flooder(http, {"nominalConcurrencyShares": 1, "limitResponse": {"type": "Reject"}})
    # ceil(600 * 1 / 246) = 3 seats: ten open watches would hold ten if they kept theirs.
    async with trio.open_nursery() as nursery:
        opened = 0

        async def watch() -> None:
            nonlocal opened
            async with http.stream(
                "GET", "/api/v1/namespaces/default/configmaps?watch=true", headers=FLOOD
            ) as answer:
                assert answer.status_code == 200
                opened += 1
                await trio.sleep_forever()

        for started in range(1, 11):
            nursery.start_soon(watch)

            async def streaming(started: int = started) -> bool:
                return opened == started

            await wait_for(streaming)
        listed = await http.get("/api/v1/namespaces/default/configmaps", headers=FLOOD)
        assert listed.status_code == 200
        nursery.cancel_scope.cancel()


def _python_client_sees_429(url: str) -> ApiException:
    configuration = client.Configuration()
    configuration.host = url
    with client.ApiClient(configuration) as api:
        try:
            client.CoreV1Api(api).list_namespaced_config_map("default")
        except ApiException as exc:
            return exc
    raise AssertionError("the list was not refused")


async def test_kubectl_and_the_python_client_see_a_clean_429(
    apiserver: RunningApiServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Anonymous: kubectl sends no bearer token over plain HTTP.
    refuse_all = {"nominalConcurrencyShares": 0, "limitResponse": {"type": "Reject"}}
    await limit_flooder(http, refuse_all, user="system:anonymous")
    refused = await trio.to_thread.run_sync(_python_client_sees_429, apiserver.url)
    assert refused.status == 429
    assert refused.reason == "Too Many Requests"
    assert refused.headers is not None and refused.headers["Retry-After"] == "1"
    body = json.loads(refused.body or "")
    assert (body["reason"], body["message"]) == (
        "TooManyRequests",
        "Too many requests, please try again later.",
    )
    kubeconfig = tmp_path / "anonymous.kubeconfig"
    merge_kubeconfig(kubeconfig, name="anonymous", server=apiserver.url)
    # client-go retries a 429 that says when (Retry-After) ten times, then reports it.
    code, out = await kubectl("1.33", kubeconfig, "get", "configmaps", "--request-timeout=60s")
    assert code != 0, out
    assert "Error from server (TooManyRequests): Too many requests, please try again later." in out
