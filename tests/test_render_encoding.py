"""Fax page coding (MH, MR, MMR), existing fax TIFFs, and halftoning, checked independently.

Every page we write is decoded by libtiff's command-line tools (``tiffcp -c none`` to an
uncompressed file whose strips we read ourselves) and compared bit for bit with the bitmap
we encoded; tags are read back with ``tiffinfo``. libtiff-tools is installed by
scripts/system-deps.sh, so these tests fail rather than skip when it is missing.
"""

from __future__ import annotations

import io
import itertools
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from faxfleet.messages import Resolution
from workers.render.bitmap import INK_THRESHOLD, SCREEN_CELL, halftone, photo_mask, to_bilevel
from workers.render.coding import Coding
from workers.render.pipeline import open_document, render_documents, transcode
from workers.render.tiff import FaxBitmap, encode_bitmap, encode_page, read_pages

VDPI = {Resolution.STANDARD: 98, Resolution.FINE: 196}
CASES = [(coding, resolution) for coding in Coding for resolution in Resolution]


def test_libtiff_tools_are_installed() -> None:
    """Not a skip: CI installs libtiff-tools, and without it nothing here is checked."""
    assert shutil.which("tiffcp") and shutil.which("tiffinfo")


# --- independent decoding -----------------------------------------------------------------


