"""Two controller managers: the standby takes over once the lease runs out, no duplicate
pods. The lease is 5 s rather than upstream's 15 s (``--leader-elect-lease-duration``, with
the renew deadline and retry period in upstream's proportions), so the test waits less."""

from __future__ import annotations

import trio

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.controllers import ControllerManager
from kubetrio.simnode import SimulatedNodes
from tests.kit import deployment, wait_for

LEASE, RENEW, RETRY = 5.0, 3.5, 1.0
"""Lease duration, renew deadline and retry period (upstream's 15, 10 and 2 s, shorter)."""


def manager(client: Client, identity: str, *, release_on_cancel: bool = True) -> ControllerManager:
    """A controller manager on the short lease."""
    return ControllerManager(
        client,
        identity=identity,
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
        release_on_cancel=release_on_cancel,
    )


async def test_standby_takes_over_after_a_crash(apiserver: RunningApiServer) -> None:
    client = Client.in_process(apiserver.api)
    most_pods = 0
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(SimulatedNodes(client, count=2, bind_unscheduled=True).run)
            first = manager(client, "first", release_on_cancel=False)
            second = manager(client, "second")
            crash = trio.CancelScope()

            async def run_first(task_status: trio.TaskStatus[None]) -> None:
                with crash:
                    await first.run(task_status=task_status)

            await nursery.start(run_first)
            await first.leading.wait()
            await nursery.start(second.run)
            await client.create("apps/v1", "deployments", deployment("ha", 3), namespace="default")

            live: set[str] = set()

            async def count_pods() -> None:
                nonlocal most_pods
                async with client.watch("v1", "pods", namespace="default") as events:
                    async for event in events:
                        if event.type == "BOOKMARK":
                            continue
                        name = event.object["metadata"]["name"]
                        if event.type == "DELETED" or event.object["metadata"].get(
                            "deletionTimestamp"
                        ):
                            live.discard(name)
                        else:
                            live.add(name)
                        most_pods = max(most_pods, len(live))

            nursery.start_soon(count_pods)

            async def replicas(n: int) -> bool:
                d = await client.get("apps/v1", "deployments", "ha", namespace="default")
                return (d.get("status") or {}).get("availableReplicas") == n

            await wait_for(lambda: replicas(3))
            assert not second.is_leader
            crash.cancel()  # no release: the standby must wait the lease out
            crashed_at = trio.current_time()
            await client.patch(
                "apps/v1", "deployments", "ha", {"spec": {"replicas": 5}}, namespace="default"
            )
            await second.leading.wait()
            took = trio.current_time() - crashed_at
            # The lease runs out, then the standby acquires it at its next retry (slack: one more).
            assert took < LEASE + 2 * RETRY, took
            await wait_for(lambda: replicas(5))
            await trio.sleep(1)
            pods = (await client.list("v1", "pods", namespace="default"))["items"]
            assert len(pods) == 5
            assert most_pods == 5
            lease = await client.get(
                "coordination.k8s.io/v1",
                "leases",
                "kubetrio-controller-manager",
                namespace="kube-system",
            )
            assert lease["spec"]["holderIdentity"] == "second"
            nursery.cancel_scope.cancel()
