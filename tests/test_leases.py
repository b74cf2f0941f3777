"""Line slots on a real Redis: every hand-out is started once or given back, every
started call holds a renewed lease, and nobody's slot outlives its holder.

The site worker's half (``workers/leases.py``) and the dispatcher's half
(``routing/reaper.py``) meet only through the in-flight record; each test drives both
against one private redis-server, as a worker and a dispatcher would."""

from __future__ import annotations

import time

import pytest
import redis

from faxfleet import keys
from faxfleet.log import get_logger
from faxfleet.messages import SendOrder
from faxfleet.redis_server import RedisServer
from routing.dispatcher import ORDERS, WAITING, Dispatcher, enqueue
from routing.waiting import urgency_score
from tests.test_dispatch import events, make_runtime, order, publish, sent_orders
from workers.leases import Claim, Leases

log = get_logger("test")


def worker(r: redis.Redis, site: str, name: str = "w1", lease: float = 5.0) -> Leases:
    return Leases(r, log, site=site, worker=name, lease_seconds=lease, claim_retention=3600)


def dispatcher(url: str, claim_seconds: float = 30.0) -> Dispatcher:
    rt = make_runtime(url)
    rt.settings.dispatch_claim_seconds = claim_seconds
    d = Dispatcher(rt)
    d.reaper.interval = 0.0
    d.reaper.grace = 0.0
    return d


def orders_at(r: redis.Redis, site: str) -> list[SendOrder]:
    return [SendOrder.model_validate(o) for o in sent_orders(r, site)]