def _ifd_values(data: bytes, tag: int) -> list[int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        found, kind, n = struct.unpack_from(order + "HHI", data, entry)
        if found != tag:
            continue
        fmt, size = {3: ("H", 2), 4: ("I", 4)}[kind]
        where = entry + 8 if n * size <= 4 else struct.unpack_from(order + "I", data, entry + 8)[0]
        return list(struct.unpack_from(order + fmt * n, data, where))
    raise AssertionError(f"tag {tag} missing")


def libtiff_decode(page: bytes, tmp_path: Path) -> bytes:
    """The page's pixel rows as libtiff decodes them (1 = black, as min-is-white stores)."""
    source, plain = tmp_path / "in.tif", tmp_path / "plain.tif"
    source.write_bytes(page)
    subprocess.run(["tiffcp", "-c", "none", str(source), str(plain)], check=True)
    data = plain.read_bytes()
    assert _ifd_values(data, 259) == [1]  # uncompressed
    assert _ifd_values(data, 262) == [0]  # still min-is-white
    offsets, counts = _ifd_values(data, 273), _ifd_values(data, 279)
    return b"".join(data[o : o + c] for o, c in zip(offsets, counts, strict=True))


def tiffinfo(page: bytes, tmp_path: Path) -> str:
    path = tmp_path / "page.tif"
    path.write_bytes(page)
    return subprocess.run(
        ["tiffinfo", str(path)], capture_output=True, text=True, check=True
    ).stdout


def make_pdf(text: str = "Invoice 2026-11 total 1,234.56 EUR") -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setFont("Helvetica", 11)
    for line in range(30):
        pdf.drawString(60, 780 - 20 * line, f"{line:02d} {text}")
    pdf.rect(300, 80, 200, 40, stroke=1, fill=0)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def rendered_bitmap(resolution: Resolution) -> FaxBitmap:
    source = open_document(make_pdf(), resolution)
    try:
        [image] = list(source.pages())
    finally:
        source.close()
    return FaxBitmap.from_image(image)


# --- coding -------------------------------------------------------------------------------


@pytest.mark.parametrize(("coding", "resolution"), CASES)
def test_libtiff_decodes_exactly_the_bitmap_we_encoded(
    tmp_path: Path, coding: Coding, resolution: Resolution
) -> None:
    bitmap = rendered_bitmap(resolution)
    assert any(bitmap.bits)  # there is ink to get wrong
    page = encode_bitmap(bitmap, resolution, coding)
    assert libtiff_decode(page, tmp_path) == bitmap.bits


@pytest.mark.parametrize(("coding", "resolution"), CASES)
def test_tags_as_tiffinfo_reads_them(
    tmp_path: Path, coding: Coding, resolution: Resolution
) -> None:
    pages = render_documents([make_pdf(), make_pdf()], resolution, coding=coding)
    assert len(pages) == 2
    info = tiffinfo(pages[1], tmp_path)
    rows = 1146 if resolution is Resolution.STANDARD else 2292
    assert "Subfile Type: multi-page document (2 = 0x2)" in info
    assert f"Image Width: 1728 Image Length: {rows}" in info
    assert f"Resolution: 204, {VDPI[resolution]} pixels/inch" in info
    assert "Bits/Sample: 1" in info
    assert "Photometric Interpretation: min-is-white" in info
    assert "FillOrder: msb-to-lsb" in info
    assert f"Rows/Strip: {rows}" in info
    assert "Page Number: 1-2" in info
    assert info.count("TIFF Directory") == 1
    if coding is Coding.MMR:
        assert "Compression Scheme: CCITT Group 4" in info
        assert "Group 4 Options: (0 = 0x0)" in info
    else:
        assert "Compression Scheme: CCITT Group 3" in info
        options = 1 if coding is Coding.MR else 0
        assert re.search(rf"Group 3 Options: .*\({options} = 0x{options}\)", info)


def _line_tags(strip: bytes) -> list[int]:
    """The tag bit after each EOL (1 = next line 1-D, 0 = 2-D) of a T.4 MR strip."""
    bits = "".join(f"{byte:08b}" for byte in strip)
    return [int(match.group(1)) for match in re.finditer(r"0{11}1([01])", bits)]


@pytest.mark.parametrize(("resolution", "k"), [(Resolution.STANDARD, 2), (Resolution.FINE, 4)])
def test_mr_uses_the_k_factor_of_t4(resolution: Resolution, k: int) -> None:
    page = encode_bitmap(rendered_bitmap(resolution), resolution, Coding.MR)
    [stored] = read_pages(page)
    assert stored.raw is not None
    tags = _line_tags(stored.raw)
    rows = 1146 if resolution is Resolution.STANDARD else 2292
    assert len(tags) >= rows
    # Every k-th line is 1-D coded, the k-1 between them 2-D.
    assert tags[: 4 * k] == ([1] + [0] * (k - 1)) * 4


@pytest.mark.parametrize("target", list(Coding))
@pytest.mark.parametrize("start", list(Coding))
def test_transcode_keeps_every_pixel(tmp_path: Path, start: Coding, target: Coding) -> None:
    bitmap = rendered_bitmap(Resolution.FINE)
    page = encode_bitmap(bitmap, Resolution.FINE, start, page_number=2, page_count=5)
    again = transcode(page, target)
    assert libtiff_decode(again, tmp_path) == bitmap.bits
    info = tiffinfo(again, tmp_path)
    assert "Page Number: 2-5" in info and "204, 196 pixels/inch" in info
    assert ("Group 4" in info) is (target is Coding.MMR)


def test_mmr_is_smaller_than_mr_is_smaller_than_mh() -> None:
    bitmap = rendered_bitmap(Resolution.FINE)
    sizes = [len(encode_bitmap(bitmap, Resolution.FINE, coding)) for coding in Coding]
    assert sizes[0] > sizes[1] > sizes[2]


# --- existing fax TIFFs -------------------------------------------------------------------


def fax_tiff(tmp_path: Path, coding: Coding, resolution: Resolution) -> tuple[bytes, list[bytes]]:
    """A 3-page Class F file (joined by tiffcp) and the bits of each page."""
    bitmaps = []
    paths = []
    for n in range(3):
        image = Image.new("1", (1728, 1146 if resolution is Resolution.STANDARD else 2292), 1)
        ImageDraw.Draw(image).rectangle((100 + 50 * n, 100, 600, 400 + 100 * n), fill=0)
        ImageDraw.Draw(image).text((200, 700), f"page {n + 1}", fill=0)
        bitmaps.append(FaxBitmap.from_image(image).bits)
        path = tmp_path / f"p{n}.tif"
        path.write_bytes(encode_page(image, resolution, coding, page_number=n, page_count=3))
        paths.append(str(path))
    joined = tmp_path / "fax.tif"
    subprocess.run(["tiffcp", *paths, str(joined)], check=True)
    return joined.read_bytes(), bitmaps


@pytest.mark.parametrize("resolution", list(Resolution))
def test_fax_tiff_is_split_without_rerendering(tmp_path: Path, resolution: Resolution) -> None:
    document, bitmaps = fax_tiff(tmp_path, Coding.MR, resolution)
    pages = render_documents([document], resolution, coding=Coding.MR)
    assert len(pages) == 3
    originals = list(read_pages(document))
    for page, original, bits in zip(pages, originals, bitmaps, strict=True):
        [stored] = read_pages(page)
        assert stored.raw == original.raw  # the coded strip itself was copied
        assert libtiff_decode(page, tmp_path) == bits


@pytest.mark.parametrize("coding", [Coding.MH, Coding.MMR])
def test_fax_tiff_in_another_coding_is_reencoded_pixel_for_pixel(
    tmp_path: Path, coding: Coding
) -> None:
    document, bitmaps = fax_tiff(tmp_path, Coding.MR, Resolution.FINE)
    pages = render_documents([b"cover text\n", document], Resolution.FINE, coding=coding)
    assert len(pages) == 4
    for number, (page, bits) in enumerate(zip(pages[1:], bitmaps, strict=True), start=2):
        assert libtiff_decode(page, tmp_path) == bits
        info = tiffinfo(page, tmp_path)
        assert f"Page Number: {number - 1}-4" in info
        assert ("Group 4" in info) is (coding is Coding.MMR)


def test_fax_tiff_at_the_other_resolution_is_fitted_instead(tmp_path: Path) -> None:
    document, _bitmaps = fax_tiff(tmp_path, Coding.MMR, Resolution.FINE)
    pages = render_documents([document], Resolution.STANDARD)
    assert [read_pages(page).__next__().bitmap.height for page in pages] == [1146] * 3


# --- halftoning ---------------------------------------------------------------------------


def darkness(image: Image.Image) -> float:
    return image.convert("L").histogram()[0] / (image.width * image.height)


@pytest.mark.parametrize("resolution", list(Resolution))
def test_grey_ramp_becomes_dots_whose_darkness_tracks_the_grey(resolution: Resolution) -> None:
    # Portrait, A4-shaped, so fitting it to the page only scales it: column x of the page
    # shows grey 255 * x / 1727 (black at the left, white at the right).
    ramp = Image.linear_gradient("L").rotate(90).resize((1000, 1414))
    out = io.BytesIO()
    ramp.save(out, format="PNG")
    [page] = render_documents([out.getvalue()], resolution)
    [stored] = read_pages(page)
    image = stored.bitmap.to_image()
    top, bottom = image.height // 3, 2 * image.height // 3
    previous = 2.0
    for band in range(1, 7):  # very light greys (above 200) count as paper
        left = band * 1728 // 9
        grey = 255 * (left + 96) / 1727
        measured = darkness(image.crop((left, top, left + 192, bottom)))
        assert abs(measured - (1 - grey / 255)) < 0.06
        assert measured < previous
        previous = measured
    # A dot pattern, not a threshold: around mid-grey every few pixels alternate.
    middle = image.crop((800, top, 928, top + 64))
    assert 0.3 < darkness(middle) < 0.7
    row = [middle.getpixel((x, 10)) for x in range(128)]
    assert all(len(set(row[x : x + 8])) == 2 for x in range(0, 120, 8))


def test_clustered_dots_not_scattered() -> None:
    """At 25% grey each screen cell's ink is one connected dot, not isolated pixels."""
    image = halftone(Image.new("L", (64, 64), 191), Resolution.FINE)
    pixels = image.load()
    black = [(x, y) for y in range(64) for x in range(64) if pixels[x, y] == 0]
    assert abs(len(black) / 4096 - 0.25) < 0.02
    lonely = [
        (x, y)
        for x, y in black
        if not any(
            pixels[(x + dx) % 64, (y + dy) % 64] == 0
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
        )
    ]
    assert not lonely


def test_text_stays_thresholded_even_beside_a_photo() -> None:
    sheet = Image.new("L", (1728, 1146), 255)
    draw = ImageDraw.Draw(sheet)
    for line in range(20):
        draw.text((100, 40 + 24 * line), "Dear customer, your invoice is attached.", fill=0)
    photo = Image.radial_gradient("L").resize((640, 512))
    sheet.paste(photo, (1000, 500))
    assert photo_mask(sheet.crop((0, 0, 900, 520))) is None  # text alone: no photo tiles
    bilevel = to_bilevel(sheet, Resolution.STANDARD)
    thresholded = sheet.point(lambda v: 0 if v < INK_THRESHOLD else 255).convert("1")
    text_area = (0, 0, 960, 500)
    assert bilevel.crop(text_area).tobytes() == thresholded.crop(text_area).tobytes()
    inside = (1100, 600, 1500, 900)
    assert bilevel.crop(inside).tobytes() != thresholded.crop(inside).tobytes()
    grey = ImageStat.Stat(sheet.crop(inside)).mean[0]
    assert abs(darkness(bilevel.crop(inside)) - (1 - grey / 255)) < 0.05


@pytest.mark.parametrize("resolution", list(Resolution))
def test_a_screened_row_crosses_one_dot_per_screen_tile(resolution: Resolution) -> None:
    """What makes a photograph cheap in MH: a mid-grey row changes colour about twice per
    tile width (in and out of one dot), never pixel by pixel."""
    image = halftone(Image.new("L", (1728, 200), 150), resolution)
    tiles = 1728 / SCREEN_CELL
    for y in range(0, 200, 7):
        row = [image.getpixel((x, y)) for x in range(1728)]
        changes = sum(a != b for a, b in itertools.pairwise(row))
        assert tiles <= changes <= 2 * tiles + 2


def test_a_lone_grey_tile_is_text_but_a_picture_is_screened() -> None:
    sheet = Image.new("L", (640, 640), 255)
    sheet.paste(128, (64, 64, 96, 96))  # one 32 px tile of smudge: a noisy scan's grey text
    assert photo_mask(sheet) is None
    assert (
        to_bilevel(sheet, Resolution.FINE).tobytes()
        == sheet.point(lambda v: 0 if v < INK_THRESHOLD else 255).convert("1").tobytes()
    )
    sheet.paste(128, (256, 256, 384, 384))  # a 4 x 4 tile picture
    mask = photo_mask(sheet)
    assert mask is not None
    assert mask.getbbox() == (256, 256, 384, 384)


# --- the bilevel step on arrays: what PDF pages go through ---------------------------------


def _reference_bilevel(sheet: Image.Image, resolution: Resolution) -> Image.Image:
    """The bilevel rule written out pixel by pixel, the slow obvious way: threshold, except
    inside a block of 3 x 3 tiles (edges repeated) that are each > 40 % mid-grey, where a
    2 x 2-averaged pixel is black when below the screen level at its page position."""
    from workers.render.bitmap import PHOTO_SHARE, PHOTO_TILE, _screen_matrix

    width, height = sheet.size
    pixels = sheet.load()
    across, down = -(-width // PHOTO_TILE), -(-height // PHOTO_TILE)
    photo = [[False] * across for _ in range(down)]
    for ty in range(down):
        for tx in range(across):
            box = [
                pixels[x, y]
                for y in range(ty * 32, min(height, ty * 32 + 32))
                for x in range(tx * 32, min(width, tx * 32 + 32))
            ]
            photo[ty][tx] = sum(24 <= v <= 200 for v in box) > PHOTO_SHARE * len(box)

    def at(grid: list[list[bool]], ty: int, tx: int) -> bool:
        return grid[min(max(ty, 0), down - 1)][min(max(tx, 0), across - 1)]

    def window(grid: list[list[bool]], rule: type[all] | type[any]) -> list[list[bool]]:
        return [
            [
                rule(at(grid, ty + dy, tx + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
                for tx in range(across)
            ]
            for ty in range(down)
        ]

    photo = window(window(photo, all), any)
    cell_rows = SCREEN_CELL if resolution is Resolution.FINE else SCREEN_CELL // 2
    matrix = _screen_matrix(cell_rows)
    out = Image.new("1", sheet.size, 1)
    ink = out.load()
    for y in range(height):
        for x in range(width):
            if photo[y // 32][x // 32]:
                x0, y0 = x - x % 2, y - y % 2
                quad = [
                    pixels[min(x0 + dx, width - 1), min(y0 + dy, height - 1)]
                    for dy in (0, 1)
                    for dx in (0, 1)
                ]
                black = (sum(quad) + 2) // 4 < matrix[y % cell_rows][x % SCREEN_CELL]
            else:
                black = pixels[x, y] < INK_THRESHOLD
            ink[x, y] = 0 if black else 1
    return out


@pytest.mark.parametrize("resolution", list(Resolution))
def test_bilevel_matches_the_rule_pixel_for_pixel(resolution: Resolution) -> None:
    """Odd sizes, partial edge tiles, a picture cut by the page edge and by band edges, a
    lone grey tile and text: the fast (banded, packed, numpy) path gives exactly the
    pixels of the rule written out one pixel at a time."""
    sheet = Image.new("L", (301, 291), 255)
    draw = ImageDraw.Draw(sheet)
    draw.text((5, 5), "Invoice 7781", fill=0)
    sheet.paste(Image.radial_gradient("L").resize((170, 190)), (140, 110))  # off the edges
    sheet.paste(128, (10, 200, 42, 232))  # a lone grey tile: text
    draw.line((0, 290, 300, 0), fill=90, width=2)
    got = to_bilevel(sheet, resolution)
    assert got.tobytes() == _reference_bilevel(sheet, resolution).tobytes()


def test_bilevel_of_a_strided_array_view_equals_that_of_the_image() -> None:
    """PDF pages are made bilevel straight from a view of PDFium's buffer, whose rows may
    be longer than the page (the stride); only the page's own pixels count."""
    import numpy as np

    from workers.render.bitmap import bilevel_rows

    sheet = Image.new("L", (1728, 600), 255)
    sheet.paste(Image.radial_gradient("L").resize((500, 400)), (700, 100))
    ImageDraw.Draw(sheet).text((40, 40), "Order 7781", fill=0)
    buffer = np.full((600, 1760), 0, dtype=np.uint8)  # black beyond the page: must not leak
    buffer[:, :1728] = np.asarray(sheet)
    view = buffer[:, :1728]
    assert not view.flags.c_contiguous
    for resolution in Resolution:
        assert bilevel_rows(view, resolution) == bilevel_rows(sheet, resolution)
    with pytest.raises(ValueError, match="2-D uint8"):
        bilevel_rows(np.zeros((4, 4), dtype=np.uint16), Resolution.FINE)


@pytest.mark.parametrize("resolution", list(Resolution))
def test_screen_levels_beyond_an_a4_page_continue_in_phase(resolution: Resolution) -> None:
    """A box that runs past the cached A4 screen (a picture's odd last row at the foot of
    a fine page, a picture wider than the line) gets the same levels, in phase."""
    from workers.render.bitmap import _screen_levels, _screen_matrix

    cell_rows = SCREEN_CELL if resolution is Resolution.FINE else SCREEN_CELL // 2
    matrix = _screen_matrix(cell_rows)
    for top, left, rows, across in ((2288, 1700, 9, 45), (0, 0, 3, 1900), (7, 3, 2400, 2)):
        levels = _screen_levels(resolution, top, left, rows, across)
        assert levels.shape == (rows, across)
        expected = [
            [matrix[(top + y) % cell_rows][(left + x) % SCREEN_CELL] for x in range(across)]
            for y in range(rows)
        ]
        assert levels.tolist() == expected


@pytest.mark.parametrize(
    ("across", "left", "top"),
    [(1728, 0, 0), (1687, 20, 0), (333, 5, 7), (8, 1720, 3), (1, 1727, 0), (613, 557, 11)],
)
def test_content_rows_placed_on_the_page_equal_pillows_paste(
    across: int, left: int, top: int
) -> None:
    """Text and image pages are made bilevel at their own size and their packed rows are
    then placed on the 1728-wide page at any pixel offset: the same pixels as pasting the
    bilevel image onto a white page."""
    import random

    from workers.render.bitmap import FaxBitmap, _placed

    rng = random.Random(across * 31 + left)
    down, height = 40, 60
    content = Image.frombytes("1", (across, down), rng.randbytes(-(-across // 8) * down))
    expected = Image.new("1", (1728, height), 1)
    expected.paste(content, (left, top))
    rows = FaxBitmap.from_image(content).bits
    placed = FaxBitmap(1728, height, _placed(rows, (across, down), left, top, height))
    assert placed.to_image().tobytes() == expected.tobytes()
