"""Runaway brakes: slow-start create batches, a per-owner create rate limit, a selector check.

A controller that creates objects for an owner can run away: a ReplicaSet whose selector
does not match its template releases every pod it creates and creates another, a
``replicas`` of 2^31 asks for more pods than any cluster holds. Validation refuses such
objects today, but objects stored before (or by another server) must not be able to
flood a cluster either, so the controllers brake on their own:

* :func:`slow_start` — creates go out in batches of 1, 2, 4, 8, … (Kubernetes'
  ``slowStartBatch``), and the first failing batch ends the sync, so an owner whose
  creates all fail costs one request per sync, not hundreds;
* :class:`CreateBrake` — an owner whose controller created more than ``rate`` objects
  per second, averaged over ``window`` seconds, is paused for ``pause`` seconds; the
  pause is announced with a ``TooManyCreates`` Warning event on the owner;
* :func:`template_mismatch` — an owner whose selector cannot select the pods it would
  create gets none (each new pod would be orphaned at once).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from kubetrio.client import ClientError, KubeObject

from ._objects import selector_of

if TYPE_CHECKING:
    from kubetrio.client import EventRecorder

log = logging.getLogger("kubetrio.controllers.brakes")

TOO_MANY_CREATES = "TooManyCreates"
"""The reason of the Warning event announcing a pause."""


@dataclasses.dataclass(frozen=True)
class BrakeLimit:
    """How fast one owner's objects may be created, and how long an owner is paused."""

    rate: float = 50.0
    """Creates per second allowed on average over :attr:`window`."""
    window: float = 10.0
    """Seconds over which creates are counted."""
    pause: float = 60.0
    """Seconds an owner gets no creates once it went over the rate."""

    @property
    def budget(self) -> int:
        """Creates allowed within one window."""
        return max(1, int(self.rate * self.window))


class CreateBrake:
    """Counts each owner's recent creates and pauses owners that create too fast.

    Keys are the controller's keys (``namespace/name``); times are ``trio.current_time()``
    so tests can drive it with a mock clock.
    """

    def __init__(self, limit: BrakeLimit | None = None) -> None:
        self.limit = limit or BrakeLimit()
        self._creates: dict[str, collections.deque[float]] = {}
        self._paused_until: dict[str, float] = {}

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        stamps = self._creates.setdefault(key, collections.deque())
        while stamps and stamps[0] <= now - self.limit.window:
            stamps.popleft()
        return stamps

    def paused_for(self, key: str) -> float:
        """Seconds left of ``key``'s pause (0: not paused)."""
        until = self._paused_until.get(key)
        if until is None:
            return 0.0
        left = until - trio.current_time()
        if left <= 0:
            del self._paused_until[key]
            return 0.0
        return left

    def allowance(self, key: str) -> int:
        """How many creates ``key`` may make now (0 while paused or over budget)."""
        if self.paused_for(key):
            return 0
        now = trio.current_time()
        return max(0, self.limit.budget - len(self._recent(key, now)))

    def record(self, key: str, count: int) -> str | None:
        """``count`` creates were attempted for ``key``; a message if ``key`` is now paused.

        The owner is paused once its window holds the whole budget: the next sync would
        otherwise create at more than :attr:`BrakeLimit.rate` per second.
        """
        if count <= 0:
            return None
        now = trio.current_time()
        stamps = self._recent(key, now)
        stamps.extend([now] * count)
        if len(stamps) < self.limit.budget:
            return None
        limit = self.limit
        self._paused_until[key] = now + limit.pause
        stamps.clear()
        return (
            f"created {self.limit.budget} objects within {limit.window:g}s, more than "
            f"{limit.rate:g} per second: pausing creates for {limit.pause:g}s"
        )

    def forget(self, key: str) -> None:
        """Drop what is known of ``key`` (its owner is gone)."""
        self._creates.pop(key, None)
        self._paused_until.pop(key, None)

    def clear(self) -> None:
        """Drop everything (leadership changed)."""
        self._creates.clear()
        self._paused_until.clear()


async def announce_pause(events: EventRecorder, owner: KubeObject, message: str) -> None:
    """Write the ``TooManyCreates`` Warning at once.

    It bypasses the recorder's queue and spam filter: an owner that creates this fast has
    spent its event budget on ``SuccessfulCreate`` events, and this is the one that says
    why creating stopped.
    """
    log.warning("%s: %s", owner["metadata"].get("name"), message)
    try:
        await events.write(owner, "Warning", TOO_MANY_CREATES, message)
    except ClientError as exc:
        log.info("TooManyCreates event not written: %s", exc)


@dataclasses.dataclass
class BatchResult:
    """What :func:`slow_start` did: calls made, how many succeeded, the first error."""

    attempted: int = 0
    succeeded: int = 0
    error: ClientError | None = None


async def slow_start(
    count: int, create: Callable[[int], Awaitable[None]], *, initial: int = 1
) -> BatchResult:
    """Call ``create(i)`` for ``i`` in ``range(count)`` in batches of 1, 2, 4, 8, ….

    Calls within a batch run concurrently. A batch in which any call raised
    :class:`~kubetrio.client.ClientError` is the last: the remaining calls are not made
    (the caller un-expects them). As Kubernetes' ``slowStartBatch``.
    """
    result = BatchResult()
    batch = max(1, initial)
    errors: list[ClientError] = []

    async def one(index: int) -> None:
        try:
            await create(index)
        except ClientError as exc:
            errors.append(exc)
        else:
            result.succeeded += 1

    while result.attempted < count:
        size = min(batch, count - result.attempted)
        async with trio.open_nursery() as nursery:
            for index in range(result.attempted, result.attempted + size):
                nursery.start_soon(one, index)
        result.attempted += size
        if errors:
            result.error = errors[0]
            break
        batch *= 2
    return result


def template_mismatch(owner: KubeObject) -> str | None:
    """Why ``owner``'s selector cannot select its template's pods (None: it can).

    Kubernetes' validation message, for an owner stored before validation refused it.
    """
    spec = owner.get("spec") or {}
    selector = spec.get("selector") or {}
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return "spec.selector: Invalid value: empty selector is invalid for deployment"
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector_of(owner).matches(labels):
        return (
            f"spec.template.metadata.labels: Invalid value: {labels!r}: "
            "`selector` does not match template `labels`"
        )
    return None
