"""Errors of the store contract.

Every backend raises exactly these, so callers (the API registry) map them to HTTP statuses
once: ``AlreadyExists`` → 409, ``Conflict`` → 409 with a retry, ``NotFound`` → 404,
``Compacted`` → 410 Expired, ``FutureRevision`` → 504/"too large resource version".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._protocol import KeyValue


class StoreError(Exception):
    """Base class of every error the store raises."""


class AlreadyExists(StoreError):
    """``create`` found a live key of that name."""

    def __init__(self, key: bytes, current: KeyValue | None = None) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key
        #: The live key-value that blocked the create, when the backend knows it.
        self.current = current


class NotFound(StoreError):
    """The key does not exist (or is deleted) at the revision the operation needed it."""

    def __init__(self, key: bytes) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class Conflict(StoreError):
    """A compare-and-swap lost: the key's mod-revision is not the expected one.

    ``current`` carries the key-value as it is now, so a caller can retry its update from it
    without another read (Kubernetes' GuaranteedUpdate does exactly that).
    """

    def __init__(self, key: bytes, expected_revision: int, current: KeyValue) -> None:
        super().__init__(
            f"key {key!r}: expected mod revision {expected_revision}, "
            f"current is {current.mod_revision}"
        )
        self.key = key
        self.expected_revision = expected_revision
        self.current = current

    @property
    def current_revision(self) -> int:
        """The key's mod-revision now."""
        return self.current.mod_revision


class Compacted(StoreError):
    """The revision asked for is older than the compaction point (HTTP 410 Expired)."""

    def __init__(self, compact_revision: int, current_revision: int) -> None:
        super().__init__(
            f"revision has been compacted (compacted up to {compact_revision}, "
            f"current {current_revision})"
        )
        self.compact_revision = compact_revision
        self.current_revision = current_revision


class FutureRevision(StoreError):
    """The revision asked for is newer than the store's current revision."""

    def __init__(self, revision: int, current_revision: int) -> None:
        super().__init__(f"revision {revision} is in the future (current {current_revision})")
        self.revision = revision
        self.current_revision = current_revision


class Unavailable(StoreError):
    """The backend could not be reached or did not answer.

    For a write this is an *ambiguous* outcome: the write may or may not have been applied.
    """


class WatchClosed(StoreError):
    """The watch ended because its store is closing (or its upstream watch failed)."""
