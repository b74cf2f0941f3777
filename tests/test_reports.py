"""Cost reports as a pure function: records in, rows out (no Redis, no database)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from faxfleet import reports
from faxfleet.accounting import CallRecord
from faxfleet.reports import ReportError, aggregate, parse_when

T0 = datetime(2030, 1, 8, 10, 0, tzinfo=UTC)


def rec(
    n: int,
    *,
    site: str = "paris",
    tenant: str = "acme",
    number: str = "+12125550100",
    seconds: str = "60",
    cost: str | None = "0.120000",
    currency: str | None = "EUR",
    ok: bool = True,
    connected: bool = True,
    pages: int = 2,
    at: datetime | None = None,
) -> CallRecord:
    start = at or T0 + timedelta(minutes=n)
    return CallRecord(
        call_id=f"fx_{n}:0:1",
        job_id=f"fx_{n}",
        recipient=0,
        attempt=1,
        site=site,
        line="l1",
        number=number,
        destination="+1 US" if number.startswith("+1") else "+33 FR",
        started_at=start,
        ended_at=start + timedelta(seconds=float(seconds)),
        duration_seconds=Decimal(seconds),
        pages_sent=pages,
        pages_confirmed=pages,
        pages_total=pages,
        ok=ok,
        connected=connected,
        cause=None if ok else "busy",
        outcome="ok" if ok else "busy",
        cost=None if cost is None else Decimal(cost),
        currency=currency,
        billed_seconds=None,
        tariff=None,
        tenant=tenant,
        user=None,
        priority=5,
        route_reason=None,
        home_site="paris",
        recorded_at=start,
    )


def test_by_site_counts_and_sums_per_currency() -> None:
    records = [
        rec(1),
        rec(2, seconds="90", cost="0.180000"),
        rec(3, ok=False, connected=False, pages=0, seconds="8", cost="0"),
        rec(4, site="newyork", cost="0.010000", currency="USD"),
        rec(5, site="newyork", cost=None, currency=None),
    ]
    report = aggregate(records, "site")
    paris, newyork = (
        (r for r in report.rows if r.key == "paris"),
        (r for r in report.rows if r.key == "newyork"),
    )
    p, n = next(paris), next(newyork)
    assert [r.key for r in report.rows] == ["newyork", "paris"]
    assert (p.calls, p.connected, p.completed, p.pages) == (3, 2, 2, 4)
    assert p.seconds == Decimal(158) and p.minutes == Decimal("2.63")
    assert p.cost == {"EUR": Decimal("0.300000")}
    assert n.cost == {"USD": Decimal("0.010000")} and n.unpriced == 1
    assert report.total.calls == 5
    assert report.total.cost == {"EUR": Decimal("0.300000"), "USD": Decimal("0.010000")}


def test_range_is_inclusive_exclusive_and_tenant_filtered() -> None:
    records = [rec(0), rec(1, tenant="globex"), rec(2), rec(3)]
    report = aggregate(records, "tenant", start=T0, end=T0 + timedelta(minutes=3), tenant="acme")
    assert [(r.key, r.calls) for r in report.rows] == [("acme", 2)]


def test_by_destination() -> None:
    records = [rec(1), rec(2, number="+33142685300"), rec(3, number="+33142685301")]
    report = aggregate(records, "destination")
    assert [(r.key, r.calls) for r in report.rows] == [("+1 US", 1), ("+33 FR", 2)]


def test_by_day_lists_every_day_of_the_range() -> None:
    records = [rec(1), rec(2, at=T0 + timedelta(days=2))]
    report = aggregate(
        records, "day", start=parse_when("2030-01-07", "from"), end=parse_when("2030-01-11", "to")
    )
    assert [(r.key, r.calls) for r in report.rows] == [
        ("2030-01-07", 0),
        ("2030-01-08", 1),
        ("2030-01-09", 0),
        ("2030-01-10", 1),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-08", datetime(2030, 1, 8, tzinfo=UTC)),
        ("2030-01-08T09:00+01:00", datetime(2030, 1, 8, 8, tzinfo=UTC)),
        ("2030-01-08T09:00Z", datetime(2030, 1, 8, 9, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, "from") == expected


@pytest.mark.parametrize("text", ["2030-01-08T09:00", "yesterday", "2030-13-01", ""])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ReportError, match="from"):
        parse_when(text, "from")


def test_bad_ranges_and_groupings_are_refused() -> None:
    with pytest.raises(ReportError, match="after"):
        aggregate([], "site", start=T0, end=T0)
    with pytest.raises(ReportError, match="not one of"):
        aggregate([], "planet")


def test_csv_and_table() -> None:
    report = aggregate([rec(1), rec(2, cost="0.125000")], "site")
    rows = list(csv.DictReader(io.StringIO(reports.costs_csv(report))))
    assert rows[0]["site"] == "paris" and rows[0]["cost"] == "0.245000"
    assert rows[-1]["site"] == "total" and rows[-1]["currency"] == "EUR"
    head, paris, total = reports.table(report)
    assert head[-1] == "cost EUR" and paris[-1] == "0.25" and total[0] == "total"
    lines = reports.calls_csv_header() + "".join(reports.calls_csv_lines([rec(1)]))
    (call,) = list(csv.DictReader(io.StringIO(lines)))
    assert call["call_id"] == "fx_1:0:1" and call["cost"] == "0.120000"
    assert call["duration_seconds"] == "60"
