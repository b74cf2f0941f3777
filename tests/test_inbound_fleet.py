"""Received faxes through real services: a site hands over the pages it received
(``workers.inbound.deliver_inbound`` on a private redis-server), the site's own event
and notify workers (real Celery processes) file and notify them, the real API serves
them over HTTP, mail reaches a real SMTP server (aiosmtpd) and callbacks a real HTTP
receiver that checks their signature."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from PIL import Image

from faxfleet import cli as cli_module
from faxfleet import keys
from faxfleet.celery_app import make_celery
from faxfleet.cli import cli
from faxfleet.client import FaxClient, FaxError
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.kinds import Resolution
from faxfleet.log import get_logger
from faxfleet.messages import Cause, InboundFax
from faxfleet.redis_server import RedisServer, free_port
from faxfleet.runtime import Runtime
from faxfleet.settings import Settings
from tests.conftest import FAST_FLEET_ENV, Receiver, SmtpServer
from workers.fax.t30 import loopback
from workers.fax.t30.engine import Config, Engine
from workers.inbound import deliver_inbound
from workers.render.pipeline import Coding, render_documents
from workers.render.tiff import read_pages

pytestmark = pytest.mark.fleet

ACME, GLOBEX, ADMIN = "acme-key", "globex-key", "admin-key"
DID_ACME = "+33142685300"
DID_BAD_HOOK = "+33142685301"


@pytest.fixture(scope="module")
def pages() -> list[bytes]:
    invoice = files("faxfleet.samples").joinpath("invoice.pdf").read_bytes()
    return render_documents(
        [invoice, b"received page three\fand page four"], Resolution.FINE, coding=Coding.MR
    )


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer, webhook_receiver: Receiver
) -> Iterator[tuple[Fleet, Runtime]]:
    """The paris site's scheduler side (event worker, notifier) and the API, on their own
    Redis; and the runtime a paris site worker hands received faxes over with."""
    tmp = tmp_path_factory.mktemp("inbound")
    server = RedisServer(tmp / "redis").start()
    api_port = free_port()
    routes = {
        DID_ACME: {
            "tenant": "acme",
            "email": "fax@acme.example",
            "callback_url": webhook_receiver.url,
        },
        "line:paris-4": {"tenant": "globex", "email": "fax@globex.example"},
        DID_BAD_HOOK: {"tenant": "acme", "callback_url": "ftp://hooks.acme.example/fax"},
    }
    env = {
        **FAST_FLEET_ENV,
        "FAXFLEET_REDIS_URL": server.url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
        "FAXFLEET_SMTP_PORT": str(smtp_server.port),
        "FAXFLEET_INBOUND_ROUTES": json.dumps(routes),
        "FAXFLEET_INBOUND_RETENTION_SECONDS": "3600",
    }
    fleet = Fleet([SiteSpec("paris", 4)], env, tmp / "logs", api_port=api_port)
    try:
        fleet.start(only={"events-paris", "notify-paris", "api"})
        _wait_ready(fleet, server.url)
        settings = Settings(redis_url=server.url, site="paris", inbound_retention_seconds=3600)
        rt = Runtime("site-paris", settings, make_celery("test-site", settings), get_logger("t"))
        yield fleet, rt
    finally:
        fleet.stop()
        server.stop()


def _wait_ready(fleet: Fleet, url: str, timeout: float = 60.0) -> None:
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fleet._check_alive()
        if r.sismember(keys.HOME_SITES, "paris"):
            try:
                if httpx.get(f"{fleet.api_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"scheduler or API not ready; logs in {fleet.log_dir}")


def _deliver(rt: Runtime, pages: list[bytes], **fields: object) -> str:
    call = {"site": "paris", "line": "paris-1", "called": DID_ACME, "remote_id": "+33 1 99"}
    return deliver_inbound(rt.redis, rt, **{**call, "pages": pages, "ok": True, **fields})


def _filed(fleet: Fleet, inbound_id: str, key: str, timeout: float = 20.0) -> InboundFax:
    """The record once the scheduler has filed it (the event is asynchronous)."""
    deadline = time.monotonic() + timeout
    with FaxClient(fleet.api_url, key) as client:
        while True:
            try:
                return client.inbound_get(inbound_id)
            except FaxError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


def _mail(smtp: SmtpServer, inbound_id: str) -> EmailMessage:
    found = smtp.inbox.wait_for(lambda m: m["X-Faxfleet-Inbound"] == inbound_id, timeout=30)
    assert len(found) == 1, f"expected one mail for {inbound_id}, got {len(found)}"
    parsed = message_from_bytes(found[0].as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _bitmaps(tiff: bytes) -> list[bytes]:
    return [page.bitmap.bits for page in read_pages(tiff)]


def test_routed_fax_reaches_the_tenant_by_mail_callback_and_api(
    site: tuple[Fleet, Runtime],
    pages: list[bytes],
    smtp_server: SmtpServer,
    webhook_receiver: Receiver,
) -> None:
    fleet, rt = site
    inbound_id = _deliver(rt, pages)
    fax = _filed(fleet, inbound_id, ACME)
    assert (fax.tenant, fax.route, fax.site, fax.line) == ("acme", DID_ACME, "paris", "paris-1")
    assert (fax.pages, fax.ok, fax.cause, fax.remote_id) == (4, True, None, "+33 1 99")
    want = [_bitmaps(p)[0] for p in pages]

    mail = _mail(smtp_server, inbound_id)
    assert mail["To"] == "fax@acme.example"
    assert mail["Subject"] == "Fax from +33 1 99: 4 pages"
    text = mail.get_body(("plain",)).get_content()
    assert "Line:       paris-1 (site paris)" in text and f"To:         {DID_ACME}" in text
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "image/tiff"
    assert _bitmaps(attachment.get_content()) == want

    calls = webhook_receiver.wait_for(
        lambda c: c.get("body", {}).get("fax", {}).get("id") == inbound_id
    )
    assert calls and calls[0]["verified"] is True
    body = calls[0]["body"]
    assert body["event"] == "fax.received" and body["notified_by"] == "paris"
    assert body["document"] == f"/v1/inbound/{inbound_id}.tiff"
    assert body["fax"]["pages"] == 4 and body["fax"]["tenant"] == "acme"

    with FaxClient(fleet.api_url, ACME) as client:
        assert client.inbound_list()[0].id == inbound_id
        document = client.inbound_document(inbound_id)
        assert _bitmaps(document) == want
        png = client.inbound_preview(inbound_id, 3)
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size) == ("PNG", (1728, 2292))
        # Page 3 is text: mostly paper, some ink.
        ink = image.convert("L").histogram()[0]
        assert 0 < ink < 1728 * 2292 // 10

    # Both notifications end up recorded on the fax.
    deadline = time.monotonic() + 10
    while len(fax.notifications) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        fax = _filed(fleet, inbound_id, ACME)
    assert sorted(fax.notifications) == [
        "email notification delivered to fax@acme.example",
        f"webhook notification delivered to {webhook_receiver.url}",
    ]
    assert fax.notified_by == "paris"


def test_other_tenants_get_404_everywhere(site: tuple[Fleet, Runtime], pages: list[bytes]) -> None:
    fleet, rt = site
    inbound_id = _deliver(rt, pages[:1])
    _filed(fleet, inbound_id, ACME)
    base = f"{fleet.api_url}/v1/inbound/{inbound_id}"
    for url in (base, f"{base}.tiff", f"{base}/pages/1.png"):
        answer = httpx.get(url, headers={"X-API-Key": GLOBEX})
        assert answer.status_code == 404, url
        assert httpx.get(url, headers={"X-API-Key": ACME}).status_code == 200, url
    assert httpx.get(base).status_code == 401
    listed = httpx.get(f"{fleet.api_url}/v1/inbound", headers={"X-API-Key": GLOBEX}).json()
    assert inbound_id not in [f["id"] for f in listed]
    assert httpx.get(f"{base}/pages/2.png", headers={"X-API-Key": ACME}).status_code == 404


def test_fax_without_did_follows_its_line_route(
    site: tuple[Fleet, Runtime], pages: list[bytes], smtp_server: SmtpServer
) -> None:
    fleet, rt = site
    inbound_id = _deliver(rt, pages[2:3], line="paris-4", called=None)
    fax = _filed(fleet, inbound_id, GLOBEX)
    assert (fax.tenant, fax.route, fax.called) == ("globex", "line:paris-4", None)
    assert _mail(smtp_server, inbound_id)["To"] == "fax@globex.example"


def test_unknown_did_is_kept_unrouted_for_admins(
    site: tuple[Fleet, Runtime], pages: list[bytes], smtp_server: SmtpServer
) -> None:
    """No route and no default: the fax belongs to no tenant, notifies no one, and the
    admin key shows it."""
    fleet, rt = site
    inbound_id = _deliver(rt, pages[:2], called="+33999999999")
    fax = _filed(fleet, inbound_id, ADMIN)
    assert (fax.tenant, fax.route) == (None, None)
    with FaxClient(fleet.api_url, ADMIN) as admin:
        assert inbound_id in [f.id for f in admin.inbound_list()]
        assert len(list(read_pages(admin.inbound_document(inbound_id)))) == 2
    for key in (ACME, GLOBEX):
        answer = httpx.get(f"{fleet.api_url}/v1/inbound/{inbound_id}", headers={"X-API-Key": key})
        assert answer.status_code == 404
    # Admins see only the unrouted bin, never a tenant's faxes.
    routed = _deliver(rt, pages[:1])
    _filed(fleet, routed, ACME)
    answer = httpx.get(f"{fleet.api_url}/v1/inbound/{routed}", headers={"X-API-Key": ADMIN})
    assert answer.status_code == 404
    # A later fax's mail has arrived, this one's never did.
    _mail(smtp_server, routed)
    assert not [
        m for _, _, m in smtp_server.inbox.messages if m["X-Faxfleet-Inbound"] == inbound_id
    ]


def test_partial_reception_is_kept_and_marked(
    site: tuple[Fleet, Runtime], pages: list[bytes], smtp_server: SmtpServer
) -> None:
    fleet, rt = site
    inbound_id = _deliver(
        rt,
        pages[:2],
        ok=False,
        cause=Cause.REMOTE_DISCONNECTED,
        detail="DCN after page 2 of 4",
    )
    fax = _filed(fleet, inbound_id, ACME)
    assert (fax.ok, fax.pages, fax.cause) == (False, 2, Cause.REMOTE_DISCONNECTED)
    assert fax.detail == "DCN after page 2 of 4"
    mail = _mail(smtp_server, inbound_id)
    assert mail["Subject"] == "Fax from +33 1 99: 2 pages (incomplete: remote_disconnected)"
    (attachment,) = list(mail.iter_attachments())
    assert _bitmaps(attachment.get_content()) == [_bitmaps(p)[0] for p in pages[:2]]


def test_call_with_no_page_is_filed_failed_and_not_mailed(
    site: tuple[Fleet, Runtime], smtp_server: SmtpServer
) -> None:
    fleet, rt = site
    inbound_id = _deliver(rt, [])
    fax = _filed(fleet, inbound_id, ACME)
    assert (fax.ok, fax.pages, fax.detail) == (False, 0, "no page received")
    answer = httpx.get(f"{fleet.api_url}/v1/inbound/{inbound_id}.tiff", headers={"X-API-Key": ACME})
    assert answer.status_code == 404
    assert not rt.redis.exists(keys.inbound_fax(inbound_id))
    marker = _deliver(rt, _one_page())
    _mail(smtp_server, marker)
    # The marker page is standard resolution: its preview has its rows doubled.
    with FaxClient(fleet.api_url, ACME) as client:
        png = client.inbound_preview(marker, 1)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1728, 2 * 1146)
    assert not [
        m for _, _, m in smtp_server.inbox.messages if m["X-Faxfleet-Inbound"] == inbound_id
    ]


def _one_page() -> list[bytes]:
    return render_documents([b"one page"], Resolution.STANDARD)


def test_cli_lists_shows_and_saves(
    site: tuple[Fleet, Runtime],
    pages: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, rt = site
    monkeypatch.setattr(cli_module.console, "width", 200)  # no wrapped table cells
    inbound_id = _deliver(rt, pages[1:3], remote_id="ACME LEGAL")
    _filed(fleet, inbound_id, ACME)
    runner = CliRunner()
    base = ["--api", fleet.api_url, "--api-key", ACME, "inbound"]
    listed = runner.invoke(cli, [*base, "list"], obj={})
    assert listed.exit_code == 0, listed.output
    assert inbound_id in listed.output and "ACME LEGAL" in listed.output
    shown = runner.invoke(cli, [*base, "show", inbound_id], obj={})
    assert shown.exit_code == 0, shown.output
    assert f"route: {DID_ACME} (tenant acme)" in shown.output
    target = tmp_path / "got.tiff"
    got = runner.invoke(cli, [*base, "get", inbound_id, "-o", str(target)], obj={})
    assert got.exit_code == 0, got.output
    assert _bitmaps(target.read_bytes()) == [_bitmaps(p)[0] for p in pages[1:3]]
    missing = runner.invoke(
        cli, ["--api", fleet.api_url, "--api-key", GLOBEX, "inbound", "get", inbound_id], obj={}
    )
    assert missing.exit_code == 1 and "404" in missing.output


def test_callback_is_retried_until_the_receiver_answers(
    site: tuple[Fleet, Runtime], pages: list[bytes], webhook_receiver: Receiver
) -> None:
    _, rt = site
    with webhook_receiver.cond:
        webhook_receiver.fail_next = 2
    inbound_id = _deliver(rt, pages[:1])
    calls = webhook_receiver.wait_for(
        lambda c: c.get("body", {}).get("fax", {}).get("id") == inbound_id
    )
    assert calls and calls[0]["verified"]
    assert webhook_receiver.fail_next == 0


def test_a_callback_that_cannot_work_is_abandoned_and_recorded(
    site: tuple[Fleet, Runtime], pages: list[bytes]
) -> None:
    fleet, rt = site
    inbound_id = _deliver(rt, pages[:1], called=DID_BAD_HOOK)
    deadline = time.monotonic() + 20
    fax = _filed(fleet, inbound_id, ACME)
    while not fax.notifications and time.monotonic() < deadline:
        time.sleep(0.1)
        fax = _filed(fleet, inbound_id, ACME)
    (note,) = fax.notifications
    assert note.startswith("webhook notification to ftp://hooks.acme.example/fax failed")
    assert fax.notified_by is None


class _CarrierLostAfter(loopback.Faults):
    """The line goes dead after ``pages`` pages of page data."""

    def __init__(self, pages: int) -> None:
        self.left = pages

    def data(self, kind: str, mod: int, data: bytes) -> bytes | None:
        if kind == "page":
            self.left -= 1
            if self.left < 0:
                return None
        return data


@pytest.mark.parametrize("cut_after", [None, 2])
def test_a_call_received_by_the_t30_engine_reaches_the_tenant(
    site: tuple[Fleet, Runtime],
    pages: list[bytes],
    smtp_server: SmtpServer,
    cut_after: int | None,
) -> None:
    """A far end sends the four pages to faxfleet's own T.30 receiver (the in-memory line,
    about a minute of line time); what the receiver kept is handed over as a line would,
    and reaches the tenant's mailbox page for page."""
    fleet, rt = site
    sender = Engine.sender(Config(ident="+33 1 99 88 77 66"), pages)
    receiver = Engine.receiver(Config(ident=DID_ACME))
    faults = _CarrierLostAfter(cut_after) if cut_after is not None else None
    call = loopback.run(sender, receiver, faults).receiver
    inbound_id = deliver_inbound(
        rt.redis,
        rt,
        site="paris",
        line="paris-2",
        called=DID_ACME,
        remote_id=call.remote_id,
        pages=receiver.received,
        ok=call.ok,
        cause=call.cause,
        detail=call.detail,
    )
    fax = _filed(fleet, inbound_id, ACME)
    expected = pages if cut_after is None else pages[:cut_after]
    assert (fax.pages, fax.ok, fax.remote_id) == (
        len(expected),
        cut_after is None,
        "+33 1 99 88 77 66",
    )
    if cut_after is not None:
        assert fax.cause is Cause.REMOTE_DISCONNECTED
    mail = _mail(smtp_server, inbound_id)
    (attachment,) = list(mail.iter_attachments())
    assert _bitmaps(attachment.get_content()) == [_bitmaps(p)[0] for p in expected]
