"""Cost tables: what a call from one site costs, by destination prefix and time band.

Pure: tables are parsed from strings and answer lookups in memory; storing them (Redis)
is the routing service's business. The rules:

File format
    UTF-8 CSV, comma-separated, with exactly this header line::

        prefix,price_per_minute,connection_fee,first_increment,next_increment,currency,days,start,end,description

    - ``prefix``: E.164 digits without "+", 1 to 15 digits, not starting with 0
      ("33", "331", "1212"); or "*", a catch-all matching every number.
    - ``price_per_minute``, ``connection_fee``: plain decimals >= 0 ("0.12", "3"), at
      most 6 decimal places; kept as ``decimal.Decimal``, never as floats.
    - ``first_increment``, ``next_increment``: whole seconds >= 1.
    - ``currency``: ISO 4217, three upper-case letters; one currency per table.
    - ``days``: day names and ranges, comma-separated, case-insensitive: ``mon-fri``,
      ``sat,sun``, ``mon,wed-fri``, ``mon-sun`` or ``*`` (every day). A range runs
      forwards within one week (``fri-mon`` is refused: write ``fri-sun,mon``).
    - ``start``, ``end``: ``HH:MM`` in the site's local time (the table's ``timezone``),
      ``start`` < ``end``, ``end`` may be ``24:00``; a band is half-open,
      [start, end). Both empty means all day. A band crossing midnight is two rows.
    - ``description``: free text, optional; surrounding spaces are dropped, control
      characters and line breaks are refused.

    Spaces around fields are ignored, blank lines are skipped and a UTF-8 byte order
    mark is tolerated. At most ``MAX_ROWS`` (100,000) rows.

Validation
    ``parse_csv`` reports every error of the file at once in ``CostTableError.errors``,
    each prefixed with its line number ("line 7: price_per_minute '1,2' is not a
    decimal"), and builds no table if there is any: wrong or missing header, wrong
    column count, bad values, two rows with the same prefix, days and band (duplicate),
    two rows of one prefix whose bands overlap on a common day, a currency other than
    the first row's, no rows, too many rows (rows past the limit are counted, not
    checked), an unknown IANA timezone. Building a ``CostTable`` directly (or from
    JSON) applies the same checks, naming rows as ``tariffs[i]`` (``row i`` in JSON).

Lookup (``CostTable.lookup(e164, at)``)
    ``at`` must be timezone-aware; it is converted to the table's timezone, and the
    local weekday and minute select the band (so bands follow daylight saving time).
    The number's prefixes are tried from the longest to the shortest, then "*": the
    first prefix with a row whose days and band contain that local time gives the
    tariff. A longer prefix that has rows, but none in force at that time, does not
    block a shorter one: lookup falls back to the next shorter prefix that has a row
    in force. ``None`` means no row applies: the site cannot dial that destination at
    that time. ``can_dial(e164)`` says whether any row's prefix matches the number at
    any time. Lookups walk a dict keyed by prefix (at most 16 probes), never the rows.

Time zone
    A table's ``timezone`` is the zone its bands are evaluated in. The rows do not
    depend on it: ``in_timezone(zone)`` gives the same table evaluated in another zone.
    The routing service always evaluates a site's table in the site's current time zone
    (``routing.cost_store.CostStore.current``), so changing the site's zone moves its
    bands without a new import; the zone stored with a version is the one it was
    imported in, kept for the record.

Cost (``CostTable.call_cost(e164, at, seconds)``)
    The whole call is billed at the tariff in force when it starts (``at``), even if it
    runs into another band. billed_seconds is ``first_increment`` for a call of at most
    ``first_increment`` seconds (a zero-second call included), else ``first_increment``
    plus whole blocks of ``next_increment`` covering the rest. Cost is
    ``connection_fee + billed_seconds * price_per_minute / 60``, computed exactly and
    rounded to 6 decimal places, half up.

Round trips
    ``to_csv`` writes the canonical form (days as ``mon-fri``/``sat,sun``, all-day bands
    as empty start and end, rows in table order) and ``parse_csv(to_csv(t), ...)``
    equals ``t``. ``table_to_json``/``table_from_json`` do the same for storage, with
    the row values as the same strings as in the CSV, checked by the same code.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from faxfleet import billing
from faxfleet.messages import TariffTerms

__all__ = [
    "HEADER",
    "MAX_ROWS",
    "CostTable",
    "CostTableError",
    "Tariff",
    "format_clock",
    "format_days",
    "parse_csv",
    "parse_days",
    "table_from_json",
    "table_to_json",
    "to_csv",
]

HEADER: tuple[str, ...] = (
    "prefix",
    "price_per_minute",
    "connection_fee",
    "first_increment",
    "next_increment",
    "currency",
    "days",
    "start",
    "end",
    "description",
)
MAX_ROWS = 100_000
JSON_FORMAT = "faxfleet.cost-table/1"

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS: frozenset[int] = frozenset(range(7))
_MEMO_LIMIT = 65536
"""Entries a table remembers per kind of answer before starting afresh."""
DAY_MINUTES = 24 * 60
MAX_PLACES = 6

_PREFIX = re.compile(r"[0-9]{1,15}")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_E164 = re.compile(r"\+([1-9][0-9]{0,14})")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # Unicode Cc, Zl and Zp


class CostTableError(ValueError):
    """A cost table was refused; ``errors`` lists every reason, one string each."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        shown = self.errors[:20]
        more = len(self.errors) - len(shown)
        text = "\n".join(f"  {e}" for e in shown)
        if more:
            text += f"\n  ... and {more} more"
        super().__init__(f"cost table refused, {len(self.errors)} error(s):\n{text}")


