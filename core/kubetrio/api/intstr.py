"""``IntOrString``: a field that holds either an integer or a string (often ``"25%"``).

On the wire it is a bare JSON number or string, so the Python type is just ``int | str``;
the helpers here give it the meaning Kubernetes gives it (ports by number or name,
rolling-update surges as counts or percentages).
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["IntOrString", "scaled_value"]

IntOrString: TypeAlias = int | str


def scaled_value(value: IntOrString, total: int, *, round_up: bool) -> int:
    """Resolve ``value`` against ``total``: ints as is, ``"N%"`` as a share of ``total``.

    ``round_up`` picks ceiling or floor for percentages (maxSurge rounds up,
    maxUnavailable rounds down). A string that is not a percentage raises ValueError,
    as does a plain numeric string: Kubernetes rejects ``"5"`` here.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an int-or-string value")
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"invalid value {value!r}: must be an integer or a percentage")
    try:
        percent = int(value[:-1])
    except ValueError:
        raise ValueError(f"invalid value {value!r}: must be an integer or a percentage") from None
    exact = percent * total
    return -(-exact // 100) if round_up else exact // 100
