"""Fit a greyscale page bitmap to fax geometry and make it bilevel.

Every reader (PDF, text, image) hands over a greyscale bitmap; this module alone knows the
fax page: 1728 pixels across 215 mm at 204 dpi, rows at 98 or 196 dpi (non-square pixels),
at most one A4 page tall, portrait. Keeping that here means the readers cannot disagree
about sizes, centring, rotation or the ink threshold.
"""

from __future__ import annotations

from PIL import Image

from faxfleet.messages import Resolution

FAX_WIDTH_PX = 1728
"""Pixels per fax line (ITU-T T.4): 215 mm at 204 dpi."""

HORIZONTAL_DPI = 204
A4_WIDTH_IN = 210 / 25.4
A4_HEIGHT_IN = 297 / 25.4

INK_THRESHOLD = 160
"""Grey levels below this become black. A little above mid-grey so that thin strokes, which
resampling turns grey (especially when rows are halved for standard resolution), survive.
Plain thresholding, no dithering: dithered halftone compresses badly under Group 4 and reads
as noise on a receiving fax."""

_THRESHOLD_LUT = [0 if level < INK_THRESHOLD else 255 for level in range(256)]


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


def page_at_physical_size(
    gray: Image.Image, width_in: float, height_in: float, resolution: Resolution
) -> Image.Image:
    """A fax page showing ``gray`` at its true size, shrunk only if it does not fit.

    ``gray`` depicts a sheet of ``width_in`` x ``height_in`` inches at any pixel density.
    Landscape sheets are turned to portrait. The page is as tall as the sheet (an A4 sheet
    gives a full-height page, a Letter sheet a slightly shorter one) and centred across.
    """
    if width_in <= 0 or height_in <= 0:
        raise ValueError(f"page size must be positive, got {width_in} x {height_in} in")
    gray = _upright(gray, width_in > height_in)
    width_in, height_in = _portrait(width_in, height_in)
    scale = shrink_factor(width_in, height_in, resolution)
    width_px = width_in * HORIZONTAL_DPI * scale
    rows = height_in * vertical_dpi(resolution) * scale
    return _compose(gray, width_px, rows, page_rows=None, resolution=resolution)


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
    return _compose(
        gray,
        width * scale,
        height * scale / row_height,
        page_rows=max_rows(resolution),
        resolution=resolution,
    )


def _upright(gray: Image.Image, landscape: bool) -> Image.Image:
    """Turn a landscape bitmap a quarter turn anticlockwise, as printers do for landscape."""
    return gray.transpose(Image.Transpose.ROTATE_90) if landscape else gray


def _compose(
    gray: Image.Image,
    width_px: float,
    rows: float,
    *,
    page_rows: int | None,
    resolution: Resolution,
) -> Image.Image:
    """Resample to ``width_px`` x ``rows``, threshold, and centre on a white fax page.

    ``page_rows`` None makes the page exactly as tall as the content.
    """
    limit = max_rows(resolution)
    target = (
        max(1, min(FAX_WIDTH_PX, round(width_px))),
        max(1, min(limit, round(rows))),
    )
    if gray.mode != "L":
        gray = gray.convert("L")
    if gray.size != target:
        gray = gray.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    ink = gray.point(_THRESHOLD_LUT, "1")
    height = target[1] if page_rows is None else page_rows
    page = Image.new("1", (FAX_WIDTH_PX, height), 1)
    page.paste(ink, ((FAX_WIDTH_PX - target[0]) // 2, (height - target[1]) // 2))
    return page
