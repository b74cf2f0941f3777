"""Plain UTF-8 text to fax pages, typewriter style.

Text is laid out when the document is opened (so its page count is known before anything is
drawn): tabs expanded to 8 columns, long lines wrapped at a space where possible, a form
feed starts a new page, and a page ends when full. Pages are drawn in a ~10 pt monospaced
font with 20 mm margins on an A4 sheet at 204 dpi with square pixels, then handed to
:mod:`.bitmap`, which squeezes rows to the fax resolution and thresholds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from faxfleet.kinds import Resolution

from .bitmap import (
    A4_HEIGHT_IN,
    A4_WIDTH_IN,
    FAX_WIDTH_PX,
    HORIZONTAL_DPI,
    FaxBitmap,
    page_at_physical_size,
)

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
FONT_POINTS = 10
MARGIN_MM = 20
TAB_SIZE = 8

_MM = HORIZONTAL_DPI / 25.4  # pixels per millimetre on the square-pixel drawing sheet
_SHEET_SIZE = (FAX_WIDTH_PX, round(A4_HEIGHT_IN * HORIZONTAL_DPI))
_PAPER_LEFT = (FAX_WIDTH_PX - round(A4_WIDTH_IN * HORIZONTAL_DPI)) // 2  # A4 centred in 215 mm
_LEFT = _PAPER_LEFT + round(MARGIN_MM * _MM)
_TOP = round(MARGIN_MM * _MM)
_TEXT_WIDTH = round(A4_WIDTH_IN * HORIZONTAL_DPI) - 2 * round(MARGIN_MM * _MM)
_TEXT_HEIGHT = _SHEET_SIZE[1] - 2 * _TOP

# Control characters other than tab, newline and form feed (C0, DEL, C1) would draw as boxes
# or nothing, and some make the layout engine fail.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=1)
def _font() -> Font:
    size = round(FONT_POINTS * HORIZONTAL_DPI / 72)
    if FONT_PATH.exists():
        # Basic layout (no shaping, no bidi): one glyph per character, as on a typewriter,
        # and no dependence on whether Pillow was built with libraqm.
        return ImageFont.truetype(str(FONT_PATH), size, layout_engine=ImageFont.Layout.BASIC)
    return ImageFont.load_default(size=size)


_MAX_GLYPHS = 4096
"""Characters kept per font: a text of thousands of distinct characters is still drawn
right, just without keeping every mask."""


class _Glyphs:
    """Draws lines glyph by glyph from masks rendered once per character.

    Pillow's ``ImageDraw.text`` asks FreeType to render every glyph of every line afresh
    (about 0.4 ms for an 80-column line, 25 ms for a full page); a page of text repeats
    a few dozen characters. Each character's anti-aliased mask and offset are rendered
    once (printable ASCII up front, so the warm renderer holds them for every job) and
    drawn at the pen position, advancing by the character's own advance (zero for a
    combining mark), which is how Pillow's basic layout places them: a test checks the
    page pixel for pixel against ``ImageDraw.text``, whose own drawing call
    (``draw_bitmap``) this reuses. Fonts without FreeType fall back to ``ImageDraw.text``.
    """

    def __init__(self, font: Font) -> None:
        self._font = font
        self._cache: dict[str, tuple[object, tuple[int, int], float]] = {}
        if isinstance(font, ImageFont.FreeTypeFont):
            for code in range(0x20, 0x7F):
                self._glyph(chr(code))

    def _glyph(self, char: str) -> tuple[object, tuple[int, int], float]:
        glyph = self._cache.get(char)
        if glyph is None:
            assert isinstance(self._font, ImageFont.FreeTypeFont)
            mask, offset = self._font.getmask2(char, "L")
            glyph = (mask, offset, self._font.getlength(char))
            if len(self._cache) < _MAX_GLYPHS:
                self._cache[char] = glyph
        return glyph

    def draw(self, draw: ImageDraw.ImageDraw, x: int, y: int, line: str) -> None:
        """``line`` in black with its top left (ascender line) at (``x``, ``y``)."""
        if not isinstance(self._font, ImageFont.FreeTypeFont):
            draw.text((x, y), line, font=self._font, fill=0)
            return
        pen = float(x)
        for char in line:
            mask, (left, top), advance = self._glyph(char)
            if mask.size[0] and mask.size[1]:  # type: ignore[attr-defined]
                draw.draw.draw_bitmap((round(pen) + left, y + top), mask, 0)  # type: ignore[attr-defined]
            pen += advance


@lru_cache(maxsize=1)
def _glyphs() -> _Glyphs:
    return _Glyphs(_font())


def _line_height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    _left, top, _right, bottom = font.getbbox("Ag")
    return int(bottom - top) + 2


def _wrap(line: str, font: Font) -> list[str]:
    """Split ``line`` into pieces that fit the text width, preferring breaks after spaces.

    Measured with the font rather than counted, so a proportional fallback font wraps too.
    """
    pieces: list[str] = []
    while font.getlength(line) > _TEXT_WIDTH:
        low, high = 1, len(line)  # longest prefix that fits, found by bisection
        while low < high:
            middle = (low + high + 1) // 2
            if font.getlength(line[:middle]) <= _TEXT_WIDTH:
                low = middle
            else:
                high = middle - 1
        space = line.rfind(" ", 0, low + 1)
        cut = space + 1 if space >= low // 2 else low
        pieces.append(line[:cut].rstrip(" "))
        line = line[cut:]
    pieces.append(line)
    return pieces


def layout(text: str, font: Font) -> list[list[str]]:
    """Lines of each page."""
    lines_per_page = max(1, _TEXT_HEIGHT // _line_height(font))
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("\ufffd", text)
    sheets = text.split("\f")
    if len(sheets) > 1 and not sheets[-1].strip():
        sheets.pop()  # a final form feed ends the last page; it does not start an empty one
    pages: list[list[str]] = []
    for sheet in sheets:
        if sheet.endswith("\n"):
            sheet = sheet[:-1]  # the newline before a form feed is not an extra line
        lines = [
            piece
            for line in sheet.split("\n")
            for piece in _wrap(line.expandtabs(TAB_SIZE).rstrip(), font)
        ]
        pages.extend(
            lines[start : start + lines_per_page]
            for start in range(0, max(1, len(lines)), lines_per_page)
        )
    return pages


class TextSource:
    """A plain text document; see :class:`.source.PageSource`."""

    def __init__(self, data: bytes, resolution: Resolution) -> None:
        self._resolution = resolution
        self._font = _font()
        # Sniffing checked only the start; a stray bad byte later should not fail the fax.
        self._pages = layout(data.decode("utf-8", errors="replace"), self._font)

    @property
    def page_count(self) -> int:
        return len(self._pages)

    def pages(self) -> Iterator[Image.Image]:
        for index in range(len(self._pages)):
            yield self.page(index)

    def page(self, index: int) -> Image.Image:
        return self.bitmap(index).to_image()

    def bitmap(self, index: int) -> FaxBitmap:
        step = _line_height(self._font)
        sheet = Image.new("L", _SHEET_SIZE, 255)
        draw = ImageDraw.Draw(sheet)
        glyphs = _glyphs()
        for number, line in enumerate(self._pages[index]):
            if line:
                glyphs.draw(draw, _LEFT, _TOP + number * step, line)
        return page_at_physical_size(
            sheet,
            FAX_WIDTH_PX / HORIZONTAL_DPI,
            A4_HEIGHT_IN,
            self._resolution,
        )

    def close(self) -> None:
        """Nothing to release."""
