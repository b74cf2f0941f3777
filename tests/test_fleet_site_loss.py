"""Losing a site and getting it back: a worker stopped with SIGTERM finishes its call; a
home site whose notifiers are down hears its faxes' outcomes when they return, exactly
once; a site cut off from Redis in the middle of a call finishes it, keeps its result on
disk and reports it when the link is back, which settles the uncertain outcome and is
notified."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.topology import ServiceSpec
from tests import netns_link
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


def test_a_lost_notification_message_is_queued_again_and_delivered_once(
    fleet: Fleet, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    """The notify message vanishes (as with a worker killed holding it, or a Redis that
    forgot it): the outbox queues it again and the user gets exactly one mail."""
    fleet.stop_service("notify-paris")
    fax_id = _submit(api, "+33142685703", pages=1, email="lost@example.com")
    _wait(api, fax_id, lambda f: f["state"] == "done")
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    lost = [k for k in r.scan_iter(match="notify.paris*") if r.type(k) == b"list"]
    assert lost, "the notification should be waiting in the home site's queue"
    r.delete(*lost)
    fleet.start_service(fleet.spec("notify-paris"))
    fleet.wait_ready()
    smtp_server.inbox.wait_for(lambda m: m["X-Faxfleet-Job"] == fax_id, timeout=60)
    time.sleep(2.0)
    assert len(_mails(smtp_server, fax_id)) == 1
    assert r.zscore("ff:notify:outbox", f"{fax_id}|done|email") is None  # settled


def _cut_mid_call(
    fleet: Fleet,
    api: httpx.Client,
    smtp_server: SmtpServer,
    cut_spec: ServiceSpec,
    cut: Callable[[], None],
    restore: Callable[[], None],
    number: str,
) -> None:
    """Run paris's worker as ``cut_spec``, cut it off on page 2 of 10 of a call, and
    check what the fleet, the far end and the user see, before and after ``restore``."""
    spec = fleet.spec("site-paris")
    fleet.stop_service("site-paris")
    fleet.start_service(cut_spec)
    fleet.wait_ready()
    try:
        fax_id = _submit(api, number, pages=10, email="cut@example.com")
        _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 2)
        cut()
        # The fleet loses sight of the call: uncertain, and the user hears so.
        fax = _wait(api, fax_id, lambda f: f["state"] == "outcome_uncertain", timeout=30)
        assert fax["recipients"][0]["attempt"] == 1
        smtp_server.inbox.wait_for(
            lambda m: m["X-Faxfleet-Job"] == fax_id and "uncertain" in m["Subject"], timeout=30
        )
        # Meanwhile the site's line finishes the call: the far end has every page.
        deadline = time.monotonic() + 60
        while not _calls(fleet, number):
            assert time.monotonic() < deadline, "the cut-off site did not finish its call"
            time.sleep(0.2)
        assert _calls(fleet, number)[0]["pages"] == list(range(1, 11))
        time.sleep(1.0)
        restore()
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
        restore()
        fleet.stop_service("site-paris", kill=True)
        fleet.start_service(spec)
        fleet.wait_ready()


def test_a_site_cut_off_mid_call_finishes_it_and_reports_when_back(
    fleet: Fleet, api: httpx.Client, smtp_server: SmtpServer
) -> None:
    """Only paris's worker reaches Redis through the relay; cutting it (every connection
    closed, new ones refused) cuts paris off."""
    url = urlparse(fleet.env["FAXFLEET_REDIS_URL"])
    link = NetCut(int(url.port or 6379))
    spec = fleet.spec("site-paris")
    via = f"redis://127.0.0.1:{link.port}{url.path}"
    direct = fleet.env["FAXFLEET_REDIS_URL"]  # the telephone network is not cut
    cut_env = {**spec.env, "FAXFLEET_REDIS_URL": via, "FAXFLEET_SIM_NETWORK_REDIS_URL": direct}
    cut_spec = dataclasses.replace(spec, env=cut_env)

    def restore() -> None:
        if link._server is None:
            link.restore()

    try:
        _cut_mid_call(fleet, api, smtp_server, cut_spec, link.cut, restore, "+33142685702")
    finally:
        link.close()


def test_a_site_whose_network_goes_down_mid_call_finishes_it_and_reports_when_back(
    fleet: Fleet, api: httpx.Client, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Paris's worker runs in a network namespace of its own and reaches Redis over a
    veth link; the link is set down mid-call: no connection is closed, packets just stop
    (tests/netns_link.py). The worker's Redis calls time out instead of failing fast."""
    reason = netns_link.available()
    if reason is not None:
        pytest.skip(reason)
    url = urlparse(fleet.env["FAXFLEET_REDIS_URL"])
    link = netns_link.SiteLink(int(url.port or 6379), tmp_path)
    spec = fleet.spec("site-paris")
    cut_env = {
        **spec.env,
        "FAXFLEET_REDIS_URL": link.redis_url(url.path or "/0"),
        "FAXFLEET_SIM_NETWORK_REDIS_URL": link.phone_url(int(url.path.strip("/") or 0)),
    }
    cut_spec = dataclasses.replace(spec, env=cut_env, exec_via=link.exec_via)
    try:
        _cut_mid_call(fleet, api, smtp_server, cut_spec, link.down, link.up, "+33142685704")
    finally:
        link.close()
