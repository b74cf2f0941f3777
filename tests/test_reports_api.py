"""Cost reports through real API processes and the CLI: from the Redis journal, and from
this session's own PostgreSQL; tenant keys see their own calls only; bad input is a 422
or a usage error."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import delete

from faxfleet import keys
from faxfleet.cli import cli
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.settings import Settings
from scheduler.accounting import db
from scheduler.accounting.copier import Copier
from tests.pg_cluster import PgCluster
from tests.test_reports import rec
from tests.uvicorn_apps import PUBLIC_API, running

ACME = {"X-API-Key": "acme-key"}
ADMIN = {"X-API-Key": "admin-key"}
RECORDS = [
    rec(1),
    rec(2, seconds="90", cost="0.180000"),
    rec(3, tenant="globex", site="newyork", cost="0.010000", currency="USD"),
    rec(4, ok=False, connected=False, pages=0, seconds="7", cost="0"),
]


@pytest.fixture(scope="module")
def apis(
    redis_server: RedisServer, postgres: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("reports-logs")
    env = {
        **os.environ,
        "FAXFLEET_REDIS_URL": redis_server.url,
        "FAXFLEET_API_KEYS": "acme=acme-key,globex=globex-key",
        "FAXFLEET_ADMIN_KEYS": "admin-key",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FAXFLEET_DATABASE_URL", None)
    plan = [
        ("api-journal", PUBLIC_API, env),
        ("api-db", PUBLIC_API, {**env, "FAXFLEET_DATABASE_URL": postgres.url}),
    ]
    with running(plan, logs) as (journal_api, db_api):
        yield {"journal": journal_api.url, "db": db_api.url}


def journal(r: redis.Redis, *records: object) -> None:
    """Journalled as a scheduler would: when each call ended."""
    for i, x in enumerate(records):
        ms = int(x.ended_at.timestamp() * 1000)  # type: ignore[attr-defined]
        r.xadd(keys.ACCT_CALLS, {"r": x.model_dump_json()}, id=f"{ms}-{i}")  # type: ignore[attr-defined]


@pytest.fixture
def seeded(r: redis.Redis, postgres: PgCluster) -> None:
    journal(r, *RECORDS)
    engine = db.make_engine(postgres.url)
    db.upgrade(engine)
    with engine.begin() as c:
        c.execute(delete(db.calls))
    assert Copier(r, Settings(database_url=postgres.url), engine).copy() == len(RECORDS)
    engine.dispose()


@pytest.mark.parametrize("store", ["journal", "db"])
def test_costs_by_site(apis: dict[str, str], seeded: None, store: str) -> None:
    got = httpx.get(f"{apis[store]}/v1/reports/costs", params={"by": "site"}, headers=ADMIN)
    assert got.status_code == 200, got.text
    rows = {row["key"]: row for row in got.json()["rows"]}
    assert rows["paris"]["calls"] == 3 and rows["paris"]["connected"] == 2
    assert Decimal(rows["paris"]["cost"]["EUR"]) == Decimal("0.3")
    assert rows["paris"]["pages"] == 4
    assert Decimal(rows["newyork"]["cost"]["USD"]) == Decimal("0.01")
    # a tenant key: its own calls, even when it asks for all
    own = httpx.get(f"{apis[store]}/v1/reports/costs", params={"by": "tenant"}, headers=ACME)
    assert [row["key"] for row in own.json()["rows"]] == ["acme"]
    other = httpx.get(f"{apis[store]}/v1/reports/costs", params={"tenant": "globex"}, headers=ACME)
    assert other.status_code == 403


@pytest.mark.parametrize("store", ["journal", "db"])
def test_calls_csv_and_day_series(apis: dict[str, str], seeded: None, store: str) -> None:
    got = httpx.get(
        f"{apis[store]}/v1/reports/calls.csv",
        params={"from": "2030-01-08T10:02Z", "to": "2030-01-09"},
        headers=ADMIN,
    )
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert [row["call_id"] for row in rows] == ["fx_2:0:1", "fx_3:0:1", "fx_4:0:1"]
    days = httpx.get(
        f"{apis[store]}/v1/reports/costs",
        params={"by": "day", "from": "2030-01-07", "to": "2030-01-10"},
        headers=ADMIN,
    ).json()
    assert [(d["key"], d["calls"]) for d in days["rows"]] == [
        ("2030-01-07", 0),
        ("2030-01-08", 4),
        ("2030-01-09", 0),
    ]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"by": "planet"}, "not one of"),
        ({"from": "2030-01-09", "to": "2030-01-08"}, "must be after"),
        ({"from": "2030-01-08T10:00"}, "time zone"),
        ({"to": "soon"}, "not an ISO date"),
    ],
)
def test_bad_requests_are_422(apis: dict[str, str], params: dict[str, str], words: str) -> None:
    got = httpx.get(f"{apis['journal']}/v1/reports/costs", params=params, headers=ADMIN)
    assert got.status_code == 422 and words in got.json()["detail"]


def test_cli_report_costs(apis: dict[str, str], seeded: None) -> None:
    runner = CliRunner()
    base = ["--api", apis["db"], "--admin-key", "admin-key"]
    out = runner.invoke(cli, [*base, "report", "costs", "--by", "site", "--admin"])
    assert out.exit_code == 0, out.output
    assert "paris" in out.output and "0.30" in out.output and "USD" in out.output
    out = runner.invoke(cli, [*base, "report", "costs", "--by", "destination", "--csv", "--admin"])
    assert out.exit_code == 0 and out.output.startswith("destination,calls")
    out = runner.invoke(cli, [*base, "report", "calls", "--csv", "--admin"])
    assert len(out.output.strip().splitlines()) == 1 + len(RECORDS)
    bad = runner.invoke(
        cli, [*base, "report", "costs", "--from", "2030-01-09", "--to", "2030-01-01"]
    )
    assert bad.exit_code == 2 and "after" in bad.output
    bad = runner.invoke(cli, [*base, "report", "costs", "--by", "planet"])
    assert bad.exit_code == 2


def test_fleet_health_shows_the_copy_backlog(
    apis: dict[str, str], r: redis.Redis, postgres: PgCluster
) -> None:
    from faxfleet.cli import fleet_lines

    journal(r, *RECORDS)
    nobody_there = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    assert Copier(r, Settings(database_url=nobody_there)).copy() == 0
    got = httpx.get(f"{apis['journal']}/v1/fleet", headers=ACME).json()
    assert got["snapshot"]["accounting"]["backlog"] == len(RECORDS)
    assert got["snapshot"]["accounting"]["error"]
    assert "call records not yet in the database: 4 (database: " in fleet_lines(got)


def test_database_down_is_a_503(apis: dict[str, str], postgres: PgCluster) -> None:
    postgres.stop()
    try:
        got = httpx.get(f"{apis['db']}/v1/reports/costs", headers=ADMIN, timeout=30)
        assert got.status_code == 503 and "database" in got.json()["detail"]
    finally:
        postgres.start()
    assert httpx.get(f"{apis['db']}/v1/reports/costs", headers=ADMIN, timeout=30).status_code == 200
