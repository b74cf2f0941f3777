"""The site workers' renderer: real documents in, real fax TIFFs out, no mocks.

PDFs are drawn with reportlab, images with Pillow; pages are decoded with Pillow and, where
libtiff's tools are installed, cross-checked with ``tiffinfo``.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.pdfgen import canvas

from faxfleet.messages import Resolution
from workers.render import RenderError, render_documents

ROWS = {Resolution.STANDARD: 1146, Resolution.FINE: 2292}
VDPI = {Resolution.STANDARD: 98, Resolution.FINE: 196}
A4_LEFT_PX = (1728 - 1687) / 2  # an A4 sheet (1687 px at 204 dpi) centred on the fax line


# --- building documents -------------------------------------------------------------------


def make_pdf(
    boxes_per_page: list[list[tuple[float, float, float, float]]],
    *,
    pagesize: tuple[float, float] = A4,
    rotate: int = 0,
    text: str | None = None,
    encrypt: str | None = None,
) -> bytes:
    """A PDF with black boxes given as (left, top, width, height) in points from the top left."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=pagesize, encrypt=encrypt)
    height = pagesize[1]
    for boxes in boxes_per_page:
        if rotate:
            pdf.setPageRotation(rotate)
        if text:
            pdf.setFont("Helvetica", 24)
            pdf.drawString(72, height - 72, text)
        for left, top, box_width, box_height in boxes:
            pdf.rect(left, height - top - box_height, box_width, box_height, stroke=0, fill=1)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def make_image(fmt: str, *, mode: str = "L", size: tuple[int, int] = (400, 400)) -> bytes:
    """A white (or transparent) image with a black square in its middle half."""
    image = Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else "white")
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    w, h = size
    image.paste(Image.new(mode, (w // 2, h // 2), ink), (w // 4, h // 4))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (the data is one empty row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


# --- reading pages ------------------------------------------------------------------------


def decode(page: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(page))
    image.load()
    return image


def black_fraction(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Share of black pixels in ``box`` (left, top, right, bottom) of a decoded page."""
    region = image.crop(box).convert("L")
    histogram = region.histogram()
    return histogram[0] / (region.width * region.height)


def px(points: float) -> int:
    """Horizontal fax pixel of a distance in points from an A4 sheet's left edge."""
    return round(A4_LEFT_PX + points * 204 / 72)


def row(points: float, resolution: Resolution) -> int:
    return round(points * VDPI[resolution] / 72)


# --- PDF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", list(Resolution))
def test_a4_pdf_page_is_a_fax_tiff(resolution: Resolution) -> None:
    [page] = render_documents([make_pdf([[]], text="Hello")], resolution)
    image = decode(page)
    tags = image.tag_v2
    assert image.format == "TIFF"
    assert image.mode == "1"
    assert image.size == (1728, ROWS[resolution])
    assert tags[259] == 4  # CCITT Group 4 (T.6)
    assert tags[262] == 0  # min-is-white
    assert tags.get(266, 1) == 1  # FillOrder
    assert tags[258] in (1, (1,))  # bits per sample
    assert float(tags[282]) == 204
    assert float(tags[283]) == VDPI[resolution]
    assert tags[296] == 2  # inch
    assert len(tags[273]) == 1  # one strip
    assert tags[278] >= image.height
    assert getattr(image, "n_frames", 1) == 1


@pytest.mark.parametrize("resolution", list(Resolution))
def test_pdf_box_lands_black_where_drawn_and_margins_stay_white(resolution: Resolution) -> None:
    left, top, width, height = 72, 144, 200, 144
    [page] = render_documents([make_pdf([[(left, top, width, height)]])], resolution)
    image = decode(page)
    inner = (
        px(left) + 4,
        row(top, resolution) + 4,
        px(left + width) - 4,
        row(top + height, resolution) - 4,
    )
    assert black_fraction(image, inner) == 1.0
    assert black_fraction(image, (0, 0, px(left) - 4, image.height)) == 0.0
    assert black_fraction(image, (px(left + width) + 4, 0, 1728, image.height)) == 0.0
    below = row(top + height, resolution) + 4
    assert black_fraction(image, (0, below, 1728, image.height)) == 0.0


def test_pdf_text_is_black_in_the_top_part() -> None:
    [page] = render_documents([make_pdf([[]], text="Invoice 42")], Resolution.FINE)
    image = decode(page)
    assert (
        black_fraction(image, (px(72), row(40, Resolution.FINE), px(300), row(80, Resolution.FINE)))
        > 0.02
    )
    assert black_fraction(image, (0, image.height // 3, 1728, image.height)) == 0.0


def test_multi_page_pdf_keeps_page_order() -> None:
    # Page n has its box n inches down the sheet.
    document = make_pdf([[(72, 72 * n, 144, 36)] for n in (1, 2, 3)])
    pages = render_documents([document], Resolution.STANDARD)
    assert len(pages) == 3
    for n, page in enumerate(pages, start=1):
        image = decode(page)
        assert image.size == (1728, 1146)
        top = row(72 * n, Resolution.STANDARD)
        assert black_fraction(image, (px(80), top + 3, px(200), top + 20)) == 1.0
        for other in {1, 2, 3} - {n}:
            other_top = row(72 * other, Resolution.STANDARD)
            assert black_fraction(image, (px(80), other_top + 3, px(200), other_top + 20)) == 0


@pytest.mark.parametrize("resolution", list(Resolution))
def test_letter_page_keeps_its_aspect_so_it_is_shorter_than_a4(resolution: Resolution) -> None:
    [page] = render_documents([make_pdf([[(0, 0, 612, 36)]], pagesize=letter)], resolution)
    image = decode(page)
    # 8.5 in is 1734 px at 204 dpi: shrunk to 1728, so 11 in becomes 11 * 1728/1734 in.
    expected_rows = 11 * VDPI[resolution] * 1728 / 1734
    assert image.width == 1728
    assert abs(image.height - expected_rows) <= 1
    assert image.height < ROWS[resolution]
    # The full-width band at the top spans the whole fax line.
    assert black_fraction(image, (2, 2, 1726, row(30, resolution))) == 1.0


def test_landscape_page_is_turned_to_portrait() -> None:
    # Box at the landscape sheet's top left; a quarter turn anticlockwise puts it bottom left.
    document = make_pdf([[(36, 36, 100, 100)]], pagesize=landscape(A4))
    [page] = render_documents([document], Resolution.STANDARD)
    image = decode(page)
    assert image.size == (1728, 1146)
    sheet_width = landscape(A4)[0]
    box = (
        px(40),
        row(sheet_width - 132, Resolution.STANDARD),
        px(132),
        row(sheet_width - 40, Resolution.STANDARD),
    )
    assert black_fraction(image, box) == 1.0
    assert black_fraction(image, (0, 0, 1728, image.height // 2)) == 0.0


def test_rotate_entry_of_the_page_is_respected() -> None:
    # /Rotate 180: the box drawn at the top left shows at the bottom right.
    document = make_pdf([[(36, 36, 100, 100)]], rotate=180)
    [page] = render_documents([document], Resolution.STANDARD)
    image = decode(page)
    assert image.size == (1728, 1146)
    sheet_width, sheet_height = A4
    box = (
        px(sheet_width - 132),
        row(sheet_height - 132, Resolution.STANDARD),
        px(sheet_width - 40),
        row(sheet_height - 40, Resolution.STANDARD),
    )
    assert black_fraction(image, box) == 1.0
    assert black_fraction(image, (0, 0, 1728, image.height // 2)) == 0.0


# --- text ---------------------------------------------------------------------------------


def test_text_page_has_black_text_at_the_top_inside_the_margins() -> None:
    [page] = render_documents([b"Dear customer,\n\tyour fax has arrived.\n"], Resolution.FINE)
    image = decode(page)
    assert image.size == (1728, 2292)
    margin = round(20 / 25.4 * 204)  # 20 mm
    assert black_fraction(image, (0, 0, 1728, 2292)) > 0
    assert black_fraction(image, (px(0) + margin, margin, 1400, 300)) > 0.01  # the text
    assert black_fraction(image, (0, 0, px(0) + margin - 2, 2292)) == 0.0  # left margin
    assert black_fraction(image, (0, 0, 1728, margin - 4)) == 0.0  # top margin
    assert black_fraction(image, (0, 400, 1728, 2292)) == 0.0  # the rest is blank


def test_text_form_feed_breaks_the_page_and_a_final_one_adds_nothing() -> None:
    pages = render_documents([b"first page\n\fsecond page\n\f"], Resolution.STANDARD)
    assert len(pages) == 2
    for page in pages:
        assert black_fraction(decode(page), (0, 0, 1728, 200)) > 0


def test_long_text_breaks_into_full_pages_and_long_lines_wrap() -> None:
    text = "".join(f"line {n}\n" for n in range(200)).encode()
    pages = render_documents([text], Resolution.STANDARD)
    assert 3 <= len(pages) <= 5  # ~60 lines of 10 pt on each A4 page
    assert all(decode(page).size == (1728, 1146) for page in pages)

    [wrapped] = render_documents([("word " * 100).encode()], Resolution.STANDARD)
    image = decode(wrapped)
    right_margin = round(A4_LEFT_PX + (210 - 20) / 25.4 * 204)
    assert black_fraction(image, (right_margin + 2, 0, 1728, image.height)) == 0.0
    text_rows = [y for y in range(image.height) if black_fraction(image, (0, y, 1728, y + 1)) > 0]
    assert text_rows[-1] - text_rows[0] > 3 * 14  # more than three 10 pt lines tall


@settings(
    max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.text(min_size=1, max_size=300))
def test_any_text_renders_or_is_refused_with_a_reason(text: str) -> None:
    try:
        pages = render_documents([text.encode("utf-8", "surrogatepass")], Resolution.STANDARD)
    except RenderError as exc:
        assert str(exc).startswith("document 1: ")
    else:
        assert pages
        assert all(decode(page).size == (1728, 1146) for page in pages)


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "L"), ("PNG", "RGBA"), ("PNG", "1"), ("JPEG", "RGB"), ("TIFF", "1")]
)
def test_image_is_fitted_to_the_page_and_thresholded(fmt: str, mode: str) -> None:
    [page] = render_documents([make_image(fmt, mode=mode)], Resolution.FINE)
    image = decode(page)
    assert image.size == (1728, 2292)
    # A square image fills the width; its black middle half sits around the page centre.
    assert black_fraction(image, (500, 900, 1228, 1400)) == 1.0
    # Corners are paper, including where a PNG was transparent.
    assert black_fraction(image, (0, 0, 400, 400)) == 0.0
    assert black_fraction(image, (1328, 1892, 1728, 2292)) == 0.0


def test_multi_page_tiff_gives_one_fax_page_per_tiff_page() -> None:
    frames = [Image.new("L", (300, 400), 255) for _ in range(3)]
    for n, frame in enumerate(frames):
        frame.paste(0, (0, 100 * n, 300, 100 * n + 50))
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    pages = [decode(page) for page in render_documents([out.getvalue()], Resolution.STANDARD)]
    assert len(pages) == 3
    # The band moves down the page, page by page.
    tops = [
        next(y for y in range(image.height) if image.getpixel((864, y)) == 0) for image in pages
    ]
    assert tops == sorted(tops)
    assert len(set(tops)) == 3


# --- several documents and refusals -------------------------------------------------------


def test_documents_render_in_order() -> None:
    pages = render_documents(
        [make_pdf([[], []]), b"a text page\n", make_image("PNG")], Resolution.STANDARD
    )
    assert len(pages) == 4
    assert black_fraction(decode(pages[3]), (700, 500, 1000, 650)) == 1.0  # the image


def test_encrypted_pdf_is_refused_naming_the_document() -> None:
    with pytest.raises(RenderError, match=r"^document 2: the PDF is encrypted$"):
        render_documents([b"fine\n", make_pdf([[]], encrypt="pw")], Resolution.FINE)


@pytest.mark.parametrize("keep", [0.3, 0.6])
def test_truncated_pdf_is_refused(keep: float) -> None:
    document = make_pdf([[(72, 72, 100, 100)]])
    with pytest.raises(RenderError, match=r"^document 1: the PDF is corrupt or truncated"):
        render_documents([document[: int(len(document) * keep)]], Resolution.FINE)


def test_pdf_without_pages_is_refused() -> None:
    out = io.BytesIO()
    canvas.Canvas(out).save()  # reportlab writes an empty page tree
    with pytest.raises(RenderError, match=r"^document 1: produced no pages$"):
        render_documents([out.getvalue()], Resolution.FINE)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"", "the document is empty"),
        (b" \n\t\n", "unsupported document type"),
        (b"\x00\x01\x02binary", "unsupported document type"),
    ],
)
def test_empty_and_unsupported_documents_are_refused(document: bytes, reason: str) -> None:
    with pytest.raises(RenderError, match=rf"^document 1: {reason}"):
        render_documents([document], Resolution.FINE)


def test_too_many_pages_is_refused_before_rendering() -> None:
    # ~620 text pages: counting them is cheap, rendering them would take many seconds.
    text = b"x\n" * (62 * 620)
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"^too many pages: \d+ \(limit 500\)$") as caught:
        render_documents([make_pdf([[]]), text], Resolution.FINE)
    assert time.monotonic() - started < 5
    total = int(re.search(r"pages: (\d+)", str(caught.value)).group(1))
    assert total > 500

    with pytest.raises(RenderError, match=r"^too many pages: 3 \(limit 2\)$"):
        render_documents([make_pdf([[], [], []])], Resolution.FINE, max_pages=2)


def test_image_claiming_huge_dimensions_is_refused() -> None:
    with pytest.raises(RenderError, match=r"^document 1: image too large \(40000x40000 pixels\)$"):
        render_documents([png_claiming(40000, 40000)], Resolution.FINE)


def test_real_huge_image_is_refused_without_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (12000, 12000), 1).save(out, format="PNG")  # ~40 KB compressed
    assert len(out.getvalue()) < 200_000
    with pytest.raises(RenderError, match=r"image too large \(12000x12000 pixels\)"):
        render_documents([out.getvalue()], Resolution.STANDARD)


def test_no_documents_is_refused() -> None:
    with pytest.raises(RenderError, match="no documents"):
        render_documents([], Resolution.FINE)


# --- independent check with libtiff -------------------------------------------------------


def _tiffinfo(path: Path, *options: str) -> str:
    return subprocess.run(
        ["tiffinfo", *options, str(path)], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(
    shutil.which("tiffinfo") is None,
    reason="tiffinfo (libtiff-tools) is not installed; tags are still checked with Pillow",
)
@pytest.mark.parametrize("resolution", list(Resolution))
def test_libtiff_reads_tags_and_black_pixels(tmp_path: Path, resolution: Resolution) -> None:
    left, top, width, height = 72, 144, 200, 144
    [page] = render_documents([make_pdf([[(left, top, width, height)]])], resolution)
    path = tmp_path / "page.tif"
    path.write_bytes(page)

    info = _tiffinfo(path)
    assert f"Image Width: 1728 Image Length: {ROWS[resolution]}" in info
    assert f"Resolution: 204, {VDPI[resolution]} pixels/inch" in info
    assert "Compression Scheme: CCITT Group 4" in info
    assert "Photometric Interpretation: min-is-white" in info
    assert "FillOrder: msb-to-lsb" in info
    assert f"Rows/Strip: {ROWS[resolution]}" in info
    assert "Bits/Sample: 1" in info

    # libtiff's own decode of the strip: in min-is-white a set bit is black.
    dump = _tiffinfo(path, "-d")
    hex_bytes = re.findall(r"\b[0-9a-f]{2}\b", dump.split("Strip 0:", 1)[1])
    pixels = bytes(int(value, 16) for value in hex_bytes)
    assert len(pixels) == 216 * ROWS[resolution]

    def is_black(x: int, y: int) -> bool:
        return bool(pixels[216 * y + x // 8] & (0x80 >> (x % 8)))

    y = row(top + height / 2, resolution)
    assert is_black(px(left + width / 2), y)
    assert not is_black(px(left) - 10, y)
    assert not is_black(864, ROWS[resolution] - 10)


def test_truncated_image_is_refused() -> None:
    document = make_image("PNG", size=(800, 800))
    with pytest.raises(RenderError, match=r"^document 1: the image is corrupt or truncated$"):
        render_documents([document[: len(document) // 2]], Resolution.STANDARD)


# --- colour and forms in PDFs -------------------------------------------------------------


def test_colours_become_grey_by_luminance_before_the_threshold() -> None:
    """A colour prints as its luminance would in grey (0.299 R + 0.587 G + 0.114 B): near
    black is solid ink, a large mid-grey area is screened to that darkness, and light
    colours (a yellow highlighter, light grey, pale cyan) stay paper."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    fills = {
        "navy": (0, 0, 0.5),
        "dark red": (0.6, 0, 0),
        "green": (0, 0.5, 0),
        "yellow": (1, 1, 0),
        "light grey": (0.85, 0.85, 0.85),
        "cyan": (0.6, 1, 1),
    }
    for index, rgb in enumerate(fills.values()):
        pdf.setFillColorRGB(*rgb)
        pdf.rect(100, 700 - 100 * index, 300, 60, stroke=0, fill=1)
    pdf.showPage()
    pdf.save()
    [page] = render_documents([out.getvalue()], Resolution.FINE)
    image = decode(page)
    for index, (name, (red, green, blue)) in enumerate(fills.items()):
        grey = 255 * (0.299 * red + 0.587 * green + 0.114 * blue)
        expected = 1.0 if grey < 24 else 0.0 if grey > 200 else 1 - grey / 255
        top = row(A4[1] - 760 + 100 * index + 10, Resolution.FINE)
        share = black_fraction(image, (px(120), top, px(380), top + 60))
        assert abs(share - expected) < 0.05, (name, share, expected)


def test_filled_in_form_field_shows_its_value() -> None:
    """A PDF with an AcroForm: the form environment is set up and the field's value drawn."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.acroForm.textfield(
        name="order",
        value="ORDER 7781 APPROVED",
        x=72,
        y=700,
        width=400,
        height=48,
        fontName="Helvetica-Bold",
        fontSize=28,
        borderWidth=0,
        fillColor=None,
    )
    pdf.showPage()
    pdf.save()
    data = out.getvalue()
    assert b"/AcroForm" in data
    [page] = render_documents([data], Resolution.FINE)
    image = decode(page)
    field = (px(72), row(A4[1] - 748, Resolution.FINE), px(472), row(A4[1] - 700, Resolution.FINE))
    assert 0.05 < black_fraction(image, field) < 0.6
    rest = (px(72), row(200, Resolution.FINE), px(472), row(600, Resolution.FINE))
    assert black_fraction(image, rest) == 0.0


def test_jpeg_from_a_phone_is_turned_upright_by_its_exif_orientation() -> None:
    """A portrait page photographed sideways: the pixels are stored landscape and EXIF
    orientation 6 says "turn a quarter clockwise to view". The fax shows the page upright
    (its black heading band at the top), not the stored pixels turned to portrait."""
    upright = Image.new("RGB", (400, 600), "white")
    upright.paste((0, 0, 0), (0, 0, 400, 100))  # the heading band, at the top
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=95, exif=exif)
    [page] = render_documents([out.getvalue()], Resolution.FINE)
    image = decode(page)
    band = image.height * 100 // 600
    assert black_fraction(image, (200, 10, 1500, band - 20)) > 0.99
    assert black_fraction(image, (200, band + 40, 1500, image.height - 10)) == 0.0


def test_text_drawn_from_cached_glyphs_is_pixel_for_pixel_pillows_own_drawing() -> None:
    """Text pages are drawn glyph by glyph from masks rendered once per character; the
    result must be exactly what Pillow draws line by line, for ASCII, accents (precomposed
    and combining), symbols, characters the font lacks and the replacement character."""
    from PIL import ImageDraw

    from workers.render.text import _LEFT, _SHEET_SIZE, _font, _glyphs, _line_height

    font = _font()
    lines = [
        "INVOICE 7781   Qty  Unit price   Total",
        "  12  Part number 000444-X   widget, blue, boxed   qty 3   EUR 42.00",
        "Crème brûlée, Ærø, Straße, naïve, e\u0301 (combining), ½ € — “quotes” ✓",
        "漢字 and \ufffd and tabs    expanded",
        "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./ 0123456789",
    ]
    step = _line_height(font)
    ours, pillows = (Image.new("L", (_SHEET_SIZE[0], 400), 255) for _ in range(2))
    glyphs, reference = ImageDraw.Draw(ours), ImageDraw.Draw(pillows)
    for number, line in enumerate(lines):
        _glyphs().draw(glyphs, _LEFT, 10 + number * step, line)
        reference.text((_LEFT, 10 + number * step), line, font=font, fill=0)
    assert ours.histogram()[0] > 1000  # plenty of solid ink
    assert ours.tobytes() == pillows.tobytes()
