"""Supervision: a process that exits on its own is started again, and the fleet keeps
sending, including through a Redis restart (after which Celery workers holding
unacknowledged messages are known to exit with ``AttributeError: 'NoneType' object has
no attribute 'hostname'``). Redis keeps accepted faxes across the restart (AOF)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet.fleet import Backoff, Fleet, ServiceSpec, SiteSpec
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.supervisor import Supervisor
from tests.conftest import FAST_FLEET_ENV, paged_text

ACME = {"X-API-Key": "acme-key"}
SETTLED = {"done", "failed", "cancelled", "outcome_uncertain"}


# -- the supervisor on its own (no fleet) -----------------------------------------------------


def _script(code: str) -> ServiceSpec:
    return ServiceSpec("child", ["-c", code])


def test_backoff_doubles_to_its_cap() -> None:
    backoff = Backoff(initial=0.5, factor=2, cap=10)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_crashing_child_is_restarted_with_growing_delays_and_logged(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, {}, backoff=Backoff(initial=0.05, cap=0.2, stable_after=60))
    sup.start(_script("import sys; sys.exit(3)"))
    try:
        sup.wait_restarted("child", since=3, timeout=10)
        assert sup.crash_looping(3) or sup.children["child"].attempt >= 3
    finally:
        sup.stop_all()
    events = sup.history[:4]
    assert [e.exit_code for e in events] == [3, 3, 3, 3]
    assert [e.attempt for e in events] == [1, 2, 3, 4]
    assert [e.delay for e in events] == [0.05, 0.1, 0.2, 0.2]
    lines = (tmp_path / "fleet.log").read_text().splitlines()
    assert "service=child exit_code=3 attempt=2 delay=0.1" in lines[1]


def test_a_child_that_stayed_up_starts_again_at_the_first_step(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, {}, backoff=Backoff(initial=0.05, cap=1, stable_after=0.3))
    sup.start(_script("import time; time.sleep(60)"))
    try:
        for count in range(3):
            time.sleep(0.4)  # longer than stable_after: each death is a first one
            sup.kill("child")
            sup.wait_restarted("child", since=count, timeout=10)
    finally:
        sup.stop_all()
    assert [(e.exit_code, e.attempt, e.delay) for e in sup.history] == [(-9, 1, 0.05)] * 3


def test_intentional_stops_are_not_restarted(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, {}, backoff=Backoff(initial=0.05))
    proc = sup.start(_script("import time; time.sleep(60)"))
    sup.stop("child")
    assert proc.returncode == -signal.SIGTERM
    time.sleep(0.5)
    assert "child" not in sup.processes and sup.restarts["child"] == 0
    sup.start(_script("import time; time.sleep(60)"))
    with pytest.raises(RuntimeError, match="already running"):
        sup.start(_script("pass"))
    sup.stop_all()
    time.sleep(0.3)
    assert sup.restarts["child"] == 0 and sup.history == []


# -- Redis durability ----------------------------------------------------------------------


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_redis_restart_keeps_what_it_accepted(tmp_path: Path, kill: bool) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        r = redis.Redis.from_url(server.url)
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        r.set("ff:test:accepted", "yes")
        r.lpush("ff:test:queue", *range(100))
        if kill:
            time.sleep(1.5)  # everysec: a SIGKILL can lose the last second, not more
        port = server.port
        server.restart(kill=kill)
        assert server.port == port
        r = redis.Redis.from_url(server.url)
        assert r.get("ff:test:accepted") == b"yes"
        assert r.llen("ff:test:queue") == 100
    finally:
        server.stop()


# -- a supervised fleet ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, RedisServer]]:
    """Two sites on their own persistent Redis; the server is the test's to restart."""
    tmp = tmp_path_factory.mktemp("supervision")
    server = RedisServer(tmp / "redis").start()
    api_port = free_port()
    env = {
        **FAST_FLEET_ENV,
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
    }
    fleet = Fleet(
        [SiteSpec("paris", 2), SiteSpec("newyork", 1)], env, tmp / "logs", api_port=api_port
    )
    try:
        fleet.start()
        fleet.wait_ready()
        yield fleet, server
    finally:
        fleet.stop()
        server.stop()


