"""Cost reports from call records: pure (records in, rows out), shared by the API that
computes them and the CLI that prints them.

A report groups calls ``by`` site, tenant, destination (``+33 FR``) or day (UTC; every
day of the range is a row, so a chart's series has no holes) and counts per group: calls,
connected calls, calls that completed the fax, minutes on the line, pages sent, and the
cost per currency (a fleet whose sites price in different currencies gets one total per
currency, never a sum across them). Money stays exact (6 places) in JSON and CSV; only
the printed table rounds to the currency's minor unit.

Time ranges: ``from`` inclusive, ``to`` exclusive, on the call's start time; an ISO date
(``2030-01-08``, midnight UTC) or a date-time with its zone (``2030-01-08T09:00+01:00``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field, computed_field

from faxfleet import billing
from faxfleet.accounting import CallRecord

GROUPINGS = ("site", "tenant", "destination", "day")
MAX_FILLED_DAYS = 3660
"""Longest range whose empty days a ``by=day`` report lists (ten years)."""


class ReportError(ValueError):
    """A report that cannot be made as asked (an HTTP 422, a CLI usage error)."""


class CostRow(BaseModel):
    key: str
    """The group: a site, tenant, destination or day (``YYYY-MM-DD``); ``total`` for
    the totals."""
    calls: int = 0
    connected: int = 0
    completed: int = 0
    """Calls after which the fax's recipient had every page (the call ended well)."""
    seconds: Decimal = Decimal(0)
    """Time on the line (dialling included), summed."""
    pages: int = 0
    """Pages the far ends confirmed in these calls."""
    cost: dict[str, Decimal] = Field(default_factory=dict)
    """Currency -> cost (6 places)."""
    unpriced: int = 0
    """Calls that could not be priced (their site had no cost table)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def minutes(self) -> Decimal:
        return (self.seconds / 60).quantize(Decimal("0.01"))


class CostReport(BaseModel):
    by: str
    start: datetime | None = None
    end: datetime | None = None
    tenant: str | None = None
    rows: list[CostRow]
    total: CostRow


def parse_when(text: str, name: str) -> datetime:
    """An ISO date (midnight UTC) or a date-time with its zone, as UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{name} {text!r} is not an ISO date (2030-01-08) or date-time with a zone "
            "(2030-01-08T09:00+01:00)"
        ) from None
    if moment.utcoffset() is None:
        raise ReportError(f"{name} {text!r} needs a time zone: end it with Z or an offset")
    return moment.astimezone(UTC)


def check(by: str, start: datetime | None, end: datetime | None) -> None:
    """Refuse an unknown grouping or an empty or backwards range."""
    if by not in GROUPINGS:
        raise ReportError(f"by {by!r} is not one of {', '.join(GROUPINGS)}")
    if start is not None and end is not None and end <= start:
        raise ReportError(f"to ({end.isoformat()}) must be after from ({start.isoformat()})")


def group_of(rec: CallRecord, by: str) -> str:
    if by == "day":
        return rec.started_at.astimezone(UTC).date().isoformat()
    value = getattr(rec, by)
    return str(value) if value is not None else "-"


class GroupSums:
    """One group's running sums in plain Python, turned into a ``CostRow`` once at the
    end: updating a pydantic ``CostRow`` per record made grouping three times slower
    (``bench/report_bench.py``)."""

    __slots__ = ("calls", "completed", "connected", "cost", "pages", "seconds", "unpriced")

    def __init__(self) -> None:
        self.calls = 0
        self.connected = 0
        self.completed = 0
        self.seconds = Decimal(0)
        self.pages = 0
        self.cost: dict[str, Decimal] = {}
        self.unpriced = 0

    def add_call(self, rec: CallRecord) -> None:
        self.add(
            1,
            int(rec.connected),
            int(rec.ok),
            rec.duration_seconds,
            rec.pages_sent,
            None if rec.cost is None or rec.currency is None else rec.currency,
            rec.cost,
            int(rec.cost is None or rec.currency is None),
        )

    def add(
        self,
        calls: int,
        connected: int,
        completed: int,
        seconds: Decimal,
        pages: int,
        currency: str | None,
        cost: Decimal | None,
        unpriced: int,
    ) -> None:
        """Add calls (one, or a group already summed elsewhere, e.g. by PostgreSQL);
        ``cost`` counts only with a ``currency`` (the priced calls' sum)."""
        self.calls += calls
        self.connected += connected
        self.completed += completed
        self.seconds += seconds
        self.pages += pages
        self.unpriced += unpriced
        if currency is not None and cost is not None:
            self.cost[currency] = self.cost.get(currency, Decimal(0)) + cost

    def row(self, key: str) -> CostRow:
        return CostRow(
            key=key,
            calls=self.calls,
            connected=self.connected,
            completed=self.completed,
            seconds=self.seconds,
            pages=self.pages,
            cost={c: self.cost[c] for c in sorted(self.cost)},
            unpriced=self.unpriced,
        )


