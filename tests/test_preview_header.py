"""The page preview shows the header line as the recipient gets it: the API draws it with
the function the site worker stamps pages with, so the previewed pixels are those sent."""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image, ImageChops

from faxfleet.header import band_rows, header_text
from faxfleet.kinds import Resolution
from scheduler.api import page_png
from workers.render import render_documents
from workers.render.header import stamp_header

WHEN = datetime.fromisoformat("2026-12-07T14:03:00+01:00")


def _image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("L")


def test_preview_header_is_the_stamped_page() -> None:
    for resolution in (Resolution.FINE, Resolution.STANDARD):
        page = render_documents([b"Purchase order PO-88231\n\n12 units"], resolution)[0]
        text = header_text("ACME Supplies", WHEN, 1, 2)
        assert text == "From ACME Supplies   2026-12-07 14:03   Page 1/2"
        previewed = _image(page_png(page, text))
        sent = _image(page_png(stamp_header(page, text)))  # what the far end receives
        plain = _image(page_png(page))
        assert previewed.size == sent.size == plain.size == (1728, 2292)
        assert ImageChops.difference(previewed, sent).getbbox() is None, resolution
        # The header band (4 mm: 32 rows of square pixels) has ink only with the header,
        # the rest of the page is the same.
        band = band_rows(204)
        assert plain.crop((0, 0, 1728, band)).getextrema() == (255, 255)
        assert previewed.crop((0, 0, 1728, band)).getextrema()[0] == 0
        changed = ImageChops.difference(previewed, plain).getbbox()
        assert changed is not None and changed[3] <= band + 1


def test_header_text_without_sender() -> None:
    assert header_text(None, WHEN, 3, 3) == "2026-12-07 14:03   Page 3/3"
    assert header_text("  a\tb  ", WHEN, 1, 1).startswith("From a b   ")
