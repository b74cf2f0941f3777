"""Call records enter the journal with the result they describe, on a real redis-server:
once however often the result is applied, one per failed or busy call too, priced with
the tariff routing placed the call under."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import redis

from faxfleet import keys, metrics
from faxfleet.accounting import CallRecord
from faxfleet.messages import (
    AttemptProgress,
    AttemptResult,
    Cause,
    RenderDone,
    Routed,
    TariffTerms,
    now,
)
from faxfleet.settings import Settings
from scheduler.lifecycle import Lifecycle
from scheduler.store import JobStore
from tests.test_store import make_fax

LC = Lifecycle(Settings(time_scale=0.01, max_dials=4, max_tries=3))
PARIS_US = TariffTerms(
    prefix="1",
    price_per_minute="0.12",
    connection_fee="0.05",
    first_increment=30,
    next_increment=6,
    currency="EUR",
)


def records(r: redis.Redis) -> list[CallRecord]:
    return [CallRecord.model_validate_json(f[b"r"]) for _, f in r.xrange(keys.ACCT_CALLS)]


def placed(store: JobStore, job_id: str, *, tariff: TariffTerms | None = PARIS_US) -> None:
    """A fax of 3 pages routed to paris (attempt 1) under ``tariff`` and dialling."""
    store.create(make_fax(job_id), None)
    store.update(job_id, LC.start)
    store.update(
        job_id, lambda d: LC.on_render_done(d, RenderDone(job_id=job_id, pages=3, at=now()))
    )
    routed = Routed(
        job_id=job_id,
        recipient=0,
        attempt=1,
        site="paris",
        at=now(),
        cost="0.2",
        currency="EUR",
        reason="cheapest",
        tariff=tariff,
    )
    store.update(job_id, lambda d: LC.on_routed(d, routed))
    dialing = AttemptProgress(
        job_id=job_id,
        recipient=0,
        attempt=1,
        seq=1,
        site="paris",
        line="l1",
        phase="dialing",
        at=now(),
    )
    store.update(job_id, lambda d: LC.on_progress(d, dialing))


def result(job_id: str, **fields: object) -> AttemptResult:
    values: dict[str, object] = dict(
        job_id=job_id,
        recipient=0,
        attempt=1,
        seq=2,
        site="paris",
        line="l1",
        ok=True,
        pages_confirmed=3,
        connected=True,
        duration_seconds=95.2,
        at=now(),
    )
    values.update(fields)
    return AttemptResult.model_validate(values)


def test_a_result_applied_twice_writes_one_record(r: redis.Redis) -> None:
    store = JobStore(r, retention_seconds=3600)
    placed(store, "fx_a")
    ev = result("fx_a")
    cost = metrics.CALL_COST.labels("paris", "EUR")
    before = cost._value.get()
    store.update("fx_a", lambda d: LC.on_result(d, ev))
    store.update("fx_a", lambda d: LC.on_result(d, ev))  # redelivered
    got = records(r)
    assert len(got) == 1
    assert cost._value.get() - before == pytest.approx(0.242)  # counted once, as recorded
    rec = got[0]
    assert rec.call_id == "fx_a:0:1"
    assert (rec.site, rec.line, rec.number) == ("paris", "l1", "+33142685300")
    assert (rec.pages_sent, rec.pages_total, rec.outcome) == (3, 3, "ok")
    assert (rec.tenant, rec.user, rec.priority) == ("acme", "alice", 5)
    assert rec.route_reason == "cheapest"
    # 95.2 s billed as 30 + 11 blocks of 6 = 96 s: 0.05 + 96 * 0.12 / 60 = 0.242
    assert rec.billed_seconds == 96
    assert rec.cost == Decimal("0.242") and rec.currency == "EUR"
    assert rec.ended_at - rec.started_at == timedelta(seconds=95.2)


def test_busy_and_failed_calls_each_get_a_record(r: redis.Redis) -> None:
    store = JobStore(r, retention_seconds=3600)
    placed(store, "fx_b")
    busy = result(
        "fx_b", ok=False, pages_confirmed=0, connected=False, cause=Cause.BUSY, duration_seconds=8
    )
    store.update("fx_b", lambda d: LC.on_result(d, busy))
    fax = store.get("fx_b")
    assert fax.recipients[0].state.value == "retry_scheduled"
    # attempt 2: drops after the first page; the result carries its own tariff
    fax_attempt = 2
    store.update("fx_b", lambda d: LC.on_route_timer(d, 0))
    dropped = result(
        "fx_b",
        attempt=fax_attempt,
        seq=1,
        ok=False,
        pages_confirmed=1,
        connected=True,
        cause=Cause.REMOTE_DISCONNECTED,
        duration_seconds=61,
        tariff=PARIS_US,
    )
    store.update("fx_b", lambda d: LC.on_result(d, dropped))
    got = records(r)
    assert [x.call_id for x in got] == ["fx_b:0:1", "fx_b:0:2"]
    assert got[0].outcome == "busy" and got[0].cost == Decimal(0) and got[0].pages_sent == 0
    assert got[1].outcome == "remote_disconnected" and got[1].pages_sent == 1
    # 61 s: 30 + 6 blocks = 66 s: 0.05 + 66 * 0.002 = 0.182
    assert got[1].cost == Decimal("0.182")
    # attempt 3 resumes at page 2 and sends the last two pages
    store.update("fx_b", lambda d: LC.on_route_timer(d, 0))
    resumed = result("fx_b", attempt=3, seq=1, pages_confirmed=3, tariff=PARIS_US)
    store.update("fx_b", lambda d: LC.on_result(d, resumed))
    last = records(r)[-1]
    assert (last.call_id, last.pages_sent, last.pages_confirmed) == ("fx_b:0:3", 2, 3)


def test_a_refused_attempt_that_took_no_line_has_no_record(r: redis.Redis) -> None:
    store = JobStore(r, retention_seconds=3600)
    placed(store, "fx_c", tariff=None)
    ev = result("fx_c", line=None, ok=False, connected=False, cause=Cause.LINE_UNAVAILABLE)
    store.update("fx_c", lambda d: LC.on_result(d, ev))
    assert records(r) == []
    assert store.get("fx_c").recipients[0].state.value == "retry_scheduled"


def test_a_call_without_a_tariff_is_recorded_unpriced(r: redis.Redis) -> None:
    store = JobStore(r, retention_seconds=3600)
    placed(store, "fx_d", tariff=None)
    store.update("fx_d", lambda d: LC.on_result(d, result("fx_d")))
    (rec,) = records(r)
    assert rec.cost is None and rec.currency is None and rec.pages_sent == 3


def test_a_transaction_run_again_after_a_conflict_writes_one_record(r: redis.Redis) -> None:
    """Another writer changes the fax while the result is being applied: the change is
    made again on the fresh fax, and only the transaction that commits adds a record."""
    store = JobStore(r, retention_seconds=3600)
    placed(store, "fx_e")
    other = redis.Redis(connection_pool=r.connection_pool)
    runs = []

    def apply(draft):
        runs.append(1)
        if len(runs) == 1:  # a concurrent note lands between WATCH and EXEC
            store_other = JobStore(other, retention_seconds=3600)
            store_other.update("fx_e", lambda d: d.note("operator looked at it"))
        return LC.on_result(draft, result("fx_e"))

    store.update("fx_e", apply)
    assert len(runs) == 2
    assert [x.call_id for x in records(r)] == ["fx_e:0:1"]
