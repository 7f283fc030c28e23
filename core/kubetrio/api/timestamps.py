"""Kubernetes ``Time`` and ``MicroTime``: RFC 3339 timestamps with fixed precision.

Both are ``datetime`` subclasses, so they compare and do arithmetic like datetimes, but
they encode the way the apiserver does: ``Time`` to whole seconds
(``2024-05-01T12:00:00Z``) and ``MicroTime`` always with six fractional digits
(``2024-05-01T12:00:00.000000Z``). The fixed width matters: Go parses MicroTime with an
exact layout and rejects a value without the fraction.

Values are always timezone-aware; decoding a string without an offset fails.
"""

from __future__ import annotations

import datetime as _dt
from typing import Self

__all__ = ["MicroTime", "Time", "parse_rfc3339"]

UTC = _dt.UTC


def parse_rfc3339(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp (``Z`` or a numeric offset required)."""
    if not isinstance(text, str):
        raise TypeError(f"expected an RFC 3339 string, got {type(text).__name__}")
    if len(text) < 20 or text[10] not in "Tt":
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SSZ)")
    value = _dt.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T", 1))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone offset")
    return value


class Time(_dt.datetime):
    """A timestamp with second precision (``metav1.Time``)."""

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse an RFC 3339 string; fractional seconds are accepted and dropped."""
        return cls.of(parse_rfc3339(text))

    @classmethod
    def of(cls, value: _dt.datetime) -> Self:
        """Convert an aware datetime, truncating to whole seconds."""
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        v = value.astimezone(UTC)
        return cls(v.year, v.month, v.day, v.hour, v.minute, v.second, tzinfo=UTC)

    @classmethod
    def now_utc(cls) -> Self:
        """The current time, truncated to whole seconds."""
        return cls.of(_dt.datetime.now(UTC))

    def rfc3339(self) -> str:
        """The wire form, e.g. ``2024-05-01T12:00:00Z``."""
        return self.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def __str__(self) -> str:
        return self.rfc3339()


class MicroTime(_dt.datetime):
    """A timestamp with microsecond precision (``metav1.MicroTime``)."""

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse an RFC 3339 string."""
        return cls.of(parse_rfc3339(text))

    @classmethod
    def of(cls, value: _dt.datetime) -> Self:
        """Convert an aware datetime."""
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        v = value.astimezone(UTC)
        return cls(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)

    @classmethod
    def now_utc(cls) -> Self:
        """The current time with microseconds."""
        return cls.of(_dt.datetime.now(UTC))

    def rfc3339(self) -> str:
        """The wire form, e.g. ``2024-05-01T12:00:00.000000Z``."""
        return self.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def __str__(self) -> str:
        return self.rfc3339()
