"""Job control on a real fleet (one site, one line): an altered priority changes the order
faxes go out, a new number of a fax waiting for a line is dialled instead of the old one,
and a failed fax requeued is sent (and its user hears both outcomes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import redis
from click.testing import CliRunner

from faxfleet import keys
from faxfleet.cli import cli
from faxfleet.fleet import Fleet, SiteSpec
from routing.dispatcher import WAITING
from tests.conftest import SmtpServer, running_fleet
from tests.fleet_api import ACME, submit, wait_fax
from tests.test_fleet_e2e import pages_received

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("alter"),
        [SiteSpec("paris", 1)],
        {
            "FAXFLEET_SMTP_PORT": str(smtp_server.port),
            # A call held up by its far end for seconds is still in progress, not silent.
            "FAXFLEET_STUCK_AFTER_SECONDS": "10000",
        },
    ) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def rc(fleet: Fleet) -> redis.Redis:
    return redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])


def _waiting(rc: redis.Redis, fax_id: str, attempt: int = 1) -> float:
    deadline = time.monotonic() + 30
    while (score := rc.zscore(WAITING, f"{fax_id}:0:{attempt}")) is None:
        assert time.monotonic() < deadline, f"{fax_id} never waited for a line"
        time.sleep(0.02)
    return score


def _dialled_at(fax: dict) -> datetime:
    return datetime.fromisoformat(
        next(t["at"] for t in fax["history"] if t["to_state"] == "dialing")
    )


def test_an_altered_fax_goes_out_in_its_new_place_to_its_new_number(
    api: httpx.Client, rc: redis.Redis
) -> None:
    busy, old, new = "+33142685700", "+33142685703", "+33142685793"
    rc.rpush(keys.sim_script(busy), "stall:10")  # holds the only line for 10 s
    first = submit(api, busy, 2)
    wait_fax(api, first, lambda f: f["recipients"][0]["state"] == "sending")
    b = submit(api, "+33142685701", 1)
    c = submit(api, "+33142685702", 1)
    d = submit(api, old, 1)
    for fax_id in (b, c, d):
        _waiting(rc, fax_id)

    raised = api.patch(f"/v1/faxes/{c}", headers=ACME, json={"priority": 9})
    assert raised.status_code == 200, raised.text
    deadline = time.monotonic() + 10
    while _waiting(rc, c) > _waiting(rc, b):  # routing re-scores it in place
        assert time.monotonic() < deadline, "the raised fax was not re-scored"
        time.sleep(0.02)

    moved = api.patch(f"/v1/faxes/{d}", headers=ACME, json={"numbers": {old: new}})
    assert moved.status_code == 202, moved.text
    assert moved.json()["recipients"][0]["pending"]["number"] == new
    fax = wait_fax(api, d, lambda f: f["recipients"][0]["pending"] is None, timeout=10)
    rcpt = fax["recipients"][0]
    assert (rcpt["number"], rcpt["attempt"], rcpt["state"]) == (new, 2, "routing")
    _waiting(rc, d, attempt=2)
    # all of it while the line was still busy: the order below is the dispatcher's
    assert wait_fax(api, first, lambda f: True)["state"] == "sending"

    done = {
        fax_id: wait_fax(api, fax_id, lambda f: f["state"] in ("done", "failed"), timeout=60)
        for fax_id in (first, b, c, d)
    }
    assert all(f["state"] == "done" for f in done.values()), done
    order = sorted((b, c, d), key=lambda fax_id: _dialled_at(done[fax_id]))
    assert order == [c, b, d]
    assert pages_received(rc, new, d) == [1]
    assert pages_received(rc, old, d) == []


def test_a_requeued_failed_fax_is_sent_and_both_outcomes_are_notified(
    fleet: Fleet, api: httpx.Client, rc: redis.Redis, smtp_server: SmtpServer
) -> None:
    number = "+33142685710"
    rc.rpush(keys.sim_script(number), *(["no_answer"] * 4))  # FAXFLEET_MAX_DIALS
    fax_id = submit(api, number, 2, email="ops@example.com")
    fax = wait_fax(api, fax_id, lambda f: f["state"] in ("done", "failed"), timeout=60)
    assert (fax["state"], fax["recipients"][0]["cause"]) == ("failed", "too_many_dials")
    smtp_server.inbox.wait_for(lambda m: m["X-Faxfleet-Job"] == fax_id and "failed" in m["Subject"])

    runner = CliRunner()
    base = ["--api", fleet.api_url, "--api-key", "acme-key"]
    requeued = runner.invoke(cli, [*base, "requeue", fax_id, "--note", "line fixed"], obj={})
    assert requeued.exit_code == 0, requeued.output

    fax = wait_fax(api, fax_id, lambda f: f["state"] in ("done", "failed"), timeout=60)
    assert fax["state"] == "done"
    assert fax["recipients"][0]["attempt"] == 5
    assert pages_received(rc, number, fax_id) == [1, 2]
    mails = smtp_server.inbox.wait_for(
        lambda m: m["X-Faxfleet-Job"] == fax_id and "delivered" in m["Subject"]
    )
    assert len(mails) == 1
    subjects = [
        m["Subject"] for _, _, m in smtp_server.inbox.messages if m["X-Faxfleet-Job"] == fax_id
    ]
    assert len(subjects) == 2, subjects
