"""Runaway brakes: slow-start batches, expectations, the selector check, the create rate.

Most tests drive one controller's ``reconcile`` directly against fake informers and a
fake client on trio's autojump clock, so "pods never appear", "every create fails" and
"a minute passes" are exact and cost nothing. The last test runs the ReplicaSet
controller against a real API server.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, cast

import pytest
import trio
import trio.testing

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, ClientError, KubeObject
from kubetrio.controllers import (
    TOO_MANY_CREATES,
    BrakeLimit,
    ControllerContext,
    ControllerManager,
    DaemonSetController,
    JobController,
    PermanentError,
    QueueController,
    ReplicaSetController,
    StatefulSetController,
    slow_start,
)
from tests.kit.polling import wait_for

NO_LIMIT = BrakeLimit(rate=1e9)


class FakeInformer:
    """The informer surface the controllers use, filled by hand."""

    def __init__(self) -> None:
        self.cache: dict[str, KubeObject] = {}
        self.handlers: list[Any] = []

    def add_handler(self, handler: Any) -> None:
        self.handlers.append(handler)

    def get(self, name: str, namespace: str = "") -> KubeObject | None:
        return self.cache.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None) -> list[KubeObject]:
        return [
            o
            for o in self.cache.values()
            if namespace is None or o["metadata"].get("namespace", "") == namespace
        ]

    def add(self, obj: KubeObject) -> None:
        metadata = obj["metadata"]
        key = f"{metadata.get('namespace', '')}/{metadata['name']}"
        self.cache[key.lstrip("/")] = obj
        for handler in self.handlers:
            handler.on_add(obj)


class FakeInformers:
    def __init__(self) -> None:
        self.by_resource: dict[str, FakeInformer] = {}

    def informer(self, api_version: str, resource: str, **_: str) -> FakeInformer:
        return self.by_resource.setdefault(resource, FakeInformer())


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    def normal(self, obj: KubeObject, reason: str, message: str) -> None:
        self.recorded.append(("Normal", reason, message))

    def warning(self, obj: KubeObject, reason: str, message: str) -> None:
        self.recorded.append(("Warning", reason, message))

    async def write(self, obj: KubeObject, type_: str, reason: str, message: str) -> None:
        self.recorded.append((type_, reason, message))


class FakeClient:
    """Counts pod creates; ``fails(n)`` says whether the n-th create (from 1) fails."""

    def __init__(self, pods: FakeInformer, *, visible: bool = True) -> None:
        self.pods = pods
        self.visible = visible
        self.creates = 0
        self.fails: Callable[[int], bool] = lambda n: False
        self._names = itertools.count()

    async def create(self, api_version: str, resource: str, body: KubeObject, **_: Any) -> Any:
        assert resource == "pods", resource
        self.creates += 1
        if self.fails(self.creates):
            raise ClientError({"code": 403, "reason": "Forbidden", "message": "quota exceeded"})
        await trio.sleep(0)
        n = next(self._names)
        metadata = dict(body["metadata"])
        metadata.setdefault("name", f"{metadata.pop('generateName', 'p-')}{n}")
        pod = {**body, "metadata": {**metadata, "uid": f"pod-uid-{n}"}}
        if self.visible:
            self.pods.add(pod)
        return pod

    async def update(self, api_version: str, resource: str, body: KubeObject, **_: Any) -> Any:
        return body

    async def patch(self, *args: Any, **_: Any) -> Any:
        return {}

    async def delete(self, *args: Any, **_: Any) -> Any:
        return {}


def setup(
    controller: QueueController, *, visible: bool = True
) -> tuple[FakeInformers, FakeClient, FakeEvents]:
    informers = FakeInformers()
    events = FakeEvents()
    client = FakeClient(informers.informer("v1", "pods"), visible=visible)
    controller.setup(
        ControllerContext(
            client=cast(Any, client), informers=cast(Any, informers), events=cast(Any, events)
        )
    )
    return informers, client, events


def replicaset(replicas: int, *, template_labels: dict[str, str] | None = None) -> KubeObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "default", "uid": "rs-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": template_labels or {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def test_slow_start_stops_after_the_first_failing_batch() -> None:
    calls: list[int] = []

    async def create(index: int) -> None:
        calls.append(index)
        if index == 3:
            raise ClientError({"code": 500, "message": "boom"})

    done = await slow_start(100, create)
    # Batches 1, 2, 4: the fourth call fails, its batch finishes, nothing more starts.
    assert sorted(calls) == list(range(7))
    assert (done.attempted, done.succeeded) == (7, 6)
    assert done.error is not None and done.error.message == "boom"


async def test_replicaset_create_error_stops_the_batch() -> None:
    controller = ReplicaSetController()
    informers, client, events = setup(controller)
    client.fails = lambda n: n >= 4
    informers.informer("apps/v1", "replicasets").add(replicaset(100))
    with pytest.raises(ClientError):
        await controller.reconcile("default/rs")
    assert client.creates == 7
    assert ("Warning", "FailedCreate", "Error creating: quota exceeded") in events.recorded
    # Failed and never-attempted creates are not waited for: the next sync may act.
    assert controller.expectations.satisfied("default/rs")


async def test_replicaset_does_not_create_again_before_it_sees_its_pods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = ReplicaSetController()
    controller.brake.limit = NO_LIMIT
    informers, client, _ = setup(controller, visible=False)
    informers.informer("apps/v1", "replicasets").add(replicaset(2**31 - 1))
    for _ in range(50):  # 50 s of syncs, within the expectations timeout
        await controller.reconcile("default/rs")
        await trio.sleep(1)
    assert client.creates == 500  # one burst, then waiting for the informer


async def test_replicaset_waits_minutes_for_a_lagging_informer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """client-go's 5-minute expectations timeout: pods still unseen after 4 minutes (a
    loaded server's watch lagging) are not created a second time."""
    controller = ReplicaSetController()
    informers, client, _ = setup(controller, visible=False)
    informers.informer("apps/v1", "replicasets").add(replicaset(30))
    for _ in range(24):
        await controller.reconcile("default/rs")
        await trio.sleep(10)
    assert client.creates == 30


