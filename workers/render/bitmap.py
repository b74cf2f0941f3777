"""Fit a greyscale page bitmap to fax geometry and make it bilevel.

Every reader (PDF, text, image) hands over a greyscale bitmap; this module alone knows the
fax page: 1728 pixels across 215 mm at 204 dpi, rows at 98 or 196 dpi (non-square pixels),
at most one A4 page tall, portrait. Keeping that here means the readers cannot disagree
about sizes, centring, rotation or the ink threshold.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageChops, ImageFilter

from faxfleet.kinds import Resolution

FAX_WIDTH_PX = 1728
"""Pixels per fax line (ITU-T T.4): 215 mm at 204 dpi."""

HORIZONTAL_DPI = 204
A4_WIDTH_IN = 210 / 25.4
A4_HEIGHT_IN = 297 / 25.4


INK_THRESHOLD = 160
"""Grey levels below this become black where a page is text or line art. A little above
mid-grey so that thin strokes, which resampling turns grey (especially when rows are halved
for standard resolution), survive."""

_THRESHOLD_LUT = [0 if level < INK_THRESHOLD else 255 for level in range(256)]

PHOTO_TILE = 32
"""Side, in pixels, of the squares a page is classified in: text or photograph."""

PHOTO_SHARE = 0.4
"""A tile is photographic when more than this share of its pixels is mid-grey. Anti-aliased
text edges are a few per cent of a text tile; a photograph is mostly mid-tones."""

_MID_LUT = [255 if 24 <= level <= 200 else 0 for level in range(256)]
_PHOTO_LUT = [255 if level > PHOTO_SHARE * 255 else 0 for level in range(256)]
_INK_WHERE_POSITIVE = [255] + [0] * 255


def vertical_dpi(resolution: Resolution) -> int:
    """Rows per inch of a fax page at ``resolution``."""
    return 196 if Resolution(resolution) is Resolution.FINE else 98


def max_rows(resolution: Resolution) -> int:
    """Rows of a full A4 page: 1146 at standard, 2292 at fine resolution."""
    return round(A4_HEIGHT_IN * vertical_dpi(resolution))


def _portrait(width: float, height: float) -> tuple[float, float]:
    return (height, width) if width > height else (width, height)


def shrink_factor(width_in: float, height_in: float, resolution: Resolution) -> float:
    """How much a page of this physical size must shrink (<= 1) to fit a portrait fax page.

    Readers with a vector source (PDF) use it to render at the final size directly, so no
    page, however large its media box, is ever rasterised bigger than one fax page.
    """
    width_in, height_in = _portrait(width_in, height_in)
    return min(
        1.0,
        FAX_WIDTH_PX / (width_in * HORIZONTAL_DPI),
        max_rows(resolution) / (height_in * vertical_dpi(resolution)),
    )


def fitted_size(width_in: float, height_in: float, resolution: Resolution) -> tuple[int, int]:
    """Pixels across and rows a sheet of this size covers on a fax page, portrait.

    True size when it fits, shrunk (keeping its shape) when it does not. Readers with a
    vector source (PDF) draw straight into a box of this size, so no page is ever
    rasterised at another size and then resampled.
    """
    if width_in <= 0 or height_in <= 0:
        raise ValueError(f"page size must be positive, got {width_in} x {height_in} in")
    width_in, height_in = _portrait(width_in, height_in)
    scale = shrink_factor(width_in, height_in, resolution)
    return _clamped(
        width_in * HORIZONTAL_DPI * scale, height_in * vertical_dpi(resolution) * scale, resolution
    )


def _clamped(width_px: float, rows: float, resolution: Resolution) -> tuple[int, int]:
    return (
        max(1, min(FAX_WIDTH_PX, round(width_px))),
        max(1, min(max_rows(resolution), round(rows))),
    )


def page_at_physical_size(
    gray: Image.Image, width_in: float, height_in: float, resolution: Resolution
) -> Image.Image:
    """A fax page showing ``gray`` at its true size, shrunk only if it does not fit.

    ``gray`` depicts a sheet of ``width_in`` x ``height_in`` inches at any pixel density.
    Landscape sheets are turned to portrait. The page is as tall as the sheet (an A4 sheet
    gives a full-height page, a Letter sheet a slightly shorter one) and centred across.
    """
    target = fitted_size(width_in, height_in, resolution)
    gray = _upright(gray, width_in > height_in)
    return _compose(gray, target, page_rows=None, resolution=resolution)


def page_fit_to_a4(
    gray: Image.Image, resolution: Resolution, *, pixel_aspect: float = 1.0
) -> Image.Image:
    """A full A4 fax page with ``gray`` enlarged or reduced to fit it, centred.

    For pictures, whose stated dpi is too often wrong to trust for size.
    ``pixel_aspect`` is a pixel's height divided by its width (2.08 for a 204x98 dpi fax
    image), so images with non-square pixels keep their shape.
    """
    width = float(gray.width)
    height = gray.height * pixel_aspect
    gray = _upright(gray, width > height)
    width, height = _portrait(width, height)
    # Work in fax pixel widths; one row is (204 / vertical dpi) of them tall.
    row_height = HORIZONTAL_DPI / vertical_dpi(resolution)
    scale = min(FAX_WIDTH_PX / width, max_rows(resolution) * row_height / height)
    target = _clamped(width * scale, height * scale / row_height, resolution)
    return _compose(gray, target, page_rows=max_rows(resolution), resolution=resolution)


def _upright(gray: Image.Image, landscape: bool) -> Image.Image:
    """Turn a landscape bitmap a quarter turn anticlockwise, as printers do for landscape."""
    return gray.transpose(Image.Transpose.ROTATE_90) if landscape else gray


def _compose(
    gray: Image.Image,
    target: tuple[int, int],
    *,
    page_rows: int | None,
    resolution: Resolution,
) -> Image.Image:
    """Resample to ``target`` (across, rows), make bilevel, and centre on a white fax page.

    ``page_rows`` None makes the page exactly as tall as the content.
    """
    if gray.mode != "L":
        gray = gray.convert("L")
    if gray.size != target:
        # Shrinking (PDF pages, scans) averages areas: as sharp as Lanczos once the page is
        # thresholded, and several times cheaper. Enlarging keeps Lanczos.
        shrinking = target[0] <= gray.size[0] and target[1] <= gray.size[1]
        method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
        gray = gray.resize(target, method)
    ink = to_bilevel(gray, resolution)
    height = target[1] if page_rows is None else page_rows
    if ink.size == (FAX_WIDTH_PX, height):
        return ink
    page = Image.new("1", (FAX_WIDTH_PX, height), 1)
    page.paste(ink, ((FAX_WIDTH_PX - target[0]) // 2, (height - target[1]) // 2))
    return page


# --- bilevel: threshold text, screen photographs -------------------------------------------
#
# Photographs are halftoned with a clustered-dot ordered dither, never error diffusion:
# isolated dots scattered by Floyd-Steinberg make CCITT runs so short that the "compressed"
# page is bigger than raw, while clustered dots on a regular screen keep runs long and
# repeat from row to row, which MR and MMR code cheaply. Text and line art are thresholded,
# so they stay crisp; the choice is made per tile, so a letter with a photo keeps sharp text.


SCREEN_CELL = 10
"""Width in pixels of one screen tile (holding two dots)."""


def _screen_matrix(rows_per_cell: int) -> list[list[int]]:
    """Threshold levels of one screen tile: 10 pixels wide, two dots on a 45 degree lattice.

    The dots sit 5*sqrt(2) px apart at 204 dpi (about 29 lines per inch; 51 grey levels at
    fine resolution, 26 at standard). Airtime is what a fax pays for, and every run a row
    crosses costs CCITT bits: a row meets one dot per tile width, so the tile width sets
    the cost of a photograph, above all in MH, which codes each row alone. On the benchmark
    photograph (bench/RENDER.md) an 8 px tile (36 lpi) cost 1.4x the MH bytes at standard
    resolution, a 12 px one (24 lpi) 0.87x but looks visibly coarse, and a 4 px one (72 lpi)
    was 2.6x. ``rows_per_cell`` is 10 at fine resolution and 5 at standard, where a row is
    twice as tall, so the dots stay round and at 45 degrees.
    Pixels turn black in order of their (physical) distance from the dot centres, so ink
    grows as clustered dots; black where grey < level.
    """
    width, height = SCREEN_CELL, rows_per_cell
    stretch = SCREEN_CELL / rows_per_cell  # physical height of a row, in 204 dpi pixel widths
    centres = [(width / 4, 0.0), (3 * width / 4, height / 2)]
    ranked: list[tuple[float, int, int, int, int]] = []
    per_dot: dict[tuple[int, float], int] = {}
    for y in range(height):
        for x in range(width):
            distances = [
                math.hypot(x - cx + dx, (y - cy + dy) * stretch)
                for cx, cy in centres
                for dx in (-width, 0, width)
                for dy in (-height, 0, height)
            ]
            nearest = min(distances)
            dot = distances.index(nearest) // 9
            key = (dot, round(nearest, 6))
            turn = per_dot.get(key, 0)
            per_dot[key] = turn + 1
            ranked.append((round(nearest, 6), turn, dot, y, x))
    cells = width * height
    matrix = [[0] * width for _ in range(height)]
    for rank, (*_ignored, y, x) in enumerate(sorted(ranked)):
        matrix[y][x] = round(256 - (rank + 0.5) * 256 / cells)
    return matrix


@lru_cache(maxsize=8)
def _screen(size: tuple[int, int], resolution: Resolution) -> Image.Image:
    """The screen's threshold levels tiled over a whole page of ``size``."""
    cell = SCREEN_CELL
    matrix = _screen_matrix(cell if resolution is Resolution.FINE else cell // 2)
    width, height = size
    rows = [bytes(line[x % cell] for x in range(width)) for line in matrix]
    data = b"".join(rows[y % len(rows)] for y in range(height))
    return Image.frombytes("L", size, data)


BAND_ROWS = PHOTO_TILE * 8
"""Rows made bilevel at a time. A page goes through in bands so that only one band's
intermediate images exist at once: far less fresh memory per page, which is what a job
process (forked for every job, see :mod:`.sandbox`) pays for page by page."""


def _photo_tiles(gray: Image.Image) -> Image.Image | None:
    """One pixel per tile of ``gray``, 255 where the tile is photographic; None if none is.

    A tile is photographic when more than :data:`PHOTO_SHARE` of its pixels are mid-grey,
    and only inside a block of at least 3 x 3 such tiles (a morphological opening of the
    tile map): a lone tile of a noisy scan whose grey text crosses the share is text, and
    screening it would fray its letters. A picture smaller than about 12 mm is thresholded
    like line art.
    """
    width, height = gray.size
    shares = Image.new("L", (-(-width // PHOTO_TILE), -(-height // PHOTO_TILE)))
    for top in range(0, height, BAND_ROWS):
        band = gray.crop((0, top, width, min(height, top + BAND_ROWS)))
        shares.paste(band.point(_MID_LUT).reduce(PHOTO_TILE), (0, top // PHOTO_TILE))
    tiles = shares.point(_PHOTO_LUT)
    if tiles.getbbox() is None:
        return None
    tiles = tiles.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    return tiles if tiles.getbbox() is not None else None


def _tiles_to_pixels(tiles: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A tile map blown up to pixels: pixel (x, y) shows tile (x // 32, y // 32)."""
    full = tiles.resize(
        (tiles.width * PHOTO_TILE, tiles.height * PHOTO_TILE), Image.Resampling.NEAREST
    )
    return full.crop((0, 0, *size))


def photo_mask(gray: Image.Image) -> Image.Image | None:
    """Where ``gray`` is photographic ("L", 255 = halftone), or None when nowhere is."""
    tiles = _photo_tiles(gray)
    return None if tiles is None else _tiles_to_pixels(tiles, gray.size)


def halftone(gray: Image.Image, resolution: Resolution) -> Image.Image:
    """``gray`` screened with the clustered-dot screen (mode "1").

    The grey is averaged over 2 x 2 pixels first: grain and JPEG noise would otherwise fray
    every dot into specks, which costs more CCITT bits than the detail is worth at fax
    resolution. (A 3 x 3 box blur did the same job at seven times the cost.)
    """
    return _screened(gray, (0, 0), resolution)


def _screened(part: Image.Image, origin: tuple[int, int], resolution: Resolution) -> Image.Image:
    """``part`` of a page, whose top left is at ``origin`` on the page, screened with the
    screen in phase with the whole page."""
    smooth = part.reduce(2).resize(part.size, Image.Resampling.NEAREST)
    left, top = origin
    screen = _screen(_screen_size((left + part.width, top + part.height)), Resolution(resolution))
    screen = screen.crop((left, top, left + part.width, top + part.height))
    below = ImageChops.subtract(screen, smooth)
    return below.point(_INK_WHERE_POSITIVE, "1")


def _screen_size(size: tuple[int, int]) -> tuple[int, int]:
    """Screens are cached per page size; any page fits in one a whole A4 fine page tall."""
    return (max(size[0], FAX_WIDTH_PX), max(size[1], 2292))


def bilevel_rows(gray: Image.Image, resolution: Resolution) -> bytes:
    """:func:`to_bilevel` as packed fax rows: MSB first, a set bit is black.

    Made band by band (:data:`BAND_ROWS`): threshold, screen the photographic tiles of the
    band, pack. Only the box around a band's photographic tiles is averaged and screened,
    so a page with a small picture pays for the picture, not for the page.
    """
    width, height = gray.size
    tiles = _photo_tiles(gray)
    rows: list[bytes] = []
    for top in range(0, height, BAND_ROWS):
        bottom = min(height, top + BAND_ROWS)
        band = gray.crop((0, top, width, bottom))
        ink = band.point(_THRESHOLD_LUT, "1")
        if tiles is not None:
            band_tiles = tiles.crop((0, top // PHOTO_TILE, tiles.width, -(-bottom // PHOTO_TILE)))
            if band_tiles.getbbox() is not None:
                mask = _tiles_to_pixels(band_tiles, band.size)
                box = mask.getbbox()
                assert box is not None
                screened = _screened(band.crop(box), (box[0], top + box[1]), resolution)
                ink.paste(screened, box[:2], mask.crop(box))
        rows.append(ink.tobytes("raw", "1;I"))  # inverted: black pixels become set bits
    return b"".join(rows)


def to_bilevel(gray: Image.Image, resolution: Resolution) -> Image.Image:
    """Threshold text and line art; halftone the tiles that are photographs (mode "1")."""
    return Image.frombytes("1", gray.size, bilevel_rows(gray, resolution), "raw", "1;I")
