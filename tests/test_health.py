"""Health that tells the truth: the pure checks, then a real fleet whose /healthz fails
when a site is gone, a needed process is dead, faxes wait past their promise with lines
free, or Redis is down, and recovers when each comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.health import REQUIRED, SiteHealth, Snapshot, assess
from faxfleet.messages import DispatchSummary, now
from tests.conftest import paged_text, running_fleet

ACME = {"X-API-Key": "acme-key"}


def healthy(**changes: object) -> Snapshot:
    at = now()
    snap = Snapshot(
        at=at,
        sites=[SiteHealth(name="paris", lines_up=2, busy=1, held=1, leased=1)],
        processes={kind: 1 for kind in REQUIRED} | {"api": 2, "notify.paris": 1},
        dispatch=DispatchSummary(at=at, waiting={5: 3}, overdue=0, free_lines=1),
    )
    return snap.model_copy(update=changes)


def test_a_fleet_that_can_send_is_healthy() -> None:
    verdict = assess(healthy())
    assert verdict.ok and verdict.problems == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"redis_error": "Connection refused"}, "redis unreachable"),
        ({"sites": []}, "no site reachable"),
        ({"sites": [SiteHealth(name="paris", lines_up=0, busy=0, held=0, leased=0)]}, "no site"),
        ({"processes": {"timers": 1, "router": 1, "render": 1}}, "no live dispatcher"),
        ({"home_sites": ["paris"]}, "no live events worker for home site paris"),
        ({"dispatch": None}, "dispatcher has not completed a pass"),
        (
            {"dispatch": lambda: DispatchSummary(at=now() - timedelta(seconds=60), free_lines=1)},
            "dispatcher has not completed a pass",
        ),
        (
            {
                "dispatch": lambda: DispatchSummary(
                    at=now(), waiting={9: 2}, overdue=2, free_lines=1
                )
            },
            "2 fax(es) waiting past their promise with 1 line(s) free",
        ),
        (
            {"sites": [SiteHealth(name="paris", lines_up=1, busy=0, held=3, leased=0)]},
            "site paris holds 3 faxes for 1 line(s)",
        ),
    ],
)
def test_each_reason_the_fleet_cannot_send_is_named(changes: dict, expected: str) -> None:
    # Summaries are made when the test runs (their age is part of the check).
    changes = {k: v() if callable(v) else v for k, v in changes.items()}
    verdict = assess(healthy(**changes))
    assert not verdict.ok
    assert any(expected in p for p in verdict.problems), verdict.problems


def test_overdue_faxes_with_every_line_busy_are_not_a_fault() -> None:
    busy = DispatchSummary(at=now(), waiting={9: 5}, overdue=5, free_lines=0)
    assert assess(healthy(dispatch=busy)).ok


# -- a real fleet -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("health"), [SiteSpec("paris", 2)]) as fleet:
        yield fleet


def _health(fleet: Fleet) -> tuple[int, dict]:
    resp = httpx.get(f"{fleet.api_url}/healthz", timeout=10)
    return resp.status_code, resp.json()


def _until(fleet: Fleet, predicate, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = _health(fleet)
        if predicate(code, body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.mark.fleet
def test_healthz_follows_the_fleet(fleet: Fleet) -> None:
    body = _until(fleet, lambda code, _: code == 200)
    assert body["ok"] and body["snapshot"]["processes"]["dispatcher"] >= 1
    assert httpx.get(f"{fleet.api_url}/readyz", timeout=5).status_code == 200

    # The only site goes away: the fleet cannot send, and says so.
    fleet.stop_service("site-paris")
    body = _until(fleet, lambda code, _: code == 503)
    assert any("no site reachable" in p for p in body["problems"])
    fleet.start_service(fleet.spec("site-paris"))
    _until(fleet, lambda code, _: code == 200, timeout=60)

    # The dispatcher dies: nothing can be placed.
    fleet.stop_service("dispatcher", kill=True)
    body = _until(fleet, lambda code, b: any("dispatcher" in p for p in b["problems"]))
    fleet.start_service(fleet.spec("dispatcher"))
    _until(fleet, lambda code, _: code == 200, timeout=60)


@pytest.mark.fleet
def test_faxes_past_their_promise_with_lines_free_fail_health(fleet: Fleet) -> None:
    """Two urgent faxes to one number on a two-line site: the second must wait for the
    first call (one call per number) while a line is free, past its promise of 0 s."""
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    r.rpush(keys.sim_script("+33142685900"), "stall:6")  # the first call lasts seconds
    with httpx.Client(base_url=fleet.api_url, timeout=30) as api:
        for _ in range(2):
            resp = api.post(
                "/v1/faxes",
                headers=ACME,
                data={"to": ["+33142685900"], "priority": "9"},
                files=[("documents", ("doc.txt", paged_text(8), "text/plain"))],
            )
            assert resp.status_code == 201, resp.text
    body = _until(fleet, lambda code, b: any("past their promise" in p for p in b["problems"]))
    assert body["snapshot"]["dispatch"]["free_lines"] >= 1
    _until(fleet, lambda code, _: code == 200, timeout=90)


@pytest.mark.fleet
def test_fleet_view_and_cli_show_processes_and_leases(fleet: Fleet) -> None:
    from click.testing import CliRunner

    from faxfleet.cli import cli

    _until(fleet, lambda code, _: code == 200, timeout=60)
    result = CliRunner().invoke(
        cli, ["--api", fleet.api_url, "--api-key", "acme-key", "sites"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "processes alive:" in result.output and "dispatcher 1" in result.output
    assert "health: ok" in result.output
    assert "held / leased" in result.output


def test_a_redis_that_does_not_answer_is_reported() -> None:
    from faxfleet.health import snapshot
    from faxfleet.redis_server import free_port

    snap = snapshot(redis.Redis(port=free_port(), socket_connect_timeout=1))
    assert snap.redis_error
    verdict = assess(snap)
    assert not verdict.ok and verdict.problems[0].startswith("redis unreachable")
