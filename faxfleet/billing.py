"""Call billing arithmetic, shared by routing (expected cost) and the scheduler (the
real cost in each call record), so both price a call the same way.

Pure and exact: prices are ``decimal.Decimal`` (never floats), a duration in seconds
becomes whole billed seconds (the first increment, then whole blocks of the next
increment), and a cost is kept to 6 decimal places (half up); rounding to a currency's
minor unit happens only for display (:func:`display`).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, localcontext

MAX_PLACES = 6
SIX_PLACES = Decimal(1).scaleb(-MAX_PLACES)

_MINOR_UNITS = {"BHD": 3, "JOD": 3, "KWD": 3, "OMR": 3, "TND": 3, "JPY": 0, "KRW": 0, "CLP": 0}
"""ISO 4217 currencies whose minor unit is not a hundredth (the rest: 2 places)."""


def seconds_decimal(value: object) -> Decimal:
    """A call duration as an exact Decimal (a float through its shortest repr), >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"seconds must be a number, not {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"seconds {value} is not finite")
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError(f"seconds {value} must be a finite number >= 0")
    return number


def billed_seconds(seconds: object, first_increment: int, next_increment: int) -> int:
    """Seconds billed for a call of ``seconds``: ``first_increment`` for a call of at
    most that long (a zero-second call included), then whole blocks of ``next_increment``
    covering the rest."""
    duration = seconds_decimal(seconds)
    if duration <= first_increment:
        return first_increment
    blocks, rest = divmod(duration - first_increment, next_increment)
    return first_increment + (int(blocks) + (1 if rest else 0)) * next_increment


def call_cost(
    seconds: object,
    *,
    price_per_minute: Decimal,
    connection_fee: Decimal,
    first_increment: int,
    next_increment: int,
) -> Decimal:
    """``connection_fee + billed_seconds * price_per_minute / 60``, exact, to 6 places."""
    billed = billed_seconds(seconds, first_increment, next_increment)
    with localcontext(prec=80, rounding=ROUND_HALF_UP):
        value = connection_fee + billed * price_per_minute / 60
        return value.quantize(SIX_PLACES)


def minor_unit(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (2 unless known otherwise)."""
    return _MINOR_UNITS.get(currency, 2)


def display(amount: Decimal, currency: str) -> str:
    """``amount`` rounded half up to ``currency``'s minor unit, as text (for people)."""
    places = minor_unit(currency)
    with localcontext(prec=80, rounding=ROUND_HALF_UP):
        return format(amount.quantize(Decimal(1).scaleb(-places)), "f")
