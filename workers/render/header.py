"""The fax header line (TTI): "From <sender>  <date time>  Page n/N" across the top of a page.

The site worker stamps it as it sends, so the time is the time of the call and the page
numbers are those of the whole fax, also when a call resumes after page n. The top band
(about 4 mm) is cleared and the text drawn there at the page's own resolution; the rest of
the page is left bit for bit as it was.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from faxfleet.kinds import Resolution

from .bitmap import FAX_WIDTH_PX, HORIZONTAL_DPI
from .coding import coding_of
from .tiff import encode_page

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
BAND_MM = 4.0
"""Height of the header band."""
_FONT_PX = 24  # ~8.5 pt at 204 dpi: 2.5 mm capitals, like a fax machine's header
_LEFT_PX = 40

_INK_LUT = [0 if level < 128 else 255 for level in range(256)]


def header_text(sender: str | None, when: datetime, page: int, pages: int) -> str:
    """The usual header line: sender id, date and time of the call, page n/N."""
    sender = " ".join((sender or "").split())[:40]
    stamp = when.strftime("%Y-%m-%d %H:%M")
    return (
        f"From {sender}   {stamp}   Page {page}/{pages}"
        if sender
        else (f"{stamp}   Page {page}/{pages}")
    )


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), _FONT_PX, layout_engine=ImageFont.Layout.BASIC)
    return ImageFont.load_default(size=_FONT_PX)


def band_rows(vertical_dpi: float) -> int:
    """Rows of the header band at ``vertical_dpi``."""
    return max(8, round(BAND_MM / 25.4 * vertical_dpi))


def _band(text: str, width: int, rows: int) -> Image.Image:
    """The header band (mode "1", white paper) drawn with square pixels, then fitted."""
    square_rows = band_rows(HORIZONTAL_DPI)
    gray = Image.new("L", (width, square_rows), 255)
    draw = ImageDraw.Draw(gray)
    font = _font()
    top = max(0, (square_rows - _FONT_PX) // 2)
    draw.text((_LEFT_PX, top), text, font=font, fill=0)
    if rows != square_rows:
        gray = gray.resize((width, rows), Image.Resampling.BOX)
    return gray.point(_INK_LUT, "1")


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
    rows = min(band_rows(vertical), page.height)
    page.paste(_band(text, page.width or FAX_WIDTH_PX, rows), (0, 0))
    return encode_page(page, resolution, coding)
