"""Kubernetes ``Status`` errors: the one shape every failure reaches a client in.

Key order, reasons and messages follow kube-apiserver's, because clients match on them
(kubectl prints ``Error from server (NotFound): pods "x" not found``).
"""

from __future__ import annotations

from typing import Any

import msgspec

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answered as a Kubernetes Status with ``code`` and ``reason``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        """The Status object, keys in the order kube-apiserver writes them."""
        return status_object(self.code, self.message, reason=self.reason, details=self.details)


def status_object(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure ``Status`` as a dict."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
    }
    if details:
        status["details"] = details
    status["code"] = code
    return status


def status_body(code: int, message: str, **kwargs: Any) -> bytes:
    """A failure ``Status`` encoded as JSON."""
    return msgspec.json.encode(status_object(code, message, **kwargs))


def qualified(resource: str, group: str) -> str:
    """``pods`` or ``deployments.apps``: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, resource: str, group: str, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind or resource
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    """404 NotFound for a named object."""
    return ApiError(
        404,
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(name, resource, group),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists."""
    return ApiError(
        409,
        f'{qualified(resource, group)} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(name, resource, group),
    )


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiError:
    """409 Conflict: the object changed since the client read it."""
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        details=_details(name, resource, group),
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid with ``details.causes`` (each: reason, message, field)."""
    summary = "; ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    qualified_kind = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        f'{qualified_kind} "{name}" is invalid: {summary}',
        details={**_details(name, "", group, kind), "causes": causes},
    )


def expired(requested: int, oldest: int) -> ApiError:
    """410 Expired: a resourceVersion older than the retained history."""
    return ApiError(410, f"too old resource version: {requested} ({oldest})", reason="Expired")


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, message)
