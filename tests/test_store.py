"""The job store against a real redis-server (fixture ``r``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis

from faxfleet.messages import (
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    Resolution,
    now,
)
from scheduler.store import (
    TIMERS,
    Draft,
    JobStore,
    UnknownJob,
    job_key,
    log_key,
    route_timer,
    tenant_key,
)

S = JobState


def make_fax(
    job_id: str,
    *,
    tenant: str = "acme",
    user: str | None = "alice",
    offset: float = 0.0,
    recipients: int = 1,
) -> FaxStatus:
    created = now() + timedelta(seconds=offset)
    return FaxStatus(
        id=job_id,
        tenant=tenant,
        state=S.SUBMITTED,
        priority=5,
        resolution=Resolution.FINE,
        user=user,
        home_site="paris",
        created_at=created,
        kill_at=created + timedelta(hours=3),
        documents=[DocumentInfo(name="a.txt", content_type="text/plain", size=5)],
        recipients=[RecipientStatus(index=i, number=f"+3314268530{i}") for i in range(recipients)],
    )


@pytest.fixture
def store(r: redis.Redis) -> JobStore:
    return JobStore(r, retention_seconds=3600)


def run_threads(n: int, target) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results


def test_create_get_round_trip(store: JobStore) -> None:
    fax = make_fax("fx_1", recipients=2)
    stored, created = store.create(fax, None)
    assert created
    assert stored == fax
    assert store.get("fx_1") == fax
    with_history = store.get("fx_1", history=True)
    assert len(with_history.history) == 1
    first = with_history.history[0]
    assert first.from_state is None
    assert first.to_state == S.SUBMITTED
    assert first.recipient is None
    assert with_history.model_copy(update={"history": []}) == fax


def test_get_unknown(store: JobStore) -> None:
    with pytest.raises(UnknownJob):
        store.get("nope")
    with pytest.raises(UnknownJob):
        store.update("nope", lambda d: None)


def test_idempotent_create(store: JobStore, r: redis.Redis) -> None:
    first, created1 = store.create(make_fax("fx_a"), "key-1")
    second, created2 = store.create(make_fax("fx_b"), "key-1")
    assert created1 is True
    assert created2 is False
    assert second.id == "fx_a" == first.id
    assert r.get(job_key("fx_b")) is None
    assert r.zrange(tenant_key("acme"), 0, -1) == [b"fx_a"]
    # the same key in another tenant is another fax
    other, created3 = store.create(make_fax("fx_c", tenant="globex"), "key-1")
    assert created3 is True
    assert other.id == "fx_c"


def test_concurrent_idempotent_create(store: JobStore, r: redis.Redis) -> None:
    results = run_threads(10, lambda i: store.create(make_fax(f"fx_{i}"), "same-key"))
    assert sum(1 for _, created in results if created) == 1
    ids = {fax.id for fax, _ in results}
    assert len(ids) == 1
    (winner,) = ids
    assert r.zrange(tenant_key("acme"), 0, -1) == [winner.encode()]
    assert [k.decode() for k in r.keys("ff:job:*") if not k.endswith(b":log")] == [job_key(winner)]
    assert r.llen(log_key(winner)) == 1


def test_update_under_contention_loses_nothing(store: JobStore, r: redis.Redis) -> None:
    store.create(make_fax("fx_busy"), None)

    def bump(draft: Draft) -> None:
        count = int(draft.status.tags.get("n", "0"))
        draft.set(tags={"n": str(count + 1)})
        draft.note(f"note {count + 1}")

    def worker(i: int) -> None:
        for _ in range(20):
            store.update("fx_busy", bump)

    run_threads(8, worker)
    fax = store.get("fx_busy", history=True)
    assert fax.tags["n"] == "160"
    notes = [t.detail for t in fax.history if t.detail and t.detail.startswith("note ")]
    assert len(notes) == 160
    assert sorted(notes) == sorted(f"note {i}" for i in range(1, 161))
    assert r.llen(log_key("fx_busy")) == 161


def test_update_logs_transitions_and_summarises(store: JobStore) -> None:
    store.create(make_fax("fx_m", recipients=2), None)

    def render(d: Draft) -> str:
        for rec in d.status.recipients:
            d.move(rec.index, S.RENDERING, site="paris")
        return "ok"

    fax, result = store.update("fx_m", render)
    assert result == "ok"
    assert fax.state == S.RENDERING
    stored = store.get("fx_m", history=True)
    assert stored.state == S.RENDERING
    moves = [(t.recipient, t.from_state, t.to_state) for t in stored.history[1:]]
    assert moves == [(0, S.SUBMITTED, S.RENDERING), (1, S.SUBMITTED, S.RENDERING)]


def test_list_filters_and_tenants(store: JobStore) -> None:
    store.create(make_fax("fx_1", user="alice", offset=1), None)
    store.create(make_fax("fx_2", user="bob", offset=2), None)
    store.create(make_fax("fx_3", user="alice", offset=3, recipients=2), None)
    store.create(make_fax("fx_g", tenant="globex", user="alice", offset=4), None)

    def to_queued(site: str, index: int = 0):
        def change(d: Draft) -> None:
            for rec in d.status.recipients:
                d.move(rec.index, S.RENDERING)
                d.move(rec.index, S.ROUTING)
            d.move(index, S.QUEUED, site=site)

        return change

    store.update("fx_2", to_queued("lyon"))
    store.update("fx_3", to_queued("berlin", index=1))  # fax: routing, recipient 1 queued

    assert [f.id for f in store.list("acme")] == ["fx_3", "fx_2", "fx_1"]
    assert [f.id for f in store.list("globex")] == ["fx_g"]
    assert store.list("initech") == []
    assert [f.id for f in store.list("acme", user="alice")] == ["fx_3", "fx_1"]
    assert [f.id for f in store.list("acme", user="carol")] == []
    assert [f.id for f in store.list("acme", state=S.SUBMITTED)] == ["fx_1"]
    assert [f.id for f in store.list("acme", state=S.QUEUED)] == ["fx_3", "fx_2"]
    assert [f.id for f in store.list("acme", state=S.ROUTING)] == ["fx_3"]
    assert [f.id for f in store.list("acme", site="lyon")] == ["fx_2"]
    assert [f.id for f in store.list("acme", site="berlin")] == ["fx_3"]
    assert [f.id for f in store.list("acme", site="berlin", user="bob")] == []
    assert [f.id for f in store.list("acme", limit=2)] == ["fx_3", "fx_2"]


def test_final_fax_gets_a_ttl(store: JobStore, r: redis.Redis) -> None:
    store.create(make_fax("fx_f", recipients=2), None)
    r.hset("ff:pages:fx_f", "1", b"tiff")
    store.update("fx_f", lambda d: d.move(0, S.CANCELLED))
    assert store.get("fx_f").state == S.SUBMITTED
    assert r.ttl(job_key("fx_f")) == -1
    assert r.ttl(log_key("fx_f")) == -1

    fax, _ = store.update("fx_f", lambda d: d.move(1, S.FAILED))
    assert fax.state == S.FAILED
    for key in (job_key("fx_f"), log_key("fx_f"), "ff:pages:fx_f"):
        ttl = r.ttl(key)
        assert 0 < ttl <= 3600, (key, ttl)


def test_timers_set_and_cleared_by_update(store: JobStore, r: redis.Redis) -> None:
    store.create(make_fax("fx_t"), None)
    due = now() + timedelta(seconds=5)
    member = route_timer("fx_t", 0)
    store.update("fx_t", lambda d: d.set_timer(member, due))
    assert r.zscore(TIMERS, member) == pytest.approx(due.timestamp())
    assert store.due(TIMERS, due.timestamp() - 1) == []
    assert store.due(TIMERS, due.timestamp()) == [member]
    store.update("fx_t", lambda d: d.set_timer(member, None))
    assert r.zscore(TIMERS, member) is None


def test_outbox_entries_are_written_with_the_change_and_never_moved(
    store: JobStore, r: redis.Redis
) -> None:
    """A settled fax's notifications enter the outbox in the change's own transaction (a
    process dying right after it leaves them there), and a second write keeps the first
    due time (``NX``): applying the event again does not postpone them."""
    from scheduler import outbox

    store.create(make_fax("fx_o"), None)
    member = outbox.entry("fx_o", JobState.DONE, "email")

    def settle(at: float) -> Callable[[Draft], None]:
        return lambda d: d.outbox.update({member: at})

    store.update("fx_o", settle(1000.0))
    assert r.zscore(outbox.OUTBOX, member) == 1000.0
    store.update("fx_o", settle(2000.0))
    assert r.zscore(outbox.OUTBOX, member) == 1000.0


def test_due_entry_is_claimed_once(store: JobStore, r: redis.Redis) -> None:
    r.zadd(TIMERS, {"route:fx_x:0": 100.0, "route:fx_y:0": 200.0, "route:fx_z:0": 300.0})
    assert store.due(TIMERS, 250.0) == ["route:fx_x:0", "route:fx_y:0"]
    assert store.due(TIMERS, 250.0, limit=1) == ["route:fx_x:0"]
    for member in ("route:fx_x:0", "route:fx_y:0"):
        claims = run_threads(2, lambda i, m=member: store.claim(TIMERS, m))
        assert sorted(claims) == [False, True]
    assert store.due(TIMERS, 250.0) == []
    assert store.due(TIMERS, 1000.0) == ["route:fx_z:0"]
    assert store.claim(TIMERS, "route:fx_x:0") is False


def test_jobs_and_their_logs_survive_a_redis_restart_with_aof(tmp_path) -> None:
    from faxfleet.redis_server import RedisServer

    server = RedisServer(tmp_path / "aof", appendonly=True).start()
    try:
        store = JobStore(redis.Redis.from_url(server.url))
        store.create(make_fax("fx_durable"), "key-1")
        store.update("fx_durable", lambda d: d.move(0, S.RENDERING))
        server.stop()
        server.start()  # same directory and port: replays the append-only file
        store = JobStore(redis.Redis.from_url(server.url))
        fax = store.get("fx_durable", history=True)
        assert fax.recipients[0].state == S.RENDERING
        assert [t.to_state for t in fax.history] == [S.SUBMITTED, S.RENDERING]
        again, created = store.create(make_fax("fx_other"), "key-1")
        assert (again.id, created) == ("fx_durable", False)
    finally:
        server.stop()
