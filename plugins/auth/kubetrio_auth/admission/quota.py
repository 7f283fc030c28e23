"""ResourceQuota: what an object uses of a quota, the admission check against
``status.used`` (worded as kube-apiserver's ``ResourceQuota`` admission plugin), and the
controller that keeps each quota's ``status.hard`` and ``status.used`` current.

Decision hooks cannot write, so unlike upstream the admission check does not reserve
usage in the quota's status; it keeps what it admitted since the quota's status was last
recomputed in memory (``QuotaAdmission.pending``) so a burst of creates cannot overshoot
between two passes of the controller.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from kubetrio.api.quantity import Quantity
from kubetrio.providers import AdmissionRequest, ObjectCache

log = logging.getLogger("kubetrio.admission.quota")

Usage = dict[str, Quantity]

LEGACY_COUNTS = {
    "pods": "pods",
    "services": "services",
    "configmaps": "configmaps",
    "secrets": "secrets",
    "persistentvolumeclaims": "persistentvolumeclaims",
    "replicationcontrollers": "replicationcontrollers",
    "resourcequotas": "resourcequotas",
}
"""Core resources counted under their own name as well as ``count/<resource>``."""
COMPUTE = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
"""What a quota constraining forces every container to state (``must specify ...``)."""
TERMINAL_PHASES = ("Succeeded", "Failed")
PENDING_SECONDS = 10.0
"""How long admitted usage is remembered when the quota's status is not rewritten (the
request may have failed after admission, and then nothing changes)."""


def count_name(resource: str, group: str) -> str:
    """The ``count/<resource>[.<group>]`` name of a resource."""
    return f"count/{resource}.{group}" if group else f"count/{resource}"


def _container_usage(container: dict[str, Any]) -> Usage:
    resources = container.get("resources") or {}
    requests = dict(resources.get("limits") or {}) | dict(resources.get("requests") or {})
    limits = resources.get("limits") or {}
    usage: Usage = {}
    for name in ("cpu", "memory"):
        if name in requests:
            usage[name] = usage[f"requests.{name}"] = Quantity(requests[name])
        if name in limits:
            usage[f"limits.{name}"] = Quantity(limits[name])
    return usage


def _add(a: Usage, b: Usage) -> Usage:
    # A sum keeps the format of its first term (512Mi stays binary), as Go's Add does.
    total = dict(a)
    for key, value in b.items():
        total[key] = total[key] + value if key in total else value
    return total


def _max(a: Usage, b: Usage) -> Usage:
    return {
        key: max(a.get(key, Quantity(0)), b.get(key, Quantity(0))) for key in a.keys() | b.keys()
    }


def usage(resource: str, group: str, obj: dict[str, Any]) -> Usage:
    """What one object uses: its counts, and for pods and claims their resources."""
    if group == "" and resource == "pods":
        if (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
            return {}
        spec = obj.get("spec") or {}
        total: Usage = {}
        for container in spec.get("containers") or []:
            total = _add(total, _container_usage(container))
        for container in spec.get("initContainers") or []:
            total = _max(total, _container_usage(container))
        total = _add(total, {k: Quantity(v) for k, v in (spec.get("overhead") or {}).items()})
    elif group == "" and resource == "persistentvolumeclaims":
        requests = ((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}
        total = {"requests.storage": Quantity(requests["storage"])} if "storage" in requests else {}
    else:
        total = {}
    total[count_name(resource, group)] = Quantity(1)
    if group == "" and resource in LEGACY_COUNTS:
        total[LEGACY_COUNTS[resource]] = Quantity(1)
    return total


def missing_compute(spec: dict[str, Any], tracked: set[str]) -> str:
    """``must specify ...`` for containers not stating what the quota constrains, or ""."""
    required = tracked & set(COMPUTE)
    missing: dict[str, list[str]] = {}
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            for name in sorted(required - _container_usage(container).keys()):
                missing.setdefault(name, []).append(container.get("name", ""))
    if not missing:
        return ""
    return "must specify " + "; ".join(
        f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing)
    )


def _pretty(values: Usage) -> str:
    return ",".join(f"{key}={values[key].canonical()}" for key in sorted(values))


class QuotaAdmission:
    """The admission check; ``quotas`` is the server's ResourceQuota cache."""

    def __init__(self) -> None:
        self.quotas: ObjectCache | None = None
        self.pending: dict[tuple[str, str], tuple[str, float, Usage]] = {}
        """Admitted since the quota's status was written: (namespace, name) →
        (the quota's resourceVersion then, when, usage)."""

    def validate(self, request: AdmissionRequest) -> list[str] | None:
        """Refuse a new object that would take a quota of its namespace over its limits."""
        if (
            request.operation != "CREATE"
            or request.subresource
            or request.object is None
            or not request.namespace
            or self.quotas is None
        ):
            return None
        quotas = self.quotas.list(request.namespace)
        if not quotas:
            return None
        delta = usage(request.resource, request.api_group, request.object)
        charges: list[tuple[tuple[str, str], str, Usage]] = []
        now = time.monotonic()
        for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            name = quota["metadata"]["name"]
            status = quota.get("status") or {}
            hard_raw = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
            tracked = {key for key in hard_raw if key in delta or key in COMPUTE}
            if request.api_group == "" and request.resource == "pods":
                problem = missing_compute((request.object.get("spec") or {}), tracked)
                if problem:
                    return [f"failed quota: {name}: {problem}"]
            requested = {k: v for k, v in delta.items() if k in hard_raw and not v.is_zero()}
            if not requested:
                continue
            used_raw = status.get("used") or {}
            unknown = sorted(k for k in requested if k not in used_raw)
            if unknown:
                return [f"status unknown for quota: {name}, resources: {','.join(unknown)}"]
            key = (request.namespace, name)
            rv = str(quota["metadata"].get("resourceVersion", ""))
            now = time.monotonic()
            pending_rv, since, pending = self.pending.get(key, (rv, now, {}))
            if pending_rv != rv or now - since > PENDING_SECONDS:
                pending = {}  # the controller recounted since: its status includes them
            used = {k: Quantity(used_raw[k]) + pending.get(k, Quantity(0)) for k in requested}
            hard = {k: Quantity(hard_raw[k]) for k in requested}
            exceeded = sorted(k for k in requested if used[k] + requested[k] > hard[k])
            if exceeded:
                return [
                    f"exceeded quota: {name}, "
                    f"requested: {_pretty({k: requested[k] for k in exceeded})}, "
                    f"used: {_pretty({k: used[k] for k in exceeded})}, "
                    f"limited: {_pretty({k: hard[k] for k in exceeded})}"
                ]
            charges.append((key, rv, _add(pending, requested)))
        if not request.dry_run:
            for key, rv, charged in charges:
                self.pending[key] = (rv, now, charged)
        return None


