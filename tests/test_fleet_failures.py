"""A site worker dying: never a duplicate send, never a fax stuck in "sending", and
faxes that find no site wait and go out when one comes back. Plus the monitoring events
Flower sees."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.celery_app import make_celery
from faxfleet.fleet import Fleet, ServiceSpec, SiteSpec
from faxfleet.redis_server import free_port
from faxfleet.settings import Settings
from tests.conftest import running_fleet
from tests.fleet_api import fax as _fax
from tests.fleet_api import submit as _submit
from tests.fleet_api import wait_fax as _wait

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("failures"),
        [SiteSpec("paris", 1)],
        {"FAXFLEET_SIM_PAGE_SECONDS": "0.3"},
    ) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def test_killed_site_worker_mid_fax_resumes_at_the_first_unconfirmed_page(
    fleet: Fleet, api: httpx.Client
) -> None:
    """The worker dies on page 3 of 12: its lease runs out and its slot is freed, but
    nothing is sent again until the site's next worker proves the old one gone; then the
    fax goes on from the first page the far end had not confirmed."""
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    number = "+33142685500"
    fax_id = _submit(api, number, pages=12)
    _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 3)
    fleet.stop_service("site-paris", kill=True)
    attempt = f"{fax_id}:0:1"
    deadline = time.monotonic() + 20
    while r.hget(keys.site_inflight("paris"), attempt) is not None:  # lease runs out
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert r.hexists(keys.in_doubt("paris"), attempt)
    fax = _fax(api, fax_id)
    assert fax["recipients"][0]["attempt"] == 1  # in doubt: not sent again on a lease alone
    confirmed = fax["recipients"][0]["pages_confirmed"]
    assert confirmed >= 2

    fleet.start_service(fleet.spec("site-paris"))
    fleet.wait_ready()
    fax = _wait(api, fax_id, lambda f: f["state"] == "done", timeout=60)
    rcpt = fax["recipients"][0]
    assert rcpt["pages_confirmed"] == 12
    assert rcpt["attempt"] == 2
    history = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()["history"]
    # (the "lease" note may be skipped: the proof can arrive before the lease notice)
    assert any("is gone" in (h["detail"] or "") for h in history)
    assert not r.hexists(keys.in_doubt("paris"), attempt)
    calls = [json.loads(c) for c in r.lrange(keys.sim_received(number), 0, -1)]
    # The killed call died with its far end; the far end's one completed call started
    # where the confirmed pages ended.
    assert [c["pages"] for c in calls] == [list(range(confirmed + 1, 13))]
    assert r.hlen(keys.site_inflight("paris")) == 0


def test_killed_on_the_last_page_is_uncertain_and_never_redialled(
    fleet: Fleet, api: httpx.Client
) -> None:
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    number = "+33142685503"
    fax_id = _submit(api, number, pages=3)
    _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 3)
    fleet.stop_service("site-paris", kill=True)

    fax = _wait(api, fax_id, lambda f: f["state"] == "outcome_uncertain", timeout=30)
    rcpt = fax["recipients"][0]
    assert rcpt["cause"] == "worker_lost"
    assert "not redialled" in rcpt["detail"]

    fleet.start_service(fleet.spec("site-paris"))
    fleet.wait_ready()
    # A fresh fax goes through the restarted worker...
    other = _submit(api, "+33142685501", pages=1)
    assert _wait(api, other, lambda f: f["state"] == "done")["recipients"][0]["site"] == "paris"
    # ...and the uncertain one was not dialled again, automatically or by redelivery.
    time.sleep(1.0)
    assert _fax(api, fax_id)["state"] == "outcome_uncertain"
    assert r.lrange(keys.sim_received(number), 0, -1) == []


def test_fax_without_a_site_waits_and_goes_when_one_returns(
    fleet: Fleet, api: httpx.Client
) -> None:
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    fleet.stop_service("site-paris")
    assert not r.exists(keys.site_status("paris"))  # a clean stop leaves routing at once
    fax_id = _submit(api, "+33142685502", pages=1)
    fax = _wait(api, fax_id, lambda f: f["recipients"][0]["cause"] == "no_site")
    assert fax["recipients"][0]["state"] in ("retry_scheduled", "routing")
    assert fax["recipients"][0]["dials"] == 0  # waiting for a site spends no dial
    fleet.start_service(fleet.spec("site-paris"))
    fleet.wait_ready()
    fax = _wait(api, fax_id, lambda f: f["state"] == "done")
    assert fax["recipients"][0]["pages_confirmed"] == 1


def test_state_changes_are_published_as_celery_events(fleet: Fleet, api: httpx.Client) -> None:
    app = make_celery("test-monitor", Settings(redis_url=fleet.env["FAXFLEET_REDIS_URL"]))
    seen: list[dict] = []
    ready = threading.Event()
    receivers: list = []

    def listen() -> None:
        with app.connection() as conn:
            recv = app.events.Receiver(conn, handlers={"task-faxfleet-state": seen.append})
            receivers.append(recv)
            ready.set()
            try:
                recv.capture(limit=None, timeout=20, wakeup=False)
            except Exception:
                return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.5)
    fax_id = _submit(api, "+33142685503", pages=1)
    _wait(api, fax_id, lambda f: f["state"] == "done")
    deadline = time.monotonic() + 10
    while not any(e["job"] == fax_id and e["state"] == "done" for e in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    receivers[0].should_stop = True
    thread.join(5)
    states = [e["state"] for e in seen if e["job"] == fax_id]
    assert states[0] == "routing" and states[-1] == "done"
    assert {"queued", "dialing", "sending"} <= set(states)


def test_flower_sees_the_fleets_tasks_behind_credentials_without_numbers(
    fleet: Fleet, api: httpx.Client
) -> None:
    """Flower as the topology starts it (``faxfleet.monitor``): every page needs the
    credentials, and the tasks it lists name the fax, never the number it is sent to."""
    port = free_port()
    auth = ("ops", "flower-test-password")
    spec = ServiceSpec(
        "flower-test",
        ["-m", "faxfleet.monitor", f"--port={port}", "--address=127.0.0.1"],
        {"FAXFLEET_FLOWER_BASIC_AUTH": ":".join(auth)},
    )
    fleet.start_service(spec)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Flower did not start"
            time.sleep(0.2)
        assert httpx.get(base + "/api/tasks", timeout=5).status_code == 401
        time.sleep(1.0)  # let Flower's event receiver attach
        number = "+33142685504"
        fax_id = _submit(api, number, pages=1)
        _wait(api, fax_id, lambda f: f["state"] == "done")
        deadline = time.monotonic() + 15
        while True:
            tasks = httpx.get(base + "/api/tasks", auth=auth, timeout=5).json()
            names = {t.get("name") for t in tasks.values()}
            if {"faxfleet.render", "faxfleet.route", "faxfleet.send"} <= names:
                break
            assert time.monotonic() < deadline, names
            time.sleep(0.3)
        sends = [t for t in tasks.values() if t.get("name") == "faxfleet.send"]
        assert any(fax_id in (t.get("kwargs") or "") for t in sends)
        shown = json.dumps(tasks)
        assert fax_id in shown and number not in shown and number[1:] not in shown
    finally:
        fleet.stop_service("flower-test")
