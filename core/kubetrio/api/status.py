"""``Status`` responses shaped as the apiserver shapes them, and an exception to carry one.

Handlers raise :class:`StatusError` (``raise StatusError(not_found("pods", "web"))``);
the HTTP layer catches it and answers ``error.code`` with ``encode(error.status)``.
The messages follow the apiserver's wording because kubectl prints them verbatim
(``Error from server (NotFound): pods "web" not found``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .generated import meta_v1

__all__ = [
    "StatusError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "internal_error",
    "method_not_allowed",
    "not_found",
    "request_entity_too_large",
    "status_failure",
    "status_success",
    "unauthorized",
    "unsupported_media_type",
]


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def status_failure(
    code: int,
    reason: str,
    message: str,
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    causes: Sequence[meta_v1.StatusCause] | None = None,
    retry_after_seconds: int | None = None,
) -> meta_v1.Status:
    """A ``status: Failure`` Status; ``details`` appear only if something fills them."""
    details = None
    if name or group or kind or causes or retry_after_seconds:
        details = meta_v1.StatusDetails(
            name=name or None,
            group=group or None,
            kind=kind or None,
            causes=list(causes) if causes else None,
            retry_after_seconds=retry_after_seconds,
        )
    return meta_v1.Status(
        kind="Status",
        api_version="v1",
        metadata=meta_v1.ListMeta(),
        status="Failure",
        message=message,
        reason=reason,
        details=details,
        code=code,
    )


def status_success(
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    uid: str | None = None,
) -> meta_v1.Status:
    """A ``status: Success`` Status (what some deletes return)."""
    details = None
    if name or group or kind or uid:
        details = meta_v1.StatusDetails(
            name=name or None, group=group or None, kind=kind or None, uid=uid
        )
    return meta_v1.Status(
        kind="Status",
        api_version="v1",
        metadata=meta_v1.ListMeta(),
        status="Success",
        details=details,
    )


def not_found(resource: str, name: str, group: str = "") -> meta_v1.Status:
    """404 ``pods "web" not found`` (``resource`` is the plural, as the apiserver uses)."""
    return status_failure(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        name=name,
        group=group,
        kind=resource,
    )


def already_exists(resource: str, name: str, group: str = "") -> meta_v1.Status:
    """409 ``pods "web" already exists``."""
    return status_failure(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=resource,
    )


def conflict(
    resource: str,
    name: str,
    group: str = "",
    detail: str = "the object has been modified; please apply your changes to the latest "
    "version and try again",
) -> meta_v1.Status:
    """409 ``Operation cannot be fulfilled on pods "web": <detail>`` (stale resourceVersion)."""
    return status_failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        name=name,
        group=group,
        kind=resource,
    )


def bad_request(message: str) -> meta_v1.Status:
    """400 ``BadRequest`` (malformed body or query, unknown fields under Strict)."""
    return status_failure(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> meta_v1.Status:
    """401 for requests without valid credentials."""
    return status_failure(401, "Unauthorized", message)


def forbidden(resource: str, name: str, group: str, reason: str) -> meta_v1.Status:
    """403, e.g. ``pods "web" is forbidden: User "bob" cannot get resource ...``.

    With an empty ``name`` the message reads ``pods is forbidden: ...``.
    """
    what = _qualified(resource, group)
    subject = f'{what} "{name}"' if name else what
    return status_failure(
        403,
        "Forbidden",
        f"{subject} is forbidden: {reason}",
        name=name,
        group=group,
        kind=resource,
    )


def method_not_allowed() -> meta_v1.Status:
    """405 for a verb the resource does not support."""
    return status_failure(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def expired(message: str) -> meta_v1.Status:
    """410 ``Expired`` (``too old resource version: 5 (100)``); clients relist on it."""
    return status_failure(410, "Expired", message)


def request_entity_too_large(limit: int) -> meta_v1.Status:
    """413 for bodies over the limit (3 MiB in the apiserver)."""
    return status_failure(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"
    )


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> meta_v1.Status:
    """415 for a body in a media type the endpoint does not take."""
    return status_failure(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def internal_error(message: str) -> meta_v1.Status:
    """500 ``InternalError``; the message is shown to the user."""
    return status_failure(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        causes=[meta_v1.StatusCause(message=message)],
    )


class StatusError(Exception):
    """An API error carrying the ``Status`` to answer with."""

    def __init__(self, status: meta_v1.Status) -> None:
        self.status = status
        super().__init__(status.message or status.reason or "error")

    @property
    def code(self) -> int:
        """The HTTP status code (500 if the Status has none)."""
        return self.status.code or 500

    @property
    def reason(self) -> str:
        """The machine-readable reason (``NotFound``, ``Conflict``, ...)."""
        return self.status.reason or ""
