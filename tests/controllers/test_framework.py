"""The work queue, the reconcile loop and leader election, on trio's autojump clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client, WorkQueue
from kubetrio.controllers import (
    LeaderElector,
    NotLeaderError,
    PermanentError,
    QueueController,
    Result,
    TemporaryError,
    guarded_client,
)


async def test_queue_deduplicates_and_orders() -> None:
    queue = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    with trio.fail_after(1):
        assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_key_added_while_processing_waits_for_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    with trio.fail_after(1):
        await queue.get()
    queue.add("a")  # changed again while a worker holds it
    assert len(queue) == 0 and queue.is_processing("a")
    queue.done("a")
    assert len(queue) == 1
    with trio.fail_after(1):
        assert await queue.get() == "a"


async def test_add_after_and_backoff(autojump_clock: trio.testing.MockClock) -> None:
    queue = WorkQueue(base_delay=1.0, max_delay=8.0)
    start = trio.current_time()
    delays = []
    with trio.fail_after(100):
        for _ in range(5):
            queue.add_rate_limited("k")
            key = await queue.get()
            delays.append(trio.current_time() - start)
            start = trio.current_time()
            queue.done(key)
    assert delays == pytest.approx([1, 2, 4, 8, 8])
    queue.forget("k")
    assert queue.backoff("k") == 1.0


async def test_earlier_deadline_wins(autojump_clock: trio.testing.MockClock) -> None:
    queue = WorkQueue()
    start = trio.current_time()
    queue.add_after("k", 10)
    queue.add_after("k", 3)
    queue.add_after("k", 7)
    with trio.fail_after(100):
        assert await queue.get() == "k"
    assert trio.current_time() - start == pytest.approx(3)
    queue.done("k")
    with trio.move_on_after(20):
        await queue.get()
        pytest.fail("a superseded deadline fired again")


class _Recorder(QueueController):
    name = "recorder"
    workers = 4

    def __init__(self, outcomes: dict[str, list[object]]) -> None:
        super().__init__()
        self.outcomes = outcomes
        self.calls: list[tuple[str, float]] = []
        self.running: set[str] = set()
        self.overlap = False

    async def reconcile(self, key: str) -> Result | None:
        if key in self.running:
            self.overlap = True
        self.running.add(key)
        try:
            self.calls.append((key, trio.current_time()))
            await trio.sleep(0.5)
            outcome = self.outcomes[key].pop(0) if self.outcomes[key] else None
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome  # type: ignore[return-value]
        finally:
            self.running.discard(key)


async def test_reconcile_outcomes(autojump_clock: trio.testing.MockClock) -> None:
    controller = _Recorder(
        {
            "ok": [None],
            "later": [Result(requeue_after=30), None],
            "temp": [TemporaryError("busy", 5), None],
            "perm": [PermanentError("bad spec")],
            "boom": [RuntimeError("x"), RuntimeError("x"), None],
        }
    )
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(controller.run)
        for key in controller.outcomes:
            controller.queue.add(key)
        for _ in range(10):
            controller.queue.add("ok")  # storms of events: one reconcile at a time
            await trio.sleep(0.1)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    times: dict[str, list[float]] = {}
    for key, at in controller.calls:
        times.setdefault(key, []).append(round(at - start, 1))
    assert not controller.overlap
    assert len(times["later"]) == 2 and times["later"][1] - times["later"][0] >= 30
    assert len(times["temp"]) == 2 and times["temp"][1] - times["temp"][0] == pytest.approx(5.5)
    assert len(times["perm"]) == 1
    assert len(times["boom"]) == 3
    assert len(times["ok"]) <= 4  # 10 adds within 1 s coalesce


@pytest.fixture
async def client(apiserver: RunningApiServer) -> Client:
    return Client.in_process(apiserver.api)


async def test_leader_election_and_guard(client: Client) -> None:
    leading: list[str] = []
    first = LeaderElector(
        client, identity="one", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2
    )
    second = LeaderElector(
        client, identity="two", lease_duration=1.5, renew_deadline=1.0, retry_period=0.2
    )
    guarded_one = guarded_client(client, first)
    guarded_two = guarded_client(client, second)

    def lead(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            leading.append(name)
            await trio.sleep_forever()

        return run

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            one_scope = trio.CancelScope()

            async def run_one() -> None:
                with one_scope:
                    await first.run(lead("one"))

            nursery.start_soon(run_one)
            while not first.is_leader():
                await trio.sleep(0.05)
            await nursery.start(second.run, lead("two"))
            await trio.sleep(1)
            assert leading == ["one"] and not second.is_leader()
            await guarded_one.create("v1", "configmaps", cm, namespace="default")
            with pytest.raises(NotLeaderError):
                await guarded_two.create("v1", "configmaps", cm, namespace="default")
            one_scope.cancel()  # a clean stop releases the Lease
            while not second.is_leader():
                await trio.sleep(0.05)
            assert leading == ["one", "two"]
            with pytest.raises(NotLeaderError):
                await guarded_one.delete("v1", "configmaps", "x", namespace="default")
            lease = await client.get(
                "coordination.k8s.io/v1",
                "leases",
                "kubetrio-controller-manager",
                namespace="kube-system",
            )
            assert lease["spec"]["holderIdentity"] == "two"
            assert lease["spec"]["leaseTransitions"] == 1
            nursery.cancel_scope.cancel()


async def test_deposed_leader_stops_writing(client: Client) -> None:
    """Someone else overwrites the Lease: the leader's next renewal deposes it at once."""
    elector = LeaderElector(
        client,
        identity="one",
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.2,
        release_on_cancel=False,
    )
    cancelled = trio.Event()

    async def lead() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(elector.run, lead)
            while not elector.is_leader():
                await trio.sleep(0.05)
            lease = await client.get(
                "coordination.k8s.io/v1",
                "leases",
                "kubetrio-controller-manager",
                namespace="kube-system",
            )
            lease["spec"]["holderIdentity"] = "usurper"
            await client.update("coordination.k8s.io/v1", "leases", lease, namespace="kube-system")
            await cancelled.wait()
            assert not elector.is_leader()
            nursery.cancel_scope.cancel()


