"""Central dispatch on a real Redis: atomic claims, no private backlog, racing
dispatchers, and sites that drop out mid-backlog."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta

import redis

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.celery_app import make_celery
from faxfleet.log import get_logger
from faxfleet.messages import LineStatus, RouteOrder, SiteStatus, now
from faxfleet.redis_server import RedisServer
from faxfleet.runtime import Runtime
from faxfleet.settings import Settings
from routing.dispatcher import ORDERS, WAITING, Dispatcher, enqueue

SEP = "\x06\x16"


def make_runtime(url: str) -> Runtime:
    s = Settings(redis_url=url)
    return Runtime("dispatch-test", s, make_celery("dispatch-test", s), get_logger("test"))


def publish(r: redis.Redis, site: str, lines: int, ttl_ms: int = 60_000) -> None:
    status = SiteStatus(
        name=site,
        worker=f"{site}-test",
        lines=[LineStatus(name=f"{site}-{i}", state="idle") for i in range(lines)],
        updated_at=now(),
    )
    r.set(keys.site_status(site), status.model_dump_json(), px=ttl_ms)


def order(i: int, priority: int = 5, number: str | None = None) -> RouteOrder:
    """Fax i, to its own number unless one is given (a number takes one call at a time)."""
    number = number or f"+33142685{i:03d}"
    return RouteOrder(
        job_id=f"fx_{i:05d}",
        recipient=0,
        attempt=1,
        number=number,
        pages=1,
        first_page=1,
        priority=priority,
        home_site="paris",
        tenant="t",
    )


def sent_orders(r: redis.Redis, site: str) -> list[dict]:
    """Send orders sitting in a site's Celery queue (all priority lists)."""
    queue = names.site_queue(site)
    found = []
    for name in [queue, *(f"{queue}{SEP}{p}" for p in range(1, 10))]:
        for raw in r.lrange(name, 0, -1):
            body = json.loads(raw)
            payload = json.loads(
                __import__("base64").b64decode(body["body"])
                if body.get("properties", {}).get("body_encoding") == "base64"
                else body["body"]
            )
            found.append(payload[1]["order"])
    return found


def events(r: redis.Redis, home: str = "paris") -> list[dict]:
    found = []
    queue = names.events_queue(home)
    for raw in r.lrange(queue, 0, -1):
        body = json.loads(raw)
        payload = json.loads(__import__("base64").b64decode(body["body"]))
        found.append(payload[1]["envelope"]["event"])
    return found


def test_a_site_gets_no_more_faxes_than_free_lines(r: redis.Redis, redis_server: RedisServer):
    publish(r, "paris", lines=3)
    d = Dispatcher(make_runtime(redis_server.url))
    for i in range(10):
        enqueue(r, order(i))
    assert d.step() == 3
    assert d.step() == 0  # nothing frees: the rest wait centrally, not at the site
    assert r.zcard(WAITING) == 7 and r.hlen(keys.site_inflight("paris")) == 3
    assert len(sent_orders(r, "paris")) == 3
    # a line frees (the worker removes its attempt): exactly one more goes
    first = sent_orders(r, "paris")[0]
    r.hdel(keys.site_inflight("paris"), f"{first['job_id']}:0:1")
    assert d.step() == 1
    assert r.zcard(WAITING) == 6


def test_most_urgent_is_dispatched_first_fleet_wide(r: redis.Redis, redis_server: RedisServer):
    publish(r, "paris", lines=1)
    publish(r, "newyork", lines=1)
    d = Dispatcher(make_runtime(redis_server.url))
    for i in range(20):
        enqueue(r, order(i, priority=1))
    enqueue(r, order(99, priority=9))
    assert d.step() == 2
    dispatched = [o["job_id"] for s in ("paris", "newyork") for o in sent_orders(r, s)]
    assert "fx_00099" in dispatched  # the urgent fax took one of the two lines
    assert "fx_00000" in dispatched  # and the oldest bulk fax the other


def test_repeated_route_order_is_placed_once(r: redis.Redis, redis_server: RedisServer):
    publish(r, "paris", lines=5)
    d = Dispatcher(make_runtime(redis_server.url))
    assert enqueue(r, order(1)) is True
    assert enqueue(r, order(1)) is False  # still waiting: not added twice
    d.step()
    assert enqueue(r, order(1)) is False  # handed to a site: not waiting again
    d.step()
    assert len(sent_orders(r, "paris")) == 1


