"""Leader election through a ``coordination.k8s.io/v1`` Lease, and the write guard.

Several controller managers may run; one leads. The protocol is client-go's
``leaderelection`` with a Lease lock (15 s lease, 10 s renew deadline, 2 s retry):

* A candidate reads the Lease every ``retry_period``. It may take it when nobody holds
  it, or when the record has not changed for ``lease_duration`` seconds *as measured on
  the candidate's own clock* since it first saw that resourceVersion (clocks of different
  machines are never compared: ``renewTime`` is only informative).
* Every write of the Lease is an update conditional on the resourceVersion last read,
  so two candidates can never both succeed in taking it.
* The leader renews every ``retry_period``; a renewal that finds another holder deposes
  it at once, and if a round of attempts gets no renewal through within
  ``renew_deadline`` seconds it steps down.
  Because ``renew_deadline`` < ``lease_duration``, a leader that lost contact stops
  before anyone else may start.
* On a clean stop the leader releases the Lease (empty holder) so a standby takes over
  within one ``retry_period`` instead of waiting out the lease.

:class:`LeaderGuardedTransport` enforces the other half: a write (any verb but GET) is
refused with :class:`NotLeaderError` unless this elector holds the Lease *now*, i.e. its
last successful conditional renewal — a compare-and-swap on the Lease's
resourceVersion — is younger than ``renew_deadline``. Controllers only ever receive a
client over this transport, so a deposed leader's in-flight reconciles cannot act even
in the instant before their tasks are cancelled. It also bounds the controllers' writes
in flight (:data:`MAX_INFLIGHT_WRITES`, like client-go's client-side rate limit): a
ReplicaSet creating 500 pods at once must not queue so many writes ahead of the Lease
renewal — which goes through the unguarded client — that it misses its renew deadline.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager

import trio

from kubetrio.client import Client, ClientError, KubeObject, now_micro
from kubetrio.client._transport import RawResponse, Transport

log = logging.getLogger("kubetrio.controllers.leader")

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
MAX_INFLIGHT_WRITES = 32
"""Controller writes in flight at once through one guarded transport."""


@dataclasses.dataclass(frozen=True)
class LeaseTiming:
    """How a candidate campaigns (kube-controller-manager's ``--leader-elect-*`` flags):
    a standby takes a dead leader's Lease within about ``lease_duration`` seconds."""

    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD


def default_identity() -> str:
    """``<hostname>_<random>``, unique per process as client-go's identities are."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class NotLeaderError(ClientError):
    """A write was attempted by a controller manager that does not hold the Lease."""

    def __init__(self, identity: str) -> None:
        super().__init__(
            {
                "code": 503,
                "reason": "NotLeader",
                "message": f"{identity} does not hold the leader lease; write refused",
            }
        )


class _Attempt(enum.Enum):
    HELD = "held"  # we hold the lease now
    OTHER = "other"  # someone else holds a live lease
    FAILED = "failed"  # the request failed; try again


class LeaderElector:
    """Campaigns for one Lease and runs a callback while holding it."""

    def __init__(
        self,
        client: Client,
        *,
        identity: str,
        name: str = "kubetrio-controller-manager",
        namespace: str = "kube-system",
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        release_on_cancel: bool = True,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.identity = identity
        self.name = name
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._lease: KubeObject | None = None
        self._observed_rv = ""
        self._observed_at = 0.0
        self._renewed_at = float("-inf")
        self._leading = False
        self.transitions = 0
        """How many times this elector became leader."""

    # --- the guard ------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Whether this elector holds the Lease now (fresh conditional renewal)."""
        return self._leading and trio.current_time() < self._renewed_at + self.renew_deadline

    @property
    def holder(self) -> str:
        """The holder named in the last Lease record read or written ("" if none)."""
        if self._lease is None:
            return ""
        return str((self._lease.get("spec") or {}).get("holderIdentity") or "")

    # --- the campaign ---------------------------------------------------------------------

    async def run(
        self,
        lead: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Campaign forever; run ``lead()`` while leading, cancel it when deposed."""
        task_status.started()
        while True:
            await self._acquire()
            self._leading = True
            self.transitions += 1
            log.info("%s became leader of %s/%s", self.identity, self.namespace, self.name)
            try:
                async with trio.open_nursery() as nursery:

                    async def lead_then_hold() -> None:
                        await lead()
                        await trio.sleep_forever()

                    nursery.start_soon(lead_then_hold)
                    await self._renew_until_lost()
                    self._leading = False  # refuse writes before the cancellation lands
                    nursery.cancel_scope.cancel()
            finally:
                self._leading = False
                if self.release_on_cancel:
                    with trio.CancelScope(shield=True), trio.move_on_after(self.retry_period):
                        await self._release()
            log.warning("%s lost leadership of %s/%s", self.identity, self.namespace, self.name)

    async def _acquire(self) -> None:
        while True:
            if await self._try_acquire_or_renew() is _Attempt.HELD:
                return
            await trio.sleep(self.retry_period)

    async def _renew_until_lost(self) -> None:
        while True:
            await trio.sleep(self.retry_period)
            renewed = False
            # Each round of attempts gets the whole deadline, as client-go's renew loop:
            # counted from the last renewal instead, a loaded server's 3-5 s renewals
            # left the next round too little time, and every lost round restarted all
            # controllers (a relist of every object). Writes stay guarded by
            # :meth:`is_leader` meanwhile, and the renewal is a compare-and-swap.
            with trio.move_on_after(self.renew_deadline):
                while True:
                    attempt = await self._try_acquire_or_renew()
                    if attempt is _Attempt.HELD:
                        renewed = True
                        break
                    if attempt is _Attempt.OTHER:
                        return  # deposed: someone else holds it
                    await trio.sleep(self.retry_period)
            if not renewed:
                return

    async def _try_acquire_or_renew(self) -> _Attempt:
        started = trio.current_time()
        stamp = now_micro()
        if self._leading and self._lease is not None and self.holder == self.identity:
            # Renewing: one conditional write on the version we wrote last. A conflict
            # means someone else wrote the Lease: read it to see who holds it now.
            renewed = await self._renew_cached(started, stamp)
            if renewed is not None:
                return renewed
        try:
            lease = await self.client.get(
                "coordination.k8s.io/v1", "leases", self.name, namespace=self.namespace
            )
        except ClientError as exc:
            if not exc.not_found:
                log.info("reading lease: %s", exc)
                return _Attempt.FAILED
            return await self._create(started, stamp)
        except Exception as exc:
            log.info("reading lease: %s", exc)
            return _Attempt.FAILED
        rv = lease["metadata"].get("resourceVersion", "")
        if rv != self._observed_rv:
            self._observed_rv = rv
            self._observed_at = started
        self._lease = lease
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and started < self._observed_at + duration:
            return _Attempt.OTHER
        if holder != self.identity:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(self.lease_duration)
        spec["renewTime"] = stamp
        lease["spec"] = spec
        try:
            updated = await self.client.update(
                "coordination.k8s.io/v1", "leases", lease, namespace=self.namespace
            )
        except ClientError as exc:
            if exc.conflict:
                return _Attempt.OTHER if self._leading else _Attempt.FAILED
            log.info("updating lease: %s", exc)
            return _Attempt.FAILED
        except Exception as exc:
            log.info("updating lease: %s", exc)
            return _Attempt.FAILED
        self._held(updated, started)
        return _Attempt.HELD

    async def _renew_cached(self, started: float, stamp: str) -> _Attempt | None:
        assert self._lease is not None
        lease = dict(self._lease)
        lease["spec"] = {
            **(lease.get("spec") or {}),
            "renewTime": stamp,
            "leaseDurationSeconds": int(self.lease_duration),
        }
        try:
            updated = await self.client.update(
                "coordination.k8s.io/v1", "leases", lease, namespace=self.namespace
            )
        except ClientError as exc:
            if exc.conflict or exc.not_found:
                return None
            log.info("renewing lease: %s", exc)
            return _Attempt.FAILED
        except Exception as exc:
            log.info("renewing lease: %s", exc)
            return _Attempt.FAILED
        took = trio.current_time() - started
        if took > self.retry_period:
            log.warning("%s: renewing the lease took %.1f s", self.identity, took)
        self._held(updated, started)
        return _Attempt.HELD

    async def _create(self, started: float, stamp: str) -> _Attempt:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.client.create(
                "coordination.k8s.io/v1", "leases", lease, namespace=self.namespace
            )
        except ClientError as exc:
            log.info("creating lease: %s", exc)
            return _Attempt.FAILED
        self._held(created, started)
        return _Attempt.HELD

    def _held(self, lease: KubeObject, started: float) -> None:
        self._lease = lease
        self._observed_rv = lease["metadata"].get("resourceVersion", "")
        self._observed_at = started
        # The request started before the write; counting from then errs on the safe side.
        self._renewed_at = started

    async def _release(self) -> None:
        lease = self._lease
        if lease is None or self.holder != self.identity:
            return
        lease = dict(lease)
        lease["spec"] = {
            **(lease.get("spec") or {}),
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "renewTime": now_micro(),
        }
        try:
            self._lease = await self.client.update(
                "coordination.k8s.io/v1", "leases", lease, namespace=self.namespace
            )
            log.info("%s released %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:  # the lease simply runs out instead
            log.info("releasing lease: %s", exc)


class LeaderGuardedTransport:
    """A :class:`Transport` that refuses writes unless ``elector`` holds the Lease now."""

    def __init__(
        self,
        inner: Transport,
        elector: LeaderElector,
        *,
        max_inflight: int = MAX_INFLIGHT_WRITES,
        writes: trio.CapacityLimiter | None = None,
    ) -> None:
        self.inner = inner
        self.elector = elector
        self.writes = writes or trio.CapacityLimiter(max_inflight)
        """Bounds the writes in flight; shared by the transports of one manager."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes,
        content_type: str,
    ) -> RawResponse:
        """Forward reads; forward writes only while leading (checked again after waiting)."""
        if method == "GET":
            return await self.inner.request(
                method, path, query=query, body=body, content_type=content_type
            )
        if not self.elector.is_leader():
            raise NotLeaderError(self.elector.identity)
        async with self.writes:
            if not self.elector.is_leader():
                raise NotLeaderError(self.elector.identity)
            return await self.inner.request(
                method, path, query=query, body=body, content_type=content_type
            )

    def stream(
        self, method: str, path: str, *, query: Mapping[str, str]
    ) -> AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]]:
        """Watches are reads: always forwarded."""
        return self.inner.stream(method, path, query=query)

    async def aclose(self) -> None:
        """The inner transport belongs to the caller; nothing to close here."""


def guarded_client(client: Client, elector: LeaderElector) -> Client:
    """A client sharing ``client``'s transport whose writes need the leader lease."""
    return Client(LeaderGuardedTransport(client.transport, elector))