# --------------------------------------------------------------------------- text forms


def format_days(days: Iterable[int]) -> str:
    """Canonical text of a set of weekdays (0 = Monday): ``mon-fri``, ``sat,sun``."""
    ordered = sorted(set(days))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{DAY_NAMES[ordered[i]]}-{DAY_NAMES[ordered[j]]}")
        else:
            parts.extend(DAY_NAMES[d] for d in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


def format_clock(minute: int) -> str:
    """``HH:MM`` of a minute of the day (1440 is ``24:00``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _day(token: str, text: str) -> int:
    try:
        return DAY_NAMES.index(token)
    except ValueError:
        raise ValueError(
            f"days {text!r}: {token!r} is not a day ({', '.join(DAY_NAMES)} or *)"
        ) from None


def parse_days(text: str) -> frozenset[int]:
    """Weekdays (0 = Monday) of a ``days`` field; raises ``ValueError`` saying why not."""
    spec = text.strip().lower()
    if spec == "*":
        return ALL_DAYS
    if not spec:
        raise ValueError("days is empty (write * for every day)")
    days: set[int] = set()
    for raw in spec.split(","):
        token = raw.strip()
        if "-" in token:
            first, _, last = token.partition("-")
            a, b = _day(first.strip(), text), _day(last.strip(), text)
            if a > b:
                head = "sun" if a == 6 else f"{DAY_NAMES[a]}-sun"
                tail = "mon" if b == 0 else f"mon-{DAY_NAMES[b]}"
                raise ValueError(
                    f"days {text!r}: range {token!r} runs backwards (write '{head},{tail}')"
                )
            days.update(range(a, b + 1))
        else:
            days.add(_day(token, text))
    return frozenset(days)


def _parse_clock(name: str, text: str) -> int:
    match = _CLOCK.fullmatch(text)
    if match:
        hours, minutes = int(match[1]), int(match[2])
        if minutes < 60 and (hours < 24 or (hours == 24 and minutes == 0)):
            return hours * 60 + minutes
    raise ValueError(f"{name} {text!r} is not a time (HH:MM, from 00:00 to 24:00)")


def _parse_band(start: str, end: str) -> tuple[int, int]:
    if not start and not end:
        return 0, DAY_MINUTES
    if not start or not end:
        raise ValueError("start and end must both be given, or both be empty for all day")
    errors = []
    lo = hi = None
    try:
        lo = _parse_clock("start", start)
    except ValueError as exc:
        errors.append(str(exc))
    try:
        hi = _parse_clock("end", end)
    except ValueError as exc:
        errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))
    assert lo is not None and hi is not None
    if lo >= hi:
        raise ValueError(
            f"band {start}-{end}: start must be before end (write a band that crosses "
            "midnight as two rows, e.g. 22:00-24:00 and 00:00-06:00)"
        )
    return lo, hi


def _parse_prefix(text: str) -> str:
    if text == "*":
        return text
    if text.startswith("+"):
        raise ValueError(f"prefix {text!r} must be written without '+'")
    if not _PREFIX.fullmatch(text):
        raise ValueError(f"prefix {text!r} must be 1 to 15 digits, or * for every number")
    if text.startswith("0"):
        raise ValueError(f"prefix {text!r} cannot start with 0 (no country code does)")
    return text


def _parse_money(name: str, text: str) -> Decimal:
    if not _DECIMAL.fullmatch(text):
        if _DECIMAL.fullmatch(text.removeprefix("-")):
            raise ValueError(f"{name} {text!r} must be >= 0")
        raise ValueError(f"{name} {text!r} is not a decimal (write e.g. 0.12)")
    value = Decimal(text)
    if _places(value) > MAX_PLACES:
        raise ValueError(f"{name} {text!r} has more than {MAX_PLACES} decimal places")
    return value


def _parse_increment(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text) or int(text) < 1:
        raise ValueError(f"{name} {text!r} is not a whole number of seconds >= 1")
    return int(text)


def _parse_currency(text: str) -> str:
    if not _CURRENCY.fullmatch(text):
        raise ValueError(
            f"currency {text!r} is not an ISO 4217 code of three upper-case letters (e.g. EUR)"
        )
    return text


def _check_description(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("description contains a control character or a line break")
    return text.strip()


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# --------------------------------------------------------------------------- tariffs


def _money(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{name} must be a Decimal (or an int), not {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError(f"{name} {value} must be a finite decimal >= 0")
    if _places(number) > MAX_PLACES:
        raise ValueError(f"{name} {value} has more than {MAX_PLACES} decimal places")
    return number.copy_abs() if number.is_zero() else number


def _seconds(value: object) -> Decimal:
    if isinstance(value, str):
        raise TypeError("seconds must be a number, not str")
    return billing.seconds_decimal(value)


@dataclass(frozen=True, slots=True)
class Tariff:
    """One row of a cost table.

    ``days`` holds weekday numbers (0 = Monday, 6 = Sunday); ``start`` and ``end`` are
    minutes since local midnight, the band being [start, end) with 0-1440 for all day.
    """

    prefix: str
    price_per_minute: Decimal
    connection_fee: Decimal
    first_increment: int
    next_increment: int
    currency: str
    days: frozenset[int] = ALL_DAYS
    start: int = 0
    end: int = DAY_MINUTES
    description: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.prefix, str):
            raise TypeError("prefix must be a string")
        _parse_prefix(self.prefix)
        set_(self, "price_per_minute", _money("price_per_minute", self.price_per_minute))
        set_(self, "connection_fee", _money("connection_fee", self.connection_fee))
        for name in ("first_increment", "next_increment"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} {value!r} must be a whole number of seconds >= 1")
        if not isinstance(self.currency, str):
            raise TypeError("currency must be a string")
        _parse_currency(self.currency)
        days = frozenset(self.days)
        if not days or not days <= ALL_DAYS:
            raise ValueError(f"days {sorted(days)} must be a non-empty set of 0 (mon) to 6 (sun)")
        set_(self, "days", days)
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be minutes since midnight (an int)")
        if not 0 <= self.start < self.end <= DAY_MINUTES:
            raise ValueError(
                f"band {self.start}-{self.end} must satisfy 0 <= start < end <= {DAY_MINUTES}"
            )
        if not isinstance(self.description, str):
            raise TypeError("description must be a string")
        set_(self, "description", _check_description(self.description))

    @property
    def band(self) -> str:
        """The band as ``HH:MM-HH:MM`` (``00:00-24:00`` when all day)."""
        return f"{format_clock(self.start)}-{format_clock(self.end)}"

    @property
    def days_text(self) -> str:
        return format_days(self.days)

    def covers(self, weekday: int, minute: int) -> bool:
        """Whether this row is in force at a local weekday (0 = Monday) and minute."""
        return weekday in self.days and self.start <= minute < self.end

    def billed_seconds(self, seconds: float | int | Decimal) -> int:
        """Seconds billed for a call of ``seconds``: the first increment, then blocks."""
        return billing.billed_seconds(_seconds(seconds), self.first_increment, self.next_increment)

    def cost(self, seconds: float | int | Decimal) -> Decimal:
        """What a call of ``seconds`` costs at this tariff, to 6 decimal places (the
        arithmetic is :func:`faxfleet.billing.call_cost`, shared with the scheduler)."""
        return billing.call_cost(
            _seconds(seconds),
            price_per_minute=self.price_per_minute,
            connection_fee=self.connection_fee,
            first_increment=self.first_increment,
            next_increment=self.next_increment,
        )

    def terms(self) -> TariffTerms:
        """The price fields a message carries to the scheduler (which cannot import
        routing) so it prices the real call with the same arithmetic."""
        return TariffTerms(
            prefix=self.prefix,
            price_per_minute=format(self.price_per_minute, "f"),
            connection_fee=format(self.connection_fee, "f"),
            first_increment=self.first_increment,
            next_increment=self.next_increment,
            currency=self.currency,
            description=self.description,
        )

    def csv_fields(self) -> list[str]:
        """The row's ten fields as ``to_csv`` writes them."""
        all_day = self.start == 0 and self.end == DAY_MINUTES
        return [
            self.prefix,
            format(self.price_per_minute, "f"),
            format(self.connection_fee, "f"),
            str(self.first_increment),
            str(self.next_increment),
            self.currency,
            self.days_text,
            "" if all_day else format_clock(self.start),
            "" if all_day else format_clock(self.end),
            self.description,
        ]


def _tariff_from_fields(fields: list[str]) -> tuple[Tariff | None, list[str]]:
    """Parse one row's ten fields: the tariff, or every problem of the row."""
    values = [f.strip() for f in fields]
    errors: list[str] = []

    def attempt(parse: Callable[..., Any], *args: str) -> Any:
        try:
            return parse(*args)
        except ValueError as exc:
            errors.append(str(exc))
            return None

    prefix = attempt(_parse_prefix, values[0])
    price = attempt(_parse_money, "price_per_minute", values[1])
    fee = attempt(_parse_money, "connection_fee", values[2])
    first = attempt(_parse_increment, "first_increment", values[3])
    step = attempt(_parse_increment, "next_increment", values[4])
    currency = attempt(_parse_currency, values[5])
    days = attempt(parse_days, values[6])
    band = attempt(_parse_band, values[7], values[8])
    description = attempt(_check_description, fields[9])
    if errors:
        return None, errors
    try:
        return (
            Tariff(
                prefix=prefix,
                price_per_minute=price,
                connection_fee=fee,
                first_increment=first,
                next_increment=step,
                currency=currency,
                days=days,
                start=band[0],
                end=band[1],
                description=description,
            ),
            [],
        )
    except (TypeError, ValueError) as exc:  # pragma: no cover - the parsers above agree
        return None, [str(exc)]


# --------------------------------------------------------------------------- table checks

_Error = tuple[int, str]  # (sort key: line or row number, message)
_LAST = 1 << 62  # sort key of errors about the whole table that come after the rows
_Item = tuple[int, str, Tariff]  # (sort key, "line 7" / "row 7", tariff)


def _meta_errors(site: object, timezone: object, version: object) -> list[_Error]:
    errors: list[_Error] = []
    if not isinstance(site, str) or not site.strip():
        errors.append((0, f"site {site!r} must be a non-empty name"))
    if not isinstance(timezone, str):
        errors.append((0, f"timezone {timezone!r} must be an IANA time zone name"))
    else:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                (0, f"timezone {timezone!r} is not a known IANA time zone (e.g. Europe/Paris)")
            )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        errors.append((0, f"version {version!r} must be an integer >= 1"))
    return errors


