"""The Job controller: run pods to completion.

A reconcile counts the Job's pods (found through an :class:`~._index.OwnerIndex`):
active, succeeded, failed. Then, in Kubernetes' order:

* a finished Job (``Complete`` or ``Failed`` condition) only waits out
  ``ttlSecondsAfterFinished`` and is then deleted (foreground, so its pods go first);
* more failures than ``backoffLimit`` → ``Failed``/``BackoffLimitExceeded``; past
  ``activeDeadlineSeconds`` → ``Failed``/``DeadlineExceeded``; active pods are deleted;
* enough successes (``completions``; or, without completions, one success and nothing
  active) → ``Complete`` with ``completionTime``;
* ``suspend`` → active pods are deleted and ``Suspended`` is set;
* otherwise active pods are brought to ``min(parallelism, remaining)``; after failures,
  new pods wait an exponential backoff (``failure_backoff`` * 2^n, at most 6 minutes).

``completionMode: Indexed`` gives each pod an index (annotation and label
``batch.kubernetes.io/job-completion-index``, env ``JOB_COMPLETION_INDEX``) and completes
when every index has succeeded once; ``status.completedIndexes`` lists them as ranges.

Jobs without a selector get ``batch.kubernetes.io/controller-uid=<uid>`` as their pods'
selector (the API server does not add it yet), with the ``job-name`` labels on pods.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import trio

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject, now_rfc3339

from ._brakes import CreateBrake, announce_pause, slow_start
from ._expectations import Expectations, OwnedPodHandler
from ._index import OwnerIndex
from ._objects import (
    delete_exact,
    is_deleting,
    is_pod_ready,
    owner_reference,
    parse_time,
    wall_now,
)
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
MAX_BACKOFF = 360.0
MAX_CREATES_PER_SYNC = 500
"""Most pods created by one reconcile (Kubernetes' ``MaxPodCreateDeletePerSync``)."""


def _finished(job: KubeObject) -> KubeObject | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return dict(condition)
    return None


def _phase(pod: KubeObject) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _index_of(pod: KubeObject) -> int | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def format_indexes(indexes: set[int]) -> str:
    """``{0, 1, 2, 5}`` → ``"0-2,5"`` (the format of ``status.completedIndexes``)."""
    parts: list[str] = []
    ordered = sorted(indexes)
    start = prev = None
    for i in ordered:
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


class JobController(QueueController):
    """Creates pods for Jobs and tracks their completion (see the module docstring)."""

    name = "job"
    workers = 3
    failure_backoff = 10.0
    """Seconds before the pod after the first failure (doubling per further failure)."""

    def __init__(self) -> None:
        super().__init__()
        self.expectations = Expectations()
        self.brake = CreateBrake()
        self.pod_index = OwnerIndex()

    def setup(self, ctx: ControllerContext) -> None:
        """Watch Jobs and pods."""
        super().setup(ctx)
        self.jobs: Informer = ctx.informers.informer("batch/v1", "jobs")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.jobs.add_handler(FunctionHandler(lambda j: self.queue.add(object_key(j))))
        self.pods.add_handler(self.pod_index)
        self.pods.add_handler(OwnedPodHandler(self.expectations, self.queue, self.job_key_of))

    def primary(self) -> Informer | None:
        """Jobs."""
        return self.jobs

    def started_leading(self) -> None:
        """Forget expectations of an earlier term."""
        self.expectations.clear()
        self.brake.clear()
        super().started_leading()

    def job_key_of(self, pod: KubeObject) -> str | None:
        """The key of the pod's Job, if a Job controls it."""
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Job":
                return f"{pod['metadata'].get('namespace', '')}/{ref['name']}"
        return None

    async def reconcile(self, key: str) -> Result | None:
        """Count pods; finish, fail, suspend or run more pods; write status."""
        namespace, name = split_key(key)
        job = self.jobs.get(name, namespace)
        if job is None:
            self.expectations.forget(key)
            self.brake.forget(key)
            return None
        job = copy.deepcopy(job)
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        now = wall_now()
        finished = _finished(job)
        if finished is not None:
            return await self._ttl(job, finished, now)
        if is_deleting(job):
            return None
        pods = [p for p in self.pod_index.get(job["metadata"]["uid"])]
        active = [
            p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not is_deleting(p)
        ]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        failed = [p for p in pods if _phase(p) == "Failed"]
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        status.setdefault("startTime", now_rfc3339())
        result: Result | None = None
        stamp = now_rfc3339()
        done_indexes = {i for p in succeeded if (i := _index_of(p)) is not None}
        if indexed:
            status["completedIndexes"] = format_indexes(done_indexes)
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime")) or now
        failure: tuple[str, str] | None = None
        if len(failed) > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and now - started >= int(deadline):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if failure is not None:
            await self._delete_pods(key, active)
            active = []
            self._condition(status, "FailureTarget", failure, stamp)
            self._condition(status, "Failed", failure, stamp)
            self.ctx.events.warning(job, failure[0], failure[1])
        elif (
            (indexed and completions is not None and len(done_indexes) >= int(completions))
            or (not indexed and completions is not None and len(succeeded) >= int(completions))
            or (completions is None and succeeded and not active)
        ):
            await self._delete_pods(key, active)
            active = []
            reason = ("", "")
            self._condition(status, "SuccessCriteriaMet", reason, stamp)
            self._condition(status, "Complete", reason, stamp)
            status["completionTime"] = stamp
            self.ctx.events.normal(job, "Completed", "Job completed")
        elif spec.get("suspend"):
            await self._delete_pods(key, active)
            active = []
            self._condition(status, "Suspended", ("JobSuspended", "Job suspended"), stamp)
        else:
            conditions = status.get("conditions") or []
            status["conditions"] = [c for c in conditions if c.get("type") != "Suspended"]
            if not status["conditions"]:
                status.pop("conditions")
            if completions is None:
                wanted = parallelism if not succeeded else 0
            elif indexed:
                wanted = min(parallelism, int(completions) - len(done_indexes))
            else:
                wanted = min(parallelism, int(completions) - len(succeeded))
            wanted = max(wanted, 0)
            if self.expectations.satisfied(key):
                if len(active) > wanted:
                    extra = sorted(active, key=lambda p: (is_pod_ready(p), _phase(p) == "Running"))
                    await self._delete_pods(key, extra[: len(active) - wanted])
                elif len(active) < wanted:
                    delay = max(self._backoff_left(failed, now), self.brake.paused_for(key))
                    count = min(
                        wanted - len(active), MAX_CREATES_PER_SYNC, self.brake.allowance(key)
                    )
                    if delay > 0 or count <= 0:
                        result = Result(requeue_after=delay or self.brake.limit.window)
                    else:
                        await self._create_pods(key, job, active, done_indexes, count)
            if deadline is not None:
                left = started + int(deadline) - now
                if result is None or (result.requeue_after or 0) > left:
                    result = Result(requeue_after=max(left, 0.05))
        status["active"] = len(active)
        status["succeeded"] = len(succeeded)
        status["failed"] = len(failed)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = sum(1 for p in pods if is_deleting(p))
        for field in ("active", "succeeded", "failed"):
            if not status[field] and field not in (job.get("status") or {}):
                status.pop(field)
        if status != (job.get("status") or {}):
            job["status"] = status
            await self.client.update(
                "batch/v1", "jobs", job, namespace=namespace, subresource="status"
            )
        return result

    def _condition(
        self, status: KubeObject, type_: str, reason: tuple[str, str], stamp: str
    ) -> None:
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
        condition: dict[str, Any] = {
            "type": type_,
            "status": "True",
            "lastProbeTime": stamp,
            "lastTransitionTime": stamp,
        }
        if reason[0]:
            condition["reason"] = reason[0]
            condition["message"] = reason[1]
        conditions.append(condition)
        status["conditions"] = conditions

    def _backoff_left(self, failed: list[KubeObject], now: float) -> float:
        if not failed:
            return 0.0
        last = max(
            parse_time(
                ((c.get("state") or {}).get("terminated") or {}).get("finishedAt")
                if (c := ((p.get("status") or {}).get("containerStatuses") or [{}])[0])
                else None
            )
            or parse_time(p["metadata"].get("creationTimestamp"))
            or now
            for p in failed
        )
        delay = min(MAX_BACKOFF, self.failure_backoff * 2 ** (len(failed) - 1))
        return float(last + delay - now)

    async def _ttl(self, job: KubeObject, finished: KubeObject, now: float) -> Result | None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or is_deleting(job):
            return None
        at = parse_time(finished.get("lastTransitionTime")) or now
        left = at + int(ttl) - now
        if left > 0:
            return Result(requeue_after=left)
        await delete_exact(self.client, "batch/v1", "jobs", job, propagation_policy="Foreground")
        return None

    def pod_for(self, job: KubeObject, index: int | None) -> KubeObject:
        """A new pod of the Job's template."""
        spec = job.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        metadata = template.get("metadata") or {}
        name = job["metadata"]["name"]
        uid = job["metadata"]["uid"]
        labels = {
            **(metadata.get("labels") or {}),
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        annotations = dict(metadata.get("annotations") or {})
        pod_spec = template.get("spec") or {}
        generate = f"{name}-"
        if index is not None:
            annotations[INDEX_KEY] = str(index)
            labels[INDEX_KEY] = str(index)
            generate = f"{name}-{index}-"
            for container in pod_spec.get("containers") or []:
                env = [
                    e for e in container.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"
                ]
                env.append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
                container["env"] = env
        pod_meta: KubeObject = {
            "generateName": generate,
            "namespace": job["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(job)],
        }
        if annotations:
            pod_meta["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}

    async def _create_pods(
        self,
        key: str,
        job: KubeObject,
        active: list[KubeObject],
        done_indexes: set[int],
        count: int,
    ) -> None:
        spec = job.get("spec") or {}
        indexes: list[int | None] = [None] * count
        if spec.get("completionMode") == "Indexed":
            busy = done_indexes | {i for p in active if (i := _index_of(p)) is not None}
            # Lazily: completions may be 2^31 and only ``count`` indexes are wanted.
            free = (i for i in range(int(spec.get("completions") or 0)) if i not in busy)
            indexes = list(itertools.islice(free, count))
        self.expectations.expect(key, adds=len(indexes))

        async def create(position: int) -> None:
            try:
                pod = await self.client.create(
                    "v1",
                    "pods",
                    self.pod_for(job, indexes[position]),
                    namespace=job["metadata"]["namespace"],
                )
            except ClientError:
                self.expectations.creation_observed(key)
                raise
            self.ctx.events.normal(
                job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
            )

        done = await slow_start(len(indexes), create)
        for _ in range(len(indexes) - done.attempted):
            self.expectations.creation_observed(key)  # never attempted
        paused = self.brake.record(key, done.attempted)
        if paused is not None:
            await announce_pause(self.ctx.events, job, paused)
        if done.error is not None:
            raise done.error

    async def _delete_pods(self, key: str, pods: list[KubeObject]) -> None:
        if not pods:
            return
        self.expectations.expect(key, deletes={p["metadata"]["uid"] for p in pods})

        async def delete(pod: KubeObject) -> None:
            try:
                await self.client.delete(
                    "v1",
                    "pods",
                    pod["metadata"]["name"],
                    namespace=pod["metadata"]["namespace"],
                    preconditions={"uid": pod["metadata"]["uid"]},
                )
            except ClientError as exc:
                self.expectations.deletion_observed(key, pod["metadata"]["uid"])
                if not exc.not_found:
                    raise

        async with trio.open_nursery() as nursery:
            for pod in pods:
                nursery.start_soon(delete, pod)
