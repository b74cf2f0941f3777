"""Fit a greyscale page bitmap to fax geometry and make it bilevel.

Every reader (PDF, text, image) hands over a greyscale bitmap; this module alone knows the
fax page: 1728 pixels across 215 mm at 204 dpi, rows at 98 or 196 dpi (non-square pixels),
at most one A4 page tall, portrait. Keeping that here means the readers cannot disagree
about sizes, centring, rotation or the ink threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

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


PHOTO_TILE = 32
"""Side, in pixels, of the squares a page is classified in: text or photograph."""

PHOTO_SHARE = 0.4
"""A tile is photographic when more than this share of its pixels is mid-grey. Anti-aliased
text edges are a few per cent of a text tile; a photograph is mostly mid-tones."""

_MID_LOW, _MID_HIGH = 24, 200
"""Grey levels counted as mid-grey (neither paper nor ink) when classifying tiles."""
_MID_SPAN = _MID_HIGH - _MID_LOW


@dataclass(frozen=True)
class FaxBitmap:
    """One bilevel page as fax rows: packed MSB first, a set bit is black (min-is-white)."""

    width: int
    height: int
    bits: bytes

    @property
    def row_bytes(self) -> int:
        return (self.width + 7) // 8

    @classmethod
    def from_image(cls, page: Image.Image) -> FaxBitmap:
        """From a mode "1" page (paper 255). Packed with Pillow's inverting packer ("1;I"),
        so black pixels become set bits in the same pass, with no second pass to flip them."""
        if page.mode != "1":
            raise ValueError(f"fax pages are bilevel (mode '1'), got mode {page.mode!r}")
        return cls(page.width, page.height, page.tobytes("raw", "1;I"))

    def to_image(self) -> Image.Image:
        """A mode "1" Pillow image, paper white (255), unpacked with Pillow's inverting
        decoder ("1;I") in one pass."""
        return Image.frombytes("1", (self.width, self.height), self.bits, "raw", "1;I")


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
) -> FaxBitmap:
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
) -> FaxBitmap:
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
) -> FaxBitmap:
    """Resample to ``target`` (across, rows), make bilevel, and centre on a white fax page.

    ``page_rows`` None makes the page exactly as tall as the content. The content is made
    bilevel on its own (its photo tiles and screen in phase with it) and its packed rows
    are then placed on the page, shifted to any pixel offset, with no bilevel image in
    between.
    """
    if gray.mode != "L":
        gray = gray.convert("L")
    if gray.size != target:
        # Shrinking (PDF pages, scans) averages areas: as sharp as Lanczos once the page is
        # thresholded, and several times cheaper. Enlarging keeps Lanczos.
        shrinking = target[0] <= gray.size[0] and target[1] <= gray.size[1]
        method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
        gray = gray.resize(target, method)
    rows = bilevel_rows(gray, resolution)
    height = target[1] if page_rows is None else page_rows
    if target == (FAX_WIDTH_PX, height):
        return FaxBitmap(FAX_WIDTH_PX, height, rows)
    left, top = (FAX_WIDTH_PX - target[0]) // 2, (height - target[1]) // 2
    return FaxBitmap(FAX_WIDTH_PX, height, _placed(rows, target, left, top, height))


def _placed(rows: bytes, size: tuple[int, int], left: int, top: int, height: int) -> bytes:
    """Packed rows of ``size`` (across, rows) placed at (``left``, ``top``) on a white
    page 1728 wide and ``height`` rows tall, as packed rows.

    A content row's bits are shifted right by ``left % 8`` across byte boundaries; its
    padding bits are white (0), so they never cover ink.
    """
    across, down = size
    content = np.frombuffer(rows, dtype=np.uint8).reshape(down, -(-across // 8))
    width_bytes = content.shape[1]
    page = np.zeros((height, FAX_WIDTH_PX // 8 + 1), dtype=np.uint8)  # + 1: the spill byte
    first, shift = divmod(left, 8)
    area = page[top : top + down]
    if shift == 0:
        area[:, first : first + width_bytes] = content
    else:
        area[:, first : first + width_bytes] |= content >> shift
        area[:, first + 1 : first + 1 + width_bytes] |= content << (8 - shift)
    return page[:, : FAX_WIDTH_PX // 8].tobytes()


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


def _cell_rows(resolution: Resolution) -> int:
    """Rows of one screen tile: 10 at fine resolution, 5 at standard (rows twice as tall)."""
    return SCREEN_CELL if Resolution(resolution) is Resolution.FINE else SCREEN_CELL // 2


@lru_cache(maxsize=2)
def _screen(resolution: Resolution) -> np.ndarray:
    """The screen's threshold levels tiled over one whole A4 page (uint8, read-only).

    Built once per resolution (the warm renderer builds both before any job is forked, so
    a job reads them from shared memory). Indexed by page coordinates, so every band and
    every picture is screened in phase with the page.
    """
    matrix = np.array(_screen_matrix(_cell_rows(resolution)), dtype=np.uint8)
    rows = max_rows(Resolution.FINE)
    screen = np.tile(matrix, (-(-rows // matrix.shape[0]), -(-FAX_WIDTH_PX // SCREEN_CELL)))
    screen = np.ascontiguousarray(screen[:rows, :FAX_WIDTH_PX])
    screen.flags.writeable = False
    return screen


def _screen_levels(
    resolution: Resolution, top: int, left: int, rows: int, across: int
) -> np.ndarray:
    """The screen's levels over the box (``top``, ``left``, ``rows``, ``across``) of a page."""
    screen = _screen(Resolution(resolution))
    if top + rows <= screen.shape[0] and left + across <= screen.shape[1]:
        return screen[top : top + rows, left : left + across]
    cell_rows = _cell_rows(resolution)
    matrix = screen[:cell_rows, :SCREEN_CELL]
    # Larger than an A4 page (only for pictures bigger than a page, before fitting).
    row0, col0 = top % cell_rows, left % SCREEN_CELL
    tiled = np.tile(matrix, (-(-(row0 + rows) // cell_rows), -(-(col0 + across) // SCREEN_CELL)))
    return tiled[row0 : row0 + rows, col0 : col0 + across]


BAND_ROWS = PHOTO_TILE * 8
"""Rows made bilevel at a time. A page goes through in bands so that only one band's
intermediate arrays exist at once: far less fresh memory per page, which is what a job
process (forked for every job, see :mod:`.sandbox`) pays for page by page."""


def gray_array(gray: Image.Image | np.ndarray) -> np.ndarray:
    """``gray`` as a 2-D uint8 array (rows, pixels across), without a copy where possible.

    PDF pages arrive as a view of PDFium's own bitmap buffer, so the page is never copied
    before it is made bilevel.
    """
    if isinstance(gray, np.ndarray):
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"a grey page is a 2-D uint8 array, got {gray.dtype} {gray.shape}")
        return gray
    if gray.mode != "L":
        gray = gray.convert("L")
    return np.asarray(gray)


def _photo_tiles(gray: np.ndarray) -> np.ndarray | None:
    """One bool per tile of ``gray``, True where the tile is photographic; None if none is.

    A tile is photographic when more than :data:`PHOTO_SHARE` of its pixels are mid-grey,
    and only inside a block of at least 3 x 3 such tiles (a morphological opening of the
    tile map): a lone tile of a noisy scan whose grey text crosses the share is text, and
    screening it would fray its letters. A picture smaller than about 12 mm is thresholded
    like line art.

    Mid-grey pixels are counted 32 at a time: each band's mid-grey map is packed into bits
    and every tile row's 32 bits are one 32-bit word to count.
    """
    height, width = gray.shape
    tiles_down, tiles_across = -(-height // PHOTO_TILE), -(-width // PHOTO_TILE)
    counts = np.zeros((tiles_down, tiles_across), dtype=np.uint32)
    words = np.zeros((BAND_ROWS, tiles_across * 4), dtype=np.uint8)
    for top in range(0, height, BAND_ROWS):
        band = gray[top : top + BAND_ROWS]
        rows = band.shape[0]
        # 24 <= level <= 200, in one unsigned comparison (levels below 24 wrap above 176).
        mid = np.packbits(np.less_equal(band - np.uint8(_MID_LOW), _MID_SPAN), axis=1)
        words[:rows, : mid.shape[1]] = mid
        per_row = np.bitwise_count(words[:rows].view(np.uint32))
        tile_rows = -(-rows // PHOTO_TILE)
        padded = np.zeros((tile_rows * PHOTO_TILE, tiles_across), dtype=np.uint8)
        padded[:rows] = per_row
        first = top // PHOTO_TILE
        counts[first : first + tile_rows] = padded.reshape(tile_rows, PHOTO_TILE, tiles_across).sum(
            axis=1, dtype=np.uint32
        )
    down = np.minimum(PHOTO_TILE, height - PHOTO_TILE * np.arange(tiles_down))
    across = np.minimum(PHOTO_TILE, width - PHOTO_TILE * np.arange(tiles_across))
    tiles = counts > PHOTO_SHARE * np.outer(down, across)
    if not tiles.any():
        return None
    tiles = _dilate(~_dilate(~tiles))  # opening: erode (dilate the complement), then dilate
    return tiles if tiles.any() else None


def _dilate(tiles: np.ndarray) -> np.ndarray:
    """True where any tile of the 3 x 3 neighbourhood is True (edges repeated outwards)."""
    padded = np.pad(tiles, 1, mode="edge")
    height, width = tiles.shape
    out = np.zeros_like(tiles)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + height, dx : dx + width]
    return out


def _tile_box(tiles: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (top, left, bottom, right) around the True tiles, clipped to ``shape``."""
    rows = np.flatnonzero(tiles.any(axis=1))
    cols = np.flatnonzero(tiles.any(axis=0))
    return (
        int(rows[0]) * PHOTO_TILE,
        int(cols[0]) * PHOTO_TILE,
        min(shape[0], (int(rows[-1]) + 1) * PHOTO_TILE),
        min(shape[1], (int(cols[-1]) + 1) * PHOTO_TILE),
    )


def _tiles_to_pixels(tiles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A tile map blown up to pixels: pixel (y, x) shows tile (y // 32, x // 32)."""
    return tiles.repeat(PHOTO_TILE, axis=0).repeat(PHOTO_TILE, axis=1)[: shape[0], : shape[1]]


def photo_mask(gray: Image.Image) -> Image.Image | None:
    """Where ``gray`` is photographic ("L", 255 = halftone), or None when nowhere is."""
    pixels = gray_array(gray)
    tiles = _photo_tiles(pixels)
    if tiles is None:
        return None
    return Image.fromarray(_tiles_to_pixels(tiles, pixels.shape).astype(np.uint8) * 255, "L")


def halftone(gray: Image.Image, resolution: Resolution) -> Image.Image:
    """``gray`` screened with the clustered-dot screen (mode "1").

    The grey is averaged over 2 x 2 pixels first: grain and JPEG noise would otherwise fray
    every dot into specks, which costs more CCITT bits than the detail is worth at fax
    resolution. (A 3 x 3 box blur did the same job at seven times the cost.)
    """
    ink = _screened_ink(gray_array(gray), 0, 0, resolution)
    rows, across = ink.shape
    return FaxBitmap(across, rows, np.packbits(ink, axis=1).tobytes()).to_image()


def _screened_ink(part: np.ndarray, top: int, left: int, resolution: Resolution) -> np.ndarray:
    """Ink (True = black) of ``part`` of a page, whose top left is at (``top``, ``left``) on
    the page, screened in phase with the whole page.

    Each 2 x 2 block's average is compared with the screen level of each of its four
    pixels, one quarter of the pixels at a time, so no full-size average is made. ``top``
    and ``left`` are even, so the blocks fall on the same pixel pairs wherever the part
    starts.
    """
    rows, across = part.shape
    if rows % 2 or across % 2:
        part = np.pad(part, ((0, rows % 2), (0, across % 2)), mode="edge")
    total = part[0::2, 0::2].astype(np.uint16)
    total += part[1::2, 0::2]
    total += part[0::2, 1::2]
    total += part[1::2, 1::2]
    total += 2
    smooth = (total >> 2).astype(np.uint8)
    levels = _screen_levels(resolution, top, left, part.shape[0], part.shape[1])
    ink = np.empty(part.shape, dtype=np.bool_)
    for dy in (0, 1):
        for dx in (0, 1):
            np.less(smooth, levels[dy::2, dx::2], out=ink[dy::2, dx::2])
    return ink[:rows, :across]


def bilevel_rows(gray: Image.Image | np.ndarray, resolution: Resolution) -> bytes:
    """:func:`to_bilevel` as packed fax rows: MSB first, a set bit is black.

    Made band by band (:data:`BAND_ROWS`): threshold, screen the photographic tiles of the
    band, pack. Only the box around a band's photographic tiles is averaged and screened,
    so a page with a small picture pays for the picture, not for the page.
    """
    pixels = gray_array(gray)
    height, width = pixels.shape
    tiles = _photo_tiles(pixels)
    row_bytes = (width + 7) // 8
    out = np.empty((height, row_bytes), dtype=np.uint8)
    ink = np.empty((min(height, BAND_ROWS), width), dtype=np.bool_)
    for top in range(0, height, BAND_ROWS):
        band = pixels[top : top + BAND_ROWS]
        rows = band.shape[0]
        band_ink = ink[:rows]
        np.less(band, INK_THRESHOLD, out=band_ink)
        if tiles is not None:
            first, last = top // PHOTO_TILE, -(-(top + rows) // PHOTO_TILE)
            band_tiles = tiles[first:last]
            if band_tiles.any():
                y0, x0, y1, x1 = _tile_box(band_tiles, (rows, width))
                region = (slice(y0, y1), slice(x0, x1))
                screened = _screened_ink(band[region], top + y0, x0, resolution)
                box_tiles = band_tiles[
                    y0 // PHOTO_TILE : -(-y1 // PHOTO_TILE), x0 // PHOTO_TILE : -(-x1 // PHOTO_TILE)
                ]
                if box_tiles.all():  # one rectangular picture: no mask to apply
                    band_ink[region] = screened
                else:
                    mask = _tiles_to_pixels(band_tiles, (rows, width))[region]
                    np.copyto(band_ink[region], screened, where=mask)
        out[top : top + rows] = np.packbits(band_ink, axis=1)
    return out.tobytes()


def to_bilevel(gray: Image.Image, resolution: Resolution) -> Image.Image:
    """Threshold text and line art; halftone the tiles that are photographs (mode "1")."""
    pixels = gray_array(gray)
    height, width = pixels.shape
    return FaxBitmap(width, height, bilevel_rows(pixels, resolution)).to_image()