def _currency_errors(
    currencies: list[tuple[int, str, str]], currency: str | None = None
) -> list[_Error]:
    """Every row in one currency: ``currency``, or else the first row's.

    ``currencies`` holds (key, where, currency) of every row whose currency field is
    well formed, including rows refused for other reasons.
    """
    if not currencies:
        return []
    _, where0, first = currencies[0]
    reference = currency if currency is not None else first
    origin = "the table's" if currency is not None else f"that of {where0}"
    return [
        (
            key,
            f"{where}: currency {code} differs from {origin} ({reference}); "
            "a table uses one currency",
        )
        for key, where, code in currencies
        if code != reference
    ]


def _table_errors(items: list[_Item]) -> list[_Error]:
    """No duplicate rows, no overlapping bands within a prefix and a day."""
    errors: list[_Error] = []
    seen: dict[tuple[str, frozenset[int], int, int], str] = {}
    by_prefix: dict[str, list[_Item]] = {}
    for item in items:
        key, where, t = item
        identity = (t.prefix, t.days, t.start, t.end)
        if identity in seen:
            errors.append(
                (
                    key,
                    f"{where}: duplicate of {seen[identity]} "
                    f"(prefix {t.prefix}, days {t.days_text}, {t.band})",
                )
            )
            continue
        seen[identity] = where
        by_prefix.setdefault(t.prefix, []).append(item)

    for prefix, group in by_prefix.items():
        if len(group) < 2:
            continue
        pairs: dict[tuple[int, int], set[int]] = {}
        for day in range(7):
            spans = sorted(
                (t.start, t.end, i) for i, (_, _, t) in enumerate(group) if day in t.days
            )
            reach_end, reach_i = -1, -1
            for start, end, i in spans:
                if start < reach_end:
                    pairs.setdefault((min(i, reach_i), max(i, reach_i)), set()).add(day)
                if end > reach_end:
                    reach_end, reach_i = end, i
        for (a, b), days in pairs.items():
            _, where_a, ta = group[a]
            key_b, where_b, tb = group[b]
            errors.append(
                (
                    key_b,
                    f"{where_b}: prefix {prefix} band {tb.band} on {format_days(days)} "
                    f"overlaps {where_a} ({ta.band})",
                )
            )
    return errors


