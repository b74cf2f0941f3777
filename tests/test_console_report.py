"""The console's costs report: the page, its charts and CSV downloads over real HTTP
(the API as a real process, call records in its Redis journal), tenants kept to their
own calls; and the SVG charts as pure functions."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import redis

from scheduler.console import charts
from tests.test_console import ACME_KEY, ADMIN_KEY, Api, server, sign_in  # noqa: F401
from tests.test_reports import rec
from tests.test_reports_api import journal

TODAY = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
RECORDS = [
    rec(1, site="paris", tenant="acme", cost="0.125000", at=TODAY),
    rec(2, site="newyork", tenant="acme", cost="0.040000", at=TODAY - timedelta(days=2)),
    rec(3, site="paris", tenant="globex", cost="1.000000", at=TODAY - timedelta(days=1)),
    rec(4, site="paris", tenant="acme", cost="0", connected=False, ok=False, pages=0, at=TODAY),
    rec(5, site="paris", tenant="acme", cost="9.000000", at=TODAY - timedelta(days=60)),
]


@pytest.fixture
def seeded(r: redis.Redis) -> Iterator[None]:
    journal(r, *sorted(RECORDS, key=lambda x: x.ended_at))
    yield
    r.flushall()


@contextmanager
def _client(api: Api, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        assert sign_in(client, key).status_code == 303
        yield client


def _table(html: str) -> dict[str, list[str]]:
    body = html[html.index('id="report-table"') :]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    out = {}
    for row in rows:
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)
        ]
        out[cells[0]] = cells[1:]
    return out


def test_admin_sees_every_tenant_of_the_range_with_charts(server: Api, seeded: None) -> None:  # noqa: F811
    with _client(server, ADMIN_KEY) as admin:
        page = admin.get("/console/report", params={"by": "site"})
        assert page.status_code == 200, page.text
        table = _table(page.text)
        # The default range is the last 30 days: record 5 (60 days ago) is out of it.
        assert table["paris"][:2] == ["3", "2"]  # calls, connected
        assert table["paris"][-1] == "1.13"  # 0.125 + 1 + 0, rounded half up to cents
        assert table["newyork"][0] == "1" and table["newyork"][-1] == "0.04"
        assert table["total"][0] == "4"
        assert page.text.count("<svg") == 2  # by site, and per day
        assert 'aria-label="Cost by site (EUR)"' in page.text
        assert "<title>paris: 1.13</title>" in page.text

        one = _table(admin.get("/console/report", params={"by": "site", "tenant": "globex"}).text)
        assert set(one) == {"site", "paris", "total"} and one["paris"][0] == "1"

        days = admin.get("/console/report", params={"by": "day", "from": "2000-01-01"})
        assert days.status_code == 200
        assert days.text.count("<svg") == 1  # the days' columns only
        assert _table(days.text)["total"][0] == "5"


def test_a_tenant_sees_its_own_calls_only(server: Api, seeded: None) -> None:  # noqa: F811
    with _client(server, ACME_KEY) as acme:
        table = _table(acme.get("/console/report", params={"tenant": "globex"}).text)
        assert table["paris"][0] == "2" and table["total"][0] == "3"  # acme's, not globex's
        calls = acme.get("/console/report/calls.csv", params={"tenant": "globex"})
        assert calls.status_code == 200
        tenants = {row["tenant"] for row in csv.DictReader(io.StringIO(calls.text))}
        assert tenants == {"acme"}


def test_csv_downloads_and_clear_errors(server: Api, seeded: None) -> None:  # noqa: F811
    with _client(server, ADMIN_KEY) as admin:
        costs = admin.get("/console/report/costs.csv", params={"by": "tenant"})
        assert costs.status_code == 200
        assert "attachment" in costs.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(costs.text)))
        by_key = {r["tenant"]: r for r in rows}
        assert Decimal(by_key["globex"]["cost"]) == Decimal("1")
        calls = admin.get("/console/report/calls.csv")
        assert len(list(csv.DictReader(io.StringIO(calls.text)))) == 4

        bad = admin.get("/console/report", params={"by": "planet"})
        assert bad.status_code == 422 and "by &#39;planet&#39; is not one of" in bad.text
        backwards = admin.get("/console/report", params={"from": "2026-02-01", "to": "2026-01-01"})
        assert backwards.status_code == 422
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/console/report").status_code in (303, 307)


def test_charts_scale_escape_and_say_when_empty() -> None:
    svg = charts.bars(
        [("paris", Decimal("2"), "2.00"), ("<b>x</b>", Decimal("1"), "1.00")], title="a&b"
    )
    widths = [int(w) for w in re.findall(r'class="bar" x="\d+" y="\d+" width="(\d+)"', svg)]
    assert widths[0] == 2 * widths[1] or abs(widths[0] - 2 * widths[1]) <= 1
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and 'aria-label="a&amp;b"' in svg
    assert "no calls in this range" in charts.bars([], title="t")
    cols = charts.columns(
        [("2026-12-01", Decimal("0"), "0.00"), ("2026-12-02", Decimal("3"), "3.00")], title="t"
    )
    heights = re.findall(r'class="bar" x="[\d.]+" y="\d+" width="[\d.]+" height="(\d+)"', cols)
    assert heights == ["0", "160"]
    assert "2026-12-01" in cols and "2026-12-02" in cols
