"""Job control through the public API, on a real API process and the test's private Redis:
``PATCH /v1/faxes/{id}``, ``POST /v1/faxes/{id}/retry``, admin keys over every tenant's
faxes, and the ``faxfleet alter | requeue | status --all`` commands.

No fleet runs here: the faxes are moved to the state each test needs through the job
store and the lifecycle (as the event workers would), and what the API asks of routing
is read from the routing queue."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
from click.testing import CliRunner

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.cli import cli
from faxfleet.messages import (
    AttemptProgress,
    Cause,
    JobState,
    RenderDone,
    Routed,
    now,
)
from faxfleet.redis_server import RedisServer
from faxfleet.settings import Settings
from scheduler.lifecycle import Lifecycle
from scheduler.store import JobStore, notified_key
from tests.conftest import paged_text
from tests.uvicorn_apps import running_api

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
ADMIN = {"X-API-Key": "admin-key"}
NUMBER = "+33142685300"


@pytest.fixture(scope="module")
def api_url(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("alter-logs")
    env = {
        **os.environ,
        "FAXFLEET_REDIS_URL": redis_server.url,
        "FAXFLEET_API_KEYS": "acme=acme-key,globex=globex-key",
        "FAXFLEET_ADMIN_KEYS": "admin-key",
        "PYTHONUNBUFFERED": "1",
    }
    with running_api(env, logs) as app:
        yield app.url


@pytest.fixture
def api(api_url: str, r: redis.Redis) -> Iterator[httpx.Client]:
    r.sadd(keys.HOME_SITES, "paris")
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
def store(r: redis.Redis) -> JobStore:
    return JobStore(r)


LC = Lifecycle(Settings())


def submit(api: httpx.Client, headers: dict = ACME, to: str = NUMBER, **fields: str) -> str:
    resp = api.post(
        "/v1/faxes",
        headers=headers,
        data={"to": [to], **fields},
        files=[("documents", ("doc.txt", paged_text(3), "text/plain"))],
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def rendered(store: JobStore, fax_id: str) -> None:
    """The renderer's answer, applied as the event worker does: the fax waits for a line."""
    store.r.hset(keys.pages(fax_id), mapping={str(n): b"page" for n in (1, 2, 3)})
    store.update(
        fax_id, lambda d: LC.on_render_done(d, RenderDone(job_id=fax_id, pages=3, at=now()))
    )


def handed_out(store: JobStore, fax_id: str) -> None:
    store.update(
        fax_id,
        lambda d: LC.on_routed(
            d, Routed(job_id=fax_id, recipient=0, attempt=1, site="paris", at=now())
        ),
    )


def on_a_line(store: JobStore, fax_id: str) -> None:
    handed_out(store, fax_id)
    dialing = AttemptProgress(
        job_id=fax_id,
        recipient=0,
        attempt=1,
        seq=1,
        site="paris",
        line="paris-1",
        phase="dialing",
        at=now(),
    )
    store.update(fax_id, lambda d: LC.on_progress(d, dialing))


def failed(store: JobStore, fax_id: str) -> None:
    """The fax failed after a page was confirmed, and its failure was notified."""
    rendered(store, fax_id)

    def fail(d) -> None:
        d.move(0, JobState.QUEUED, site="paris")
        d.move(0, JobState.FAILED, cause=Cause.TOO_MANY_DIALS, pages_confirmed=1, dials=12)

    store.update(fax_id, fail)
    store.r.set(notified_key(fax_id, JobState.FAILED), "1")


def routing_tasks(r: redis.Redis) -> list[tuple[str, dict]]:
    """(task name, order) of every message in the routing queue (all priority lists)."""
    found = []
    for name in [names.ROUTING_QUEUE, *(f"{names.ROUTING_QUEUE}\x06\x16{p}" for p in range(10))]:
        for raw in r.lrange(name, 0, -1):
            message = json.loads(raw)
            body = json.loads(base64.b64decode(message["body"]))
            found.append((message["headers"]["task"], body[1]["order"]))
    return found


def patch(api: httpx.Client, fax_id: str, headers: dict = ACME, **body: object) -> httpx.Response:
    return api.patch(f"/v1/faxes/{fax_id}", headers=headers, json=body)


