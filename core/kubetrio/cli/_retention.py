"""``--history-retention``, ``--history-retention-for`` and ``--history-max-size`` of
``server`` and ``up``: how long the store keeps old versions of objects (docs/history.md).

Durations are ``90s``, ``30m``, ``12h``, ``7d``, ``2w`` or ``0`` (keep none); sizes
``500Mi``, ``2Gi`` or bytes. Overrides name resources as upstream does
(``secrets=7d``, ``deployments.apps=30d``).
"""

from __future__ import annotations

import re

import typer

from kubetrio.store import DEFAULT_OVERRIDES, HistoryPolicy, resource_prefix

from ._errors import CommandError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "k": 1000, "ki": 1024, "m": 10**6, "mi": 1 << 20, "g": 10**9, "gi": 1 << 30}

HISTORY_RETENTION_OPTION = typer.Option(
    "7d",
    "--history-retention",
    help="How long old versions of objects stay readable (kubetrio history) after they "
    "were replaced or deleted: 90s, 30m, 12h, 7d, 2w; 0 turns history off. The SQLite "
    "store only; etcd keeps what its own compaction keeps.",
)
HISTORY_RETENTION_FOR_OPTION = typer.Option(
    [],
    "--history-retention-for",
    help="Per resource, repeatable: RESOURCE=DURATION, e.g. secrets=7d (by default "
    "secrets, leases.coordination.k8s.io and events keep none).",
)
HISTORY_MAX_SIZE_OPTION = typer.Option(
    "0", "--history-max-size", help="Cap on kept old versions (e.g. 2Gi; 0: none)."
)


def parse_duration(text: str, what: str) -> float:
    """Seconds of ``90s``/``30m``/``12h``/``7d``/``2w`` (``0`` alone is allowed)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if found is None or (not found[2] and float(found[1]) != 0):
        raise CommandError(f"{what} {text!r}: use a duration such as 90s, 30m, 12h, 7d or 0")
    return float(found[1]) * _UNITS.get(found[2] or "s", 1)


def parse_size(text: str, what: str) -> int:
    """Bytes of ``500Mi``, ``2Gi``, ``1G`` or a plain number."""
    found = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]i?)?\s*", text)
    if found is None:
        raise CommandError(f"{what} {text!r}: use a size such as 500Mi, 2Gi or 0")
    return int(found[1]) * _SIZES[(found[2] or "").lower()]


def history_policy(retention: str, overrides: list[str], max_size: str) -> HistoryPolicy:
    """The store's policy from the options (one-line refusals naming the option)."""
    per_resource = dict(DEFAULT_OVERRIDES)
    for item in overrides:
        resource, sep, duration = item.partition("=")
        what = "--history-retention-for"
        if not sep:
            raise CommandError(f"{what} {item!r}: use RESOURCE=DURATION, e.g. secrets=7d")
        try:
            resource_prefix(resource.strip())
        except ValueError:
            raise CommandError(f"{what} {item!r}: {resource!r} is not a resource name") from None
        per_resource[resource.strip()] = parse_duration(duration, what)
    return HistoryPolicy(
        retention=parse_duration(retention, "--history-retention"),
        overrides=per_resource,
        max_bytes=parse_size(max_size, "--history-max-size"),
    )


def history_arguments(retention: str, overrides: list[str], max_size: str) -> list[str]:
    """The same options for the ``server`` that ``up`` starts (checked first)."""
    history_policy(retention, overrides, max_size)
    args = ["--history-retention", retention, "--history-max-size", max_size]
    for item in overrides:
        args += ["--history-retention-for", item]
    return args
