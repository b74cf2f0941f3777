"""The whole fleet on a real software fax line: a fax submitted over the HTTP API is
rendered, routed and sent by a site worker whose one line is a real Class 1 modem
(iaxmodem A), and fax software we did not write (efax, HylaFAX faxgetty) receives it on
modem B. About a minute of real line time per page, so only the essential calls are here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from faxfleet import keys
from faxfleet.demo_line import logged_rate, side_by_side, square_pixels
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.kinds import Resolution
from faxfleet.softline import SoftLine, efax
from faxfleet.softline.iaxmodem import INCOMING_GUARD_S
from faxfleet.softline.line import FarEndKind
from tests.conftest import SmtpServer, running_fleet
from workers.render import render_documents
from workers.render.coding import Coding
from workers.render.tiff import read_pages

ACME = {"X-API-Key": "acme-key"}
DESTINATION = "+33142685399"
"""Any number: iaxmodem A rings modem B whatever digits the line dials."""
LINE_ID = "+33 1 42 68 53 00"

REAL_LINE_ENV = {
    # Real calls take real time: no time scaling of watchdogs and retry delays.
    "FAXFLEET_TIME_SCALE": "1",
    "FAXFLEET_STUCK_AFTER_SECONDS": "600",
    "FAXFLEET_ROUTING_STUCK_AFTER_SECONDS": "60",
    "FAXFLEET_NOTIFY_BACKOFF_SECONDS": "1",
    "FAXFLEET_LINE_KIND": "modem",
}

TEXT = (
    "faxfleet on a real fax line\n\n"
    + "The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>!?\n" * 30
).encode()


@contextmanager
def fleet_on(line: SoftLine, tmp: Path, ecm: bool = True, **more: str | bool) -> Iterator[Fleet]:
    """A one-site fleet whose site worker drives modem A of ``line`` as its one line."""
    modem = {"name": "paris-a", "url": str(line.modem_a), "fax_class": "1", "local_id": LINE_ID}
    extra_env = {k: v for k, v in more.items() if k.startswith("FAXFLEET_")}
    modems = [{**modem, "ecm": ecm, **{k: v for k, v in more.items() if k not in extra_env}}]
    env = {**REAL_LINE_ENV, "FAXFLEET_MODEMS": json.dumps(modems), **extra_env}
    with running_fleet(tmp, [SiteSpec("paris", 1)], env) as fleet:
        yield fleet


def submit(api: httpx.Client, doc: bytes, **fields: object) -> str:
    resp = api.post(
        "/v1/faxes",
        headers=ACME,
        files=[("documents", ("letter.txt", doc, "text/plain"))],
        data={"to": [DESTINATION], **{k: str(v) for k, v in fields.items()}},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def wait_settled(api: httpx.Client, fax_id: str, fleet: Fleet, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        fax = api.get(f"/v1/faxes/{fax_id}", headers=ACME).json()
        if fax["state"] in ("done", "failed", "cancelled", "outcome_uncertain"):
            return fax
        if time.monotonic() > deadline:
            site_log = (fleet.log_dir / "site-paris.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"not settled: {json.dumps(fax)[:2000]}\n{site_log}")
        time.sleep(0.5)


def rendered_pages(fleet: Fleet, fax_id: str, count: int) -> list[bytes]:
    """The pages as faxfleet rendered them (what the site worker read to send)."""
    r = redis.Redis.from_url(fleet.env["FAXFLEET_REDIS_URL"])
    pages = r.hmget(keys.pages(fax_id), [str(n) for n in range(1, count + 1)])
    assert all(p is not None for p in pages)
    return [p for p in pages if p is not None]


def _rows(page: bytes) -> list[bytes]:
    bitmap = next(read_pages(page)).bitmap
    size = bitmap.row_bytes
    return [bitmap.bits[y * size : (y + 1) * size] for y in range(bitmap.height)]


def _rows_of_file(path: Path, frame: int = 0) -> list[bytes]:
    """Rows (black = 1) of one page of any bilevel TIFF, whatever its photometric, fill
    order or resolution tags say."""
    image = Image.open(path)
    image.seek(frame)
    image = image.convert("L").point(lambda v: 255 if v < 128 else 0).convert("1")
    stride = (image.width + 7) // 8
    data = image.tobytes()
    return [data[y * stride : (y + 1) * stride] for y in range(image.height)]


def assert_same_ink(sent: list[bytes], received: list[bytes], *, trailer: bool = False) -> None:
    """Every inked row arrives unchanged and in place; a far end may add or chop blank
    margin rows, so rows are aligned on the first inked one. ``trailer``: the sender may
    add rows of its own after the page (efax does), so only rows within the page count."""
    inked = [y for y, row in enumerate(sent) if any(row)]
    got = [y for y, row in enumerate(received) if any(row)]
    assert len(inked) > 100  # the page really carries text
    shift = got[0] - inked[0]
    if trailer:
        got = [y for y in got if y < len(sent) + shift]
    assert [y + shift for y in inked] == got
    assert [y for y in inked if sent[y] != received[y + shift]] == []


@contextmanager
def sent_through_fleet(
    tmp: Path, far_end: FarEndKind, doc: bytes, pages: int, *, ecm: bool = True
) -> Iterator[tuple[dict, list[bytes], SoftLine]]:
    """Submit ``doc`` over the API of a fleet on a fresh line; yield the settled fax, its
    rendered pages and the line (still up, for its far end's records)."""
    with (
        SoftLine(far_end=far_end) as line,
        fleet_on(line, tmp, ecm) as fleet,
        httpx.Client(base_url=fleet.api_url, timeout=30) as api,
    ):
        line.wait_ready()
        started = time.monotonic()
        fax_id = submit(api, doc, header="false", resolution="fine", user="alice")
        fax = wait_settled(api, fax_id, fleet, timeout=90 + 90 * pages)
        print(
            f"\n{far_end}, {pages} fine page(s): submitted to {fax['state']} in "
            f"{time.monotonic() - started:.1f} s"
        )
        line.wait_received(1, timeout=60)
        yield fax, rendered_pages(fleet, fax_id, pages), line


@pytest.mark.realline
@pytest.mark.timeout(300)
def test_a_fax_submitted_over_the_api_reaches_efax_pixel_for_pixel(tmp_path: Path) -> None:
    with sent_through_fleet(tmp_path, "efax", TEXT, 1) as (fax, (page,), line):
        assert fax["state"] == "done", fax
        (rcpt,) = fax["recipients"]
        assert (rcpt["state"], rcpt["pages_confirmed"], rcpt["line"]) == ("done", 1, "paris-a")
        (received,) = line.received()
        assert received.pages == 1 and received.bad_lines == (0,)
        assert LINE_ID in received.log.read_text()  # our TSI, as efax logged it
        assert_same_ink(_rows(page), _rows_of_file(received.files[0]))


@pytest.mark.realline
@pytest.mark.timeout(420)
def test_two_pages_reach_hylafax_with_no_bad_lines(tmp_path: Path) -> None:
    # Without ECM, so that HylaFAX decodes every row itself and counts the bad ones (with
    # ECM a page arrives whole or not at all, and HylaFAX logs no line counts).
    doc = TEXT + b"\f" + b"second page\n" * 10
    with sent_through_fleet(tmp_path, "hylafax", doc, 2, ecm=False) as (fax, pages, line):
        assert fax["state"] == "done", fax
        (rcpt,) = fax["recipients"]
        assert rcpt["pages_confirmed"] == 2
        (received,) = line.received()
        assert received.pages == 2 and received.bad_lines == (0, 0)
        assert all(lines >= 2292 for lines in received.lines)  # fine pages, every row
        assert "2 pages" in received.log.read_text()
        for n, page in enumerate(pages):
            assert_same_ink(_rows(page), _rows_of_file(received.files[0], n))


DID = "+33142685300"
CALLER_ID = "+1 555 0199"


def send_from_b(line: SoftLine, page: Path, ident: str) -> efax.EfaxSendReport:
    """efax on modem B dials modem A with ``page``, identifying itself as ``ident`` (the
    TSI our receiving side must report)."""
    argv = efax.send_argv(line.modem_b, line.number_a, [page])
    argv[1:1] = ["-l", ident]
    log = line.workdir / "efax-send-b.log"
    proc = line.processes.start("efax-sender", argv, log)
    try:
        proc.wait(240)
    finally:
        line.processes.stop(proc)
    return efax.parse_send_log(log.read_text(errors="replace"))


@pytest.mark.flaky(reruns=2, reruns_delay=5)  # efax as a sender: see docs/faxing.md
@pytest.mark.realline
@pytest.mark.timeout(300)
def test_a_fax_from_efax_is_answered_by_the_site_and_reaches_the_tenant(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    (page_data,) = render_documents([TEXT], Resolution.STANDARD, coding=Coding.MH)
    page = tmp_path / "page.tif"
    page.write_bytes(page_data)
    routes = {DID: {"tenant": "acme", "email": "fax@acme.example"}}
    with (
        SoftLine(far_end=None) as line,
        fleet_on(
            line,
            tmp_path,
            answer=True,
            did=DID,
            FAXFLEET_INBOUND_ROUTES=json.dumps(routes),
            FAXFLEET_SMTP_PORT=str(smtp_server.port),
        ) as fleet,
        httpx.Client(base_url=fleet.api_url, timeout=30) as api,
    ):
        time.sleep(INCOMING_GUARD_S)  # iaxmodem A refuses calls just after the worker's ATZ
        started = time.monotonic()
        report = send_from_b(line, page, CALLER_ID)
        print(f"\nefax -> site line, 1 standard page: call {time.monotonic() - started:.1f} s")
        assert report.ok and report.pages_sent == 1, report
        deadline = time.monotonic() + 30
        while not (faxes := api.get("/v1/inbound", headers=ACME).json()):
            assert time.monotonic() < deadline, (fleet.log_dir / "site-paris.log").read_text()
            time.sleep(0.5)
        (fax,) = faxes
        assert (fax["tenant"], fax["line"], fax["called"]) == ("acme", "paris-a", DID)
        assert fax["ok"] and fax["pages"] == 1
        assert fax["remote_id"] == CALLER_ID
        tiff = api.get(f"/v1/inbound/{fax['id']}.tiff", headers=ACME)
        assert tiff.status_code == 200
        assert_same_ink(_rows(page_data), _rows(tiff.content), trailer=True)
        (mail,) = smtp_server.inbox.wait_for(lambda m: m["To"] == "fax@acme.example", 30)
        assert CALLER_ID in str(mail["Subject"])
        assert any(part.get_content_type() == "image/tiff" for part in mail.walk())


# -- the demo's own pieces (no line needed) --------------------------------------------------


def test_demo_pictures_use_the_previews_rows_and_figures_come_from_the_site_log() -> None:
    standard = Image.new("1", (1728, 1146), 1)
    standard.info["dpi"] = (204, 98)
    fine = Image.new("1", (1728, 2292), 1)
    fine.info["dpi"] = (204, 196)
    assert square_pixels(standard).size == (1728, 2292)  # rows doubled, like the API preview
    assert square_pixels(fine).size == (1728, 2292)
    sheet = side_by_side(square_pixels(fine), square_pixels(standard), ("sent", "received"))
    assert sheet.width > 2 * 1728 and sheet.height > 2292
    assert sheet.crop((0, 0, sheet.width, 70)).getextrema()[0] == 0  # the captions are drawn
    site_log = (
        "15:05:00 INFO  faxfleet.lines: fax sent pages=1 rate=9600 ecm=True\n"
        "15:06:00 INFO  faxfleet.lines: fax sent pages=2 rate=14400 ecm=False\n"
    )
    assert logged_rate(site_log) == (14400, False)
    assert logged_rate("") == (None, None)
