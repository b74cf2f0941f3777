"""Losing a site and getting it back: a worker stopped with SIGTERM finishes its call; a
home site whose notifiers are down hears its faxes' outcomes when they return, exactly
once; a site cut off from Redis in the middle of a call finishes it, keeps its result on
disk and reports it when the link is back, which settles the uncertain outcome and is
notified."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.fleet import Fleet, SiteSpec
from tests.conftest import SmtpServer, running_fleet
from tests.fleet_api import submit as _submit
from tests.fleet_api import wait_fax as _wait
from tests.netcut import NetCut

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("site-loss")
    with running_fleet(
        tmp,
        [SiteSpec("paris", 2)],
        {
            "FAXFLEET_SMTP_PORT": str(smtp_server.port),
            "FAXFLEET_SPOOL_DIR": str(tmp / "spool"),
            "FAXFLEET_SIM_PAGE_SECONDS": "0.3",
        },
    ) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def _calls(fleet: Fleet, number: str) -> list[dict]:
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    return [json.loads(c) for c in r.lrange(keys.sim_received(number), 0, -1)]


def _mails(smtp: SmtpServer, fax_id: str) -> list[str]:
    return [str(m["Subject"]) for _, _, m in smtp.inbox.messages if m["X-Faxfleet-Job"] == fax_id]


def test_sigterm_lets_the_call_finish(fleet: Fleet, api: httpx.Client) -> None:
    number = "+33142685700"
    fax_id = _submit(api, number, pages=8)
    _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 2)
    fleet.stop_service("site-paris", grace=60)  # SIGTERM to the worker's main process
    fax = _wait(api, fax_id, lambda f: f["state"] == "done", timeout=10)
    assert fax["recipients"][0]["attempt"] == 1
    assert [c["pages"] for c in _calls(fleet, number)] == [list(range(1, 9))]
    fleet.start_service(fleet.spec("site-paris"))
    fleet.wait_ready()


def test_a_home_site_without_notifiers_is_notified_when_they_return_exactly_once(
    fleet: Fleet, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    fleet.stop_service("notify-paris")
    fax_id = _submit(api, "+33142685701", pages=1, email="home@example.com")
    _wait(api, fax_id, lambda f: f["state"] == "done")
    time.sleep(1.0)
    assert _mails(smtp_server, fax_id) == []  # nobody at home to send it
    fleet.start_service(fleet.spec("notify-paris"))
    fleet.wait_ready()
    smtp_server.inbox.wait_for(lambda m: m["X-Faxfleet-Job"] == fax_id, timeout=30)
    time.sleep(1.0)
    assert len(_mails(smtp_server, fax_id)) == 1


def test_a_site_cut_off_mid_call_finishes_it_and_reports_when_back(
    fleet: Fleet, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    """Only paris's worker reaches Redis through the relay; cutting it cuts paris off."""
    url = urlparse(fleet.env["FAXFLEET_REDIS_URL"])
    link = NetCut(int(url.port or 6379))
    spec = fleet.spec("site-paris")
    via = f"redis://127.0.0.1:{link.port}{url.path}"
    direct = fleet.env["FAXFLEET_REDIS_URL"]  # the telephone network is not cut
    cut_env = {**spec.env, "FAXFLEET_REDIS_URL": via, "FAXFLEET_SIM_NETWORK_REDIS_URL": direct}
    cut_spec = dataclasses.replace(spec, env=cut_env)
    fleet.stop_service("site-paris")
    fleet.start_service(cut_spec)
    fleet.wait_ready()
    try:
        number = "+33142685702"
        fax_id = _submit(api, number, pages=10, email="cut@example.com")
        _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 2)
        link.cut()
        # The fleet loses sight of the call: uncertain, and the user hears so.
        fax = _wait(api, fax_id, lambda f: f["state"] == "outcome_uncertain", timeout=30)
        assert fax["recipients"][0]["attempt"] == 1
        smtp_server.inbox.wait_for(
            lambda m: m["X-Faxfleet-Job"] == fax_id and "uncertain" in m["Subject"], timeout=30
        )
        # Meanwhile the site's line finishes the call: the far end has every page.
        deadline = time.monotonic() + 30
        while not _calls(fleet, number):
            assert time.monotonic() < deadline, "the cut-off site did not finish its call"
            time.sleep(0.2)
        assert _calls(fleet, number)[0]["pages"] == list(range(1, 11))
        time.sleep(1.0)
        link.restore()
        fax = _wait(api, fax_id, lambda f: f["state"] == "done", timeout=90)
        assert fax["recipients"][0]["attempt"] == 1  # reported, not sent again
        assert len(_calls(fleet, number)) == 1
        smtp_server.inbox.wait_for(
            lambda m: m["X-Faxfleet-Job"] == fax_id and "delivered" in m["Subject"], timeout=30
        )
        time.sleep(1.0)
        subjects = _mails(smtp_server, fax_id)
        assert len(subjects) == 2, subjects
    finally:
        link.restore() if link._server is None else None
        fleet.stop_service("site-paris", kill=True)
        link.close()
        fleet.start_service(spec)
        fleet.wait_ready()