def notes(fax: dict) -> list[str]:
    return [t["detail"] for t in fax["history"] if t["recipient"] is None and t["detail"]]


# -- alter --------------------------------------------------------------------------------


def test_a_new_priority_reorders_the_waiting_fax_and_names_who(
    api: httpx.Client, store: JobStore, r: redis.Redis
) -> None:
    fax_id = submit(api)
    rendered(store, fax_id)
    resp = patch(api, fax_id, priority=9, user="bob", note="CEO waiting")
    assert resp.status_code == 200, resp.text
    fax = resp.json()
    assert (fax["priority"], fax["revision"], fax["state"]) == (9, 1, "routing")
    [note] = [n for n in notes(fax) if n.startswith("altered by ")]
    assert note.startswith("altered by tenant acme (user bob, key ")
    assert note.endswith("): priority 5 -> 9; note: CEO waiting")
    # Routing hears the new priority through the attempt's route order, revised.
    [(task, order)] = routing_tasks(r)
    assert task == names.ROUTE_TASK
    assert (order["job_id"], order["attempt"], order["priority"], order["revision"]) == (
        fax_id,
        1,
        9,
        1,
    )


def test_send_after_and_kill_time(api: httpx.Client, store: JobStore) -> None:
    fax_id = submit(api)  # not rendered yet: it takes them once rendered
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    resp = patch(api, fax_id, send_after=later.isoformat(), kill_after_seconds=3600)
    assert resp.status_code == 200, resp.text
    fax = resp.json()
    assert datetime.fromisoformat(fax["send_after"]) == later
    assert datetime.fromisoformat(fax["kill_at"]) == later + timedelta(hours=1)
    rendered(store, fax_id)
    assert store.get(fax_id).recipients[0].state == JobState.SCHEDULED
    # null: send now
    resp = patch(api, fax_id, send_after=None)
    assert resp.status_code == 200, resp.text
    assert resp.json()["send_after"] is None
    assert store.r.zscore("ff:timers", f"route:{fax_id}:0") <= now().timestamp()


def test_a_new_number_of_a_waiting_fax_waits_for_routing_to_take_it_back(
    api: httpx.Client, store: JobStore, r: redis.Redis
) -> None:
    fax_id = submit(api)
    rendered(store, fax_id)
    r.delete(names.ROUTING_QUEUE)
    resp = patch(api, fax_id, numbers={"01 42 68 53 00": "+33 1 42 68 53 99"})
    assert resp.status_code == 202, resp.text
    [rcpt] = resp.json()["recipients"]
    assert rcpt["number"] == NUMBER and rcpt["state"] == "routing"
    assert rcpt["pending"]["number"] == "+33142685399"
    assert rcpt["pending"]["attempt"] == 1
    assert rcpt["pending"]["by"].startswith("tenant acme (key ")
    withdrawals = [o for task, o in routing_tasks(r) if task == names.WITHDRAW_TASK]
    assert withdrawals == [{"job_id": fax_id, "recipient": 0, "attempt": 1, "home_site": "paris"}]


