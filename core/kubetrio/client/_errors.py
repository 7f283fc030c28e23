"""Errors a client sees: the server's ``Status``, as an exception."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request failed with a Kubernetes ``Status`` (``code``, ``reason``, ``message``)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.code = int(status.get("code") or 0)
        self.reason = str(status.get("reason") or "")
        self.message = str(status.get("message") or "")
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        """The object (or the resource) does not exist."""
        return self.code == 404

    @property
    def conflict(self) -> bool:
        """The object changed since it was read (or already exists)."""
        return self.code == 409

    @property
    def expired(self) -> bool:
        """A resourceVersion older than the server's history (watch or list again)."""
        return self.code == 410 or self.reason in ("Expired", "Gone")


def leaf_errors(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions a group carries, however deeply nested."""
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(leaf_errors(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found
