"""Fax cover pages from Jinja2 templates.

A template renders to TEXT, one layout directive per line; this module draws the lines
with DejaVu fonts on an A4 sheet at 204 dpi (square pixels) and hands the sheet to
:mod:`.bitmap`, which squeezes it to the fax resolution and thresholds it, like the
text reader does. Keeping templates as text (not HTML) means no browser or layout engine
is needed and a tenant's template cannot do more than place lines on the page.

Directives (everything after the prefix is drawn as is; unknown lines are paragraphs):

==================  ===========================================================
``= text``          header band: white bold text on a black band
``. text``          small line (company address under the band)
``# text``          title (large bold)
``## text``         heading (bold)
``| key | value``   key/value row (bold key, value wrapped in a second column)
``---``             horizontal rule
``> text``          paragraph line, wrapped to the text width
``_ text``          footer line, small, at the bottom of the page
(empty line)        half a line of space
==================  ===========================================================

Templates: ``<tenant>.j2`` then ``<site>.j2`` in the ``cover_template_dir`` setting,
else the built-in ``templates/cover.j2``. They run in Jinja's sandbox. The context holds
the :class:`~faxfleet.messages.CoverFields` values with newlines removed, plus
``to_line`` (the recipient's name and numbers), ``from_line`` (the sender and company),
``company_name``/``company_lines`` (``sender_company`` split), ``comment_lines``,
``recipients`` (numbers joined), ``pages`` (total, cover included), ``date``,
``tenant``, ``site`` and ``extra`` (the request's ``cover_fields``).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from PIL import Image, ImageDraw, ImageFont

from faxfleet.messages import CoverFields, Resolution

from .bitmap import A4_HEIGHT_IN, A4_WIDTH_IN, FAX_WIDTH_PX, HORIZONTAL_DPI, page_at_physical_size
from .errors import RenderError
from .tiff import encode_page

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = "cover.j2"
MARGIN_MM = 20

_MM = HORIZONTAL_DPI / 25.4
_SHEET = (FAX_WIDTH_PX, round(A4_HEIGHT_IN * HORIZONTAL_DPI))
_PAPER_LEFT = (FAX_WIDTH_PX - round(A4_WIDTH_IN * HORIZONTAL_DPI)) // 2
_LEFT = _PAPER_LEFT + round(MARGIN_MM * _MM)
_RIGHT = FAX_WIDTH_PX - _LEFT
_TOP = round(MARGIN_MM * _MM)
_BOTTOM = _SHEET[1] - round(15 * _MM)
_KEY_WIDTH = round(38 * _MM)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=32)
def _font(name: str, points: float) -> Font:
    size = round(points * HORIZONTAL_DPI / 72)
    path = FONT_DIR / name
    if path.exists():
        return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    return ImageFont.load_default(size=size)


def _sans(points: float) -> Font:
    return _font("DejaVuSans.ttf", points)


def _bold(points: float) -> Font:
    return _font("DejaVuSans-Bold.ttf", points)


def _height(font: Font) -> int:
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    _l, top, _r, bottom = font.getbbox("Ag")
    return int(bottom - top) + 2


def wrap(text: str, font: Font, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels, broken at spaces if possible."""
    words = text.split(" ")
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:  # a word longer than the line: cut it
            cut = max(1, int(len(word) * width / font.getlength(word)))
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    lines.append(line)
    return lines


def _one_line(value: Any) -> str:
    return _CONTROL.sub(" ", str(value)).strip() if value is not None else ""


def template_context(
    fields: CoverFields, *, pages: int, date: datetime, tenant: str | None, site: str | None
) -> dict[str, Any]:
    company = [_one_line(x) for x in (fields.sender_company or "").splitlines() if x.strip()]
    comment = (fields.comment or "").replace("\r\n", "\n").replace("\r", "\n")
    numbers = ", ".join(_one_line(n) for n in fields.recipient_numbers)
    name, sender = _one_line(fields.recipient_name), _one_line(fields.sender_name)
    senders = [x for x in (sender, company[0] if company else "") if x]
    return {
        # Who it is for and who sends it, never blank: the name with its numbers, or the
        # numbers alone; the sender and company, or whichever there is, else the reply
        # fax number, else the tenant.
        "to_line": f"{name} ({numbers})" if name and numbers else name or numbers,
        "from_line": ", ".join(dict.fromkeys(senders))
        or _one_line(fields.sender_fax)
        or (tenant or ""),
        "recipient_name": _one_line(fields.recipient_name),
        "recipient_numbers": [_one_line(n) for n in fields.recipient_numbers],
        "recipients": ", ".join(_one_line(n) for n in fields.recipient_numbers),
        "sender_name": _one_line(fields.sender_name),
        "sender_fax": _one_line(fields.sender_fax),
        "sender_company": " / ".join(company),
        "company_name": company[0] if company else "",
        "company_lines": company[1:],
        "subject": _one_line(fields.subject),
        "comment": _one_line(comment),
        "comment_lines": [_CONTROL.sub(" ", x).rstrip() for x in comment.split("\n")]
        if comment.strip()
        else [],
        "pages": pages,
        "date": date.strftime("%Y-%m-%d %H:%M %Z").strip(),
        "tenant": tenant or "",
        "site": site or "",
        "extra": {k: _one_line(v) for k, v in fields.extra.items()},
    }


def find_template(
    template_dir: str | Path | None, tenant: str | None, site: str | None
) -> tuple[Path, str]:
    """The directory and file name of the template to use (tenant, then site, then default)."""
    if template_dir:
        folder = Path(template_dir)
        for name in (tenant, site):
            if name and _SAFE_NAME.match(name) and (folder / f"{name}.j2").is_file():
                return folder, f"{name}.j2"
    return TEMPLATES, DEFAULT_TEMPLATE


