"""Least-cost routing and load balancing on a real two-site fleet, configured through
the public API as an administrator would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.admin_client import AdminClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.sample_group import declare
from tests.conftest import paged_text, running_fleet

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("routing"),
        [SiteSpec("paris", 2), SiteSpec("newyork", 2)],
        {"FAXFLEET_SIM_PAGE_SECONDS": "0.3"},
    ) as fleet:
        with AdminClient(fleet.api_url, admin_key="admin-key") as admin:
            declare(admin, {"paris": 2, "newyork": 2})
        yield fleet


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def rc(fleet: Fleet) -> redis.Redis:
    return redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])


def submit(
    api: httpx.Client, number: str, *, priority: int = 5, pages: int = 1, home: str = "paris"
) -> str:
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        data={"to": [number], "priority": str(priority), "home_site": home},
        files=[("documents", ("doc.txt", paged_text(pages), "text/plain"))],
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def settled(api: httpx.Client, fax_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
        if fax["state"] in ("done", "failed", "cancelled", "outcome_uncertain"):
            return fax
        assert time.monotonic() < deadline, fax
        time.sleep(0.05)


def dialed(rc: redis.Redis, number: str, job: str) -> list[str]:
    return [
        rec["dialed"]
        for rec in map(json.loads, rc.lrange(keys.sim_received(number), 0, -1))
        if rec["job"] == job
    ]


def test_each_fax_goes_out_through_the_cheapest_site(api: httpx.Client, rc: redis.Redis):
    to_us = submit(api, "+12125550100", home="paris")
    to_fr = submit(api, "+33142685300", home="newyork")
    us, fr = settled(api, to_us), settled(api, to_fr)
    assert us["recipients"][0]["site"] == "newyork"
    assert fr["recipients"][0]["site"] == "paris"
    # each site dialled with its own rules: a local 7-digit call in New York, a national
    # call with the trunk prefix in Paris
    assert dialed(rc, "+12125550100", to_us) == ["5550100"]
    assert dialed(rc, "+33142685300", to_fr) == ["0142685300"]
    # the expected cost is recorded with the placement
    assert us["recipients"][0]["currency"] == "EUR"
    assert float(us["recipients"][0]["cost_estimate"]) < 0.05
    queued = next(t for t in us["history"] if t["to_state"] == "queued")
    assert "cheapest" in queued["detail"]
    # why that site, in a word and in full, and when it was placed and dialled
    r = us["recipients"][0]
    assert r["route_choice"] == "cheapest" and queued["detail"].startswith("cheapest: ")
    assert r["route_reason"].startswith("cheapest able to start within")
    times = [datetime.fromisoformat(r[k]) for k in ("queued_since", "routed_at", "call_started_at")]
    assert times == sorted(times)


def test_urgent_faxes_overflow_to_the_dearer_site_bulk_waits_for_the_cheap_one(
    api: httpx.Client,
) -> None:
    bulk = [submit(api, f"+1212555020{i}", priority=1, pages=3) for i in range(4)]
    urgent = [submit(api, f"+1212555030{i}", priority=9, pages=1) for i in range(4)]
    sent_by = {fid: settled(api, fid)["recipients"][0]["site"] for fid in bulk + urgent}
    # bulk faxes never pay Paris's price for +1: they wait for a New York line
    assert {sent_by[f] for f in bulk} == {"newyork"}
    # with New York's two lines busy, urgent faxes go now from Paris
    assert "paris" in {sent_by[f] for f in urgent}
    # ... and the fleet records why: an overflow for those, a wait for the bulk ones
    choice = {
        fid: api.get(f"/v1/faxes/{fid}", headers=ACME).json()["recipients"][0]["route_choice"]
        for fid in bulk + urgent
    }
    assert {choice[f] for f in urgent if sent_by[f] == "paris"} == {"overflow"}
    # (a bulk fax handed out the moment a New York line frees is "cheapest" then: which
    # of the two each one gets depends on the timing, never anything else)
    assert {choice[f] for f in bulk} <= {"cheapest", "waited"}


def test_adding_lines_to_a_running_site_takes_effect(api: httpx.Client, rc: redis.Redis):
    admin_headers = {"X-API-Key": "admin-key"}
    resp = api.patch("/v1/sites/newyork", headers=admin_headers, json={"lines": 4})
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 15
    while True:
        sites = {s["name"]: s for s in api.get("/v1/sites", headers=ACME).json()}
        if sites["newyork"]["lines_up"] == 4:
            break
        assert time.monotonic() < deadline, sites["newyork"]
        time.sleep(0.1)
    faxes = [submit(api, f"+1212555040{i}", priority=1, pages=4) for i in range(4)]
    results = [settled(api, fid) for fid in faxes]
    assert {r["recipients"][0]["site"] for r in results} == {"newyork"}
    lines = {t["line"] for r in results for t in r["history"] if t["to_state"] == "dialing"}
    assert len(lines) == 4  # four calls in parallel on the four lines


def test_a_standalone_site_sends_only_its_own_faxes(api: httpx.Client) -> None:
    admin_headers = {"X-API-Key": "admin-key"}
    assert api.delete("/v1/groups/global/sites/paris", headers=admin_headers).status_code == 200
    try:
        fax = settled(api, submit(api, "+12125550500", priority=9, home="paris"))
        assert fax["recipients"][0]["site"] == "paris"  # New York is cheaper, but not its group
        other = settled(api, submit(api, "+33142685501", priority=9, home="newyork"))
        assert other["recipients"][0]["site"] == "newyork"  # and nobody else uses Paris
    finally:
        api.put("/v1/groups/global/sites/paris", headers=admin_headers)


def test_a_number_no_site_can_dial_fails_with_no_route(api: httpx.Client) -> None:
    admin_headers = {"X-API-Key": "admin-key"}
    # Paris's table without the catch-all: it cannot dial +81 (Japan)
    table = api.get("/v1/sites/paris/costs", headers=admin_headers).text
    limited = "\n".join(line for line in table.splitlines() if not line.startswith("*"))
    assert (
        api.put(
            "/v1/sites/paris/costs",
            headers={**admin_headers, "Content-Type": "text/csv"},
            content=limited,
        ).status_code
        == 200
    )
    assert api.delete("/v1/groups/global/sites/paris", headers=admin_headers).status_code == 200
    try:
        fax = settled(api, submit(api, "+81312345678", home="paris"))
        assert fax["state"] == "failed"
        assert fax["recipients"][0]["cause"] == "no_route"
        assert "+81312345678" in fax["recipients"][0]["detail"]
    finally:
        api.put("/v1/groups/global/sites/paris", headers=admin_headers)
