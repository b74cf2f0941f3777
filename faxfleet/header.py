"""The fax header line (TTI): "From <sender>  <date time>  Page n/N" across the top of a page.

One drawing for both places that show it: the site worker stamps it on each page as it
sends (``workers/render/header.py``, so the time is that of the call and the page numbers
are those of the whole fax, also when a call resumes after page n), and the API's page
preview draws the same band so the preview is the page as the recipient gets it. The top
band (about 4 mm) is cleared and the text drawn there at the page's own resolution; the
rest of the page is left bit for bit as it was.

Only Pillow: the renderer's warm sandbox process may import it cheaply.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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


def _band(text: str, width: int, rows: int, horizontal_dpi: float) -> Image.Image:
    """The header band (mode "1", white paper) drawn with square pixels, then fitted."""
    square_rows = band_rows(horizontal_dpi)
    gray = Image.new("L", (width, square_rows), 255)
    draw = ImageDraw.Draw(gray)
    font = _font()
    top = max(0, (square_rows - _FONT_PX) // 2)
    draw.text((_LEFT_PX, top), text, font=font, fill=0)
    if rows != square_rows:
        gray = gray.resize((width, rows), Image.Resampling.BOX)
    return gray.point(_INK_LUT, "1")


def draw_header(page: Image.Image, text: str, dpi: tuple[float, float]) -> Image.Image:
    """``page`` (mode "1", ``dpi`` horizontal and vertical) with ``text`` in its top band:
    the page itself, changed in place, returned for convenience."""
    rows = min(band_rows(dpi[1]), page.height)
    page.paste(_band(text, page.width, rows, dpi[0]), (0, 0))
    return page
