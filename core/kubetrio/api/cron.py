"""Cron schedules as Kubernetes reads ``CronJob.spec.schedule`` (robfig/cron's
``ParseStandard``).

:class:`CronSchedule` parses the five-field syntax (numbers, ``*``, ranges, steps,
lists, month and weekday names, ``?``; the descriptors ``@yearly`` ``@annually``
``@monthly`` ``@weekly`` ``@daily`` ``@midnight`` ``@hourly``; an optional
``CRON_TZ=``/``TZ=`` prefix) and finds the next matching minute by jumping field by
field rather than minute by minute. As in cron, when both day-of-month and day-of-week
are restricted a day matching either runs. A bad schedule raises ``ValueError`` worded
as robfig/cron words it (``expected exactly 5 fields, found 1: [bogus]``), which is what
the API server puts in its 422.
"""

from __future__ import annotations

import datetime
import zoneinfo

__all__ = ["UTC", "CronSchedule"]

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
UTC = datetime.UTC


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    values: set[int] = set()
    for expr in text.lower().split(","):
        part, step = expr, 1
        stepped = "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            step = _value(step_text, None)
            if step <= 0:
                raise ValueError(f"step of range should be a positive number: {expr}")
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if stepped else start
        if start < low:
            raise ValueError(f"beginning of range ({start}) below minimum ({low}): {expr}")
        if end > high:
            raise ValueError(f"end of range ({end}) above maximum ({high}): {expr}")
        if start > end:
            raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    return int(text)


class CronSchedule:
    """A parsed cron schedule; :meth:`next_after` gives the next matching minute."""

    def __init__(self, text: str, time_zone: str | None = None) -> None:
        spec = text.strip()
        zone = time_zone
        for prefix in ("CRON_TZ=", "TZ="):
            if spec.startswith(prefix):
                zone, _, spec = spec[len(prefix) :].partition(" ")
                spec = spec.strip()
        if spec.startswith("@") and spec not in _DESCRIPTORS:
            raise ValueError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS.get(spec, spec)
        fields = spec.split()
        if len(fields) != 5:
            raise ValueError(
                f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
            )
        self.minutes = _field(fields[0], 0, 59)
        self.hours = _field(fields[1], 0, 23)
        self.days = _field(fields[2], 1, 31)
        self.months = _field(fields[3], 1, 12, _MONTHS)
        weekdays = _field(fields[4], 0, 7, _DAYS)
        self.weekdays = {d % 7 for d in weekdays}
        self.days_restricted = fields[2] not in ("*", "?")
        self.weekdays_restricted = fields[4] not in ("*", "?")
        try:
            self.zone = zoneinfo.ZoneInfo(zone) if zone else UTC
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"provided bad location {zone}: unknown time zone {zone}") from None

    def _day_matches(self, day: datetime.datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime.datetime) -> datetime.datetime:
        """The first schedule time strictly after ``after`` (aware datetimes, UTC out)."""
        t = after.astimezone(self.zone).replace(second=0, microsecond=0) + datetime.timedelta(
            minutes=1
        )
        limit = t + datetime.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = (t + datetime.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + datetime.timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += datetime.timedelta(minutes=1)
                continue
            return t.astimezone(UTC)
        raise ValueError("schedule never fires")
