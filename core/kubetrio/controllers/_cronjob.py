"""The CronJob controller: Jobs on a cron schedule.

Schedules are parsed by :class:`kubetrio.api.cron.CronSchedule` (the API server
validates them with the same parser).

Each reconcile of a CronJob:

* lists its Jobs (controller references), updates ``status.active`` and
  ``lastSuccessfulTime``, and deletes finished Jobs beyond
  ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit``;
* unless suspended, finds the most recent schedule time missed since
  ``lastScheduleTime`` (or creation) — skipped if older than
  ``startingDeadlineSeconds`` — and applies ``concurrencyPolicy`` (Allow; Forbid skips
  while a Job is active; Replace deletes the active Jobs first), then creates
  ``<cronjob>-<minutes since the epoch>`` (a deterministic name, so a retry or a second
  manager can never start one schedule twice);
* requeues itself for the next schedule time.

Time comes from :attr:`CronJobController.now` (UTC ``datetime``) so tests can move it.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable

from kubetrio.api.cron import UTC, CronSchedule
from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._index import OwnerIndex
from ._objects import delete_exact, is_deleting, owner_reference, parse_time
from ._reconcile import (
    ControllerContext,
    PermanentError,
    QueueController,
    Result,
    object_key,
    split_key,
)


def _time(value: str | None) -> datetime.datetime | None:
    seconds = parse_time(value)
    return datetime.datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _stamp(at: datetime.datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job_finished(job: KubeObject) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


class CronJobController(QueueController):
    """Starts Jobs on schedule (see the module docstring)."""

    name = "cronjob"
    workers = 2

    def __init__(self) -> None:
        super().__init__()
        self.now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(UTC)
        self.job_index = OwnerIndex()

    def setup(self, ctx: ControllerContext) -> None:
        """Watch CronJobs and Jobs."""
        super().setup(ctx)
        self.cronjobs: Informer = ctx.informers.informer("batch/v1", "cronjobs")
        self.jobs: Informer = ctx.informers.informer("batch/v1", "jobs")
        self.cronjobs.add_handler(FunctionHandler(lambda c: self.queue.add(object_key(c))))
        self.jobs.add_handler(self.job_index)
        self.jobs.add_handler(FunctionHandler(self._job_changed))

    def primary(self) -> Informer | None:
        """CronJobs."""
        return self.cronjobs

    def _job_changed(self, job: KubeObject) -> None:
        for ref in job["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "CronJob":
                self.queue.add(f"{job['metadata'].get('namespace', '')}/{ref['name']}")

    async def reconcile(self, key: str) -> Result | None:
        """Track Jobs, trim history, start the Job of a due schedule time, requeue."""
        namespace, name = split_key(key)
        cronjob = self.cronjobs.get(name, namespace)
        if cronjob is None or is_deleting(cronjob):
            return None
        cronjob = copy.deepcopy(cronjob)
        spec = cronjob.get("spec") or {}
        status = copy.deepcopy(cronjob.get("status") or {})
        jobs = [j for j in self.job_index.get(cronjob["metadata"]["uid"]) if not is_deleting(j)]
        active = [j for j in jobs if _job_finished(j) is None]
        for job in jobs:
            if _job_finished(job) == "Complete":
                done = _time((job.get("status") or {}).get("completionTime"))
                last = _time(status.get("lastSuccessfulTime"))
                if done is not None and (last is None or done > last):
                    status["lastSuccessfulTime"] = _stamp(done)
        await self._trim_history(spec, jobs)
        try:
            schedule = CronSchedule(spec.get("schedule", ""), spec.get("timeZone"))
        except ValueError as exc:
            self.ctx.events.warning(cronjob, "UnparseableSchedule", str(exc))
            raise PermanentError(f"schedule: {exc}") from exc
        now = self.now()
        result: Result | None = None
        if not spec.get("suspend"):
            since = _time(status.get("lastScheduleTime")) or _time(
                cronjob["metadata"].get("creationTimestamp")
            )
            due = self._most_recent(schedule, since or now, now)
            deadline = spec.get("startingDeadlineSeconds")
            if (
                due is not None
                and deadline is not None
                and (now - due).total_seconds() > int(deadline)
            ):
                self.ctx.events.warning(
                    cronjob,
                    "MissedSchedule",
                    f"Missed scheduled time to start a job: {_stamp(due)}",
                )
                due = None
            if due is not None:
                policy = spec.get("concurrencyPolicy", "Allow")
                if policy == "Forbid" and active:
                    self.ctx.events.normal(
                        cronjob,
                        "JobAlreadyActive",
                        "Not starting job because prior is still running",
                    )
                    due = None
                elif policy == "Replace":
                    for job in active:
                        await self._delete_job(job)
                        self.ctx.events.normal(
                            cronjob, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}"
                        )
                    active = []
            if due is not None:
                started = await self._start_job(cronjob, due)
                if started is not None:
                    active.append(started)
                status["lastScheduleTime"] = _stamp(due)
            following = schedule.next_after(now)
            result = Result(requeue_after=max((following - now).total_seconds(), 0.05))
        status["active"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": j["metadata"]["name"],
                "namespace": j["metadata"]["namespace"],
                "uid": j["metadata"]["uid"],
                "resourceVersion": j["metadata"].get("resourceVersion", ""),
            }
            for j in sorted(active, key=lambda j: j["metadata"]["name"])
        ]
        if not status["active"]:
            status.pop("active")
        if status != (cronjob.get("status") or {}):
            cronjob["status"] = status
            await self.client.update(
                "batch/v1", "cronjobs", cronjob, namespace=namespace, subresource="status"
            )
        return result

    def _most_recent(
        self, schedule: CronSchedule, since: datetime.datetime, now: datetime.datetime
    ) -> datetime.datetime | None:
        found = None
        t = since
        for _ in range(100):  # like Kubernetes: too many missed starts → take the last
            following = schedule.next_after(t)
            if following > now:
                return found
            found = t = following
        # Jump to the last one before now without walking every minute.
        t = now - datetime.timedelta(days=1)
        while True:
            following = schedule.next_after(t)
            if following > now:
                return found
            found = t = following

    async def _start_job(self, cronjob: KubeObject, due: datetime.datetime) -> KubeObject | None:
        spec = cronjob.get("spec") or {}
        template = copy.deepcopy(spec.get("jobTemplate") or {})
        metadata = template.get("metadata") or {}
        name = f"{cronjob['metadata']['name']}-{int(due.timestamp() // 60)}"
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": cronjob["metadata"]["namespace"],
                "labels": dict(metadata.get("labels") or {}),
                "annotations": {
                    **(metadata.get("annotations") or {}),
                    "batch.kubernetes.io/cronjob-scheduled-timestamp": _stamp(due),
                },
                "ownerReferences": [owner_reference(cronjob)],
            },
            "spec": template.get("spec") or {},
        }
        try:
            created = await self.client.create(
                "batch/v1", "jobs", job, namespace=cronjob["metadata"]["namespace"]
            )
        except ClientError as exc:
            if exc.code == 409:
                return None  # this schedule time already has its Job
            self.ctx.events.warning(cronjob, "FailedCreate", f"Error creating job: {exc.message}")
            raise
        self.ctx.events.normal(cronjob, "SuccessfulCreate", f"Created job {name}")
        return created

    async def _delete_job(self, job: KubeObject) -> None:
        await delete_exact(self.client, "batch/v1", "jobs", job, propagation_policy="Background")

    async def _trim_history(self, spec: KubeObject, jobs: list[KubeObject]) -> None:
        for kind, field, default in (
            ("Complete", "successfulJobsHistoryLimit", 3),
            ("Failed", "failedJobsHistoryLimit", 1),
        ):
            limit = spec.get(field, default)
            if limit is None:
                continue
            finished = sorted(
                (j for j in jobs if _job_finished(j) == kind),
                key=lambda j: j["metadata"].get("creationTimestamp", ""),
            )
            for job in finished[: max(len(finished) - int(limit), 0)]:
                await self._delete_job(job)
