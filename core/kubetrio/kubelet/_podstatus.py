"""The pod status the worker publishes: phase, conditions, container statuses, IPs.

:func:`pod_status` reads the worker's state (records, sandbox, final phase) and builds
the ``status`` the API shows; :class:`ConditionClock` remembers when each condition last
changed so ``lastTransitionTime`` moves only on a change, as kubelet's does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubetrio.api.qos import pod_qos_class
from kubetrio.providers import KubeObject, PodSandboxStatus

from ._containers import rfc3339

if TYPE_CHECKING:
    from ._worker import PodWorker


class ConditionClock:
    """Pod conditions with the time each last changed its status."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str]] = {}

    def condition(self, type_: str, value: bool, reason: str = "", message: str = "") -> KubeObject:
        """A pod condition; ``reason`` and ``message`` are shown only when it is false."""
        status = "True" if value else "False"
        previous = self._seen.get(type_)
        if previous is None or previous[0] != status:
            self._seen[type_] = (status, rfc3339())
        condition: KubeObject = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._seen[type_][1],
        }
        if reason and not value:
            condition["reason"] = reason
        if message and not value:
            condition["message"] = message
        return condition


def network_status(pod: KubeObject, sandbox: PodSandboxStatus | None, address: str) -> KubeObject:
    """``hostIP(s)`` and, once the sandbox is up, ``podIP(s)`` (the node's for hostNetwork)."""
    result: KubeObject = {"hostIP": address, "hostIPs": [{"ip": address}]}
    ips = list(sandbox.ips) if sandbox else []
    if sandbox and (pod.get("spec") or {}).get("hostNetwork"):
        ips = [address]
    if ips:
        result["podIP"] = ips[0]
        result["podIPs"] = [{"ip": ip} for ip in ips]
    return result


def pod_status(worker: PodWorker) -> KubeObject:
    """The pod status as the API should show it now."""
    phase = worker.final_phase
    if not phase:
        running = any(
            "running" in r.state or "terminated" in r.state or r.restart_count
            for r in worker.records
        )
        phase = "Running" if worker.initialized and running else "Pending"
    finished = phase in ("Succeeded", "Failed")
    sidecars = [r for r in worker.init_records if r.sidecar]
    not_ready = [r.name for r in sidecars + worker.records if not r.ready]
    incomplete = [r.name for r in worker.init_records if not (r.ready or r.started)]
    ready_reason = "PodCompleted" if finished else "ContainersNotReady"
    unready_message = f"containers with unready status: [{' '.join(not_ready)}]"
    conditions = [
        worker.conditions.condition("PodReadyToStartContainers", worker.sandbox is not None),
        worker.conditions.condition(
            "Initialized",
            worker.initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        ),
        worker.conditions.condition(
            "Ready", not not_ready and not finished, ready_reason, unready_message
        ),
        worker.conditions.condition(
            "ContainersReady", not not_ready and not finished, ready_reason, unready_message
        ),
        worker.conditions.condition("PodScheduled", True),
    ]
    if finished and worker.initialized:
        for condition in conditions[1:2]:
            condition["reason"] = "PodCompleted"
    # Conditions others set (DisruptionTarget from preemption or eviction, readiness
    # gates) are kept, as the kubelet does: this status replaces the API's list.
    owned = {c["type"] for c in conditions}
    for condition in (worker.pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") not in owned:
            conditions.append(condition)
    status: KubeObject = {
        "phase": phase,
        "conditions": conditions,
        "qosClass": pod_qos_class(worker.pod.get("spec") or {}),
        "containerStatuses": [r.status() for r in worker.records],
    }
    if worker.final_reason:
        status["reason"] = worker.final_reason
        status["message"] = worker.final_message
    if worker.init_records:
        status["initContainerStatuses"] = [r.status() for r in worker.init_records]
    if worker.ephemeral_records:
        status["ephemeralContainerStatuses"] = [r.status() for r in worker.ephemeral_records]
    if worker.start_time:
        status["startTime"] = worker.start_time
    status.update(network_status(worker.pod, worker.sandbox, worker.agent.address))
    return status