def report(
    groups: dict[str, GroupSums],
    by: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tenant: str | None = None,
) -> CostReport:
    """The report of groups already summed (by :func:`aggregate`, or by a database's
    ``GROUP BY``): rows sorted by key, the totals, and for ``by=day`` the empty days of
    the range. One function for both, so both give the same report."""
    check(by, start, end)
    total = GroupSums()
    for sums in groups.values():
        for currency, cost in sums.cost.items():
            total.add(0, 0, 0, Decimal(0), 0, currency, cost, 0)
        total.add(
            sums.calls, sums.connected, sums.completed, sums.seconds, sums.pages, None, None, 0
        )
        total.unpriced += sums.unpriced
    rows = {key: sums.row(key) for key, sums in groups.items()}
    if by == "day":
        _fill_days(rows, start, end)
    return CostReport(
        by=by,
        start=start,
        end=end,
        tenant=tenant,
        rows=[rows[k] for k in sorted(rows)],
        total=total.row("total"),
    )


def aggregate(
    records: Iterable[CallRecord],
    by: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    tenant: str | None = None,
) -> CostReport:
    """The report of ``records`` grouped ``by``; records outside [start, end) or of
    another tenant (when one is given) are left out, whatever the store returned."""
    check(by, start, end)
    groups: dict[str, GroupSums] = {}
    for rec in records:
        if start is not None and rec.started_at < start:
            continue
        if end is not None and rec.started_at >= end:
            continue
        if tenant is not None and rec.tenant != tenant:
            continue
        key = group_of(rec, by)
        sums = groups.get(key)
        if sums is None:
            sums = groups[key] = GroupSums()
        sums.add_call(rec)
    return report(groups, by, start=start, end=end, tenant=tenant)


def _fill_days(rows: dict[str, CostRow], start: datetime | None, end: datetime | None) -> None:
    """Empty rows for the days of the range (or between the first and last call)."""
    days = sorted(date.fromisoformat(k) for k in rows)
    first = start.date() if start is not None else (days[0] if days else None)
    last = (
        (end - timedelta(microseconds=1)).date()
        if end is not None
        else (days[-1] if days else None)
    )
    if first is None or last is None or (last - first).days > MAX_FILLED_DAYS:
        return
    day = first
    while day <= last:
        rows.setdefault(day.isoformat(), CostRow(key=day.isoformat()))
        day += timedelta(days=1)


def currencies(report: CostReport) -> list[str]:
    return sorted(report.total.cost)


def table(report: CostReport) -> list[list[str]]:
    """The report as printable rows (header first), costs rounded for people."""
    money = currencies(report)
    head = [report.by, "calls", "connected", "completed", "minutes", "pages"]
    head += [f"cost {c}" for c in money]
    if report.total.unpriced:
        head.append("unpriced")
    lines = [head]
    for row in [*report.rows, report.total]:
        line = [row.key, str(row.calls), str(row.connected), str(row.completed)]
        line += [str(row.minutes), str(row.pages)]
        line += [billing.display(row.cost.get(c, Decimal(0)), c) for c in money]
        if report.total.unpriced:
            line.append(str(row.unpriced))
        lines.append(line)
    return lines


def costs_csv(report: CostReport) -> str:
    """One line per group and currency (exact costs), then the totals (key ``total``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            report.by,
            "calls",
            "connected",
            "completed",
            "seconds",
            "pages",
            "currency",
            "cost",
            "unpriced",
        ]
    )
    for row in [*report.rows, report.total]:
        common = [row.key, row.calls, row.connected, row.completed, row.seconds, row.pages]
        if not row.cost:
            writer.writerow([*common, "", "", row.unpriced])
        for currency in sorted(row.cost):
            writer.writerow([*common, currency, format(row.cost[currency], "f"), row.unpriced])
    return out.getvalue()


CALL_COLUMNS = (
    "call_id",
    "job_id",
    "recipient",
    "attempt",
    "tenant",
    "user",
    "priority",
    "site",
    "line",
    "number",
    "destination",
    "started_at",
    "ended_at",
    "duration_seconds",
    "pages_sent",
    "pages_confirmed",
    "pages_total",
    "ok",
    "connected",
    "outcome",
    "cause",
    "billed_seconds",
    "cost",
    "currency",
    "price_per_minute",
    "connection_fee",
    "first_increment",
    "next_increment",
    "route_reason",
    "home_site",
)


def calls_csv_header() -> str:
    return ",".join(CALL_COLUMNS) + "\n"


def calls_csv_lines(records: Iterable[CallRecord]) -> Iterable[str]:
    """The raw records as CSV lines (no header), in the order given."""
    for rec in records:
        out = io.StringIO()
        t = rec.tariff
        values = {
            **rec.model_dump(mode="json", exclude={"tariff"}),
            "cost": "" if rec.cost is None else format(rec.cost, "f"),
            "duration_seconds": format(rec.duration_seconds, "f"),
            "price_per_minute": t.price_per_minute if t else "",
            "connection_fee": t.connection_fee if t else "",
            "first_increment": t.first_increment if t else "",
            "next_increment": t.next_increment if t else "",
        }
        csv.writer(out, lineterminator="\n").writerow(
            ["" if values.get(c) is None else values[c] for c in CALL_COLUMNS]
        )
        yield out.getvalue()
