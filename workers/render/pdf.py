"""PDF pages to fax pages with PDFium (pypdfium2).

PDFium is the renderer Chrome uses: it copes with the damaged and odd PDFs business users
upload, applies /Rotate itself, and draws form fields. Each page is rasterised once, in
grey, straight at the fax page's pixel size (204 dpi across, 98 or 196 rows per inch, less
when the sheet is larger than a fax page), then :mod:`.bitmap` makes it bilevel.

PDFium is not thread-safe; the site workers render in separate processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from faxfleet.kinds import Resolution

from .bitmap import FAX_WIDTH_PX, bilevel_rows, fitted_size
from .errors import DocumentError
from .tiff import FaxBitmap

_POINTS_PER_INCH = 72
_WHITE = (255, 255, 255, 255)
_FLAGS = pdfium_c.FPDF_ANNOT
"""Annotations drawn (as PDF viewers show them). The bitmap itself is grey
(``FPDFBitmap_Gray``), so PDFium converts colours to grey as it composites; the
``FPDF_GRAYSCALE`` flag would convert them once more beforehand, for the same pixels
(checked on colour fills, photographs and scans) and 13-17 % more time on image pages.
Anti-aliasing stays on: the threshold keeps a thin stroke that covers only part of a pixel,
which aliased drawing would drop or keep at random."""


def _load_failure(code: int, data: bytes) -> str:
    # PDFium keeps its last error per thread and does not clear it on success, so a code is
    # only believed together with the evidence it implies.
    if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY) and b"/Encrypt" in data:
        if code == pdfium_c.FPDF_ERR_SECURITY:
            return "the PDF is encrypted with an unsupported security handler"
        return "the PDF is encrypted"
    return "the PDF is corrupt or truncated"


def _open(data: bytes) -> pdfium.PdfDocument:
    """Load with the raw API: ``PdfDocument(bytes)`` reports a document without pages as a
    load failure carrying a stale error code (and leaks its handle)."""
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not handle:
        raise DocumentError(_load_failure(pdfium_c.FPDF_GetLastError(), data))
    return pdfium.PdfDocument(handle)  # takes ownership and closes it


class PdfSource:
    """An opened PDF; see :class:`.source.PageSource`."""

    def __init__(self, data: bytes, resolution: Resolution) -> None:
        self._resolution = resolution
        self._data = data  # PDFium reads from this buffer for as long as the document is open
        self._pdf = _open(data)
        try:
            # Before any page is loaded, so filled-in fields show; only when the PDF has a
            # form, since a form environment costs every page a second drawing pass.
            if pdfium_c.FPDF_GetFormType(self._pdf) != pdfium_c.FORMTYPE_NONE:
                self._pdf.init_forms()
            self._count = len(self._pdf)
        except pdfium.PdfiumError as exc:
            self._pdf.close()
            raise DocumentError("the PDF is corrupt or truncated") from exc

    @property
    def page_count(self) -> int:
        return self._count

    def pages(self) -> Iterator[Image.Image]:
        for index in range(self._count):
            yield self.page(index)

    def page(self, index: int) -> Image.Image:
        return self.bitmap(index).to_image()

    def bitmap(self, index: int) -> FaxBitmap:
        """Page ``index`` as packed fax rows, without a bilevel image in between."""
        try:
            page = self._pdf[index]
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"the PDF is corrupt or truncated (page {index + 1})") from exc
        try:
            # Size as displayed, i.e. after /Rotate, which PDFium also applies when drawing.
            width_pt, height_pt = page.get_size()
            if not all(math.isfinite(v) and v > 0 for v in (width_pt, height_pt)):
                raise DocumentError(f"page {index + 1} of the PDF has no usable size")
            across, rows = fitted_size(
                width_pt / _POINTS_PER_INCH, height_pt / _POINTS_PER_INCH, self._resolution
            )
            return self._draw(page, across, rows, landscape=width_pt > height_pt)
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"the PDF is corrupt or truncated (page {index + 1})") from exc
        finally:
            page.close()

    def _draw(self, page: pdfium.PdfPage, across: int, rows: int, *, landscape: bool) -> FaxBitmap:
        """Draw ``page`` into ``across`` x ``rows`` pixels, centred on a white fax-wide grey
        bitmap, and make it bilevel.

        PDFium scales x and y independently here, so the non-square fax rows (204 x 98 dpi)
        come straight out of the rasteriser: no square-pixel page is drawn and then
        resampled. A landscape sheet is drawn a quarter turn anticlockwise (PDFium's
        rotate 3), as printers turn it.
        """
        bitmap = pdfium.PdfBitmap.new_native(FAX_WIDTH_PX, rows, format=pdfium_c.FPDFBitmap_Gray)
        try:
            bitmap.fill_rect(_WHITE, 0, 0, FAX_WIDTH_PX, rows)
            place = ((FAX_WIDTH_PX - across) // 2, 0, across, rows, 3 if landscape else 0)
            pdfium_c.FPDF_RenderPageBitmap(bitmap, page, *place, _FLAGS)
            if page.formenv:
                pdfium_c.FPDF_FFLDraw(page.formenv, bitmap, page, *place, _FLAGS)
            # A view of PDFium's own buffer: the grey page is never copied.
            gray = np.frombuffer(bitmap.buffer, dtype=np.uint8).reshape(rows, bitmap.stride)
            bits = bilevel_rows(gray[:, :FAX_WIDTH_PX], self._resolution)
            return FaxBitmap(FAX_WIDTH_PX, rows, bits)
        finally:
            bitmap.close()

    def close(self) -> None:
        self._pdf.close()
