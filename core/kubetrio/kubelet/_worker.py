"""One pod on this node, from sandbox to deletion: the pod worker.

A worker is a trio task per pod (keyed by uid) that owns everything the pod has on the
node. Its life, in order:

1. sandbox (network namespace wired by the network plugin) and volumes, retried until
   they succeed; the pod stays Pending with ``ContainerCreating``;
2. init containers one after the other, each to a successful exit (failures restart
   with back-off, or fail the pod under ``restartPolicy: Never``);
3. one task per app container: pull (``imagePullPolicy``), create, start, probe, wait
   for the exit, restart by ``restartPolicy`` with kubelet's back-off (10 s doubling to
   5 min, ``CrashLoopBackOff`` while waiting), until no container will run again;
   Ephemeral containers (added through ``pods/ephemeralcontainers``) start once the
   sandbox exists, each run once and never restarted, in the PID namespace of their
   ``targetContainerName`` when set;
4. on deletion (``deletionTimestamp``) every task is cancelled, the containers get
   SIGTERM and the grace period, the sandbox and volumes are released, and the pod is
   deleted with ``gracePeriodSeconds=0``.

The worker keeps the Kubernetes-shaped status of each container in memory and a
publisher task writes the pod's status (phase, conditions, container statuses, IPs)
through the ``status`` subresource whenever it changes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from kubetrio.client import ClientError
from kubetrio.providers import (
    ContainerConfig,
    ContainerConfigError,
    ContainerState,
    ImagePullError,
    KubeObject,
    PodSandboxStatus,
    VolumeMount,
)

from ._containers import BackOff, ContainerRecord, go_duration, pull_policy, rfc3339
from ._env import EnvResolver
from ._podfiles import etc_hosts, host_resolv_conf, read_text, resolv_conf, write_file
from ._podstatus import ConditionClock, network_status, pod_status
from ._probes import probe_loop, run_probe
from ._volumes import PodVolumes, VolumeError

if TYPE_CHECKING:
    from ._agent import NodeAgent

log = logging.getLogger(__name__)


class PodWorker:
    """Runs one pod; see the module docstring."""

    def __init__(self, agent: NodeAgent, pod: KubeObject) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace") or "default"
        spec = pod.get("spec") or {}
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.init_records = [
            ContainerRecord(
                name=c["name"],
                image=c.get("image", ""),
                init=True,
                sidecar=c.get("restartPolicy") == "Always",
                state={"waiting": {"reason": "PodInitializing"}},
            )
            for c in spec.get("initContainers") or []
        ]
        self.records = [
            ContainerRecord(
                name=c["name"],
                image=c.get("image", ""),
                state={
                    "waiting": {
                        "reason": "PodInitializing" if self.init_records else "ContainerCreating"
                    }
                },
            )
            for c in spec.get("containers") or []
        ]
        self.ephemeral_records: list[ContainerRecord] = []
        self._ephemeral_started: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._sandbox_ready = trio.Event()
        self.sandbox: PodSandboxStatus | None = None
        self.volumes = PodVolumes(
            agent.client, pod, agent.pods_dir / self.uid, node=agent.node_volumes
        )
        self.start_time = ""
        self.initialized = not self.init_records
        self.final_phase = ""
        self.final_reason = ""
        self.final_message = ""
        self.conditions = ConditionClock()
        self._changed = trio.Event()
        self._terminate = trio.Event()
        self._grace: float = 30.0
        self._delete_from_api = True
        self._last_sent: KubeObject | None = None
        self._holds_slot = False
        self._sidecars_stopping = False
        self._evicting = False
        self._lifecycle_scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.first_seen = trio.current_time()
        self._start_observed = (pod.get("status") or {}).get("phase") == "Running"
        """A pod running before this worker (adopted) has no start latency to report."""
        self._resume_published()

    def _resume_published(self) -> None:
        """After an agent restart: start each app container that still runs from its
        published status, so the first status this worker writes does not take a Ready
        pod out of its Services while the container is being adopted."""
        runtime = self.agent.runtime
        running = {
            c.id
            for sandbox in runtime.list_sandboxes()
            for c in runtime.list_containers(sandbox)
            if c.state == "running"
        }
        published = {
            s.get("name"): s for s in (self.pod.get("status") or {}).get("containerStatuses") or []
        }
        for record in self.records:
            status = published.get(record.name) or {}
            container_id = str(status.get("containerID") or "").removeprefix("runc://")
            if container_id in running and "running" in (status.get("state") or {}):
                record.container_id = container_id
                record.state = dict(status["state"])
                record.ready = status.get("ready") is True
                record.started = status.get("started") is not False
                record.restart_count = int(status.get("restartCount") or 0)

    # --- requests from the agent --------------------------------------------------------

    def update(self, pod: KubeObject) -> None:
        """A newer version of the pod arrived from the informer.

        A changed container ``image`` (the one mutable field of a container) restarts
        that container with the new image, as kubelet does for a changed spec hash.
        """
        began = trio.current_time()
        previous = self.pod
        self.pod = pod
        self.volumes.pod = pod
        old_images = _images(previous)
        for name, image in _images(pod).items():
            if old_images.get(name, image) == image:
                continue
            record = next((r for r in self.records + self.init_records if r.name == name), None)
            if record is None:
                continue
            record.image = image
            if "running" in record.state and record.container_id:
                record.spec_changed = True
                self._event(
                    "Normal", "Killing", f"Container {name} definition changed, will be restarted"
                )
                self.agent.nursery.start_soon(self._stop_for_change, record.container_id)
        self._start_ephemeral()
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self._terminate.is_set():
            grace = meta.get("deletionGracePeriodSeconds")
            self._grace = float(grace if grace is not None else 30)
            self._terminate.set()
        self.agent.metrics.observe_worker("update", began)

    async def _stop_for_change(self, container_id: str) -> None:
        await self.agent.runtime.stop_container(container_id, grace_period=self._grace_period())

    def deleted(self) -> None:
        """The pod is gone from the API (deleted with grace 0 or while terminal)."""
        self._delete_from_api = False
        self._grace = 0.0
        self._terminate.set()

    def changed(self) -> None:
        """Ask the publisher to write the status."""
        self._changed.set()

    # --- main ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the pod until it is deleted, then release everything it had.

        Cancelled without a termination request (the agent stops), it leaves the pod's
        containers running for the next agent to adopt, as kubelet does.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._publisher)
                if not self.pod["metadata"].get("deletionTimestamp"):
                    nursery.start_soon(self._lifecycle)
                    self._nursery = nursery
                    self._start_ephemeral()
                else:
                    self.update(self.pod)
                await self._terminate.wait()
                nursery.cancel_scope.cancel()
            for record in self.records + self.init_records + self.ephemeral_records:
                if "running" in record.state and self._delete_from_api:
                    self._event("Normal", "Killing", f"Stopping container {record.name}")
            with trio.CancelScope(shield=True):
                await self._teardown(self._grace)
            if self._delete_from_api:
                # Not shielded: an agent stopping now leaves the pod to its successor.
                await self._delete_pod()
        finally:
            self.done.set()

    async def _delete_pod(self) -> None:
        """Confirm the pod stopped (delete with grace 0), retrying while the API is away."""
        delay = 0.5
        while True:
            try:
                await self.agent.client.delete(
                    "v1",
                    "pods",
                    self.name,
                    namespace=self.namespace,
                    grace_period_seconds=0,
                    preconditions={"uid": self.uid},
                )
                return
            except ClientError as exc:
                if exc.not_found or exc.conflict:
                    return  # gone already, or a new pod of the same name
                log.warning("deleting pod %s/%s: %s", self.namespace, self.name, exc)
            except Exception as exc:
                log.warning("deleting pod %s/%s: %s", self.namespace, self.name, exc)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _teardown(self, grace: float) -> None:
        began = trio.current_time()
        try:
            await self._teardown_steps(began, grace)
        finally:
            self.agent.metrics.observe_worker("kill", began)

    async def _teardown_steps(self, began: float, grace: float) -> None:
        if grace > 0:
            spec = self.pod.get("spec") or {}
            with trio.move_on_after(grace):
                async with trio.open_nursery() as hooks:
                    for container, record in zip(
                        spec.get("containers") or [], self.records, strict=False
                    ):
                        if "running" in record.state:
                            hooks.start_soon(self._pre_stop, container, record)
            grace = max(grace - (trio.current_time() - began), 0.0)
        try:
            await self.agent.runtime.stop_pod_sandbox(self.uid, grace_period=grace)
        except Exception as exc:
            log.warning("stopping sandbox of %s/%s: %s", self.namespace, self.name, exc)
        try:
            await self.volumes.teardown()
        except Exception as exc:
            log.warning("removing volumes of %s/%s: %s", self.namespace, self.name, exc)

    async def _lifecycle(self) -> None:
        self.start_time = rfc3339()
        self.changed()
        backoff = BackOff(1.0, 10.0)
        # Pods start in arrival order through a small number of slots: with every pod
        # interleaved, a burst of 100 pods would all become Running at the very end.
        deadline = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        async with trio.open_nursery() as nursery:
            self._lifecycle_scope = nursery.cancel_scope
            if deadline is not None:
                nursery.start_soon(self._deadline, float(deadline), nursery.cancel_scope)
            await self.agent.startup_limiter.acquire_on_behalf_of(self)
            self._holds_slot = True
            try:
                await self._start_pod(backoff)
            finally:
                self._release_slot()
            nursery.cancel_scope.cancel()

    async def _deadline(self, seconds: float, scope: trio.CancelScope) -> None:
        """``activeDeadlineSeconds``: past it, stop every container and fail the pod."""
        await trio.sleep(seconds)
        scope.cancel()  # no more starts or restarts
        self.final_reason = "DeadlineExceeded"
        self.final_message = "Pod was active on the node longer than the specified deadline"
        self._event("Normal", "DeadlineExceeded", self.final_message)
        with trio.CancelScope(shield=True):
            await self._stop_and_fail(self._grace_period())

    def evict(self, message: str) -> None:
        """Stop the pod for good: phase Failed, reason ``Evicted`` (kubelet's eviction
        manager, e.g. an emptyDir over its ``sizeLimit``)."""
        if self.final_phase or self._evicting:
            return
        self._evicting = True
        self.final_reason = "Evicted"
        self.final_message = message
        self._event("Warning", "Evicted", message)
        self.agent.nursery.start_soon(self._stop_all, "Evicted")

    async def _stop_all(self, reason: str) -> None:
        """Stop every container at once (grace 0, as eviction does) and fail the pod."""
        if self._lifecycle_scope is not None:
            self._lifecycle_scope.cancel()  # no more starts or restarts
        await self._stop_and_fail(0)

    async def _stop_and_fail(self, grace_period: float) -> None:
        """Stop every running container, record how each ended, and fail the pod (what
        ``activeDeadlineSeconds`` and eviction both do)."""
        runtime = self.agent.runtime
        for record in self.records + self.init_records:
            if not record.container_id or "terminated" in record.state:
                if "waiting" in record.state:
                    record.state = {"terminated": {"exitCode": 137, "reason": "Error"}}
                continue
            await runtime.stop_container(record.container_id, grace_period=grace_period)
            final = await runtime.container_status(record.container_id)
            record.ready = False
            record.state = {
                "terminated": {
                    "exitCode": final.exit_code if final.exit_code is not None else 137,
                    "reason": final.reason or "Error",
                    "startedAt": rfc3339(final.started_at or None),
                    "finishedAt": rfc3339(final.finished_at or None),
                    "containerID": f"runc://{record.container_id}",
                }
            }
        self._finish("Failed")

    def _release_slot(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self.agent.startup_limiter.release_on_behalf_of(self)

    async def _start_pod(self, backoff: BackOff) -> None:
        began = trio.current_time()
        while self.sandbox is None:
            try:
                self.sandbox = await self.agent.runtime.run_pod_sandbox(self.pod)
            except Exception as exc:
                log.warning("sandbox for %s/%s: %s", self.namespace, self.name, exc)
                self._event(
                    "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}"
                )
                await trio.sleep(backoff.next(0) or 0.5)
        self._sandbox_ready.set()
        while True:
            try:
                await self.volumes.setup()
                break
            except (VolumeError, ClientError) as exc:
                log.info("volumes of %s/%s not ready: %s", self.namespace, self.name, exc)
                self._event("Warning", "FailedMount", str(exc))
                await trio.sleep(backoff.next(0) or 0.5)
        self.agent.metrics.observe_worker("create", began)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refresh_volumes)
            spec = self.pod.get("spec") or {}
            app_names = {r.name for r in self.records}
            adopting = any(
                c.name in app_names for c in self.agent.runtime.list_containers(self.sandbox.id)
            )
            if adopting:
                # The app containers run already (agent restart): init containers are done.
                previous = {
                    s.get("name"): s
                    for s in (self.pod.get("status") or {}).get("initContainerStatuses") or []
                }
                for container, record in zip(
                    spec.get("initContainers") or [], self.init_records, strict=False
                ):
                    if record.sidecar:  # sidecars keep running: adopt them too
                        nursery.start_soon(self._container_loop, container, record)
                        continue
                    old = previous.get(record.name) or {}
                    record.state = old.get("state") or {
                        "terminated": {"exitCode": 0, "reason": "Completed"}
                    }
                    record.ready = True
                    record.restart_count = int(old.get("restartCount") or 0)
            for container, record in zip(
                [] if adopting else spec.get("initContainers") or [],
                self.init_records,
                strict=False,
            ):
                if record.sidecar:
                    # A native sidecar starts, and the next init container waits only for
                    # it to have started; it then runs beside the app containers.
                    nursery.start_soon(self._container_loop, container, record)
                    await record.started_event.wait()
                    continue
                exit_code = await self._container_loop(container, record)
                if exit_code != 0:
                    self._finish("Failed")
                    nursery.cancel_scope.cancel()
                    return
            self.initialized = True
            for record in self.records:
                if record.state.get("waiting", {}).get("reason") == "PodInitializing":
                    record.state = {"waiting": {"reason": "ContainerCreating"}}
            self.changed()
            async with trio.open_nursery() as containers:
                for container, record in zip(
                    spec.get("containers") or [], self.records, strict=True
                ):
                    containers.start_soon(self._container_loop, container, record)
            failed = any(
                (r.state.get("terminated") or {}).get("exitCode", 0) != 0 for r in self.records
            )
            await self._stop_sidecars()
            self._finish("Failed" if failed else "Succeeded")
            nursery.cancel_scope.cancel()

    async def _stop_sidecars(self) -> None:
        """The app containers are done: stop the sidecars, last started first."""
        self._sidecars_stopping = True
        for record in reversed([r for r in self.init_records if r.sidecar]):
            if record.container_id and "running" in record.state:
                await self.agent.runtime.stop_container(
                    record.container_id, grace_period=self._grace_period()
                )
            with trio.move_on_after(10):
                await record.loop_done.wait()

    def _finish(self, phase: str) -> None:
        self.final_phase = phase
        self.changed()
        # A finished pod keeps nothing running: release the sandbox now (after the
        # status is written), as kubelet does; the worker then waits for deletion.
        self.agent.nursery.start_soon(self._release_after_finish)

    async def _release_after_finish(self) -> None:
        with trio.move_on_after(10):
            while self._last_sent is None or self._last_sent.get("phase") != self.final_phase:
                await trio.sleep(0.05)
        await self.agent.runtime.stop_pod_sandbox(self.uid, grace_period=0)

    async def _refresh_volumes(self) -> None:
        while True:
            await trio.sleep(self.agent.sync_period)
            try:
                await self.volumes.refresh()
            except Exception as exc:
                log.warning("refreshing volumes of %s/%s: %s", self.namespace, self.name, exc)

    # --- ephemeral containers -----------------------------------------------------------

    def _start_ephemeral(self) -> None:
        """Start each ephemeral container the pod gained (``pods/ephemeralcontainers``),
        once: one that already ended (an agent restart) keeps its reported status."""
        spec = self.pod.get("spec") or {}
        reported = {
            s.get("name"): s
            for s in (self.pod.get("status") or {}).get("ephemeralContainerStatuses") or []
        }
        for container in spec.get("ephemeralContainers") or []:
            name = container.get("name", "")
            if name in self._ephemeral_started or self._terminate.is_set():
                continue
            record = next((r for r in self.ephemeral_records if r.name == name), None)
            if record is None:
                record = ContainerRecord(
                    name=name,
                    image=container.get("image", ""),
                    ephemeral=True,
                    state={"waiting": {"reason": "ContainerCreating"}},
                )
                self.ephemeral_records.append(record)
                self.changed()
            if self._nursery is None:
                continue  # started when the worker runs
            self._ephemeral_started.add(name)
            previous = (reported.get(name) or {}).get("state") or {}
            if "terminated" in previous:
                record.state = previous
                continue
            self._nursery.start_soon(self._run_ephemeral, container, record)

    async def _run_ephemeral(self, container: KubeObject, record: ContainerRecord) -> None:
        """Run an ephemeral container once in the pod's sandbox, when it has one."""
        try:
            if not self.final_phase:
                await self._sandbox_ready.wait()
            if self.final_phase:
                message = (
                    f"pod {self.name} is not running (phase {self.final_phase}): "
                    f"ephemeral container {record.name} cannot start"
                )
                self._event("Warning", "Failed", message)
                record.state = {
                    "terminated": {"exitCode": 128, "reason": "StartError", "message": message}
                }
                self.changed()
                return
            await self._run_container(container, record)
        finally:
            record.loop_done.set()

    def _pid_target(self, container: KubeObject) -> str:
        """The runtime id of the container whose PID namespace ``container`` joins (an
        ephemeral container's ``targetContainerName``); empty for its own."""
        target = container.get("targetContainerName")
        if not target:
            return ""
        record = next((r for r in self.records + self.init_records if r.name == target), None)
        if record is None or not record.container_id or "running" not in record.state:
            raise ContainerConfigError(f"target container {target} is not running")
        return record.container_id

    # --- one container ------------------------------------------------------------------

    def _who(self) -> str:
        return f"{self.name}_{self.namespace}({self.uid})"

    def _event(self, kind: str, reason: str, message: str) -> None:
        ref = {"apiVersion": "v1", "kind": "Pod", "metadata": self.pod["metadata"]}
        if kind == "Warning":
            self.agent.events.warning(ref, reason, message)
        else:
            self.agent.events.normal(ref, reason, message)

    async def _ensure_image(
        self, container: KubeObject, record: ContainerRecord, backoff: BackOff
    ) -> None:
        image = str(container.get("image", ""))
        runtime = self.agent.runtime
        while True:
            policy = pull_policy(container)
            present = runtime.image_present(image)
            if policy == "Never" and not present:
                record.state = {
                    "waiting": {
                        "reason": "ErrImageNeverPull",
                        "message": f'Container image "{image}" is not present '
                        "with pull policy of Never",
                    }
                }
                self.changed()
                await trio.sleep(backoff.next(0) or 1)
                continue
            if policy == "Never" or (policy == "IfNotPresent" and present):
                self._event(
                    "Normal", "Pulled", f'Container image "{image}" already present on machine'
                )
                return
            try:
                credentials = await self.agent.pull_credentials(self.pod)
                self._event("Normal", "Pulling", f'Pulling image "{image}"')
                began = time.monotonic()
                record.image_id = await runtime.pull_image(image, credentials=credentials)
                took = f"{(time.monotonic() - began) * 1000:.0f}ms"
                self._event("Normal", "Pulled", f'Successfully pulled image "{image}" in {took}')
                return
            except ImagePullError as exc:
                self._event("Warning", "Failed", f'Failed to pull image "{image}": {exc}')
                self._event("Warning", "Failed", "Error: ErrImagePull")
                self._release_slot()
                record.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
                self.changed()
                delay = backoff.next(0)
                if delay:
                    record.state = {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": f'Back-off pulling image "{image}"',
                        }
                    }
                    self.changed()
                await trio.sleep(delay or 1)

    async def _container_loop(self, container: KubeObject, record: ContainerRecord) -> int:
        """Run one container until it will not be restarted; return its last exit code."""
        try:
            return await self._run_container(container, record)
        finally:
            record.loop_done.set()

    async def _run_container(self, container: KubeObject, record: ContainerRecord) -> int:
        runtime = self.agent.runtime
        agent = self.agent
        restart_backoff = BackOff(agent.backoff_base, agent.backoff_max)
        pull_backoff = BackOff(agent.backoff_base, agent.backoff_max)
        assert self.sandbox is not None
        adopted = self._adopt(record)
        # An agent restart is no reason to take a pod out of its Services: an adopted
        # container keeps the readiness it was published with until its probes decide.
        carried_ready = adopted is not None and self._published_ready(record, adopted)
        while True:
            container = self._latest_spec(record, container)
            if adopted is not None:
                container_id, adopted = adopted, None
                self._release_slot()
            else:
                container_id = await self._create_and_start(
                    container, record, pull_backoff, restart_backoff
                )
            status = await runtime.container_status(container_id)
            record.image_id = status.image_id or record.image_id
            started_at = rfc3339(status.started_at or None)
            if status.state != "exited":
                record.state = {"running": {"startedAt": started_at}}
                probed = not record.init or record.sidecar
                has_startup = bool(container.get("startupProbe")) and probed
                record.started = not has_startup
                if record.started:
                    record.started_event.set()
                record.ready = probed and not container.get("readinessProbe") and not has_startup
                record.ready, carried_ready = record.ready or carried_ready, False
                self.changed()
            final = await self._watch_running(container, record, container_id)
            ran_for = (final.finished_at or time.time()) - (final.started_at or time.time())
            terminated: KubeObject = {
                "exitCode": final.exit_code if final.exit_code is not None else 255,
                "reason": final.reason or "Error",
                "startedAt": started_at,
                "finishedAt": rfc3339(final.finished_at or None),
                "containerID": f"runc://{container_id}",
            }
            if final.message:
                terminated["message"] = final.message
            elif (
                container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
                and final.exit_code != 0
            ):
                tail = await self._log_tail(record)
                if tail:
                    terminated["message"] = tail
            exit_code = int(terminated["exitCode"])
            record.ready = record.init and not record.sidecar and exit_code == 0
            record.started = False
            record.state = {"terminated": terminated}
            self.changed()
            policy = self.restart_policy
            if record.init and policy == "Always":
                policy = "OnFailure"  # init containers never restart after success
            if record.sidecar:
                policy = "Never" if self._sidecars_stopping else "Always"
            if record.ephemeral:
                policy = "Never"  # ephemeral containers never restart
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            changed, record.spec_changed = record.spec_changed, False
            if not (restart or changed):
                return exit_code
            delay = 0.0 if changed else restart_backoff.next(ran_for)
            record.last_state = {"terminated": terminated}
            if delay > 0:
                self._event(
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {record.name} in pod {self._who()}",
                )
                record.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {go_duration(delay)} restarting failed "
                        f"container={record.name} pod={self._who()}",
                    }
                }
                self.changed()
                await trio.sleep(delay)
            await runtime.remove_container(container_id)
            record.restart_count += 1

    async def _create_and_start(
        self,
        container: KubeObject,
        record: ContainerRecord,
        pull_backoff: BackOff,
        restart_backoff: BackOff,
    ) -> str:
        """Pull, create and start a new run of the container; retry config errors."""
        runtime = self.agent.runtime
        agent = self.agent
        assert self.sandbox is not None
        while True:
            await self._ensure_image(container, record, pull_backoff)
            try:
                services = await agent.services_for(self.pod)
                pod = self._pod_with_ips()
                env = await EnvResolver(agent.client, pod).resolve(container, services=services)
                mounts = self.volumes.mounts_for(container, env) + await self._dns_mounts()
                log_path = agent.log_path(self.pod, record.name, record.restart_count)
                container_id = await runtime.create_container(
                    self.sandbox.id,
                    pod,
                    container,
                    ContainerConfig(
                        env=env,
                        mounts=mounts,
                        log_path=str(log_path),
                        attempt=record.restart_count,
                        share_pid_with=self._pid_target(container),
                    ),
                )
            except (ContainerConfigError, VolumeError) as exc:
                record.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}
                }
                self._event("Warning", "Failed", f"Error: {exc}")
                self._release_slot()
                self.changed()
                await trio.sleep(restart_backoff.next(0) or 1)
                continue
            except Exception as exc:
                log.warning("creating %s in %s: %s", record.name, self._who(), exc)
                record.state = {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
                self._event("Warning", "Failed", f"Error: {exc}")
                self._release_slot()
                self.changed()
                await trio.sleep(restart_backoff.next(0) or 1)
                continue
            record.container_id = container_id
            self._event("Normal", "Created", f"Created container: {record.name}")
            try:
                await runtime.start_container(container_id)
                self._event("Normal", "Started", f"Started container {record.name}")
            except Exception as exc:
                log.warning("starting %s in %s: %s", record.name, self._who(), exc)
                self._event("Warning", "Failed", f"Error: {exc}")
            if record.init or all(r.container_id for r in self.records):
                self._release_slot()
            post_start = (container.get("lifecycle") or {}).get("postStart")
            if post_start and not record.init:
                ok, detail = await self._hook(post_start, container, container_id)
                if not ok:
                    # kubelet kills a container whose postStart hook failed.
                    self._event("Warning", "FailedPostStartHook", f"PostStartHook failed: {detail}")
                    await runtime.stop_container(container_id, grace_period=self._grace_period())
            return container_id

    async def _dns_mounts(self) -> list[VolumeMount]:
        """The pod's /etc/resolv.conf by ``dnsPolicy`` and ``dnsConfig``, as kubelet writes it."""
        path = self.agent.pods_dir / self.uid / "resolv.conf"
        content = resolv_conf(
            self.pod,
            cluster_dns=self.agent.cluster_dns,
            cluster_domain=self.agent.cluster_domain,
            host=await trio.to_thread.run_sync(host_resolv_conf),
        )
        await trio.to_thread.run_sync(write_file, path, content)
        hosts_path = self.agent.pods_dir / self.uid / "etc-hosts"
        spec = self.pod.get("spec") or {}
        if spec.get("hostNetwork"):
            base = await trio.to_thread.run_sync(read_text, "/etc/hosts")
        else:
            base = ""
        hosts = etc_hosts(
            self.pod,
            ips=[i["ip"] for i in self._network_status().get("podIPs") or []],
            cluster_domain=self.agent.cluster_domain,
            base=base,
        )
        await trio.to_thread.run_sync(write_file, hosts_path, hosts)
        return [
            VolumeMount(container_path="/etc/resolv.conf", host_path=str(path)),
            VolumeMount(container_path="/etc/hosts", host_path=str(hosts_path)),
        ]

    def _grace_period(self) -> float:
        return float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    async def _hook(
        self, handler: KubeObject, container: KubeObject, container_id: str
    ) -> tuple[bool, str]:
        """Run a lifecycle handler (exec, httpGet, tcpSocket, sleep) to completion."""
        if "sleep" in handler:
            await trio.sleep(float((handler["sleep"] or {}).get("seconds", 0)))
            return True, ""
        pod_ip = self._network_status().get("podIP") or "127.0.0.1"
        timeout = self._grace_period() or 30.0
        try:
            return await run_probe(
                {**handler, "timeoutSeconds": timeout},
                container=container,
                container_id=container_id,
                pod_ip=pod_ip,
                runtime=self.agent.runtime,
            )
        except Exception as exc:
            return False, str(exc)

    async def _pre_stop(self, container: KubeObject, record: ContainerRecord) -> None:
        """Run the container's preStop hook, if any, before it gets SIGTERM."""
        pre_stop = (container.get("lifecycle") or {}).get("preStop")
        if not pre_stop or not record.container_id:
            return
        ok, detail = await self._hook(pre_stop, container, record.container_id)
        if not ok:
            self._event("Warning", "FailedPreStopHook", f"PreStopHook failed: {detail}")

    def _latest_spec(self, record: ContainerRecord, fallback: KubeObject) -> KubeObject:
        """The container's spec in the newest pod version (its image may have changed)."""
        spec = self.pod.get("spec") or {}
        for container in spec.get(record.spec_field) or []:
            if container.get("name") == record.name:
                return dict(container)
        return fallback

    def _adopt(self, record: ContainerRecord) -> str | None:
        """The id of this container's latest run if the runtime still has one (restart)."""
        assert self.sandbox is not None
        runs = [
            c for c in self.agent.runtime.list_containers(self.sandbox.id) if c.name == record.name
        ]
        if not runs:
            return None
        latest = max(runs, key=lambda c: c.attempt)
        record.container_id = latest.id
        record.restart_count = latest.attempt
        record.image_id = latest.image_id
        statuses = (self.pod.get("status") or {}).get(record.status_field) or []
        for previous in statuses:
            if previous.get("name") == record.name:
                record.last_state = previous.get("lastState") or {}
        log.info("adopting container %s of %s", latest.id, self._who())
        return latest.id

    def _published_ready(self, record: ContainerRecord, container_id: str) -> bool:
        """Whether the pod's status says this run of the container is ready."""
        statuses = (self.pod.get("status") or {}).get(record.status_field) or []
        return any(
            s.get("name") == record.name
            and s.get("containerID") == f"runc://{container_id}"
            and s.get("ready") is True
            for s in statuses
        )

    async def _log_tail(self, record: ContainerRecord) -> str:
        """The last 80 lines (at most 2 KiB) of this run's log, as kubelet's fallback."""
        chunks = [
            chunk
            async for chunk in self.agent.read_logs(
                self.namespace, self.name, record.name, tail_lines=80
            )
        ]
        return b"".join(chunks)[-2048:].decode(errors="replace")

    async def _watch_running(
        self, container: KubeObject, record: ContainerRecord, container_id: str
    ) -> ContainerState:
        """Probe the container until it exits; a failed liveness/startup probe kills it."""
        runtime = self.agent.runtime
        pod_ip = self._network_status().get("podIP") or "127.0.0.1"
        message = ""
        async with trio.open_nursery() as probes:

            def prober(probe: KubeObject, kind: str) -> Any:
                async def attempt() -> bool:
                    try:
                        ok, detail = await run_probe(
                            probe,
                            container=container,
                            container_id=container_id,
                            pod_ip=pod_ip,
                            runtime=runtime,
                        )
                    except Exception as exc:
                        ok, detail = False, str(exc)
                    if not ok:
                        self._event("Warning", "Unhealthy", f"{kind} probe failed: {detail}")
                    return ok

                return attempt

            def kill(kind: str) -> None:
                nonlocal message
                message = f"Container {record.name} failed {kind} probe, will be restarted"
                log.info("%s in %s", message, self._who())
                self._event("Normal", "Killing", message)

                async def stop() -> None:
                    with trio.move_on_after(self._grace_period()):
                        await self._pre_stop(container, record)
                    await runtime.stop_container(container_id, grace_period=self._grace_period())

                probes.start_soon(stop)

            def start_main_probes() -> None:
                liveness = container.get("livenessProbe")
                readiness = container.get("readinessProbe")
                if liveness:
                    probes.start_soon(
                        lambda: probe_loop(
                            liveness,
                            prober(liveness, "Liveness"),
                            lambda ok: None if ok else kill("liveness"),
                            initial=True,
                        )
                    )
                if readiness:

                    def ready(ok: bool) -> None:
                        record.ready = ok
                        self.changed()

                    # False for a new run; an adopted one keeps what it was published with.
                    initial = record.ready
                    probes.start_soon(
                        lambda: probe_loop(
                            readiness, prober(readiness, "Readiness"), ready, initial=initial
                        )
                    )
                elif probed:
                    record.ready = True
                    self.changed()

            probed = not record.init or record.sidecar
            startup = container.get("startupProbe")
            if probed:
                if startup:
                    startup_scope = trio.CancelScope()

                    def started(ok: bool) -> None:
                        if ok:
                            record.started = True
                            record.started_event.set()
                            self.changed()
                            startup_scope.cancel()
                            start_main_probes()
                        else:
                            kill("startup")
                            startup_scope.cancel()

                    async def run_startup() -> None:
                        with startup_scope:
                            await probe_loop(
                                startup, prober(startup, "Startup"), started, initial=False
                            )

                    probes.start_soon(run_startup)
                else:
                    start_main_probes()
            final = await runtime.wait_container(container_id)
            probes.cancel_scope.cancel()
        if message and not final.message:
            final = dataclasses.replace(final, message=message)
        return final

    def _pod_with_ips(self) -> KubeObject:
        pod = dict(self.pod)
        status = dict(pod.get("status") or {})
        status.update(self._network_status())
        pod["status"] = status
        return pod

    # --- status -------------------------------------------------------------------------

    def build_status(self) -> KubeObject:
        """The pod status as the API should show it now."""
        return pod_status(self)

    def _network_status(self) -> KubeObject:
        return network_status(self.pod, self.sandbox, self.agent.address)

    async def _publisher(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            status = self.build_status()
            if status == self._last_sent:
                continue
            try:
                await self.agent.client.patch(
                    "v1",
                    "pods",
                    self.name,
                    {"status": status},
                    namespace=self.namespace,
                    subresource="status",
                )
                self._last_sent = status
                if not self._start_observed and status.get("phase") == "Running":
                    self._start_observed = True
                    self.agent.metrics.observe_pod_start(trio.current_time() - self.first_seen)
            except ClientError as exc:
                if exc.not_found:
                    self.deleted()
                    return
                log.warning("status of %s: %s", self._who(), exc)
                await trio.sleep(1)
                self.changed()
            except Exception as exc:
                log.warning("status of %s: %s", self._who(), exc)
                await trio.sleep(1)
                self.changed()


def _images(pod: KubeObject) -> dict[str, str]:
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    return {c["name"]: str(c.get("image", "")) for c in containers}
