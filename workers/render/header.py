"""Stamping the fax header line on a rendered page TIFF as the site worker sends it.

The line itself (its text and drawing) is :mod:`faxfleet.header`, shared with the API's
page preview, so the preview shows the header the recipient gets.
"""

from __future__ import annotations

import io

from PIL import Image

from faxfleet.header import band_rows, draw_header, header_text
from faxfleet.kinds import Resolution

from .bitmap import HORIZONTAL_DPI
from .coding import coding_of
from .tiff import encode_page

__all__ = ["band_rows", "header_text", "stamp_header"]


def stamp_header(page_tiff: bytes, text: str) -> bytes:
    """``page_tiff`` (one fax page TIFF) with ``text`` in its top band, re-encoded with
    the same coding (MH, MR or MMR)."""
    with Image.open(io.BytesIO(page_tiff)) as source:
        source.load()
        tags = getattr(source, "tag_v2", {})
        coding = coding_of(int(tags.get(259, 1)), int(tags.get(292, 0) or 0))
        dpi = source.info.get("dpi") or (HORIZONTAL_DPI, 196)
        page = source.convert("1") if source.mode != "1" else source.copy()
    if coding is None:
        raise ValueError("cannot stamp a header on a page that is not CCITT coded")
    vertical = float(dpi[1]) if len(dpi) > 1 else 196.0
    resolution = Resolution.FINE if vertical > 150 else Resolution.STANDARD
    draw_header(page, text, (float(HORIZONTAL_DPI), vertical))
    return encode_page(page, resolution, coding)