class QuotaController:
    """Keeps every ResourceQuota's ``status.hard`` (its spec) and ``status.used`` (what
    its namespace's objects use) current, as kube-controller-manager's quota controller."""

    name = "resourcequota"

    def __init__(self, period: float = 1.0) -> None:
        self.period = period

    async def run(
        self, client: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Recount every ``period`` seconds until cancelled."""
        task_status.started()
        versions: dict[str, str] = {}
        while True:
            try:
                await self.sync(client, versions)
            except Exception:  # one failed pass (a conflict, a restart) must not end it
                log.exception("resource quota pass failed")
            await trio.sleep(self.period)

    async def sync(self, client: Any, versions: dict[str, str]) -> None:
        """One pass: recount each quota and write its status when it changed."""
        quotas = (await client.list("v1", "resourcequotas"))["items"]
        for quota in quotas:
            namespace = quota["metadata"]["namespace"]
            hard = dict((quota.get("spec") or {}).get("hard") or {})
            used = await self._used(client, namespace, hard, versions)
            status = {"hard": hard, "used": used}
            if quota.get("status") != status:
                quota["status"] = status
                await client.update(
                    "v1", "resourcequotas", quota, namespace=namespace, subresource="status"
                )

    async def _used(
        self, client: Any, namespace: str, hard: dict[str, Any], versions: dict[str, str]
    ) -> dict[str, str]:
        wanted: dict[tuple[str, str], None] = {}
        for key in hard:
            wanted.update({resource: None for resource in _resources_for(key)})
        total: Usage = {}
        for resource, group in wanted:
            version = await _version_of(client, group, versions)
            if version is None:
                continue
            items = (await client.list(version, resource, namespace=namespace))["items"]
            for item in items:
                total = _add(total, usage(resource, group, item))
        return {key: total.get(key, Quantity(0)).canonical() for key in hard}


def _resources_for(key: str) -> list[tuple[str, str]]:
    """Which (resource, group) a quota key counts."""
    if key.startswith("count/"):
        resource, _, group = key.removeprefix("count/").partition(".")
        return [(resource, group)]
    if key in LEGACY_COUNTS:
        return [(key, "")]
    if key in COMPUTE:
        return [("pods", "")]
    if key == "requests.storage":
        return [("persistentvolumeclaims", "")]
    return []


async def _version_of(client: Any, group: str, versions: dict[str, str]) -> str | None:
    """The preferred ``group/version`` of an API group (from discovery), ``v1`` for core."""
    if not group:
        return "v1"
    if group not in versions:
        try:
            found = await client.get_path(f"/apis/{group}")
        except Exception:
            return None
        versions[group] = found["preferredVersion"]["groupVersion"]
    return versions[group]