async def test_replicaset_with_selector_not_matching_its_template_creates_nothing() -> None:
    controller = ReplicaSetController()
    informers, client, events = setup(controller)
    informers.informer("apps/v1", "replicasets").add(replicaset(5, template_labels={"app": "b"}))
    with pytest.raises(PermanentError, match="does not match template"):
        await controller.reconcile("default/rs")
    assert client.creates == 0
    assert any(e[:2] == ("Warning", "FailedCreate") for e in events.recorded)


async def test_rate_brake_pauses_the_owner_and_warns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = ReplicaSetController()
    controller.brake.limit = BrakeLimit(rate=10, window=10, pause=60)
    informers, client, events = setup(controller)
    informers.informer("apps/v1", "replicasets").add(replicaset(10_000))
    result = await controller.reconcile("default/rs")
    assert client.creates == 100  # the window's budget: 10/s over 10 s
    warnings = [e for e in events.recorded if e[1] == TOO_MANY_CREATES]
    assert warnings == [
        (
            "Warning",
            TOO_MANY_CREATES,
            "created 100 objects within 10s, more than 10 per second: pausing creates for 60s",
        )
    ]
    assert result is not None and result.requeue_after == pytest.approx(60)
    for _ in range(5):  # paused: syncs create nothing
        await trio.sleep(10)
        await controller.reconcile("default/rs")
    assert client.creates == 100
    await trio.sleep(15)
    await controller.reconcile("default/rs")
    assert client.creates == 200  # the pause is over: the next window's budget


async def test_job_create_error_stops_the_batch_and_huge_indexed_jobs_are_bounded() -> None:
    controller = JobController()
    informers, client, _ = setup(controller)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "default", "uid": "job-uid"},
        "spec": {
            "parallelism": 50,
            "completions": 50,
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    informers.informer("batch/v1", "jobs").add(job)
    client.fails = lambda n: n >= 2
    with pytest.raises(ClientError):
        await controller.reconcile("default/j")
    assert client.creates == 3  # batches 1 and 2

    controller = JobController()
    controller.brake.limit = NO_LIMIT
    informers, client, _ = setup(controller, visible=False)
    huge = {**job, "spec": {**job["spec"], "parallelism": 2**31 - 1, "completions": 2**31 - 1}}
    huge["spec"]["completionMode"] = "Indexed"
    informers.informer("batch/v1", "jobs").add(huge)
    await controller.reconcile("default/j")
    await controller.reconcile("default/j")
    assert client.creates == 500


async def test_daemonset_create_error_stops_the_batch() -> None:
    controller = DaemonSetController()
    informers, client, _ = setup(controller)
    for n in range(20):
        informers.informer("v1", "nodes").add({"metadata": {"name": f"node-{n}"}})
    daemonset = replicaset(0)
    daemonset.update(kind="DaemonSet", metadata={**daemonset["metadata"], "name": "ds"})
    informers.informer("apps/v1", "daemonsets").add(daemonset)
    client.fails = lambda n: n >= 2
    with pytest.raises(ClientError):
        await controller.reconcile("default/ds")
    assert client.creates == 3


async def test_parallel_statefulset_is_braked(autojump_clock: trio.testing.MockClock) -> None:
    controller = StatefulSetController()
    controller.brake.limit = BrakeLimit(rate=1, window=20, pause=100)
    informers, client, events = setup(controller, visible=False)
    sts = replicaset(2**31 - 1)
    sts.update(kind="StatefulSet")
    sts["spec"].update(podManagementPolicy="Parallel", serviceName="s")
    informers.informer("apps/v1", "statefulsets").add(sts)
    informers.informer("apps/v1", "controllerrevisions")

    async def create_revision(api_version: str, resource: str, body: KubeObject, **_: Any) -> Any:
        if resource == "pods":
            return await FakeClient.create(client, api_version, resource, body)
        return {**body, "metadata": {**body["metadata"], "uid": "rev-uid"}}

    client.create = create_revision  # type: ignore[method-assign]
    result = await controller.reconcile("default/rs")
    assert client.creates == 20
    assert any(e[1] == TOO_MANY_CREATES for e in events.recorded)
    assert result is not None and result.requeue_after == pytest.approx(100)


async def test_rate_brake_event_through_a_real_server(apiserver: RunningApiServer) -> None:
    client = Client.in_process(apiserver.api)
    manager = ControllerManager(
        client,
        controllers=["replicaset"],
        leader_election=False,
        create_limit=BrakeLimit(rate=1, window=30, pause=300),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        rs = replicaset(200)
        del rs["metadata"]["uid"]
        await client.create("apps/v1", "replicasets", rs, namespace="default")

        async def brake_event() -> KubeObject | None:
            events = await client.list("v1", "events", namespace="default")
            found = [e for e in events["items"] if e["reason"] == TOO_MANY_CREATES]
            return found[0] if found else None

        with trio.fail_after(30):
            event = await wait_for(brake_event)
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "ReplicaSet"
        assert "more than 1 per second: pausing creates for 300s" in event["message"]
        pods = await client.list("v1", "pods", namespace="default")
        assert len(pods["items"]) == 30
        nursery.cancel_scope.cancel()
