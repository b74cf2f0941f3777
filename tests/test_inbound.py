"""Received faxes without a fleet: joining pages into one TIFF (checked with libtiff,
Pillow and the libtiff tools), the DID routing table, the store on a real Redis, the
notification mail."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from importlib.resources import files
from pathlib import Path

import pytest
import redis
from PIL import Image

from faxfleet.kinds import Resolution
from faxfleet.messages import Cause, InboundReceived
from scheduler import inbound
from scheduler.inbound import InboundRoute, InboundStore, RoutesError, RouteTable
from scheduler.notify import inbound_callback_body, render_inbound_email
from workers.inbound import NotAFaxTiff, join_pages
from workers.render.pipeline import Coding, render_documents
from workers.render.tiff import read_pages


@pytest.fixture(scope="module")
def pages() -> list[bytes]:
    """Four fine pages: the two-page sample invoice and two pages of text, coded MR as a
    Class 1 receiver stores them."""
    invoice = files("faxfleet.samples").joinpath("invoice.pdf").read_bytes()
    return render_documents(
        [invoice, b"received page three\fand page four"], Resolution.FINE, coding=Coding.MR
    )


def bitmaps(tiff: bytes) -> list[bytes]:
    return [page.bitmap.bits for page in read_pages(tiff)]


# -- one TIFF from the pages ----------------------------------------------------------------


def test_joined_fax_decodes_to_the_same_pages(pages: list[bytes]) -> None:
    whole = join_pages(pages)
    assert bitmaps(whole) == [bitmaps(p)[0] for p in pages]
    # The compressed strips are copied, not re-encoded: the file is the pages' size.
    assert abs(len(whole) - sum(len(p) for p in pages)) < 1024
    with Image.open(io.BytesIO(whole)) as image:
        assert image.n_frames == 4
        assert image.info["dpi"] == (204, 196)


def test_joined_fax_is_clean_for_libtiff_tools(pages: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "fax.tiff"
    path.write_bytes(join_pages(pages))
    info = subprocess.run(["tiffinfo", str(path)], capture_output=True, text=True, check=True)
    assert info.stderr == ""
    assert info.stdout.count("TIFF Directory at offset") == 4
    for n in range(4):
        assert f"Page Number: {n}-4" in info.stdout
    assert "Group 3 Options: 2-d encoding" in info.stdout


def test_big_endian_and_multi_page_inputs_are_joined(pages: list[bytes], tmp_path: Path) -> None:
    """A page written big-endian (MM) by another program, and a file of two pages, come
    out little-endian with every page intact."""
    first = tmp_path / "p1.tiff"
    first.write_bytes(pages[0])
    big = tmp_path / "big.tiff"
    subprocess.run(["tiffcp", "-B", str(first), str(big)], check=True)
    assert big.read_bytes()[:2] == b"MM"
    pair = join_pages(pages[1:3])
    whole = join_pages([big.read_bytes(), pair, pages[3]])
    assert whole[:2] == b"II"
    assert bitmaps(whole) == [bitmaps(p)[0] for p in pages]


def test_a_page_that_is_not_a_tiff_is_refused(pages: list[bytes]) -> None:
    with pytest.raises(NotAFaxTiff, match="page 2: not a TIFF"):
        join_pages([pages[0], b"%PDF-1.4 not a fax page"])
    with pytest.raises(NotAFaxTiff, match="page 1"):
        join_pages([pages[0][:200]])


# -- the DID routing table ----------------------------------------------------------------

ROUTES = """{
  "+33142685300": {"tenant": "acme", "email": "fax@acme.example"},
  "+3314268531*": {"tenant": "globex", "callback_url": "http://globex.example/in"},
  "+331426853*": {"tenant": "initech", "email": "desk@initech.example"},
  "line:paris-4": {"tenant": "umbrella", "email": "ops@umbrella.example"}
}"""


def test_exact_number_wins_and_national_format_is_read_as_e164() -> None:
    table = RouteTable.parse(ROUTES, "FR")
    for called in ("+33142685300", "01 42 68 53 00", "+33 (0)1 42-68-53-00", "0142685300"):
        match = table.route(called, "paris-1")
        assert match is not None, called
        assert (match.key, match.route.tenant) == ("+33142685300", "acme")
    assert table.route("+33142685300", "paris-1").route.notify.email == "fax@acme.example"


def test_longest_prefix_then_line_then_unrouted() -> None:
    table = RouteTable.parse(ROUTES, "FR")
    assert table.route("+33142685317", "paris-1").route.tenant == "globex"
    assert table.route("+33142685399", "paris-1").route.tenant == "initech"
    # A number outside every block on a line with its own route; no DID at all.
    assert table.route("+33999999999", "paris-4").key == "line:paris-4"
    assert table.route(None, "paris-4").route.tenant == "umbrella"
    # Nothing matches and there is no default: unrouted.
    assert table.route("+33999999999", "paris-1") is None
    assert table.route(None, "paris-1") is None


def test_default_route_takes_what_nothing_else_matches() -> None:
    table = RouteTable(
        {
            "*": InboundRoute(tenant="reception", email="reception@example.org"),
            "+33142685300": InboundRoute(tenant="acme"),
        }
    )
    assert table.route("+33999999999", "paris-1").key == "*"
    assert table.route(None, "paris-2").route.tenant == "reception"
    assert table.route("+33142685300", "paris-2").route.tenant == "acme"


def test_routes_from_a_file_and_empty_setting(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(ROUTES)
    assert RouteTable.parse(str(path)).route("+33142685300", "x").route.tenant == "acme"
    assert RouteTable.parse("").route("+33142685300", "x") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"+33142685300": {"email": "x@y"}}', "'\\+33142685300': tenant: Field required"),
        ('{"+33142685300": {"tenant": "a", "fax": 1}}', "fax: Extra inputs"),
        ('{"line:": {"tenant": "a"}}', "needs the line's name"),
        ("/nonexistent/routes.json", "cannot read"),
    ],
)
def test_bad_routes_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(RoutesError, match=message):
        RouteTable.parse(text)


# -- the store ------------------------------------------------------------------------------


def event(n: int, *, called: str | None = "+33142685300", pages: int = 2, ok: bool = True):
    return InboundReceived(
        inbound_id=f"in_{n:04d}",
        site="paris",
        line="paris-1",
        called=called,
        remote_id="+33 1 99 88 77 66",
        pages=pages,
        size=1000 * pages,
        ok=ok,
        cause=None if ok else Cause.REMOTE_DISCONNECTED,
        at=datetime.now(UTC) - timedelta(minutes=10 - n),
    )


def test_store_keeps_faxes_per_tenant_newest_first(r: redis.Redis) -> None:
    table = RouteTable.parse(ROUTES)
    store = InboundStore(r, 3600)
    calls = [(1, "+33142685300"), (2, "+33142685317"), (3, "0142685300"), (4, "+1212")]
    for n, called in calls:
        ev = event(n, called=called)
        assert store.add(inbound.file_record(ev, table.route(ev.called, ev.line)))
    # The same event again (a redelivery) files nothing twice.
    assert not store.add(inbound.file_record(event(1), table.route("+33142685300", "paris-1")))
    assert [f.id for f in store.list("acme")] == ["in_0003", "in_0001"]
    assert [f.id for f in store.list("globex")] == ["in_0002"]
    unrouted = store.list(None)
    assert [(f.id, f.tenant, f.route) for f in unrouted] == [("in_0004", None, None)]
    assert 3590 < r.ttl(inbound.record_key("in_0001")) <= 3600
    assert store.claim_notifications("in_0001") and not store.claim_notifications("in_0001")


def test_notifications_only_for_routed_faxes_with_pages() -> None:
    table = RouteTable.parse(ROUTES)
    routed = inbound.file_record(event(1), table.route("+33142685300", "paris-1"))
    empty = inbound.file_record(event(2, pages=0, ok=False), table.route("+33142685300", "x"))
    lost = inbound.file_record(event(3, called="+1212"), None)
    assert inbound.should_notify(routed)
    assert not inbound.should_notify(empty)
    assert not inbound.should_notify(lost)


# -- the notification ------------------------------------------------------------------------


def test_partial_reception_mail_says_so_and_attaches_the_pages(pages: list[bytes]) -> None:
    table = RouteTable.parse(ROUTES)
    fax = inbound.file_record(event(5, ok=False), table.route("+33142685300", "paris-1"))
    whole = join_pages(pages[:2])
    msg = render_inbound_email(fax, whole, "paris")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Subject"] == (
        "Fax from +33 1 99 88 77 66: 2 pages (incomplete: remote_disconnected)"
    )
    text = parsed.get_body(("plain",)).get_content()
    assert "partly received" in text and "Cause:      remote_disconnected" in text
    assert "Line:       paris-1 (site paris)" in text
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "image/tiff"
    assert attachment.get_filename() == "in_0005.tiff"
    assert attachment.get_content() == whole
    body = inbound_callback_body(fax, "paris")
    assert b'"event":"fax.received"' in body and b'"ok":false' in body