@dataclass
class _Collected:
    items: list[_Item] = field(default_factory=list)
    errors: list[_Error] = field(default_factory=list)
    currencies: list[tuple[int, str, str]] = field(default_factory=list)
    count: int = 0
    first_excess: tuple[int, str] | None = None


def _collect(records: Iterable[tuple[int, str, object]], errors: list[_Error]) -> _Collected:
    """Parse data records (key, where, fields) into tariffs, row errors and counts."""
    got = _Collected(errors=errors)
    for key, where, fields in records:
        got.count += 1
        if got.count > MAX_ROWS:
            if got.first_excess is None:
                got.first_excess = (key, where)
            continue
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            got.errors.append((key, f"{where}: must be a list of {len(HEADER)} strings"))
            continue
        if len(fields) != len(HEADER):
            hint = ' (quote a field that contains commas, e.g. "sat,sun")'
            extra = hint if len(fields) > len(HEADER) and where.startswith("line") else ""
            got.errors.append(
                (key, f"{where}: expected {len(HEADER)} columns, got {len(fields)}{extra}")
            )
            continue
        code = fields[5].strip()
        if _CURRENCY.fullmatch(code):
            got.currencies.append((key, where, code))
        tariff, problems = _tariff_from_fields(fields)
        if tariff is None:
            got.errors.extend((key, f"{where}: {p}") for p in problems)
        else:
            got.items.append((key, where, tariff))
    return got


