"""Faxes whose outcome is uncertain, on a real fleet: a site worker killed mid-call leaves
them ``outcome_uncertain``; an operator resolves them (API, CLI), or a late result from the
site settles them. The user hears each distinct settled outcome exactly once, by mail and
by callback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from email.message import Message

import httpx
import pytest
import redis
from click.testing import CliRunner

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.cli import cli
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.messages import AttemptResult, NotifyOrder, now
from faxfleet.settings import Settings
from tests.conftest import Receiver, SmtpServer, paged_text, running_fleet
from tests.fleet_api import fax as _fax
from tests.fleet_api import wait_fax as _wait

pytestmark = pytest.mark.fleet

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
ADMIN = {"X-API-Key": "admin-key"}
PAGES = 12
NUMBERS = {
    "sent": "+33142685601",
    "resend": "+33142685602",
    "late": "+33142685603",
    "cli": "+33142685604",
}


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer, webhook_receiver: Receiver
) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("resolve"),
        [SiteSpec("paris", len(NUMBERS))],
        {
            "FAXFLEET_SMTP_PORT": str(smtp_server.port),
            "FAXFLEET_ADMIN_KEYS": "admin-key",
            # The watchdog (3 s at this time scale) declares the killed calls uncertain
            # before their leases run out: the far end may hold pages of each.
            "FAXFLEET_LEASE_SECONDS": "8",
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


@pytest.fixture(scope="module")
def uncertain(fleet: Fleet, api: httpx.Client, webhook_receiver: Receiver) -> dict[str, str]:
    """Four faxes left ``outcome_uncertain`` by killing the site worker mid-call (each
    with some pages confirmed), the worker restarted: name -> fax id."""
    ids = {}
    for name, number in NUMBERS.items():
        resp = api.post(
            "/v1/faxes",
            headers=ACME,
            data={
                "to": [number],
                "notify_email": f"{name}@example.com",
                "callback_url": webhook_receiver.url,
            },
            files=[("documents", ("doc.txt", paged_text(PAGES), "text/plain"))],
        )
        assert resp.status_code == 201, resp.text
        ids[name] = resp.json()["id"]
    for fax_id in ids.values():
        _wait(api, fax_id, lambda f: (f["recipients"][0]["page"] or 0) >= 3)
    fleet.stop_service("site-paris", kill=True)
    for fax_id in ids.values():
        fax = _wait(api, fax_id, lambda f: f["state"] == "outcome_uncertain", timeout=30)
        assert 1 <= fax["recipients"][0]["pages_confirmed"] < PAGES
    # The site comes back on another node: nothing proves the old worker's calls ended
    # (on the same node its successor would, and the faxes would go on by themselves).
    spec = fleet.spec("site-paris")
    fleet.start_service(replace(spec, env={**spec.env, "FAXFLEET_NODE_NAME": "standby"}))
    fleet.wait_ready()
    return ids


def _mails(smtp: SmtpServer, fax_id: str, outcome: str, timeout: float = 30) -> list[Message]:
    """The mails about ``fax_id`` whose subject states ``outcome`` (waits for one)."""
    return smtp.inbox.wait_for(
        lambda m: m["X-Faxfleet-Job"] == fax_id and outcome in m["Subject"], timeout
    )


def _callbacks(receiver: Receiver, fax_id: str, state: str, timeout: float = 30) -> list[dict]:
    return receiver.wait_for(
        lambda c: (
            c.get("body", {}).get("fax", {}).get("id") == fax_id
            and c["body"]["fax"]["state"] == state
        ),
        timeout,
    )


def _notified_once_each(
    smtp: SmtpServer, receiver: Receiver, fax_id: str, final: str, final_subject: str
) -> None:
    """One mail and one callback when the fax became uncertain, one of each with its final
    outcome, and nothing else (after the notifier had time to send any copy)."""
    assert len(_mails(smtp, fax_id, final_subject)) == 1
    assert len(_callbacks(receiver, fax_id, final)) == 1
    time.sleep(1.0)
    mails = [m for _, _, m in smtp.inbox.messages if m["X-Faxfleet-Job"] == fax_id]
    subjects = sorted(m["Subject"] for m in mails)
    assert len(mails) == 2, subjects
    assert sum("outcome uncertain" in s for s in subjects) == 1, subjects
    assert sum(final_subject in s for s in subjects) == 1, subjects
    final_mail = next(m for m in mails if final_subject in m["Subject"])
    assert "this is its final outcome" in final_mail.get_payload(decode=True).decode()
    calls = [c for c in receiver.calls if c.get("body", {}).get("fax", {}).get("id") == fax_id]
    assert sorted(c["body"]["fax"]["state"] for c in calls) == sorted(["outcome_uncertain", final])
    assert all(c["verified"] for c in calls)


def _resolve(api: httpx.Client, fax_id: str, headers: dict, **body: object) -> httpx.Response:
    return api.post(f"/v1/faxes/{fax_id}/resolve", headers=headers, json=body)


def test_resolved_as_sent_by_the_tenant_is_done_and_names_who(
    api: httpx.Client,
    uncertain: dict[str, str],
    smtp_server: SmtpServer,
    webhook_receiver: Receiver,
) -> None:
    fax_id = uncertain["sent"]
    assert len(_mails(smtp_server, fax_id, "outcome uncertain")) == 1
    confirmed = _fax(api, fax_id)["recipients"][0]["pages_confirmed"]

    resp = _resolve(api, fax_id, ACME, outcome="sent", user="bob", note="they have it all")
    assert resp.status_code == 200, resp.text
    fax = resp.json()
    rcpt = fax["recipients"][0]
    assert fax["state"] == rcpt["state"] == "done"
    assert rcpt["pages_confirmed"] == PAGES
    [move] = [t for t in fax["history"] if t["to_state"] == "done" and t["recipient"] == 0]
    assert move["from_state"] == "outcome_uncertain"
    assert move["detail"].startswith("resolved as sent by tenant acme (user bob, key ")
    far_end = f"not by the far end (the far end confirmed {confirmed} of {PAGES} pages)"
    assert far_end in move["detail"]
    assert move["detail"].endswith("note: they have it all")

    _notified_once_each(smtp_server, webhook_receiver, fax_id, "done", "delivered")

    again = _resolve(api, fax_id, ACME, outcome="sent")
    assert again.status_code == 409, again.text
    assert again.json()["detail"] == f"fax {fax_id} is done: no recipient's outcome is uncertain"
    one = _resolve(api, fax_id, ACME, outcome="resend", recipient=0)
    assert one.status_code == 409
    assert one.json()["detail"] == (f"recipient 0 of fax {fax_id} is done, not outcome_uncertain")


def test_another_tenant_cannot_resolve_and_bad_requests_are_refused(
    api: httpx.Client, uncertain: dict[str, str]
) -> None:
    fax_id = uncertain["resend"]
    assert _resolve(api, fax_id, GLOBEX, outcome="sent").status_code == 404
    assert _resolve(api, "fx_nosuchfax", ADMIN, outcome="sent").status_code == 404
    assert _resolve(api, fax_id, {"X-API-Key": "wrong"}, outcome="sent").status_code == 401
    assert _resolve(api, fax_id, ACME, outcome="maybe").status_code == 422
    assert _resolve(api, fax_id, ACME, outcome="sent", recipient=3).status_code == 422
    assert _resolve(api, fax_id, ACME, outcome="sent", from_start=True).status_code == 422
    assert _fax(api, fax_id)["state"] == "outcome_uncertain"


def test_resend_by_an_admin_goes_out_again_from_the_first_unconfirmed_page(
    api: httpx.Client,
    rc: redis.Redis,
    uncertain: dict[str, str],
    smtp_server: SmtpServer,
    webhook_receiver: Receiver,
) -> None:
    fax_id = uncertain["resend"]
    confirmed = _fax(api, fax_id)["recipients"][0]["pages_confirmed"]

    resp = _resolve(api, fax_id, ADMIN, outcome="resend", recipient=0)
    assert resp.status_code == 200, resp.text
    assert resp.json()["recipients"][0]["state"] not in ("outcome_uncertain", "done")

    fax = _wait(api, fax_id, lambda f: f["state"] in ("done", "failed"), timeout=90)
    rcpt = fax["recipients"][0]
    assert fax["state"] == "done", json.dumps(fax, indent=1)[:4000]
    assert rcpt["attempt"] == 2
    assert rcpt["pages_confirmed"] == PAGES
    [order] = [
        t for t in fax["history"] if t["from_state"] == "outcome_uncertain" and t["recipient"] == 0
    ]
    assert order["to_state"] == "routing"
    assert order["detail"].startswith("resend ordered by admin (key ")
    assert f"from page {confirmed + 1} " in order["detail"]
    calls = [
        json.loads(x)
        for x in rc.lrange(keys.sim_received(NUMBERS["resend"]), 0, -1)
        if json.loads(x)["job"] == fax_id
    ]
    # The killed call never finished; the resend sent only what was not confirmed.
    assert [c["pages"] for c in calls] == [list(range(confirmed + 1, PAGES + 1))]

    _notified_once_each(smtp_server, webhook_receiver, fax_id, "done", "delivered")


def test_late_result_settles_it_and_is_notified_exactly_once(
    fleet: Fleet,
    api: httpx.Client,
    rc: redis.Redis,
    uncertain: dict[str, str],
    smtp_server: SmtpServer,
    webhook_receiver: Receiver,
) -> None:
    fax_id = uncertain["late"]
    assert len(_mails(smtp_server, fax_id, "outcome uncertain")) == 1
    rcpt = _fax(api, fax_id)["recipients"][0]
    app = names.make_celery("test-late", Settings(redis_url=fleet.env["FAXFLEET_REDIS_URL"]))
    late = AttemptResult(
        job_id=fax_id,
        recipient=0,
        attempt=rcpt["attempt"],
        seq=rcpt["event_seq"] + 100,
        site="paris",
        line=rcpt["line"] or "paris-1",
        ok=True,
        pages_confirmed=PAGES,
        connected=True,
        remote_id="LATE",
        at=now(),
    )
    names.emit(app, late, "paris")
    fax = _wait(api, fax_id, lambda f: f["state"] == "done")
    assert fax["recipients"][0]["remote_id"] == "LATE"
    assert len(_mails(smtp_server, fax_id, "delivered")) == 1

    # The same result redelivered, and the notification orders repeated (as a broker
    # redelivering them would): no second copy of anything.
    names.emit(app, late, "paris")
    for channel, target in (("email", "late@example.com"), ("webhook", webhook_receiver.url)):
        order = NotifyOrder(job_id=fax_id, home_site="paris", channel=channel, target=target)
        names.send(app, names.NOTIFY_TASK, "order", order, names.notify_queue("paris"), 0)
    deadline = time.monotonic() + 10
    while names.queue_depth(rc, names.notify_queue("paris")) or names.queue_depth(
        rc, names.events_queue("paris")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _notified_once_each(smtp_server, webhook_receiver, fax_id, "done", "delivered")
    app.close()


def test_cli_resolves_and_reports_refusals(
    fleet: Fleet,
    api: httpx.Client,
    uncertain: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faxfleet import cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 200)
    fax_id = uncertain["cli"]
    runner = CliRunner()
    tenant = ["--api", fleet.api_url, "--api-key", "acme-key"]
    neither = runner.invoke(cli, [*tenant, "resolve", fax_id], obj={})
    assert neither.exit_code == 2 and "--sent or --resend" in neither.output
    stranger = runner.invoke(
        cli,
        ["--api", fleet.api_url, "--api-key", "globex-key", "resolve", fax_id, "--sent"],
        obj={},
    )
    assert stranger.exit_code == 1 and "404" in stranger.output

    done = runner.invoke(
        cli,
        [*tenant, "resolve", fax_id, "--sent", "--user", "carol", "--note", "fax log shows OK"],
        obj={},
    )
    assert done.exit_code == 0, done.output
    assert f"{fax_id}: done" in done.output
    fax = _fax(api, fax_id)
    [move] = [t for t in fax["history"] if t["to_state"] == "done" and t["recipient"] == 0]
    assert move["detail"].startswith("resolved as sent by tenant acme (user carol, key ")
    assert move["detail"].endswith("note: fax log shows OK")

    admin = [*tenant, "--admin-key", "admin-key", "resolve", fax_id, "--admin", "--resend"]
    refused = runner.invoke(cli, admin, obj={})
    assert refused.exit_code == 1
    assert "409" in refused.output and "is done" in refused.output