def test_two_dispatchers_racing_never_place_a_fax_twice(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    for site in ("paris", "newyork", "london"):
        publish(r, site, lines=40)
    for i in range(300):
        enqueue(r, order(i, priority=i % 10))
    dispatchers = [Dispatcher(make_runtime(redis_server.url)) for _ in range(2)]
    counts = [0, 0]
    stop = threading.Event()

    def run(n: int) -> None:
        while not stop.is_set():
            counts[n] += dispatchers[n].step()
            # free every line again, as finished calls would, to keep both racing
            for site in ("paris", "newyork", "london"):
                r.delete(keys.site_inflight(site))
            if r.zcard(WAITING) == 0:
                stop.set()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    all_sent = [o["job_id"] for s in ("paris", "newyork", "london") for o in sent_orders(r, s)]
    assert len(all_sent) == 300
    assert Counter(all_sent).most_common(1)[0][1] == 1  # no fax placed twice
    assert sum(counts) == 300 and min(counts) > 0  # both dispatchers did real work
    routed = [e for e in events(r) if e["kind"] == "routed"]
    assert len(routed) == 300


def test_site_dropping_out_gives_back_what_it_had_not_started(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=4)
    publish(r, "newyork", lines=2, ttl_ms=60_000)
    d = Dispatcher(make_runtime(redis_server.url))
    d.reaper.grace = 0.0  # calls of a site gone this long are taken for lost at once
    for i in range(6):
        enqueue(r, order(i))
    assert d.step() == 6
    at_paris = [o for o in sent_orders(r, "paris")]
    started = at_paris[0]
    # paris's worker started one of them (it holds the claim), then paris went down
    r.set(keys.attempt_claim(f"{started['job_id']}:0:1"), "paris-worker")
    r.delete(keys.site_status("paris"))
    r.delete(keys.site_inflight("newyork"))  # newyork finished its two: lines free
    d.step()
    requeued = [e for e in events(r) if e["kind"] == "requeued"]
    assert sorted(e["job_id"] for e in requeued) == sorted(
        o["job_id"] for o in at_paris[1:]
    )  # everything paris had not started came back...
    lost = [e for e in events(r) if e["kind"] == "lease_lost"]
    assert [e["job_id"] for e in lost] == [started["job_id"]]  # ...the scheduler judges that
    assert r.hlen(keys.site_inflight("paris")) == 0
    at_newyork = {o["job_id"] for o in sent_orders(r, "newyork")}
    assert started["job_id"] not in at_newyork  # ...but not the call paris had started
    assert len(at_newyork & {o["job_id"] for o in at_paris}) == 2  # two re-placed at once
    assert r.zcard(WAITING) == 1 and r.hlen(ORDERS) == 1  # the third waits for a line


def test_routing_keeps_its_last_good_tables_while_redis_is_away(tmp_path) -> None:
    from faxfleet.sample_group import SITES, cost_csv
    from routing.cost_store import CostStore
    from routing.sites import GroupConfig, Registry, SiteConfig

    server = RedisServer(tmp_path / "blip").start()
    try:
        r = redis.Redis.from_url(server.url)
        registry = Registry(r)
        registry.put_group(GroupConfig(name="global"), create=True)
        registry.put_site(
            SiteConfig(name="paris", lines=2, group="global", **SITES["paris"]), create=True
        )
        CostStore(r).import_csv("paris", cost_csv("paris"), "Europe/Paris")
        d = Dispatcher(make_runtime(server.url))
        d._reload()
        assert d.cache.costs["paris"].can_dial("+33142685300")
        server.stop()
        d.cache.loaded_at = 0  # due for a refresh, but Redis is gone
        d._reload()  # must not raise
        assert d.cache.costs["paris"].can_dial("+33142685300")
        assert "paris" in d.cache.configs
    finally:
        server.stop()


def test_a_number_gets_one_call_at_a_time_fleet_wide(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    publish(r, "paris", lines=2)
    publish(r, "newyork", lines=2)
    d = Dispatcher(make_runtime(redis_server.url))
    for i in range(3):
        enqueue(r, order(i, number="+33142685300"))
    enqueue(r, order(9, number="+33142685309"))
    assert d.step() == 2  # one to the busy-prone number, one to the other
    sent = [o for s in ("paris", "newyork") for o in sent_orders(r, s)]
    assert sorted(o["number"] for o in sent) == ["+33142685300", "+33142685309"]
    assert d.step() == 0  # lines are free, but the number is still being called
    first = next(o for o in sent if o["number"] == "+33142685300")
    r.hdel(keys.site_inflight(first["site"]), f"{first['job_id']}:0:1")  # that call ends
    assert d.step() == 1


def test_placement_sees_when_each_held_call_should_end(
    r: redis.Redis, redis_server: RedisServer
) -> None:
    """The dispatcher tells the policy when each busy line should free: the held call's
    remaining pages at the site's measured speed, counted from when it was handed out."""
    publish(r, "paris", lines=2)
    d = Dispatcher(make_runtime(redis_server.url))
    enqueue(r, order(1).model_copy(update={"pages": 3}))
    enqueue(r, order(2).model_copy(update={"pages": 5, "first_page": 4}))
    assert d.step() == 2
    states = d.site_states(d._live())
    # 3 pages and pages 4-5 of 5, at 40 s a page after 25 s of set-up (the knobs)
    ends = sorted(states["paris"].busy_until)
    assert states["paris"].busy == 2
    assert 104 < ends[0] <= 105
    assert 144 < ends[1] <= 145
    assert d.calls_in_progress(d._live()) == Counter({order(1).number: 1, order(2).number: 1})
    # A call long past its estimate is still on the line: one more page, not "now".
    held = d._live()["paris"][1][0]
    late = held.routed_at + timedelta(hours=1)
    assert d._expected_end(held, d._live()["paris"][0], late) == 40
