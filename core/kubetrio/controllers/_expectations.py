"""Expectations: what a controller wrote and has not yet seen in its informer cache.

Informer caches lag behind the controller's own writes. A ReplicaSet that just created
three pods would, reconciled again before the pods arrive in the cache, count too few
and create three more. Like client-go's ``ControllerExpectations``, the controller
records how many creations and which deletions it expects per key before writing; the
informer handlers tick them off as the events arrive; and the controller does not
create or delete for a key until its expectations are met (or have timed out, so a
lost event can only delay, never wedge, a controller).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import trio

from kubetrio.client import KubeObject, WorkQueue

from ._objects import is_deleting

TIMEOUT = 300.0
"""Seconds after which unmet expectations are assumed lost: client-go's
``ExpectationsTimeout`` (5 minutes). At 60 s, a loaded server whose watch events lagged
past a minute had ReplicaSets create their pods again (30 replicas → 59 pods)."""


@dataclasses.dataclass
class _Expected:
    adds: int
    deletes: set[str]
    at: float


class Expectations:
    """Pending creations (a count) and deletions (pod UIDs) per controller key."""

    def __init__(self, *, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        """Whether the cache shows everything ``key`` wrote (or the wait timed out)."""
        expected = self._by_key.get(key)
        if expected is None:
            return True
        if expected.adds <= 0 and not expected.deletes:
            return True
        return trio.current_time() - expected.at > self.timeout

    def expect(self, key: str, *, adds: int = 0, deletes: set[str] | None = None) -> None:
        """Set what ``key`` is about to write (replaces older expectations)."""
        self._by_key[key] = _Expected(adds, set(deletes or ()), trio.current_time())

    def creation_observed(self, key: str) -> None:
        """One pod of ``key`` appeared (or one create failed and will never appear)."""
        expected = self._by_key.get(key)
        if expected is not None:
            expected.adds -= 1

    def deletion_observed(self, key: str, uid: str) -> None:
        """The pod ``uid`` of ``key`` is being deleted (or its delete failed)."""
        expected = self._by_key.get(key)
        if expected is not None:
            expected.deletes.discard(uid)

    def forget(self, key: str) -> None:
        """Drop ``key``'s expectations (its object is gone, or leadership changed)."""
        self._by_key.pop(key, None)

    def clear(self) -> None:
        """Drop all expectations."""
        self._by_key.clear()


class OwnedPodHandler:
    """Pod events tick off the owning controller's expectations and enqueue its key.

    ``owner_key`` maps a pod to its controller's queue key (None: not ours). A pod that
    first shows up already being deleted counts as a deletion, as client-go's handlers do.
    """

    def __init__(
        self,
        expectations: Expectations,
        queue: WorkQueue,
        owner_key: Callable[[KubeObject], str | None],
    ) -> None:
        self.expectations = expectations
        self.queue = queue
        self.owner_key = owner_key

    def on_add(self, pod: KubeObject) -> None:
        key = self.owner_key(pod)
        if key is not None:
            if is_deleting(pod):
                self.expectations.deletion_observed(key, pod["metadata"]["uid"])
            else:
                self.expectations.creation_observed(key)
            self.queue.add(key)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        key = self.owner_key(new)
        if key is not None:
            if is_deleting(new) and not is_deleting(old):
                self.expectations.deletion_observed(key, new["metadata"]["uid"])
            self.queue.add(key)

    def on_delete(self, pod: KubeObject) -> None:
        key = self.owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, pod["metadata"]["uid"])
            self.queue.add(key)
