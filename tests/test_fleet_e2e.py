"""End to end on a real two-site fleet: real Redis, real Celery workers, real HTTP API,
a real SMTP server and a real callback receiver; lines are simulated (time-scaled)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from faxfleet import keys
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from tests.conftest import Receiver, SmtpServer, paged_text, running_fleet

pytestmark = pytest.mark.fleet

THREE_PAGES = b"Invoice 2026-114\n\nTotal due: 1,250.00 EUR\n\fPage two\n\fPage three\n"
ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer, webhook_receiver: Receiver
) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    with running_fleet(
        tmp,
        [SiteSpec("paris", 2), SiteSpec("newyork", 2)],
        {"FAXFLEET_SMTP_PORT": str(smtp_server.port)},
    ) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def rc(fleet: Fleet) -> redis.Redis:
    return redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fleet.api_url, timeout=30) as client:
        yield client


def submit(
    api: httpx.Client,
    to: list[str],
    doc: bytes = THREE_PAGES,
    headers: dict = ACME,
    **fields: object,
) -> httpx.Response:
    data: dict[str, object] = {"to": to, **{k: str(v) for k, v in fields.items()}}
    return api.post(
        "/v1/faxes",
        headers=headers,
        files=[("documents", ("invoice.txt", doc, "text/plain"))],
        data=data,
    )


def wait_settled(api: httpx.Client, fax_id: str, timeout: float = 60, headers=ACME) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=headers).json()
        if fax["state"] in ("done", "failed", "cancelled", "outcome_uncertain"):
            return fax
        if time.monotonic() > deadline:
            raise AssertionError(f"{fax_id} not settled: {json.dumps(fax, indent=1)[:3000]}")
        time.sleep(0.1)


def received(rc: redis.Redis, number: str) -> list[dict]:
    return [json.loads(x) for x in rc.lrange(keys.sim_received(number), 0, -1)]


def pages_received(rc: redis.Redis, number: str, job: str) -> list[int]:
    return [p for rec in received(rc, number) if rec["job"] == job for p in rec["pages"]]


def test_end_to_end_two_sites_with_notifications(
    fleet: Fleet,
    api: httpx.Client,
    rc: redis.Redis,
    smtp_server: SmtpServer,
    webhook_receiver: Receiver,
) -> None:
    numbers = [f"+3314268530{i}" for i in range(6)]
    ids = []
    for i, number in enumerate(numbers):
        resp = submit(
            api,
            [number],
            priority=5,
            home_site="paris",
            user="alice",
            notify_email=f"alice{i}@example.com",
            callback_url=webhook_receiver.url,
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    faxes = [wait_settled(api, fid) for fid in ids]
    sending_sites = set()
    for fax, number in zip(faxes, numbers, strict=True):
        assert fax["state"] == "done", fax
        assert fax["pages"] == 3
        (rcpt,) = fax["recipients"]
        assert rcpt["pages_confirmed"] == 3
        assert rcpt["state"] == "done"
        sending_sites.add(rcpt["site"])
        # The far end got every page exactly once.
        assert sorted(pages_received(rc, number, fax["id"])) == [1, 2, 3]
        states = [(t["from_state"], t["to_state"]) for t in fax["history"] if t["recipient"] == 0]
        assert states[:5] == [
            ("submitted", "rendering"),
            ("rendering", "routing"),
            ("routing", "queued"),
            ("queued", "dialing"),
            ("dialing", "sending"),
        ]
        assert states[-1] == ("sending", "done")
        dialing = next(t for t in fax["history"] if t["to_state"] == "dialing")
        assert dialing["line"] and dialing["site"] == rcpt["site"]
    # Six faxes, two lines per site: load spreads the work over both sites.
    assert sending_sites == {"paris", "newyork"}

    for fax, i in zip(faxes, range(6), strict=True):
        mails = smtp_server.inbox.wait_for(lambda m, f=fax: m["X-Faxfleet-Job"] == f["id"])
        assert len(mails) == 1
        assert mails[0]["To"] == f"alice{i}@example.com"
        assert "delivered" in mails[0]["Subject"]
        calls = webhook_receiver.wait_for(
            lambda c, f=fax: c.get("body", {}).get("fax", {}).get("id") == f["id"]
        )
        assert len(calls) == 1 and calls[0]["verified"]
        assert calls[0]["body"]["notified_by"] == "paris"
        assert calls[0]["body"]["fax"]["state"] == "done"
    # Notification came from the home site even for faxes newyork sent.
    for fax in faxes:
        settled = api.get(f"/v1/faxes/{fax['id']}", headers=ACME).json()
        deadline = time.monotonic() + 10
        while settled["notified_by"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
            settled = api.get(f"/v1/faxes/{fax['id']}", headers=ACME).json()
        assert settled["notified_by"] == "paris"


def test_retry_after_busy_and_resume_after_dropped_call(api: httpx.Client, rc: redis.Redis) -> None:
    number = "+33142685399"
    rc.rpush(keys.sim_script(number), "busy", "drop:2")
    fax = wait_settled(api, submit(api, [number]).json()["id"])
    (rcpt,) = fax["recipients"]
    assert fax["state"] == "done"
    assert (rcpt["dials"], rcpt["tries"], rcpt["attempt"]) == (1, 1, 3)
    # Page 1 went through before the carrier dropped; the next try resumed at page 2.
    records = [rec for rec in received(rc, number) if rec["job"] == fax["id"]]
    assert [rec["pages"] for rec in records] == [[1], [2, 3]]
    causes = [t["cause"] for t in fax["history"] if t["to_state"] == "retry_scheduled"]
    assert causes == ["busy", "no_carrier"]


def test_unreachable_number_fails_with_cause_and_is_notified(
    api: httpx.Client, rc: redis.Redis, smtp_server: SmtpServer
) -> None:
    number = "+33142685398"
    rc.rpush(keys.sim_script(number), *(["no_answer"] * 10))
    resp = submit(api, [number], notify_email="ops@example.com")
    fax = wait_settled(api, resp.json()["id"])
    (rcpt,) = fax["recipients"]
    assert fax["state"] == "failed"
    assert rcpt["cause"] == "too_many_dials"
    assert rcpt["dials"] == 4  # FAXFLEET_MAX_DIALS
    assert rcpt["pages_confirmed"] == 0
    mails = smtp_server.inbox.wait_for(lambda m: m["X-Faxfleet-Job"] == fax["id"])
    assert "failed" in mails[0]["Subject"]


def test_several_recipients_have_their_own_status(api: httpx.Client, rc: redis.Redis) -> None:
    ok, bad = "+33142685397", "+33142685396"
    rc.rpush(keys.sim_script(bad), "rtn:1", "rtn:1", "rtn:1")
    fax = wait_settled(api, submit(api, [ok, bad]).json()["id"])
    by_number = {r["number"]: r for r in fax["recipients"]}
    assert by_number[ok]["state"] == "done" and by_number[ok]["pages_confirmed"] == 3
    assert by_number[bad]["state"] == "failed"
    assert by_number[bad]["cause"] == "too_many_tries"
    assert by_number[bad]["pages_confirmed"] == 0
    assert fax["state"] == "failed"


def test_cancel_reaches_the_line(api: httpx.Client, rc: redis.Redis) -> None:
    number = "+33142685395"
    long_doc = paged_text(20)
    fax_id = submit(api, [number], doc=long_doc).json()["id"]
    deadline = time.monotonic() + 30
    while api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()["recipients"][0]["page"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    resp = api.post(f"/v1/faxes/{fax_id}/cancel", headers=ACME)
    assert resp.status_code == 202
    fax = wait_settled(api, fax_id)
    assert fax["state"] == "cancelled"
    assert fax["recipients"][0]["cause"] == "cancelled"
    assert len(pages_received(rc, number, fax_id)) < 20
    again = api.post(f"/v1/faxes/{fax_id}/cancel", headers=ACME)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_idempotency_key_returns_the_original_fax(api: httpx.Client, rc: redis.Redis) -> None:
    number = "+33142685394"
    first = submit(api, [number], idempotency_key="order-7781")
    second = submit(api, [number], idempotency_key="order-7781")
    assert first.status_code == 201 and second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    wait_settled(api, first.json()["id"])
    assert len(received(rc, number)) == 1
    # The key is per tenant: another tenant with the same key gets its own fax.
    other = submit(api, [number], idempotency_key="order-7781", headers=GLOBEX)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("fields", "doc", "status", "reason"),
    [
        ({"to": ["+33142685300"]}, b"\x00\x01\x02binary\xff\xfe", 415, "unsupported document"),
        ({"to": ["+33142685300"]}, b"", 422, "is empty"),
        ({"to": ["+33 12"]}, THREE_PAGES, 422, "to[0]"),
        ({"to": ["not a number"]}, THREE_PAGES, 422, "to[0]"),
        ({"to": ["+33142685300"], "priority": "12"}, THREE_PAGES, 422, "priority"),
        ({"to": ["+33142685300"], "priority": "-1"}, THREE_PAGES, 422, "priority"),
        ({"to": []}, THREE_PAGES, 422, "to"),
        ({"to": ["+33142685300"]}, b"x" * (3 * 1024 * 1024), 413, "too large"),
        ({"to": ["+33142685300"], "callback_url": "ftp://x"}, THREE_PAGES, 422, "callback_url"),
        ({"to": ["+33142685300"], "home_site": "lyon"}, THREE_PAGES, 422, "not a site of"),
    ],
)
def test_bad_input_is_refused_before_queueing(
    api: httpx.Client, rc: redis.Redis, fields: dict, doc: bytes, status: int, reason: str
) -> None:
    before = rc.zcard("ff:tenant:acme:jobs")
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        files=[("documents", ("doc.bin", doc, "application/octet-stream"))],
        data=fields,
    )
    assert resp.status_code == status, resp.text
    assert reason in resp.json()["detail"]
    assert rc.zcard("ff:tenant:acme:jobs") == before


def test_keys_and_tenants(api: httpx.Client) -> None:
    assert api.get("/v1/faxes").status_code == 401
    assert api.get("/v1/faxes", headers={"X-API-Key": "wrong"}).status_code == 401
    fax_id = submit(api, ["+33142685393"]).json()["id"]
    assert api.get(f"/v1/faxes/{fax_id}", headers=GLOBEX).status_code == 404
    assert api.post(f"/v1/faxes/{fax_id}/cancel", headers=GLOBEX).status_code == 404
    ids = {f["id"] for f in api.get("/v1/faxes", headers=GLOBEX).json()}
    assert fax_id not in ids
    mine = api.get("/v1/faxes", headers=ACME, params={"user": "nobody"}).json()
    assert mine == []


def test_corrupt_pdf_fails_with_render_error(api: httpx.Client) -> None:
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        data={"to": ["+33142685392"]},
        files=[("documents", ("broken.pdf", b"%PDF-1.7\n1 0 obj <<>>\ntrunc", "application/pdf"))],
    )
    assert resp.status_code == 201
    fax = wait_settled(api, resp.json()["id"])
    assert fax["state"] == "failed"
    assert fax["recipients"][0]["cause"] == "render_error"
    assert "PDF" in fax["recipients"][0]["detail"]


def test_send_after_waits(api: httpx.Client) -> None:
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) + timedelta(seconds=2)
    resp = submit(api, ["+33142685391"], send_after=at.isoformat())
    fax_id = resp.json()["id"]
    time.sleep(0.8)
    assert api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()["state"] == "scheduled"
    fax = wait_settled(api, fax_id)
    assert fax["state"] == "done"
    dialed = next(t for t in fax["history"] if t["to_state"] == "dialing")
    assert datetime.fromisoformat(dialed["at"]) >= at


def test_sites_endpoint_shows_lines(api: httpx.Client) -> None:
    sites = {s["name"]: s for s in api.get("/v1/sites", headers=ACME).json()}
    assert set(sites) == {"paris", "newyork"}
    assert sites["paris"]["lines_up"] == 2
    assert {ln["name"] for ln in sites["newyork"]["status"]["lines"]} == {"newyork-1", "newyork-2"}


def test_python_client_fails_over_between_api_nodes(fleet: Fleet, tmp_path: Path) -> None:
    doc = tmp_path / "note.txt"
    doc.write_bytes(b"Short note\n")
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    with FaxClient([dead, fleet.api_url], api_key="acme-key") as client:
        fax = client.send(doc, "+33142685390", priority=8)
        final = client.wait(fax.id, timeout=60, interval=0.1)
    assert final.state.value == "done"
    assert final.pages == 1 and final.recipients[0].pages_confirmed == 1
    assert final.idempotency_key and final.idempotency_key.startswith("client-")


def test_cli_send_wait_status_cancel(fleet: Fleet, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    doc = tmp_path / "memo.txt"
    doc.write_bytes(b"Memo\n")
    env = {**os.environ, **fleet.env}
    cmd = [sys.executable, "-m", "faxfleet.cli"]
    run = subprocess.run(
        [*cmd, "send", str(doc), "--to", "+33142685389", "--priority", "9", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    fax_id = run.stdout.split()[0]
    assert fax_id.startswith("fx_")
    status = subprocess.run(
        [*cmd, "status", fax_id, "--history"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and "done" in status.stdout
    bad = subprocess.run(
        [*cmd, "send", str(doc), "--to", "12"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode != 0 and "to[0]" in bad.stderr
    cancel = subprocess.run(
        [*cmd, "cancel", fax_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert cancel.returncode != 0 and "already done" in cancel.stderr


def test_callback_is_retried_until_the_receiver_is_back(
    api: httpx.Client, webhook_receiver: Receiver
) -> None:
    with webhook_receiver.cond:
        webhook_receiver.fail_next = 2
    resp = submit(api, ["+33142685388"], callback_url=webhook_receiver.url)
    fax_id = resp.json()["id"]
    wait_settled(api, fax_id)
    calls = webhook_receiver.wait_for(
        lambda c: c.get("body", {}).get("fax", {}).get("id") == fax_id
    )
    assert len(calls) == 1 and calls[0]["verified"]
    assert webhook_receiver.fail_next == 0  # both refusals were seen before the success
    deadline = time.monotonic() + 10
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
        notes = [t["detail"] for t in fax["history"] if t["recipient"] is None and t["detail"]]
        if any("webhook notification delivered" in n for n in notes):
            break
        assert time.monotonic() < deadline, notes
        time.sleep(0.1)
    assert fax["notified_by"] == "paris", fax


def test_openapi_is_served(api: httpx.Client) -> None:
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    assert {"/v1/faxes", "/v1/faxes/{job_id}", "/v1/faxes/{job_id}/cancel"} <= set(spec["paths"])
    body = spec["paths"]["/v1/faxes"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
