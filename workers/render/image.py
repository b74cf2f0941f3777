"""PNG, JPEG and (multi-page) TIFF images to fax pages with Pillow.

Each image (each TIFF page) is flattened onto white, turned grey, fitted to an A4 fax page
and made bilevel by :mod:`.bitmap` (thresholded, photographs halftoned). A TIFF that is
already Class F at the requested resolution is split into its pages untouched instead
(:class:`FaxTiffSource`).

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
    ExifTags,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
)

from faxfleet.documents import DocumentType
from faxfleet.kinds import Resolution

from .bitmap import (
    A4_HEIGHT_IN,
    FAX_WIDTH_PX,
    HORIZONTAL_DPI,
    FaxBitmap,
    page_fit_to_a4,
    vertical_dpi,
)
from .errors import DocumentError
from .tiff import StoredPage, TiffError, read_pages

MAX_PIXELS = 80_000_000
"""Largest image (per page) we decode: a 600 dpi A3 scan is 70 megapixels."""

_OPENERS: dict[DocumentType, type[ImageFile.ImageFile]] = {
    DocumentType.PNG: PngImagePlugin.PngImageFile,
    DocumentType.JPEG: JpegImagePlugin.JpegImageFile,
    DocumentType.TIFF: TiffImagePlugin.TiffImageFile,
}

# Everything Pillow raises for a file it cannot parse or decode.
_BROKEN = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
)

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
    if image.mode == "L":
        image.load()
        return image  # read, never written: no copy needed
    return image.convert("L")


def _draft(image: Image.Image) -> None:
    """Let the JPEG decoder give grey straight away and scale down (1/2, 1/4, 1/8) while
    staying above page size.

    A colour JPEG is then decoded from its luminance channel alone (the same weights as
    a conversion to grey after decoding), so its colour channels are neither decoded nor
    converted: about a third of the decoding time of a colour scan.
    """
    width, height = image.size
    short, long = sorted((width, height))
    scale = min(1.0, FAX_WIDTH_PX / short, _LONG_SIDE_PX / long)
    if scale >= 0.5:
        scale = 1.0
    image.draft("L", (math.ceil(width * scale), math.ceil(height * scale)))


_TURNED = {2, 3, 4, 5, 6, 7, 8}
"""EXIF orientations other than "as stored" (1): the image must be turned or mirrored."""


def _upright(image: Image.Image) -> Image.Image:
    """The image as its EXIF orientation says it is seen (the image itself when upright:
    no copy of a large scan just to read it)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _TURNED:
        return ImageOps.exif_transpose(image)
    return image


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
            yield self.page(index)

    def page(self, index: int) -> Image.Image:
        return self.bitmap(index).to_image()

    def bitmap(self, index: int) -> FaxBitmap:
        try:
            self._image.seek(index)
            if isinstance(self._image, JpegImagePlugin.JpegImageFile):
                _draft(self._image)
            aspect = _pixel_aspect(self._image)
            upright = _upright(self._image)
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


# --- existing fax TIFFs ---------------------------------------------------------------------

_FAX_MAX_ROWS = 3 * 2292
"""Longest page passed through (a long fine page); anything longer is fitted to A4."""


def _is_fax_frame(image: TiffImagePlugin.TiffImageFile, resolution: Resolution) -> bool:
    """Whether the current TIFF page is already a Class F page at ``resolution``."""
    tags = image.tag_v2
    try:
        x_dpi = float(tags.get(282, 0))
        y_dpi = float(tags.get(283, 0))
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    bits = tags.get(258, 1)
    return (
        image.size[0] == FAX_WIDTH_PX
        and 1 <= image.size[1] <= _FAX_MAX_ROWS
        and bits in (1, (1,))
        and tags.get(277, 1) == 1
        and tags.get(259) in (3, 4)
        and tags.get(296, 2) == 2
        and abs(x_dpi - HORIZONTAL_DPI) <= 2
        and abs(y_dpi - vertical_dpi(resolution)) <= 2
    )


def class_f_pages(data: bytes, resolution: Resolution) -> int:
    """Pages of this TIFF if every one is a CCITT-coded fax page at ``resolution``, else 0.

    Such a file is already what a fax machine prints; rendering it again through the
    greyscale path would resample it and could only lose detail.
    """
    try:
        with TiffImagePlugin.TiffImageFile(io.BytesIO(data)) as image:
            count = image.n_frames
            for index in range(count):
                image.seek(index)
                if not _is_fax_frame(image, resolution):
                    return 0
    except _BROKEN:
        return 0
    return count


class FaxTiffSource:
    """A TIFF Class F file split into its pages as they are: no resampling, no threshold.

    ``fax_pages`` yields each page's bits and, when its strip can be reused, its compressed
    bytes, so the pipeline re-encodes only pages whose coding differs from the requested.
    """

    def __init__(self, data: bytes, page_count: int) -> None:
        self._data = data
        self._count = page_count

    @property
    def page_count(self) -> int:
        return self._count

    def fax_pages(self) -> Iterator[StoredPage]:
        """Decoded one at a time, so a long fax never holds all its bitmaps at once."""
        try:
            yield from read_pages(self._data)
        except TiffError as exc:
            raise DocumentError(_CORRUPT) from exc

    def pages(self) -> Iterator[Image.Image]:
        for page in self.fax_pages():
            yield page.bitmap.to_image()

    def close(self) -> None:
        """Nothing to release: the pages were decoded when the file was opened."""


def open_image(
    data: bytes, kind: DocumentType, resolution: Resolution
) -> ImageSource | FaxTiffSource:
    """The reader for an image: fax TIFFs pass through, anything else is fitted and drawn."""
    if kind is DocumentType.TIFF and (count := class_f_pages(data, resolution)):
        return FaxTiffSource(data, count)
    return ImageSource(data, kind, resolution)