@lru_cache(maxsize=16)
@lru_cache(maxsize=32)
def _environment(folder: Path) -> SandboxedEnvironment:
    """One environment per template folder: templates are compiled once, not per fax."""
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render_text(
    fields: CoverFields,
    *,
    pages: int,
    date: datetime,
    tenant: str | None = None,
    site: str | None = None,
    template_dir: str | Path | None = None,
) -> str:
    """The template's output: the layout directives of the cover page."""
    folder, name = find_template(template_dir, tenant, site)
    context = template_context(fields, pages=pages, date=date, tenant=tenant, site=site)
    try:
        return _environment(folder).get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"cover template {name}: {exc}") from exc


class _Sheet:
    def __init__(self) -> None:
        self.image = Image.new("L", _SHEET, 255)
        self.draw = ImageDraw.Draw(self.image)
        self.y = _TOP
        self.full = False

    def _room(self, height: int, bottom: int) -> bool:
        if self.y + height > bottom:
            self.full = True
        return not self.full

    def text(self, x: int, line: str, font: Font, bottom: int, fill: int = 0) -> None:
        step = _height(font)
        if self._room(step, bottom):
            self.draw.text((x, self.y), line, font=font, fill=fill)
            self.y += step


def draw_cover(text: str) -> Image.Image:
    """Draw the directives in ``text`` on a greyscale A4 sheet (204 dpi, square pixels)."""
    sheet = _Sheet()
    width = _RIGHT - _LEFT
    lines = text.split("\n")
    footer = [line[2:] for line in lines if line.startswith("_ ") or line == "_"]
    small = _sans(8)
    footer_top = _BOTTOM - len(footer) * _height(small)
    bottom = footer_top - round(4 * _MM)
    for raw in lines:
        line = raw.rstrip()
        if line.startswith("_ ") or line == "_":
            continue
        if not line.strip():
            sheet.y += _height(_sans(11)) // 2
        elif line.startswith("= "):
            font = _bold(20)
            band = round(16 * _MM)
            if sheet._room(band, bottom):
                sheet.draw.rectangle((_LEFT, sheet.y, _RIGHT, sheet.y + band), fill=0)
                label = wrap(line[2:], font, width - round(10 * _MM))[0]
                top = sheet.y + (band - _height(font)) // 2
                sheet.draw.text((_LEFT + round(5 * _MM), top), label, font=font, fill=255)
                sheet.y += band + round(2 * _MM)
        elif line.startswith(". "):
            for piece in wrap(line[2:], _sans(9), width):
                sheet.text(_LEFT, piece, _sans(9), bottom)
        elif line.startswith("## "):
            sheet.y += round(2 * _MM)
            for piece in wrap(line[3:], _bold(13), width):
                sheet.text(_LEFT, piece, _bold(13), bottom)
            sheet.y += round(1 * _MM)
        elif line.startswith("# "):
            sheet.y += round(4 * _MM)
            for piece in wrap(line[2:], _bold(40), width):
                sheet.text(_LEFT, piece, _bold(40), bottom)
            sheet.y += round(2 * _MM)
        elif line.strip() == "---":
            if sheet._room(round(6 * _MM), bottom):
                middle = sheet.y + round(3 * _MM)
                sheet.draw.rectangle((_LEFT, middle - 2, _RIGHT, middle + 1), fill=0)
                sheet.y += round(6 * _MM)
        elif line.startswith("|"):
            key, _, value = line[1:].partition("|")
            value = value.strip()
            pieces = wrap(value, _sans(12), width - _KEY_WIDTH) if value else [""]
            step = _height(_sans(12)) + round(1.5 * _MM)
            if sheet._room(step * len(pieces), bottom):
                sheet.draw.text((_LEFT, sheet.y), key.strip(), font=_bold(12), fill=0)
                for piece in pieces:
                    sheet.draw.text((_LEFT + _KEY_WIDTH, sheet.y), piece, font=_sans(12), fill=0)
                    sheet.y += step
        else:
            body = line[2:] if line.startswith("> ") else line.removeprefix(">")
            for piece in wrap(body, _sans(11), width):
                sheet.text(_LEFT, piece, _sans(11), bottom)
    if sheet.full:  # say so rather than silently dropping the rest
        sheet.y = bottom
        sheet.draw.text((_LEFT, bottom), "[continued text omitted]", font=_sans(9), fill=0)
    y = footer_top
    for line in footer:
        sheet.draw.text((_LEFT, y), line, font=small, fill=0)
        y += _height(small)
    return sheet.image


def cover_page(
    fields: CoverFields,
    resolution: Resolution,
    *,
    pages: int,
    date: datetime,
    tenant: str | None = None,
    site: str | None = None,
    template_dir: str | Path | None = None,
) -> Image.Image:
    """The cover page as a bilevel fax page (mode "1", 1728 wide) at ``resolution``."""
    text = render_text(
        fields, pages=pages, date=date, tenant=tenant, site=site, template_dir=template_dir
    )
    return page_at_physical_size(
        draw_cover(text), FAX_WIDTH_PX / HORIZONTAL_DPI, A4_HEIGHT_IN, Resolution(resolution)
    ).to_image()


def cover_tiff(
    fields: CoverFields,
    resolution: Resolution,
    *,
    pages: int,
    date: datetime,
    tenant: str | None = None,
    site: str | None = None,
    template_dir: str | Path | None = None,
) -> bytes:
    """The cover page as one single-page fax TIFF, like the document pages."""
    page = cover_page(
        fields,
        resolution,
        pages=pages,
        date=date,
        tenant=tenant,
        site=site,
        template_dir=template_dir,
    )
    return encode_page(page, Resolution(resolution))