@pytest.fixture(scope="module")
def fleet(fleet_redis: tuple[Fleet, RedisServer]) -> Fleet:
    return fleet_redis[0]


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def _submit(api: httpx.Client, number: str, pages: int = 1, priority: int = 5) -> str:
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        data={"to": [number], "priority": str(priority)},
        files=[("documents", ("doc.txt", paged_text(pages), "text/plain"))],
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _wait(api: httpx.Client, fax_id: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
            if fax["state"] in states:
                return fax
        except httpx.HTTPError:
            fax = {}  # the API node may be the one being restarted
        assert time.monotonic() < deadline, json.dumps(fax, indent=1)[:3000]
        time.sleep(0.05)


def _report(**fields: object) -> None:
    print(" ".join(f"{k}={v}" for k, v in fields.items()), file=sys.stderr)


fleet_test = pytest.mark.fleet

KINDS = [
    "dispatcher",
    "site-paris",
    "events-paris",
    "notify-paris",
    "routing",
    "render",
    "timers",
    "routing-admin",
    "api",
]


@fleet_test
@pytest.mark.parametrize("name", KINDS)
def test_a_killed_service_comes_back_and_the_fleet_still_sends(
    fleet: Fleet, api: httpx.Client, name: str
) -> None:
    fleet.wait_ready()
    before = fleet.restarts[name]
    started = time.monotonic()
    pid = fleet.kill(name)
    fleet.wait_restarted(name, since=before, timeout=30)
    restarted = time.monotonic() - started
    fleet.wait_service_ready(name, timeout=60)
    ready = time.monotonic() - started
    assert fleet.processes[name].pid != pid
    event = fleet.restart_history[-1]
    assert (event.service, event.exit_code) == (name, -signal.SIGKILL)
    line = f"service={name} exit_code=-9 attempt={event.attempt} delay={event.delay:g}"
    assert line in (fleet.log_dir / "fleet.log").read_text()

    fax_id = _submit(api, "+33142685700")
    fax = _wait(api, fax_id, SETTLED)
    done = time.monotonic() - started
    assert fax["state"] == "done", fax
    _report(
        killed=name, restarted_s=f"{restarted:.2f}", ready_s=f"{ready:.2f}", done_s=f"{done:.2f}"
    )


@fleet_test
def test_a_service_stopped_on_purpose_stays_stopped(fleet: Fleet) -> None:
    fleet.wait_ready()
    before = fleet.restarts["notify-newyork"]
    fleet.stop_service("notify-newyork")
    time.sleep(1.5)  # three times the first backoff step
    assert "notify-newyork" not in fleet.processes
    assert fleet.restarts["notify-newyork"] == before
    fleet.start_service(fleet.spec("notify-newyork"))
    fleet.wait_ready()


@fleet_test
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_fleet_survives_a_redis_restart(
    fleet_redis: tuple[Fleet, RedisServer], api: httpx.Client, kill: bool
) -> None:
    """Faxes on the wire when Redis goes: workers holding unacknowledged messages (the
    site workers' send orders) are the ones Celery is known to lose. Whatever exits is
    restarted; every fax accepted before the restart is still there and settles; a fax
    submitted right after Redis is back is sent. Whether a worker exits depends on timing, so the
    test records which did and asserts only what must hold either way."""
    fleet, server = fleet_redis
    fleet.wait_ready()
    ids = [_submit(api, f"+3314268571{i}", pages=30) for i in range(3)]
    ids.append(_submit(api, "+12125550171", pages=30))
    on_the_wire = 0
    deadline = time.monotonic() + 30
    while on_the_wire < 2:
        states = [api.get(f"/v1/faxes/{i}", headers=ACME).json()["state"] for i in ids]
        on_the_wire = sum(s in ("dialing", "sending") for s in states)
        assert time.monotonic() < deadline, f"no fax reached a line: {states}"
        time.sleep(0.05)
    time.sleep(1.1)  # appendfsync everysec: what a SIGKILL may lose is the last second
    seen = len(fleet.restart_history)
    counts = dict(fleet.restarts)

    started, wall = time.monotonic(), time.time()
    server.restart(kill=kill)
    redis_back = time.monotonic() - started
    # Urgent, so it goes ahead of the interrupted faxes once a line is back.
    fax_id = _submit(api, "+33142685719", priority=9)
    fax = _wait(api, fax_id, SETTLED, timeout=90)
    done = time.monotonic() - started
    assert fax["state"] == "done", fax

    # A worker that hits the error shuts down warm: it leaves routing at once but exits
    # only when the calls on its lines have ended. Wait for those faxes to settle.
    final = [_wait(api, i, SETTLED, timeout=120)["state"] for i in ids]
    time.sleep(1.0)
    fleet.wait_ready(timeout=90)
    exits = fleet.restart_history[seen:]
    for event in exits:  # every exit was answered with a restart
        assert fleet.restarts[event.service] > counts.get(event.service, 0)
    assert all(proc.poll() is None for proc in fleet.processes.values())
    # Accepted before the restart: still there, and each one settled (never stuck).
    assert set(final) <= SETTLED
    _report(
        redis_restart="sigkill" if kill else "sigterm",
        exited=",".join(f"{e.service}({e.exit_code})@{e.at - wall:.1f}s" for e in exits) or "none",
        redis_back_s=f"{redis_back:.2f}",
        next_fax_done_s=f"{done:.2f}",
        earlier_faxes=",".join(final),
    )
