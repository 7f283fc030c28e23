"""Kubernetes resource quantities (``100m``, ``1Gi``, ``1e3``) as exact numbers.

A quantity is held as an integer count of nano-units, which is exact for every value
Kubernetes can represent: parsing rounds anything finer than ``1n`` up (away from zero),
exactly as the apiserver does, so arithmetic and comparison never touch floats.

The original *format* (decimal SI, binary SI or decimal exponent) is kept because it
decides the canonical string form, which is what the apiserver writes back:

- binary SI values that are integral and at least 1024 in magnitude print with the
  largest power-of-1024 suffix that keeps the number integral (``1536Mi``); smaller or
  fractional binary values fall back to decimal SI (``1023``, ``512m``);
- decimal values print with the largest power-of-1000 suffix that keeps the number an
  integer (``1500m``, ``1k``), or as ``<n>e<exp>`` for the exponent format.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal
from fractions import Fraction
from typing import Final

__all__ = ["Quantity", "QuantityFormat", "QuantityParseError"]

_NANO: Final = 10**9
_MAX_INT64: Final = 2**63 - 1

_DECIMAL_SUFFIXES: Final[dict[str, int]] = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DECIMAL_BY_EXPONENT: Final = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES: Final[dict[str, int]] = {
    "Ki": 10,
    "Mi": 20,
    "Gi": 30,
    "Ti": 40,
    "Pi": 50,
    "Ei": 60,
}
_BINARY_BY_POWER: Final = {v // 10: k for k, v in _BINARY_SUFFIXES.items()}

# sign, integer digits, optional fraction, then everything else is the suffix.
_NUMBER_RE: Final = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.DOTALL)
_EXPONENT_RE: Final = re.compile(r"[eE]([+-]?[0-9]+)")


class QuantityFormat(enum.Enum):
    """How a quantity was written, which decides how it is printed back."""

    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


class QuantityParseError(ValueError):
    """A string is not a Kubernetes quantity; the message says what is wrong."""


def _ceil_div_away(numerator: int, denominator: int) -> int:
    """Integer division rounding away from zero (Kubernetes rounds sub-nano values up)."""
    q, r = divmod(abs(numerator), denominator)
    if r:
        q += 1
    return -q if numerator < 0 else q


class Quantity:
    """An exact, immutable Kubernetes quantity.

    ``Quantity("1Gi") == 1073741824``, ``Quantity("100m") < 1``, ``str(Quantity("1000m"))
    == "1"``. Compare with other quantities, ints, floats, Fractions or Decimals.
    Construct from a string, an int, a float (through its shortest repr) or a Decimal.
    """

    __slots__ = ("_format", "_nanos")

    _nanos: int
    _format: QuantityFormat

    def __init__(self, value: str | int | float | Decimal | Quantity) -> None:
        if isinstance(value, Quantity):
            self._nanos, self._format = value._nanos, value._format
        elif isinstance(value, bool):
            raise QuantityParseError("a quantity cannot be a boolean")
        elif isinstance(value, int):
            self._nanos, self._format = value * _NANO, QuantityFormat.DECIMAL_SI
        elif isinstance(value, float | Decimal):
            self._nanos, self._format = _parse(_number_text(value))
        elif isinstance(value, str):
            self._nanos, self._format = _parse(value)
        else:
            raise QuantityParseError(f"cannot make a quantity from {type(value).__name__}")

    @classmethod
    def from_nanos(cls, nanos: int, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        """A quantity of ``nanos`` billionths of a unit, printed in format ``fmt``."""
        q = cls.__new__(cls)
        q._nanos, q._format = nanos, fmt
        return q

    @classmethod
    def from_milli(cls, milli: int, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        """A quantity of ``milli`` thousandths of a unit (CPU millicores, for instance)."""
        return cls.from_nanos(milli * 1_000_000, fmt)

    @property
    def format(self) -> QuantityFormat:
        """The format the quantity was written in."""
        return self._format

    @property
    def nanos(self) -> int:
        """The exact value in billionths of a unit."""
        return self._nanos

    def value(self) -> int:
        """The value as an integer, rounded up (away from zero), like Go's ``Value()``."""
        return _ceil_div_away(self._nanos, _NANO)

    def milli_value(self) -> int:
        """The value in thousandths, rounded up (away from zero), like ``MilliValue()``."""
        return _ceil_div_away(self._nanos, 1_000_000)

    def as_fraction(self) -> Fraction:
        """The exact value as a Fraction."""
        return Fraction(self._nanos, _NANO)

    def as_decimal(self) -> Decimal:
        """The exact value as a Decimal."""
        return Decimal(self._nanos).scaleb(-9).normalize()

    def is_zero(self) -> bool:
        """True for any zero quantity (``0``, ``0Mi``, ``0.0``)."""
        return self._nanos == 0

    def canonical(self) -> str:
        """The canonical string form, as the apiserver writes it."""
        return _format(self._nanos, self._format)

    def __str__(self) -> str:
        return self.canonical()

    def __repr__(self) -> str:
        return f"Quantity({self.canonical()!r})"

    def __float__(self) -> float:
        return self._nanos / _NANO

    def __int__(self) -> int:
        return self.value()

    def __bool__(self) -> bool:
        return self._nanos != 0

    def __hash__(self) -> int:
        return hash(Fraction(self._nanos, _NANO))

    def _other_nanos(self, other: object) -> Fraction | None:
        if isinstance(other, Quantity):
            return Fraction(other._nanos)
        if isinstance(other, bool):
            return None
        if isinstance(other, int | Fraction | Decimal):
            return Fraction(other) * _NANO
        if isinstance(other, float):
            return Fraction(other) * _NANO if other == other else None
        return None

    def __eq__(self, other: object) -> bool:
        o = self._other_nanos(other)
        if o is None:
            return NotImplemented
        return self._nanos == o

    def __lt__(self, other: object) -> bool:
        o = self._other_nanos(other)
        if o is None:
            return NotImplemented
        return self._nanos < o

    def __le__(self, other: object) -> bool:
        o = self._other_nanos(other)
        if o is None:
            return NotImplemented
        return self._nanos <= o

    def __gt__(self, other: object) -> bool:
        o = self._other_nanos(other)
        if o is None:
            return NotImplemented
        return self._nanos > o

    def __ge__(self, other: object) -> bool:
        o = self._other_nanos(other)
        if o is None:
            return NotImplemented
        return self._nanos >= o

    # Arithmetic keeps the left operand's format, as Go's Add/Sub do.
    def __add__(self, other: Quantity | int) -> Quantity:
        return Quantity.from_nanos(self._nanos + _as_nanos(other), self._format)

    __radd__ = __add__

    def __sub__(self, other: Quantity | int) -> Quantity:
        return Quantity.from_nanos(self._nanos - _as_nanos(other), self._format)

    def __rsub__(self, other: Quantity | int) -> Quantity:
        return Quantity.from_nanos(_as_nanos(other) - self._nanos, self._format)

    def __neg__(self) -> Quantity:
        return Quantity.from_nanos(-self._nanos, self._format)

    def __mul__(self, factor: int) -> Quantity:
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Quantity.from_nanos(self._nanos * factor, self._format)

    __rmul__ = __mul__


