"""Jobs (completions, parallelism, backoffLimit, deadline, TTL, Indexed) and CronJobs."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import trio

from kubetrio.client import Client, ClientError
from kubetrio.controllers import CronJobController, CronSchedule, JobController
from tests.kit import wait_for

from .conftest import Cluster


def job(name: str, *, exit_code: int = 0, run: float = 0.2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        "kubetrio.io/sim-run-seconds": str(run),
                        "kubetrio.io/sim-exit-code": str(exit_code),
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox"}],
                },
            },
            **spec,
        },
    }


async def _condition(client: Client, name: str, type_: str) -> dict[str, Any] | None:
    try:
        got = await client.get("batch/v1", "jobs", name, namespace="default")
    except ClientError:
        return None
    for condition in (got.get("status") or {}).get("conditions") or []:
        if condition["type"] == type_ and condition["status"] == "True":
            return got
    return None


async def test_job_runs_to_completion_with_parallelism(cluster: Cluster) -> None:
    client = cluster.client
    most_active = 0
    with trio.fail_after(30):
        await client.create(
            "batch/v1", "jobs", job("work", completions=5, parallelism=2), namespace="default"
        )

        async def complete() -> dict[str, Any] | None:
            nonlocal most_active
            pods = (
                await client.list("v1", "pods", namespace="default", label_selector="job-name=work")
            )["items"]
            running = [p for p in pods if p["status"].get("phase") in ("Pending", "Running")]
            most_active = max(most_active, len(running))
            return await _condition(client, "work", "Complete")

        done = await wait_for(complete, interval=0.02)
        assert done["status"]["succeeded"] == 5
        assert done["status"].get("completionTime")
        assert most_active <= 2


async def test_job_backoff_limit(cluster: Cluster) -> None:
    cluster.manager.controller("job").failure_backoff = 0.05  # type: ignore[attr-defined]
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "batch/v1", "jobs", job("fail", exit_code=1, backoffLimit=2), namespace="default"
        )
        failed = await wait_for(lambda: _condition(client, "fail", "Failed"))
        reasons = [c.get("reason") for c in failed["status"]["conditions"]]
        assert "BackoffLimitExceeded" in reasons
        assert failed["status"]["failed"] == 3


async def test_job_active_deadline_and_ttl(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "batch/v1",
            "jobs",
            job("slow", run=60, activeDeadlineSeconds=1, ttlSecondsAfterFinished=1),
            namespace="default",
        )
        failed = await wait_for(lambda: _condition(client, "slow", "Failed"))
        assert "DeadlineExceeded" in [c.get("reason") for c in failed["status"]["conditions"]]

        async def gone() -> bool:
            try:
                await client.get("batch/v1", "jobs", "slow", namespace="default")
            except ClientError as exc:
                return exc.not_found
            return False

        await wait_for(gone)


async def test_indexed_job(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        await client.create(
            "batch/v1",
            "jobs",
            job("idx", completions=3, parallelism=3, completionMode="Indexed"),
            namespace="default",
        )
        done = await wait_for(lambda: _condition(client, "idx", "Complete"))
        assert done["status"]["completedIndexes"] == "0-2"
        pods = (
            await client.list("v1", "pods", namespace="default", label_selector="job-name=idx")
        )["items"]
        indexes = sorted(
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
        )
        assert indexes == ["0", "1", "2"]


def test_cron_schedule_parsing() -> None:
    at = datetime.datetime(2026, 1, 31, 23, 58, tzinfo=datetime.UTC)
    assert CronSchedule("*/5 * * * *").next_after(at) == at.replace(
        minute=0, hour=0, day=1, month=2
    )
    assert CronSchedule("@hourly").next_after(at).hour == 0
    assert CronSchedule("0 9 * * mon-fri").next_after(at) == datetime.datetime(
        2026, 2, 2, 9, 0, tzinfo=datetime.UTC
    )  # Jan 31 2026 is a Saturday
    assert CronSchedule("30 2 29 feb *").next_after(at).year == 2028
    tz = CronSchedule("0 0 * * *", "Europe/Paris").next_after(at)
    assert tz == datetime.datetime(2026, 2, 1, 23, 0, tzinfo=datetime.UTC)
    assert CronSchedule("0 0 1,15 * 0").next_after(at).day == 1  # either day field matches
    for bad in ("* * * *", "61 * * * *", "*/0 * * * *"):
        with pytest.raises(ValueError):
            CronSchedule(bad)


async def test_cronjob_fires_with_test_clock(cluster: Cluster) -> None:
    client = cluster.client
    cron: CronJobController = cluster.manager.controller("cronjob")  # type: ignore[assignment]
    # Start the test clock just after a */10 boundary, so real time crossing the next
    # boundary while the test runs can never add a schedule the test did not step to.
    now = datetime.datetime.now(datetime.UTC)
    clock = [now.replace(minute=now.minute // 10 * 10, second=1, microsecond=0)]
    cron.now = lambda: clock[0]
    template = job("x")["spec"]
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/10 * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 2,
            "jobTemplate": {"spec": template},
        },
    }
    with trio.fail_after(40):
        await client.create("batch/v1", "cronjobs", manifest, namespace="default")
        await trio.sleep(0.5)
        assert not (await client.list("batch/v1", "jobs", namespace="default"))["items"]

        async def jobs_done(n: int, due: str) -> bool:
            items = (await client.list("batch/v1", "jobs", namespace="default"))["items"]
            complete = [
                j
                for j in items
                if any(
                    c["type"] == "Complete" for c in (j.get("status") or {}).get("conditions") or []
                )
            ]
            # The Job of this firing must be among them (not only the earlier ones).
            scheduled = {
                j["metadata"]["annotations"].get("batch.kubernetes.io/cronjob-scheduled-timestamp")
                for j in complete
            }
            return len(complete) >= n and len(complete) == len(items) and due in scheduled

        for fired in range(1, 5):
            clock[0] += datetime.timedelta(minutes=10)
            cron.queue.add("default/tick")
            wanted = min(fired, 2)
            due = clock[0].replace(second=0).strftime("%Y-%m-%dT%H:%M:%SZ")
            await wait_for(lambda n=wanted, d=due: jobs_done(n, d))  # type: ignore[misc]
            await trio.sleep(0.3)

        async def history_trimmed() -> bool:
            # The controller deletes finished Jobs past the limit after it sees them
            # complete: a loaded machine may show a third one for a moment.
            items = (await client.list("batch/v1", "jobs", namespace="default"))["items"]
            return len(items) == 2  # history limit

        await wait_for(history_trimmed)
        items = (await client.list("batch/v1", "jobs", namespace="default"))["items"]
        got = await client.get("batch/v1", "cronjobs", "tick", namespace="default")
        assert got["status"]["lastScheduleTime"] and got["status"]["lastSuccessfulTime"]
        assert all(j["metadata"]["name"].startswith("tick-") for j in items)

        await client.patch(
            "batch/v1", "cronjobs", "tick", {"spec": {"suspend": True}}, namespace="default"
        )
        await trio.sleep(0.3)
        names = {j["metadata"]["name"] for j in items}
        clock[0] += datetime.timedelta(minutes=10)
        cron.queue.add("default/tick")
        await trio.sleep(0.5)
        after = (await client.list("batch/v1", "jobs", namespace="default"))["items"]
        assert {j["metadata"]["name"] for j in after} == names  # suspended: nothing new


def test_controllers_registered() -> None:
    assert JobController.name == "job" and CronJobController.name == "cronjob"
