"""Call accounting on a running two-site fleet with PostgreSQL: real faxes (one busy
once) go out, each call is recorded once, the timer loops copy the records to this
session's own PostgreSQL, and ``faxfleet report costs --by site`` shows the right calls
at the cost tables' prices for those durations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import psycopg
import pytest
import redis
from click.testing import CliRunner

from faxfleet import keys
from faxfleet.accounting import CallRecord
from faxfleet.admin_client import AdminClient
from faxfleet.cli import cli
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.sample_group import SITES, cost_csv, declare
from routing.costs import parse_csv
from tests.conftest import running_fleet
from tests.fleet_api import submit, wait_fax
from tests.pg_cluster import PgCluster

pytestmark = pytest.mark.fleet

ADMIN = {"X-API-Key": "admin-key"}
DATABASE = "fleet_accounting"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PgCluster) -> Iterator[Fleet]:
    with psycopg.connect(postgres.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    url = postgres.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    with running_fleet(
        tmp_path_factory.mktemp("accounting"),
        [SiteSpec("paris", 1), SiteSpec("newyork", 1)],
        {
            "FAXFLEET_SIM_PAGE_SECONDS": "0.3",
            "FAXFLEET_DATABASE_URL": url,
            "FAXFLEET_ACCT_COPY_INTERVAL_SECONDS": "0.2",
        },
    ) as fleet:
        with AdminClient(fleet.api_url, admin_key="admin-key") as admin:
            declare(admin, {"paris": 1, "newyork": 1})
        yield fleet


def price_of(rec: CallRecord) -> Decimal:
    """What the site's cost table says a call of that length, then, costs."""
    table = parse_csv(cost_csv(rec.site), site=rec.site, timezone=SITES[rec.site]["timezone"])
    if not rec.connected:
        return Decimal(0)
    cost = table.call_cost(rec.number, rec.started_at, rec.duration_seconds)
    assert cost is not None
    return cost


def test_calls_are_recorded_copied_and_reported(fleet: Fleet) -> None:
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    busy_once = "+33142685377"
    r.rpush(keys.sim_script(busy_once), "busy")
    with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
        ids = [submit(api, n, pages=2) for n in ("+33142685300", "+12125550100", busy_once)]
        for fax_id in ids:
            wait_fax(api, fax_id, lambda f: f["state"] == "done", timeout=90)
        # 4 calls: three faxes, one of them dialled twice (busy, then through)
        deadline = time.monotonic() + 30
        while True:
            got = api.get("/v1/reports/calls", headers=ADMIN).json()
            if len(got) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    records = [CallRecord.model_validate(x) for x in got]
    assert sorted(x.call_id for x in records) == sorted(
        [f"{ids[0]}:0:1", f"{ids[1]}:0:1", f"{ids[2]}:0:1", f"{ids[2]}:0:2"]
    )
    by_id = {x.call_id: x for x in records}
    assert by_id[f"{ids[2]}:0:1"].outcome == "busy" and by_id[f"{ids[2]}:0:1"].cost == 0
    assert by_id[f"{ids[0]}:0:1"].site == "paris" and by_id[f"{ids[1]}:0:1"].site == "newyork"
    for rec in records:
        assert rec.currency == "EUR" and rec.cost == price_of(rec), rec
        assert rec.pages_sent == (2 if rec.ok else 0)
    # every record reached PostgreSQL once, and the journal says nothing is left behind
    assert int(r.hget(keys.ACCT_COPIED, "backlog") or -1) == 0

    out = CliRunner().invoke(
        cli,
        [
            "--api",
            fleet.api_url,
            "--admin-key",
            "admin-key",
            "report",
            "costs",
            "--by",
            "site",
            "--admin",
            "--csv",
        ],
    )
    assert out.exit_code == 0, out.output
    lines = {row.split(",")[0]: row.split(",") for row in out.output.strip().splitlines()[1:]}
    for site in ("paris", "newyork"):
        mine = [x for x in records if x.site == site]
        calls, connected, _, _, pages, currency, cost, _ = lines[site][1:]
        assert (int(calls), int(connected)) == (len(mine), sum(x.connected for x in mine))
        assert int(pages) == sum(x.pages_sent for x in mine) and currency == "EUR"
        assert Decimal(cost) == sum((price_of(x) for x in mine), Decimal(0))
    table = CliRunner().invoke(
        cli, ["--api", fleet.api_url, "--admin-key", "admin-key", "report", "costs", "--admin"]
    )
    assert table.exit_code == 0 and "paris" in table.output and "newyork" in table.output