def _as_nanos(other: Quantity | int) -> int:
    if isinstance(other, Quantity):
        return other.nanos
    if isinstance(other, int) and not isinstance(other, bool):
        return other * _NANO
    raise TypeError(f"cannot combine a quantity with {type(other).__name__}")


def _number_text(value: float | Decimal) -> str:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise QuantityParseError(f"{value!r} is not a finite number")
    text = repr(value) if isinstance(value, float) else str(value)
    # Python spells exponents e+05 / E+5; Kubernetes accepts e5 as well as e+5.
    return text


def _parse(text: str) -> tuple[int, QuantityFormat]:
    if not text:
        raise QuantityParseError("quantity is empty")
    m = _NUMBER_RE.fullmatch(text)
    if m is None:  # pragma: no cover - the pattern matches any string
        raise QuantityParseError(f"quantity {text!r} is not a number")
    sign, whole, frac, suffix = m.groups()
    frac = frac or ""
    if not whole and not frac:
        raise QuantityParseError(f"quantity {text!r} must start with a number")
    if len(whole) + len(frac) > 1000:
        raise QuantityParseError(f"quantity has too many digits ({len(whole) + len(frac)})")
    digits = int(whole + frac or "0")
    scale = len(frac)  # value = digits * 10**-scale
    if suffix in _DECIMAL_SUFFIXES:
        fmt, exp10, exp2 = QuantityFormat.DECIMAL_SI, _DECIMAL_SUFFIXES[suffix], 0
    elif suffix in _BINARY_SUFFIXES:
        fmt, exp10, exp2 = QuantityFormat.BINARY_SI, 0, _BINARY_SUFFIXES[suffix]
    else:
        em = _EXPONENT_RE.fullmatch(suffix)
        if em is None:
            raise QuantityParseError(
                f"quantity {text!r} has unknown suffix {suffix!r} at position "
                f"{len(text) - len(suffix)} (expected one of n u m k M G T P E Ki Mi Gi Ti Pi "
                "Ei or an exponent such as e3)"
            )
        exponent = int(em.group(1))
        if abs(exponent) > 1000:
            raise QuantityParseError(f"quantity {text!r} has an exponent out of range")
        fmt, exp10, exp2 = QuantityFormat.DECIMAL_EXPONENT, exponent, 0
    # nanos = digits * 2**exp2 * 10**(exp10 - scale + 9), rounded away from zero.
    numerator = digits << exp2
    power = exp10 - scale + 9
    nanos = numerator * 10**power if power >= 0 else _ceil_div_away(numerator, 10**-power)
    if sign == "-":
        nanos = -nanos
    if fmt is QuantityFormat.BINARY_SI and nanos > _MAX_INT64 * _NANO:
        nanos = _MAX_INT64 * _NANO
    return nanos, fmt


def _format(nanos: int, fmt: QuantityFormat) -> str:
    if nanos == 0:
        return "0"
    sign = "-" if nanos < 0 else ""
    magnitude = abs(nanos)
    if fmt is QuantityFormat.BINARY_SI:
        if magnitude < 1024 * _NANO or magnitude % _NANO:
            fmt = QuantityFormat.DECIMAL_SI  # printing in binary would round
        else:
            number, power = magnitude // _NANO, 0
            while number % 1024 == 0 and power < 6:
                number //= 1024
                power += 1
            return f"{sign}{number}{_BINARY_BY_POWER.get(power, '')}"
    mantissa, exponent = magnitude, -9
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    while exponent % 3:
        mantissa *= 10
        exponent -= 1
    if fmt is QuantityFormat.DECIMAL_EXPONENT:
        suffix = f"e{exponent}" if exponent else ""
    else:
        suffix = _DECIMAL_BY_EXPONENT.get(exponent, f"e{exponent}")
    return f"{sign}{mantissa}{suffix}"
