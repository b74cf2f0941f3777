"""The header line is stamped while the line dials: the pages a line reads are the
stamped ones, in order, and a page that cannot be stamped still goes as rendered."""

from __future__ import annotations

from datetime import UTC, datetime

from faxfleet.kinds import Resolution
from faxfleet.messages import SendOrder
from workers.render import render_documents
from workers.render.tiff import read_pages
from workers.site import StampedPages


def order(first_page: int = 1, pages: int = 3) -> SendOrder:
    return SendOrder(
        job_id="fx_header",
        recipient=0,
        attempt=1,
        number="+33142685300",
        pages=pages,
        first_page=first_page,
        priority=5,
        home_site="paris",
        tenant="t",
        site="paris",
        routed_at=datetime.now(UTC),
        sender="+33 1 42 68 53 00",
    )


def top_rows_inked(page: bytes, rows: int = 40) -> int:
    bitmap = next(read_pages(page)).bitmap
    size = bitmap.row_bytes
    return sum(any(bitmap.bits[y * size : (y + 1) * size]) for y in range(rows))


def test_pages_are_stamped_in_order_and_resume_numbering() -> None:
    rendered = render_documents([b"page one\fpage two\fpage three"], Resolution.FINE)
    assert len(rendered) == 3
    blank_tops = [top_rows_inked(page) for page in rendered]
    stamped = StampedPages(order(first_page=2), rendered[1:])
    assert len(stamped) == 2
    pages = [stamped[0], stamped[1]]
    assert pages == stamped[0:2]
    for before, after, page in zip(blank_tops[1:], pages, rendered[1:], strict=True):
        assert after != page  # the header band changed the page
        assert top_rows_inked(after) > before  # and it is at the top
        assert next(read_pages(after)).bitmap.height == next(read_pages(page)).bitmap.height


def test_a_page_that_cannot_be_stamped_goes_as_rendered() -> None:
    not_a_tiff = b"not a fax page"
    stamped = StampedPages(order(pages=1), [not_a_tiff])
    assert stamped[0] == not_a_tiff