def test_a_number_on_a_timer_changes_at_once(api: httpx.Client, store: JobStore) -> None:
    fax_id = submit(api)
    resp = patch(api, fax_id, numbers={NUMBER: "+33142685398"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["recipients"][0]["number"] == "+33142685398"
    assert resp.json()["recipients"][0]["pending"] is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "nothing to change"),
        ({"note": "just a note"}, "nothing to change"),
        ({"priority": 10}, "priority"),
        ({"priority": "9"}, "priority"),
        ({"priority": True}, "priority"),
        ({"kill_after_seconds": "3600"}, "kill_after_seconds"),
        ({"kill_after_seconds": 0}, "kill_after_seconds"),
        ({"send_after": "2030-01-01T09:00:00"}, "time zone"),
        ({"numbers": {NUMBER: "+33 12"}}, "numbers"),
        ({"numbers": {"+33142685301": "+33142685302"}}, "has no recipient +33142685301"),
        ({"numbers": {NUMBER: "+33899123456"}}, "premium-rate numbers are barred"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_changes_are_422(api: httpx.Client, body: dict, words: str) -> None:
    fax_id = submit(api)
    resp = patch(api, fax_id, **body)
    assert resp.status_code == 422, resp.text
    assert words in resp.text
    assert api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()["revision"] == 0


def test_an_admin_may_override_the_destination_policy_and_it_is_recorded(
    api: httpx.Client,
) -> None:
    fax_id = submit(api)
    barred = {"numbers": {NUMBER: "+33899123456"}, "override_policy": True}
    assert patch(api, fax_id, **barred).status_code == 403
    resp = patch(api, fax_id, ADMIN, user="ops", **barred)
    assert resp.status_code == 200, resp.text
    [note] = notes(resp.json())[-1:]
    assert note.startswith("altered by admin (user ops, key ")
    assert "override_policy by admin (user ops, key " in note
    assert "premium-rate numbers are barred by the fleet" in note


def test_a_fax_on_a_line_or_settled_is_409(api: httpx.Client, store: JobStore) -> None:
    fax_id = submit(api)
    rendered(store, fax_id)
    on_a_line(store, fax_id)
    resp = patch(api, fax_id, priority=9)
    assert resp.status_code == 409
    assert resp.json()["detail"] == (
        f"fax {fax_id} is dialing: only a fax not yet on a line can be altered"
    )
    cancelled = submit(api)
    api.post(f"/v1/faxes/{cancelled}/cancel", headers=ACME)
    assert patch(api, cancelled, priority=9).status_code == 409


def test_a_fax_with_a_cover_page_keeps_its_numbers(api: httpx.Client) -> None:
    fax_id = submit(api, cover="true", subject="Order 7781")
    resp = patch(api, fax_id, numbers={NUMBER: "+33142685399"})
    assert resp.status_code == 409
    assert "has a cover page" in resp.json()["detail"]


# -- tenants and admin keys ---------------------------------------------------------------


def test_a_tenant_cannot_see_alter_requeue_or_cancel_another_tenants_fax(
    api: httpx.Client, store: JobStore
) -> None:
    fax_id = submit(api)
    failed(store, fax_id)
    unknown = f"no fax {fax_id}"
    for resp in (
        api.get(f"/v1/faxes/{fax_id}", headers=GLOBEX),
        patch(api, fax_id, GLOBEX, priority=9),
        api.post(f"/v1/faxes/{fax_id}/retry", headers=GLOBEX),
        api.post(f"/v1/faxes/{fax_id}/cancel", headers=GLOBEX),
    ):
        assert resp.status_code == 404 and resp.json()["detail"] == unknown
    assert store.get(fax_id).state == JobState.FAILED
    assert api.get(f"/v1/faxes/{fax_id}", headers=ADMIN).json()["id"] == fax_id
    assert api.get(f"/v1/faxes/{fax_id}", headers={"X-API-Key": "nope"}).status_code == 401


def test_an_admin_lists_every_tenants_faxes(api: httpx.Client) -> None:
    acme = [submit(api), submit(api)]
    globex = submit(api, GLOBEX)
    every = api.get("/v1/faxes", params={"all": "true"}, headers=ADMIN)
    assert every.status_code == 200, every.text
    assert [f["id"] for f in every.json()] == [globex, acme[1], acme[0]]
    one = api.get("/v1/faxes", params={"tenant": "globex"}, headers=ADMIN).json()
    assert [f["id"] for f in one] == [globex]
    limited = api.get("/v1/faxes", params={"all": "true", "limit": 2}, headers=ADMIN).json()
    assert [f["id"] for f in limited] == [globex, acme[1]]
    assert api.get("/v1/faxes", headers=ADMIN).status_code == 422
    # a tenant key sees its own faxes only, and is told so if it asks for more
    own = api.get("/v1/faxes", headers=ACME).json()
    assert sorted(f["id"] for f in own) == sorted(acme)
    for params in ({"all": "true"}, {"tenant": "globex"}):
        assert api.get("/v1/faxes", params=params, headers=ACME).status_code == 403


def test_an_admin_alters_and_cancels_any_tenants_fax(api: httpx.Client, store: JobStore) -> None:
    fax_id = submit(api, GLOBEX)
    resp = patch(api, fax_id, ADMIN, priority=1)
    assert resp.status_code == 200 and resp.json()["priority"] == 1
    resp = api.post(f"/v1/faxes/{fax_id}/cancel", headers=ADMIN)
    assert resp.status_code == 202 and resp.json()["state"] == "cancelled"


# -- requeue ------------------------------------------------------------------------------


def test_a_failed_fax_is_requeued_and_may_be_notified_again(
    api: httpx.Client, store: JobStore, r: redis.Redis
) -> None:
    fax_id = submit(api)
    failed(store, fax_id)
    assert r.ttl(f"ff:job:{fax_id}") > 0  # a settled fax is kept for the retention
    r.delete(names.ROUTING_QUEUE)
    resp = api.post(
        f"/v1/faxes/{fax_id}/retry", headers=ADMIN, json={"user": "ops", "note": "fixed"}
    )
    assert resp.status_code == 200, resp.text
    fax = resp.json()
    [rcpt] = fax["recipients"]
    assert (fax["state"], rcpt["attempt"], rcpt["dials"], rcpt["cause"]) == ("routing", 2, 0, None)
    [move] = [t for t in fax["history"] if t["from_state"] == "failed" and t["recipient"] == 0]
    assert move["detail"].startswith("requeued by admin (user ops, key ")
    assert "from page 2 (the far end confirmed 1 of 3 pages); note: fixed" in move["detail"]
    [(task, order)] = routing_tasks(r)
    assert (task, order["attempt"], order["first_page"]) == (names.ROUTE_TASK, 2, 2)
    # open again: kept until it settles anew, and its next outcome is notified
    assert r.ttl(f"ff:job:{fax_id}") == -1
    assert not r.exists(notified_key(fax_id, JobState.FAILED))
    # nothing is left to requeue now
    again = api.post(f"/v1/faxes/{fax_id}/retry", headers=ACME)
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"fax {fax_id} is routing: no recipient failed or has an uncertain outcome"
    )


def test_requeue_refusals(api: httpx.Client, store: JobStore, r: redis.Redis) -> None:
    fax_id = submit(api)
    failed(store, fax_id)
    bad = api.post(f"/v1/faxes/{fax_id}/retry", headers=ACME, json={"recipient": 3})
    assert bad.status_code == 422
    assert api.post(f"/v1/faxes/{fax_id}/retry", headers=ACME, json={"x": 1}).status_code == 422
    r.delete(keys.pages(fax_id))
    gone = api.post(f"/v1/faxes/{fax_id}/retry", headers=ACME)
    assert gone.status_code == 409 and "no longer kept" in gone.json()["detail"]
    assert api.post("/v1/faxes/fx_nosuchfax/retry", headers=ADMIN).status_code == 404


def test_the_tenant_requeues_by_the_cli_and_the_admin_lists_all(
    api: httpx.Client, api_url: str, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faxfleet import cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 200)
    runner = CliRunner()
    tenant = ["--api", api_url, "--api-key", "acme-key", "--admin-key", "admin-key"]
    fax_id = submit(api)
    other = submit(api, GLOBEX)
    failed(store, fax_id)

    done = runner.invoke(cli, [*tenant, "requeue", fax_id, "--user", "carol"], obj={})
    assert done.exit_code == 0, done.output
    assert f"{fax_id}: routing" in done.output
    stranger = runner.invoke(
        cli, ["--api", api_url, "--api-key", "globex-key", "requeue", fax_id], obj={}
    )
    assert stranger.exit_code == 1 and "404" in stranger.output

    altered = runner.invoke(
        cli, [*tenant, "alter", fax_id, "--priority", "8", "--kill-after", "2h"], obj={}
    )
    assert altered.exit_code == 0, altered.output
    assert "priority 5 -> 8; kill time" in altered.output.replace("\n", " ")
    assert store.get(fax_id).priority == 8
    nothing = runner.invoke(cli, [*tenant, "alter", fax_id], obj={})
    assert nothing.exit_code == 2 and "say what to change" in nothing.output

    every = runner.invoke(cli, [*tenant, "status", "--all"], obj={})
    assert every.exit_code == 0, every.output
    assert fax_id in every.output and other in every.output
    assert "globex" in every.output and "acme" in every.output
    mine = runner.invoke(cli, [*tenant, "status"], obj={})
    assert fax_id in mine.output and other not in mine.output