def test_timing_rules(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LeaderElector(None, identity="x", lease_duration=5, renew_deadline=6)  # type: ignore[arg-type]


class _FakeLeases:
    """Just enough of a client for leases: get/create/update with resourceVersion CAS."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 0

    async def get(
        self, api_version: str, resource: str, name: str, *, namespace: str = ""
    ) -> dict[str, Any]:
        from kubetrio.client import ClientError

        await trio.sleep(0.01)
        if name not in self.objects:
            raise ClientError({"code": 404, "reason": "NotFound"})
        import copy

        return copy.deepcopy(self.objects[name])

    async def create(
        self, api_version: str, resource: str, obj: dict[str, Any], *, namespace: str = ""
    ) -> dict[str, Any]:
        from kubetrio.client import ClientError

        await trio.sleep(0.01)
        name = obj["metadata"]["name"]
        if name in self.objects:
            raise ClientError({"code": 409, "reason": "AlreadyExists"})
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[name] = obj
        return obj

    async def update(
        self, api_version: str, resource: str, obj: dict[str, Any], *, namespace: str = ""
    ) -> dict[str, Any]:
        from kubetrio.client import ClientError

        await trio.sleep(0.01)
        name = obj["metadata"]["name"]
        if self.objects[name]["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise ClientError({"code": 409, "reason": "Conflict"})
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[name] = obj
        return obj


async def test_failover_after_a_crash_within_17_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Default timings (15/10/2): a leader that dies without releasing is replaced in <17 s."""
    leases = _FakeLeases()
    first = LeaderElector(leases, identity="one", release_on_cancel=False)  # type: ignore[arg-type]
    second = LeaderElector(leases, identity="two")  # type: ignore[arg-type]
    took_over = trio.Event()

    async def idle() -> None:
        await trio.sleep_forever()

    async def second_leads() -> None:
        took_over.set()
        await trio.sleep_forever()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            crash = trio.CancelScope()

            async def run_first() -> None:
                with crash:
                    await first.run(idle)

            nursery.start_soon(run_first)
            await trio.sleep(1)
            assert first.is_leader()
            nursery.start_soon(second.run, second_leads)
            await trio.sleep(30)  # the standby keeps waiting while renewals go on
            assert not took_over.is_set() and first.is_leader()
            crashed_at = trio.current_time()
            crash.cancel()
            await took_over.wait()
            assert trio.current_time() - crashed_at < 17
            assert second.is_leader() and not first.is_leader()
            nursery.cancel_scope.cancel()


async def test_leader_that_cannot_renew_steps_down_before_lease_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leases = _FakeLeases()
    elector = LeaderElector(leases, identity="one")  # type: ignore[arg-type]
    stopped_at: list[float] = []

    async def lead() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped_at.append(trio.current_time())

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(elector.run, lead)
            await trio.sleep(5)
            assert elector.is_leader()

            async def unreachable(*args: object, **kwargs: object) -> dict[str, Any]:
                raise OSError("network down")

            leases.get = unreachable  # type: ignore[method-assign]
            leases.update = unreachable  # type: ignore[method-assign]
            cut_at = trio.current_time()
            while not stopped_at:
                await trio.sleep(0.1)
            # Stepped down within the renew deadline of the last renewal (< 15 s lease).
            assert stopped_at[0] - cut_at <= 10 + 2
            assert not elector.is_leader()
            nursery.cancel_scope.cancel()


async def test_slow_renewals_within_the_deadline_keep_leadership(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A loaded server answering each renewal in 6 s (< the 10 s deadline): still leader."""
    leases = _FakeLeases()
    elector = LeaderElector(leases, identity="one")  # type: ignore[arg-type]
    stopped: list[float] = []

    async def lead() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.append(trio.current_time())

    fast_update = leases.update

    async def slow_update(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await trio.sleep(6)
        return await fast_update(*args, **kwargs)

    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(elector.run, lead)
            await trio.sleep(1)
            assert elector.is_leader()
            leases.update = slow_update  # type: ignore[method-assign]
            renewed = leases.rv
            await trio.sleep(120)
            assert not stopped and elector.transitions == 1
            assert leases.rv >= renewed + 10  # it kept renewing all along
            nursery.cancel_scope.cancel()
