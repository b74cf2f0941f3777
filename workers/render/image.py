"""PNG, JPEG and (multi-page) TIFF images to fax pages with Pillow.

Each image (each TIFF page) is flattened onto white, turned grey, fitted to an A4 fax page
and thresholded by :mod:`.bitmap`.

Decompression bombs: the size in the header is checked against :data:`MAX_PIXELS` before
any pixel is decoded. The file is opened through the format's plugin class rather than
``Image.open`` because ``Image.open`` applies Pillow's process-wide limit first, which only
warns below twice its limit and raises an error that does not say the dimensions above it;
users get "image too large (40000x40000 pixels)" instead. The limit sits below Pillow's
default so Pillow's own check (which TIFF repeats when loading) never fires first.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator

from PIL import (
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
)

from faxfleet.documents import DocumentType
from faxfleet.messages import Resolution

from .bitmap import A4_HEIGHT_IN, FAX_WIDTH_PX, HORIZONTAL_DPI, page_fit_to_a4
from .errors import DocumentError

MAX_PIXELS = 80_000_000
"""Largest image (per page) we decode: a 600 dpi A3 scan is 70 megapixels."""

_OPENERS: dict[DocumentType, type[ImageFile.ImageFile]] = {
    DocumentType.PNG: PngImagePlugin.PngImageFile,
    DocumentType.JPEG: JpegImagePlugin.JpegImageFile,
    DocumentType.TIFF: TiffImagePlugin.TiffImageFile,
}

# Everything Pillow raises for a file it cannot parse or decode.
_BROKEN = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

_CORRUPT = "the image is corrupt or truncated"

# Largest square-pixel bitmap a fitted page needs: A4 height at 204 dpi by the fax width.
_LONG_SIDE_PX = round(A4_HEIGHT_IN * HORIZONTAL_DPI)


def _check_size(image: Image.Image) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise DocumentError(_CORRUPT)
    if width * height > MAX_PIXELS:
        raise DocumentError(f"image too large ({width}x{height} pixels)")


def _pixel_aspect(image: Image.Image) -> float:
    """A pixel's height over its width, from the stated x and y dpi (1 when unknown)."""
    dpi = image.info.get("dpi")
    try:
        x_dpi, y_dpi = (float(value) for value in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return 1.0
    if not (math.isfinite(x_dpi) and math.isfinite(y_dpi)) or x_dpi <= 0 or y_dpi <= 0:
        return 1.0
    aspect = x_dpi / y_dpi
    return aspect if 0.25 <= aspect <= 4 else 1.0


def _to_gray(image: Image.Image) -> Image.Image:
    """Greyscale, with transparency flattened onto white paper and 16-bit scaled down."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        paper.alpha_composite(rgba)
        return paper.convert("L")
    return image.convert("L")


def _draft(image: Image.Image) -> None:
    """Let the JPEG decoder scale down (1/2, 1/4, 1/8) while staying above page size."""
    width, height = image.size
    short, long = sorted((width, height))
    scale = min(1.0, FAX_WIDTH_PX / short, _LONG_SIDE_PX / long)
    if scale < 0.5:
        image.draft("L", (math.ceil(width * scale), math.ceil(height * scale)))


class ImageSource:
    """An opened image file; see :class:`.source.PageSource`."""

    def __init__(self, data: bytes, kind: DocumentType, resolution: Resolution) -> None:
        self._resolution = resolution
        try:
            self._image = _OPENERS[kind](io.BytesIO(data))
        except _BROKEN as exc:
            raise DocumentError(_CORRUPT) from exc
        try:
            # Only TIFF pages are pages; extra PNG (APNG) frames are animation.
            self._count = self._image.n_frames if kind is DocumentType.TIFF else 1
            for index in range(self._count):
                self._image.seek(index)
                _check_size(self._image)
            self._image.seek(0)
        except _BROKEN as exc:
            self._image.close()
            raise DocumentError(_CORRUPT) from exc
        except DocumentError:
            self._image.close()
            raise

    @property
    def page_count(self) -> int:
        return self._count

    def pages(self) -> Iterator[Image.Image]:
        for index in range(self._count):
            yield self._page(index)

    def _page(self, index: int) -> Image.Image:
        try:
            self._image.seek(index)
            if isinstance(self._image, JpegImagePlugin.JpegImageFile):
                _draft(self._image)
            aspect = _pixel_aspect(self._image)
            upright = ImageOps.exif_transpose(self._image)  # a loaded copy
            if upright.size != self._image.size:
                aspect = 1 / aspect  # turned a quarter: the pixel turned too
            gray = _to_gray(upright)
        except Image.DecompressionBombError as exc:  # a lower process-wide Pillow limit
            width, height = self._image.size
            raise DocumentError(f"image too large ({width}x{height} pixels)") from exc
        except _BROKEN as exc:
            raise DocumentError(_CORRUPT) from exc
        return page_fit_to_a4(gray, self._resolution, pixel_aspect=aspect)

    def close(self) -> None:
        self._image.close()