def _finish(
    got: _Collected,
    *,
    site: str,
    timezone: str,
    version: int,
    currency: str | None = None,
) -> CostTable:
    errors = _meta_errors(site, timezone, version) + got.errors
    errors += _currency_errors(got.currencies, currency)
    errors += _table_errors(got.items)
    if got.first_excess is not None:
        key, where = got.first_excess
        errors.append(
            (key, f"{where}: the table has {got.count:,} rows, more than the limit of {MAX_ROWS:,}")
        )
    if got.count == 0:
        errors.append((_LAST, "the table has no rows"))
    if errors:
        errors.sort(key=lambda e: e[0])
        raise CostTableError(message for _, message in errors)
    tariffs = tuple(t for _, _, t in got.items)
    return CostTable._trusted(
        site=site,
        timezone=timezone,
        currency=currency if currency is not None else tariffs[0].currency,
        version=version,
        tariffs=tariffs,
    )


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class CostTable:
    """A site's validated cost table, indexed by prefix for lookups.

    Built by ``parse_csv``, ``table_from_json`` or directly (the same checks apply:
    ``CostTableError`` if any fails). Equality compares the fields, not the index.
    """

    site: str
    timezone: str
    currency: str
    version: int
    tariffs: tuple[Tariff, ...]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _index: dict[str, tuple[tuple[Tariff, ...], ...]] = field(init=False, repr=False, compare=False)
    _lengths: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tariffs = tuple(self.tariffs)
        object.__setattr__(self, "tariffs", tariffs)
        errors = _meta_errors(self.site, self.timezone, self.version)
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            errors.append((0, f"currency {self.currency!r} is not an ISO 4217 code (e.g. EUR)"))
        if not tariffs:
            errors.append((0, "the table has no rows"))
        if len(tariffs) > MAX_ROWS:
            errors.append((0, f"the table has {len(tariffs):,} rows, more than {MAX_ROWS:,}"))
        items: list[_Item] = []
        for i, tariff in enumerate(tariffs):
            if isinstance(tariff, Tariff):
                items.append((i, f"tariffs[{i}]", tariff))
            else:
                errors.append((i, f"tariffs[{i}]: {type(tariff).__name__} is not a Tariff"))
        if isinstance(self.currency, str):
            currencies = [(key, where, t.currency) for key, where, t in items]
            errors += _currency_errors(currencies, self.currency)
        errors += _table_errors(items)
        if errors:
            errors.sort(key=lambda e: e[0])
            raise CostTableError(message for _, message in errors)
        self._build()

    @classmethod
    def _trusted(
        cls, *, site: str, timezone: str, currency: str, version: int, tariffs: tuple[Tariff, ...]
    ) -> CostTable:
        """A table from values already checked by the parser (skips checking twice)."""
        table = object.__new__(cls)
        for name, value in (
            ("site", site),
            ("timezone", timezone),
            ("currency", currency),
            ("version", version),
            ("tariffs", tariffs),
        ):
            object.__setattr__(table, name, value)
        table._build()
        return table

    def in_timezone(self, timezone: str) -> CostTable:
        """The same table (rows, site, currency, version) with its bands evaluated in
        ``timezone``; ``CostTableError`` if that is not a known IANA time zone."""
        if timezone == self.timezone:
            return self
        errors = _meta_errors(self.site, timezone, self.version)
        if errors:
            raise CostTableError(message for _, message in errors)
        return CostTable._trusted(
            site=self.site,
            timezone=timezone,
            currency=self.currency,
            version=self.version,
            tariffs=self.tariffs,
        )

    def _build(self) -> None:
        per_day: dict[str, list[list[Tariff]]] = {}
        for tariff in self.tariffs:
            days = per_day.setdefault(tariff.prefix, [[] for _ in range(7)])
            for day in tariff.days:
                days[day].append(tariff)
        index = {
            prefix: tuple(tuple(sorted(rows, key=lambda t: t.start)) for rows in days)
            for prefix, days in per_day.items()
        }
        lengths = sorted({len(p) for p in index if p != "*"}, reverse=True)
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_lengths", tuple(lengths))
        # Placement asks about the same waiting numbers on every pass: remember answers.
        object.__setattr__(self, "_matches", {})
        object.__setattr__(self, "_floors", {})

    def _prefixes(self, e164: str) -> tuple[str, ...]:
        """The table's prefixes matching ``e164``, longest first, "*" last."""
        found = self._matches.get(e164)
        if found is not None:
            return found
        match = _E164.fullmatch(e164) if isinstance(e164, str) else None
        if match is None:
            raise ValueError(f"{e164!r} is not an E.164 number ('+' then up to 15 digits)")
        digits = match[1]
        found = tuple(
            digits[:length]
            for length in self._lengths
            if length <= len(digits) and digits[:length] in self._index
        ) + (("*",) if "*" in self._index else ())
        if len(self._matches) >= _MEMO_LIMIT:
            self._matches.clear()
        self._matches[e164] = found
        return found

    def floor_cost(self, e164: str, seconds: float) -> Decimal | None:
        """The least a call of ``seconds`` to ``e164`` can cost here, whatever the band
        (None: not dialable). Placement skips looking for a cheaper band at a site whose
        floor is no better than what the fax can already have."""
        prefixes = self._prefixes(e164)
        key = (prefixes, seconds)
        if key in self._floors:
            return self._floors[key]
        costs = [
            tariff.cost(seconds)
            for prefix in prefixes
            for rows in self._index[prefix]
            for tariff in rows
        ]
        floor = min(costs) if costs else None
        if len(self._floors) >= _MEMO_LIMIT:
            self._floors.clear()
        self._floors[key] = floor
        return floor

    def _local(self, at: datetime) -> tuple[int, int]:
        if not isinstance(at, datetime) or at.utcoffset() is None:
            raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
        local = at.astimezone(self._zone)
        return local.weekday(), local.hour * 60 + local.minute

    def lookup(self, e164: str, at: datetime) -> Tariff | None:
        """The tariff for a call to ``e164`` starting at ``at``, or None if none applies.

        Longest prefix first; a prefix with no row in force at that local time falls
        back to the next shorter one (see the module docstring).
        """
        weekday, minute = self._local(at)
        for prefix in self._prefixes(e164):
            for tariff in self._index[prefix][weekday]:
                if tariff.start > minute:
                    break
                if minute < tariff.end:
                    return tariff
        return None

    def call_cost(self, e164: str, at: datetime, seconds: float) -> Decimal | None:
        """Cost of a call of ``seconds`` to ``e164`` starting at ``at`` (None: not dialable).

        The whole call is billed at the tariff in force when it starts.
        """
        tariff = self.lookup(e164, at)
        return None if tariff is None else tariff.cost(seconds)

    def can_dial(self, e164: str) -> bool:
        """Whether any row's prefix matches ``e164``, at whatever time."""
        return bool(self._prefixes(e164))

    def band_starts(self, e164: str, after: datetime, until: datetime) -> list[datetime]:
        """Moments in (``after``, ``until``] when the tariff for ``e164`` may change: the
        starts and ends of its rows' bands, in the table's local time, as UTC times.

        Placement prices a fax at these moments too, so a fax with time to spare can wait
        for a cheaper band.
        """
        if until <= after:
            return []
        prefixes = self._prefixes(e164)
        start_local = after.astimezone(self._zone)
        end_local = until.astimezone(self._zone)
        found: set[datetime] = set()
        day = start_local.date()
        while day <= end_local.date():
            weekday = day.weekday()
            for prefix in prefixes:
                for tariff in self._index[prefix][weekday]:
                    for minute in (tariff.start, tariff.end):
                        if minute >= DAY_MINUTES:
                            continue
                        local = datetime.combine(
                            day, time(minute // 60, minute % 60), tzinfo=self._zone
                        )
                        moment = local.astimezone(UTC)
                        if after < moment <= until:
                            found.add(moment)
            day += timedelta(days=1)
        return sorted(found)


# --------------------------------------------------------------------------- CSV and JSON


def _csv_records(text: str, errors: list[_Error]) -> Iterator[tuple[int, str, list[str]]]:
    """Data records of a CSV text with their line numbers; header problems go to errors."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header_seen = False
    end_of_previous = 0
    line = 1
    try:
        for fields in reader:
            line = end_of_previous + 1
            end_of_previous = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if not header_seen:
                header_seen = True
                if fields == list(HEADER):
                    continue
                if fields[0].strip().lower() != "prefix":
                    errors.append((line, f"line {line}: missing header; {_expected_header()}"))
                    yield line, f"line {line}", fields
                else:
                    got = ",".join(fields)
                    errors.append(
                        (line, f"line {line}: wrong header {got!r}; {_expected_header()}")
                    )
                continue
            yield line, f"line {line}", fields
    except csv.Error as exc:
        line = end_of_previous + 1
        errors.append((line, f"line {line}: unreadable CSV ({exc}); reading stopped here"))
    if not header_seen:
        errors.append((1, f"line 1: missing header; {_expected_header()}"))


def _expected_header() -> str:
    return f"the first line must be exactly {','.join(HEADER)!r}"


def parse_csv(text: str, *, site: str, timezone: str, version: int = 1) -> CostTable:
    """Parse and check a cost table; ``CostTableError`` lists every problem of the file."""
    if not isinstance(text, str):
        raise TypeError(f"parse_csv takes the CSV as str, not {type(text).__name__}")
    errors: list[_Error] = []
    got = _collect(_csv_records(text, errors), errors)
    return _finish(
        got,
        site=site,
        timezone=timezone,
        version=version,
    )


def to_csv(table: CostTable) -> str:
    """The table as CSV in canonical form (``parse_csv`` gives the same table back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(t.csv_fields() for t in table.tariffs)
    return out.getvalue()


def table_to_json(table: CostTable) -> str:
    """The table as one JSON document (rows as their CSV field strings)."""
    return json.dumps(
        {
            "format": JSON_FORMAT,
            "site": table.site,
            "timezone": table.timezone,
            "currency": table.currency,
            "version": table.version,
            "columns": list(HEADER),
            "rows": [t.csv_fields() for t in table.tariffs],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def table_from_json(text: str | bytes) -> CostTable:
    """A table back from ``table_to_json``; checked like a CSV file (``CostTableError``)."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise CostTableError([f"not a JSON document: {exc}"]) from None
    if not isinstance(data, dict):
        raise CostTableError(["a stored cost table is a JSON object"])
    problems = []
    if data.get("format") != JSON_FORMAT:
        problems.append(f"format {data.get('format')!r} is not {JSON_FORMAT!r}")
    if data.get("columns") != list(HEADER):
        problems.append(f"columns must be {list(HEADER)}")
    rows = data.get("rows")
    if not isinstance(rows, list):
        problems.append("rows must be a list")
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        problems.append(f"currency {currency!r} is not an ISO 4217 code")
    if problems:
        raise CostTableError(problems)
    assert isinstance(rows, list)

    got = _collect(((i, f"row {i}", row) for i, row in enumerate(rows)), [])
    return _finish(
        got,
        site=data.get("site"),  # type: ignore[arg-type] - checked in _finish
        timezone=data.get("timezone"),  # type: ignore[arg-type]
        version=data.get("version"),  # type: ignore[arg-type]
        currency=currency,
    )
