"""The ways of making a cost report agree, to the last decimal: PostgreSQL's ``GROUP BY``
(``scheduler/accounting/sql_report.py``), the journal's (``JournalCalls.cost_report``),
the old way (every record read back from PostgreSQL, then grouped) and the pure
``faxfleet.reports.aggregate`` over the generated records. One seeded set of records
(sites, tenants, destinations, three currencies, unpriced calls, calls on no line, days
across DST changes and month ends, calls exactly on the range edges) is journalled in a
private Redis, copied by the copier into a private PostgreSQL, and reported every way,
for every grouping, range and tenant."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from sqlalchemy import Engine, delete

from faxfleet import keys, reports
from faxfleet.accounting import CallRecord
from faxfleet.settings import Settings
from scheduler.accounting import db
from scheduler.accounting.copier import Copier
from scheduler.accounting.stores import DatabaseCalls, JournalCalls
from tests.pg_cluster import PgCluster

SITES = ["paris", "newyork", "london", "tokyo"]
TENANTS = ["acme", "globex", "initech"]
NUMBERS = {"+33 FR": "+33142000000", "+1 US": "+12125550100", "+44 GB": "+442071000000"}
CURRENCIES = ["EUR", "USD", "GBP"]
EDGES = [
    datetime(2030, 3, 10, 7, 0, tzinfo=UTC),  # US clocks change (2am EST)
    datetime(2030, 3, 31, 1, 0, tzinfo=UTC),  # EU clocks change
    datetime(2030, 4, 1, tzinfo=UTC),  # month end
    datetime(2030, 10, 27, 1, 0, tzinfo=UTC),  # EU clocks go back
    datetime(2030, 11, 1, tzinfo=UTC),
]
"""Calls cluster around these moments (DST changes in UTC, month ends)."""


def _record(n: int, rng: random.Random, start: datetime) -> CallRecord:
    connected = rng.random() < 0.75
    ok = connected and rng.random() < 0.85
    seconds = Decimal(rng.randint(0, 400_000)) / 1000 if connected else Decimal("3.217")
    kind = rng.random()
    if kind < 0.12:
        cost, currency = None, None  # a site without a cost table
    elif kind < 0.16:
        cost, currency = None, rng.choice(CURRENCIES)  # currency but no price: unpriced
    elif not connected:
        cost, currency = Decimal("0.000000"), rng.choice(CURRENCIES)
    else:
        cost = (Decimal(rng.randint(0, 9_999_999)) / 1_000_000).quantize(Decimal("0.000001"))
        currency = rng.choice(CURRENCIES)
    destination = rng.choice(list(NUMBERS))
    pages = rng.randint(0, 6) if connected else 0
    return CallRecord(
        call_id=f"fx_{n}:0:1",
        job_id=f"fx_{n}",
        recipient=0,
        attempt=1,
        site=rng.choice(SITES),
        line=None if rng.random() < 0.1 else f"l{rng.randint(1, 3)}",
        number=NUMBERS[destination],
        destination=destination,
        started_at=start,
        ended_at=start + timedelta(seconds=float(seconds)),
        duration_seconds=seconds.quantize(Decimal("0.001")),
        pages_sent=pages,
        pages_confirmed=pages,
        pages_total=6,
        ok=ok,
        connected=connected,
        cause=None if ok else "busy",
        outcome="ok" if ok else "busy",
        cost=cost,
        currency=currency,
        billed_seconds=None,
        tariff=None,
        tenant=rng.choice(TENANTS),
        user=None,
        priority=5,
        route_reason=None,
        home_site="paris",
        recorded_at=start + timedelta(seconds=float(seconds) + 0.01),
    )


def records(count: int = 1500, seed: int = 20301027) -> list[CallRecord]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        if n < len(EDGES) * 3:  # exactly on an edge, and a microsecond either side
            start = EDGES[n // 3] + timedelta(microseconds=(n % 3) - 1)
        else:
            near = rng.choice(EDGES)
            start = near + timedelta(seconds=rng.uniform(-3 * 86400, 3 * 86400))
        out.append(_record(n, rng, start))
    return out


RECORDS = records()
RANGES: list[tuple[datetime | None, datetime | None]] = [
    (None, None),
    (datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC)),
    (EDGES[1], EDGES[3]),
    (EDGES[0] + timedelta(hours=5, minutes=30), EDGES[2] + timedelta(hours=-1)),
    (datetime(2030, 3, 31, 0, 30, tzinfo=UTC), None),
    (None, datetime(2030, 3, 31, 1, 0, tzinfo=UTC)),
    (datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 1, 3, tzinfo=UTC)),  # no calls
]


@pytest.fixture(scope="module")
def stores(postgres: PgCluster, redis_server: object) -> Iterator[tuple[JournalCalls, Engine]]:
    client = redis.Redis.from_url(redis_server.url)  # type: ignore[attr-defined]
    client.flushall()
    for i, x in enumerate(sorted(RECORDS, key=lambda x: x.ended_at)):
        ms = int(x.ended_at.timestamp() * 1000)
        client.xadd(keys.ACCT_CALLS, {"r": x.model_dump_json()}, id=f"{ms}-{i}")
    engine = db.make_engine(postgres.url)
    db.upgrade(engine)
    with engine.begin() as c:
        c.execute(delete(db.calls))
    copied = Copier(client, Settings(database_url=postgres.url), engine).copy()
    assert copied == len(RECORDS)
    yield JournalCalls(client, page=97), engine
    engine.dispose()
    client.flushall()


def test_the_records_cover_the_cases() -> None:
    """The generator does make the awkward cases the comparisons rely on."""
    assert {r.currency for r in RECORDS} == {None, *CURRENCIES}
    assert any(r.cost is None and r.currency is not None for r in RECORDS)
    assert any(r.line is None for r in RECORDS)
    assert {r.started_at for r in RECORDS} >= set(EDGES)
    days = {r.started_at.date().isoformat() for r in RECORDS}
    assert {"2030-03-31", "2030-04-01", "2030-10-31", "2030-11-01"} <= days


@pytest.mark.parametrize("by", reports.GROUPINGS)
@pytest.mark.parametrize("tenant", [None, "acme", "nobody"])
def test_sql_journal_and_python_reports_are_identical(
    stores: tuple[JournalCalls, Engine], by: str, tenant: str | None
) -> None:
    journal, engine = stores
    database = DatabaseCalls(engine)
    for start, end in RANGES:
        expected = reports.aggregate(RECORDS, by, start=start, end=end, tenant=tenant)
        old_way = reports.aggregate(
            database.calls(start, end, tenant), by, start=start, end=end, tenant=tenant
        )
        in_sql = database.cost_report(by, start, end, tenant)
        from_journal = journal.cost_report(by, start, end, tenant)
        where = f"by={by} {start}..{end} tenant={tenant}"
        assert in_sql == expected, where
        assert from_journal == expected, where
        assert old_way == expected, where
        # the same decimals, keys and order in what the API sends
        assert in_sql.model_dump_json() == expected.model_dump_json(), where
        assert from_journal.model_dump_json() == expected.model_dump_json(), where
        assert reports.costs_csv(in_sql) == reports.costs_csv(expected), where
        if tenant != "nobody" and (start, end) in RANGES[:2]:
            assert expected.total.calls > 0, where  # not comparing two empty reports


def test_grouped_report_matches_a_hand_count(stores: tuple[JournalCalls, Engine]) -> None:
    """An independent count of one site's March calls, against the SQL report."""
    _, engine = stores
    start, end = RANGES[1]
    assert start is not None and end is not None
    mine = [r for r in RECORDS if r.site == "paris" and start <= r.started_at < end]
    got = {row.key: row for row in DatabaseCalls(engine).cost_report("site", start, end, None).rows}
    paris = got["paris"]
    assert paris.calls == len(mine)
    assert paris.connected == sum(r.connected for r in mine)
    assert paris.seconds == sum((r.duration_seconds for r in mine), Decimal(0))
    assert paris.unpriced == sum(r.cost is None or r.currency is None for r in mine)
    eur = [r.cost for r in mine if r.currency == "EUR" and r.cost is not None]
    assert paris.cost["EUR"] == sum(eur, Decimal(0))


def test_by_day_fills_the_empty_days_in_sql_too(stores: tuple[JournalCalls, Engine]) -> None:
    _, engine = stores
    start, end = RANGES[-1]
    got = DatabaseCalls(engine).cost_report("day", start, end, None)
    assert [row.key for row in got.rows] == ["2031-01-01", "2031-01-02"]
    assert got.total.calls == 0 and got.total.cost == {}


def test_sql_report_refuses_a_bad_grouping(stores: tuple[JournalCalls, Engine]) -> None:
    _, engine = stores
    with pytest.raises(reports.ReportError, match="by 'line' is not one of"):
        DatabaseCalls(engine).cost_report("line", None, None, None)
