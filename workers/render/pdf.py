"""PDF pages to fax pages with PDFium (pypdfium2).

PDFium is the renderer Chrome uses: it copes with the damaged and odd PDFs business users
upload, applies /Rotate itself, and draws form fields. Each page is rasterised once, in
grey, at 204 dpi (or less when the sheet is larger than a fax page), then handed to
:mod:`.bitmap` for the non-square fax rows and the threshold.

PDFium is not thread-safe; the site workers render in separate processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from faxfleet.kinds import Resolution

from .bitmap import HORIZONTAL_DPI, page_at_physical_size, shrink_factor
from .errors import DocumentError

_POINTS_PER_INCH = 72
_WHITE = (255, 255, 255, 255)


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
            self._pdf.init_forms()  # before any page is loaded, so filled-in fields show
            self._count = len(self._pdf)
        except pdfium.PdfiumError as exc:
            self._pdf.close()
            raise DocumentError("the PDF is corrupt or truncated") from exc

    @property
    def page_count(self) -> int:
        return self._count

    def pages(self) -> Iterator[Image.Image]:
        for index in range(self._count):
            yield self._render(index)

    def _render(self, index: int) -> Image.Image:
        try:
            page = self._pdf[index]
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"the PDF is corrupt or truncated (page {index + 1})") from exc
        try:
            # Size as displayed, i.e. after /Rotate, which render() also applies.
            width_pt, height_pt = page.get_size()
            if not all(math.isfinite(v) and v > 0 for v in (width_pt, height_pt)):
                raise DocumentError(f"page {index + 1} of the PDF has no usable size")
            width_in = width_pt / _POINTS_PER_INCH
            height_in = height_pt / _POINTS_PER_INCH
            dpi = HORIZONTAL_DPI * shrink_factor(width_in, height_in, self._resolution)
            bitmap = page.render(scale=dpi / _POINTS_PER_INCH, grayscale=True, fill_color=_WHITE)
            try:
                gray = bitmap.to_pil().convert("L")
            finally:
                bitmap.close()
        except pdfium.PdfiumError as exc:
            raise DocumentError(f"the PDF is corrupt or truncated (page {index + 1})") from exc
        finally:
            page.close()
        return page_at_physical_size(gray, width_in, height_in, self._resolution)

    def close(self) -> None:
        self._pdf.close()
