"""Routing's half of job control on a real Redis: an altered priority re-scores a waiting
fax in place, and an attempt whose number or send time changes is taken back, for good,
unless a site has started it."""

from __future__ import annotations

import json

import pytest
import redis

from faxfleet import keys
from faxfleet.redis_server import RedisServer
from routing.dispatcher import ADDED, ORDERS, REVISED, WAITING, enqueue, place, placed_key
from routing.waiting import WITHDRAWN, take_back, urgency_score
from tests.test_dispatch import order, publish
from tests.test_leases import dispatcher, orders_at, worker
from workers.leases import Claim


def revised(i: int, priority: int, revision: int):
    return order(i, priority=priority).model_copy(update={"revision": revision})


def test_a_higher_revision_rescores_a_waiting_fax_keeping_its_wait(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    assert place(r, order(1)) == ADDED
    assert place(r, order(2)) == ADDED
    since = json.loads(r.hget(ORDERS, "fx_00002:0:1"))["enqueued_at"]

    assert place(r, revised(2, priority=9, revision=1)) == REVISED
    record = json.loads(r.hget(ORDERS, "fx_00002:0:1"))
    assert record["order"]["priority"] == 9
    assert abs(record["enqueued_at"] - since) < 1e-3  # its place among the 9s: when it came
    expected = urgency_score(9, record["enqueued_at"])
    assert r.zscore(WAITING, "fx_00002:0:1") == pytest.approx(expected, abs=0.01)
    # An older or repeated revision (a late or redelivered order) changes nothing.
    assert place(r, revised(2, priority=5, revision=0)) == 0
    assert place(r, revised(2, priority=1, revision=1)) == 0
    assert json.loads(r.hget(ORDERS, "fx_00002:0:1"))["order"]["priority"] == 9

    d = dispatcher(redis_server.url)
    assert d.step() == 1
    [first] = orders_at(r, "paris")
    assert (first.job_id, first.priority, first.revision) == ("fx_00002", 9, 1)


def test_a_revision_of_a_fax_already_handed_out_changes_nothing(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    enqueue(r, order(1))
    assert dispatcher(redis_server.url).step() == 1
    assert place(r, revised(1, priority=9, revision=1)) == 0
    assert r.zcard(WAITING) == 0


def test_a_waiting_attempt_taken_back_is_never_handed_out(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=2)
    enqueue(r, order(1))
    back = take_back(r, "fx_00001:0:1")
    assert (back.taken_back, back.site) == (True, None)
    assert r.zcard(WAITING) == 0 and r.hlen(ORDERS) == 0
    assert r.get(placed_key("fx_00001:0:1")) == WITHDRAWN.encode()
    # its route order again (the watchdog, a redelivery) is refused, for good
    assert enqueue(r, order(1)) is False
    assert place(r, revised(1, priority=9, revision=3)) == 0
    assert dispatcher(redis_server.url).step() == 0
    assert orders_at(r, "paris") == []
    # asked again: the same answer
    assert take_back(r, "fx_00001:0:1").taken_back


def test_an_attempt_whose_order_has_not_arrived_is_refused_when_it_does(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    assert take_back(r, "fx_00001:0:1").taken_back
    assert enqueue(r, order(1)) is False
    assert dispatcher(redis_server.url).step() == 0


def test_an_attempt_handed_to_a_site_is_taken_back_before_it_starts(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    d = dispatcher(redis_server.url)
    enqueue(r, order(1))
    enqueue(r, order(2))
    assert d.step() == 1
    [handed] = orders_at(r, "paris")
    assert handed.job_id == "fx_00001"

    back = take_back(r, handed.attempt_id)
    assert (back.taken_back, back.site) == (True, "paris")
    assert r.hlen(keys.site_inflight("paris")) == 0  # its slot is free
    # The site's copy of the send order is refused like any stale copy...
    assert worker(r, "paris").claim(handed) == Claim.STALE
    # ...and the line goes to the next fax.
    assert d.step() == 1
    assert sorted(o.job_id for o in orders_at(r, "paris")) == ["fx_00001", "fx_00002"]
    assert r.hkeys(keys.site_inflight("paris")) == [b"fx_00002:0:1"]


def test_an_attempt_a_site_started_is_not_taken_back(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=1)
    enqueue(r, order(1))
    assert dispatcher(redis_server.url).step() == 1
    [handed] = orders_at(r, "paris")
    site = worker(r, "paris")
    assert site.claim(handed) == Claim.OK

    back = take_back(r, handed.attempt_id)
    assert (back.taken_back, back.site) == (False, "paris")
    assert "site paris had already started it" in back.detail
    assert r.hlen(keys.site_inflight("paris")) == 1  # the call keeps its slot
    assert r.get(placed_key(handed.attempt_id)) == b"paris"
    assert site.free(handed)
    # once over, the answer is the same
    assert not take_back(r, handed.attempt_id).taken_back
