"""The call journal's copier on a real redis-server and this session's own PostgreSQL
cluster: copy, idempotent re-copy, PostgreSQL down then up, a dead copier's records
taken over, and trimming only what is copied."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from sqlalchemy import Engine, delete, func, select

from faxfleet import keys
from faxfleet.accounting import CallRecord
from faxfleet.messages import TariffTerms
from faxfleet.settings import Settings
from scheduler.accounting import copier, db
from scheduler.accounting.copier import Copier
from tests.pg_cluster import PgCluster
from tests.test_reports import rec

TARIFF = TariffTerms(
    price_per_minute="0.12",
    connection_fee="0",
    first_increment=60,
    next_increment=60,
    currency="EUR",
)


def record(n: int, *, site: str = "paris", tenant: str = "acme") -> CallRecord:
    """A priced call with every column filled (so the copy round-trips all of them)."""
    return rec(n, site=site, tenant=tenant, seconds="70", cost="0.240000").model_copy(
        update={"billed_seconds": 120, "tariff": TARIFF, "user": "bob", "route_reason": "cheapest"}
    )


def journal(r: redis.Redis, *records: CallRecord) -> None:
    for call in records:
        r.xadd(keys.ACCT_CALLS, {"r": call.model_dump_json()})


@pytest.fixture
def engine(postgres: PgCluster) -> Iterator[Engine]:
    eng = db.make_engine(postgres.url)
    db.upgrade(eng)
    with eng.begin() as c:
        c.execute(delete(db.calls))
    yield eng
    eng.dispose()


def settings(postgres: PgCluster, **more: object) -> Settings:
    return Settings(database_url=postgres.url, acct_copy_batch=3, **more)


def stored(engine: Engine) -> list[CallRecord]:
    with engine.connect() as c:
        return [db.record(x) for x in c.execute(select(db.calls).order_by(db.calls.c.call_id))]


def test_copies_every_record_once(r: redis.Redis, postgres: PgCluster, engine: Engine) -> None:
    originals = [record(n) for n in range(7)]
    journal(r, *originals)
    c = Copier(r, settings(postgres), engine)
    assert c.copy() == 7  # three batches of at most 3
    assert stored(engine) == sorted(originals, key=lambda x: x.call_id)
    assert copier.backlog(r) == 0
    # the same records again (e.g. journal entries copied, then a redelivered result
    # journalled twice by an older scheduler): nothing doubles
    journal(r, originals[0], originals[1])
    assert c.copy() == 2
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(db.calls)) == 7
    assert stored(engine)[0].cost == Decimal("0.240000")
    assert stored(engine)[0].tariff == TARIFF


def test_upgrade_twice_is_harmless(postgres: PgCluster, engine: Engine) -> None:
    db.upgrade(engine)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version_num FROM faxfleet_calls_version").scalar()
    assert version == "0001"


def test_a_dead_copiers_records_are_taken_over(
    r: redis.Redis, postgres: PgCluster, engine: Engine
) -> None:
    journal(r, record(1), record(2))
    copier.ensure_group(r)
    # a copier read them and died before inserting (nothing acknowledged)
    r.xreadgroup(keys.ACCT_GROUP, "dead:1", {keys.ACCT_CALLS: ">"}, count=10)
    assert copier.backlog(r) == 2
    live = Copier(r, settings(postgres, acct_claim_idle_seconds=0.2), engine)
    assert live.copy() == 0  # not idle long enough yet: still the dead one's
    time.sleep(0.3)
    assert live.copy() == 2
    assert [x.call_id for x in stored(engine)] == ["fx_1:0:1", "fx_2:0:1"]
    assert r.xpending(keys.ACCT_CALLS, keys.ACCT_GROUP)["pending"] == 0


def test_postgres_down_then_up(r: redis.Redis, postgres: PgCluster, engine: Engine) -> None:
    c = Copier(r, settings(postgres), engine)
    journal(r, record(1))
    assert c.copy() == 1
    postgres.stop()
    try:
        journal(r, record(2), record(3), record(4), record(5))
        assert c.copy() == 0
        assert copier.backlog(r) == 4
        report = r.hgetall(keys.ACCT_COPIED)
        assert report[b"backlog"] == b"4" and report[b"error"]
        # trimming keeps what is not copied, however old the keep setting makes it
        trimmer = Copier(r, settings(postgres, acct_keep_copied_seconds=0), engine)
        assert trimmer.trim() == 1  # only record 1, the one copied
        assert r.xlen(keys.ACCT_CALLS) == 4
    finally:
        postgres.start()
    assert c.copy() == 4
    assert [x.call_id for x in stored(engine)] == [f"fx_{n}:0:1" for n in range(1, 6)]
    assert copier.backlog(r) == 0
    assert r.hget(keys.ACCT_COPIED, "error") == b""


def test_trim_keeps_recent_copies(r: redis.Redis, postgres: PgCluster, engine: Engine) -> None:
    journal(r, record(1), record(2))
    c = Copier(r, settings(postgres, acct_keep_copied_seconds=3600), engine)
    assert c.copy() == 2
    assert c.trim() == 0  # copied, but younger than an hour
    assert c.trim(now=time.time() + 7200) == 2
    assert r.xlen(keys.ACCT_CALLS) == 0


def test_without_a_database_the_journal_is_trimmed_by_age(r: redis.Redis) -> None:
    old_ms = int((time.time() - 401 * 86400) * 1000)
    r.xadd(keys.ACCT_CALLS, {"r": record(1).model_dump_json()}, id=f"{old_ms}-0")
    journal(r, record(2))
    assert copier.trim_by_age(r, Settings(acct_retention_days=400)) == 1
    (entry,) = r.xrange(keys.ACCT_CALLS)
    assert CallRecord.model_validate_json(entry[1][b"r"]).call_id == "fx_2:0:1"


def test_an_unreadable_record_does_not_block_the_others(
    r: redis.Redis, postgres: PgCluster, engine: Engine
) -> None:
    journal(r, record(1))
    r.xadd(keys.ACCT_CALLS, {"r": b"{not json"})
    journal(r, record(2))
    assert Copier(r, settings(postgres), engine).copy() == 3
    assert [x.call_id for x in stored(engine)] == ["fx_1:0:1", "fx_2:0:1"]
    assert copier.backlog(r) == 0
    assert r.xlen(keys.ACCT_CALLS) == 3  # kept for a look, until trimmed