def test_a_stale_copy_is_refused_and_leaves_every_slot_alone(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    """Paris goes down before starting a fax, which goes to New York; Paris comes back
    and runs its old copy: refused, New York sends it, no slot leaks anywhere."""
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    assert d.step() == 1
    [old] = orders_at(r, "paris")
    r.delete(keys.site_status("paris"))
    publish(r, "newyork", lines=1)
    d.step()
    [new] = orders_at(r, "newyork")
    assert new.attempt_id == old.attempt_id and new.token != old.token
    publish(r, "paris", lines=1)  # back, with the old order still in its queue

    assert worker(r, "paris").claim(old) == Claim.STALE
    assert r.hlen(keys.site_inflight("paris")) == 0
    assert r.hlen(keys.site_inflight("newyork")) == 1
    ny = worker(r, "newyork")
    assert ny.claim(new) == Claim.OK
    assert ny.free(new)
    assert r.hlen(keys.site_inflight("newyork")) == 0
    assert not r.exists(keys.lease(new.attempt_id))


def test_a_redelivered_copy_is_refused_without_freeing_the_callers_slot(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=2)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    d.step()
    [o] = orders_at(r, "paris")
    first, second = worker(r, "paris", "w1"), worker(r, "paris", "w2")
    assert first.claim(o) == Claim.OK
    assert second.claim(o) == Claim.STARTED
    assert r.hlen(keys.site_inflight("paris")) == 1  # still the first caller's
    assert r.get(keys.lease(o.attempt_id)).decode().endswith("|w1")
    assert first.free(o)
    assert r.hlen(keys.site_inflight("paris")) == 0


def test_a_hand_out_never_started_goes_back_keeping_its_place(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url, claim_seconds=0.3)
    enqueue(r, order(1, priority=5))
    first_score = r.zscore(WAITING, order(1).attempt_id)
    assert d.step() == 1
    [o] = orders_at(r, "paris")
    time.sleep(0.05)
    enqueue(r, order(2, priority=5))  # a later fax of the same priority
    time.sleep(0.4)  # paris is alive but never starts fax 1 (its order was lost)
    d.reaper.reap({"paris": "paris-test"})
    assert r.hlen(keys.site_inflight("paris")) == 0
    # Fax 1 is back ahead of fax 2, with its original score and promise.
    assert [a.decode() for a in r.zrange(WAITING, 0, -1)] == [
        order(1).attempt_id,
        order(2).attempt_id,
    ]
    assert r.zscore(WAITING, order(1).attempt_id) == pytest.approx(first_score)
    assert first_score == pytest.approx(urgency_score(5, o.queued_since.timestamp()), abs=1)
    assert [e["kind"] for e in events(r)].count("requeued") == 1
    assert r.hexists(ORDERS, order(1).attempt_id)
    # The lost order turning up later is refused.
    assert worker(r, "paris").claim(o) == Claim.STALE


def test_a_started_call_keeps_its_slot_while_its_lease_is_renewed(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url, claim_seconds=0.1)
    enqueue(r, order(1))
    d.step()
    [o] = orders_at(r, "paris")
    w = worker(r, "paris", lease=0.3)
    assert w.claim(o) == Claim.OK
    try:
        for _ in range(8):  # 1.2 s: four leases long
            time.sleep(0.15)
            d.reaper.reap({"paris": "paris-test"})
        assert r.hexists(keys.site_inflight("paris"), o.attempt_id)
        assert not w.lost(o.attempt_id)
        assert not [e for e in events(r) if e["kind"] in ("lease_lost", "requeued")]
    finally:
        w.stop()
        w.free(o)


def test_a_dead_workers_lease_expires_its_slot_is_freed_and_it_cannot_take_it_back(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    d.step()
    [o] = orders_at(r, "paris")
    w = worker(r, "paris", lease=0.3)
    assert w.claim(o) == Claim.OK
    w.stop()  # the worker freezes: no more renewals
    time.sleep(0.5)
    reaped = d.reaper.reap({"paris": "paris-test"})
    assert reaped.leases_lost == 1
    assert r.hlen(keys.site_inflight("paris")) == 0
    [ev] = [e for e in events(r) if e["kind"] == "lease_lost"]
    assert ev["worker"] == "w1" and ev["attempt"] == 1 and ev["site"] == "paris"
    # The worker wakes up: its renewal fails, it learns it lost the call...
    w.renew_all()
    assert w.lost(o.attempt_id)
    # ...and its free touches nobody's slot (a new hand-out may already hold one).
    r.hset(keys.site_inflight("paris"), "someone-else", '{"token": "x"}')
    assert not w.free(o)
    assert r.hexists(keys.site_inflight("paris"), "someone-else")
    r.hdel(keys.site_inflight("paris"), "someone-else")
    assert d.reaper.reap({"paris": "paris-test"}).leases_lost == 0  # reported once


def test_a_lease_survives_a_lapse_when_the_record_is_still_the_workers(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    """A Redis blip longer than the lease: the dispatcher had no pass in between, so the
    worker renews and keeps its call."""
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    d.step()
    [o] = orders_at(r, "paris")
    w = worker(r, "paris", lease=0.2)
    assert w.claim(o) == Claim.OK
    w.stop()
    time.sleep(0.3)
    w.renew_all()
    assert not w.lost(o.attempt_id)
    assert r.exists(keys.lease(o.attempt_id))
    assert d.reaper.reap({"paris": "paris-test"}).leases_lost == 0
    w.free(o)


def test_a_lease_lapsed_under_a_live_holder_is_left_to_it(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    """A Redis failover outlasts the lease, but the holder still publishes its site's
    state: its call goes on and its slot stays taken (no fax is handed to a busy line)."""
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    d.step()
    [o] = orders_at(r, "paris")
    w = worker(r, "paris", name="paris-test", lease=0.2)
    assert w.claim(o) == Claim.OK
    w.stop()
    time.sleep(0.3)
    assert d.reaper.reap({"paris": "paris-test"}).leases_lost == 0
    assert r.hexists(keys.site_inflight("paris"), o.attempt_id)
    # The site's worker changes (restarted): now the holder is gone.
    assert d.reaper.reap({"paris": "paris-other"}).leases_lost == 1
