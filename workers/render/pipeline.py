"""Documents in, fax page TIFFs out: pick a reader per document, count, then render.

All documents are opened and counted before any page is drawn, so a fax that would exceed
``max_pages``, or whose third document is encrypted, fails in milliseconds rather than after
rasterising the first two.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

from faxfleet.documents import DocumentType, UnsupportedDocument, detect_type
from faxfleet.kinds import Resolution

from . import office
from .coding import Coding
from .errors import DocumentError, RenderError
from .image import FaxTiffSource, open_image
from .pdf import PdfSource
from .source import PageSource
from .text import TextSource
from .tiff import FaxBitmap, StoredPage, encode_bitmap, transcode

__all__ = ["Coding", "open_document", "render_documents", "transcode"]


def open_document(data: bytes, resolution: Resolution) -> PageSource | FaxTiffSource:
    """The reader for ``data``'s content type (sniffed, never taken from a file name)."""
    try:
        kind = detect_type(data)
    except UnsupportedDocument as exc:
        raise DocumentError(str(exc)) from exc
    if kind.is_office:
        # Office documents become PDF first (LibreOffice); a clear error when it is absent.
        data, kind = office.to_pdf(data, kind), DocumentType.PDF
    if kind is DocumentType.PDF:
        return PdfSource(data, resolution)
    if kind is DocumentType.TEXT:
        return TextSource(data, resolution)
    return open_image(data, kind, resolution)


def _encode_stored(
    page: StoredPage, resolution: Resolution, coding: Coding, number: int, total: int
) -> bytes:
    """A page of an existing fax TIFF: its strip copied when the coding matches, else
    re-encoded from its decoded bits (never resampled)."""
    raw = None
    if page.raw is not None and page.coding is coding:
        raw = (page.t4_options, page.raw)
    return encode_bitmap(
        page.bitmap, resolution, coding, page_number=number, page_count=total, raw=raw
    )


def render_documents(
    documents: Sequence[bytes],
    resolution: Resolution,
    *,
    coding: Coding = Coding.MMR,
    max_pages: int = 500,
) -> list[bytes]:
    """All documents, in order, as fax pages. Each element is ONE single-page TIFF file.

    Pages are coded with ``coding`` (MMR unless the caller knows the line needs MH or MR;
    :func:`transcode` changes it later) and numbered 0..N-1 of N in their PageNumber tag.

    Raises :class:`RenderError` whose message names the document (1-based) and the reason.
    """
    resolution = Resolution(resolution)
    coding = Coding(coding)
    if max_pages < 1:
        raise ValueError(f"max_pages must be at least 1, got {max_pages}")
    if not documents:
        raise RenderError("no documents to render")
    with ExitStack() as cleanup:
        sources: list[PageSource | FaxTiffSource] = []
        for number, data in enumerate(documents, start=1):
            try:
                source = open_document(bytes(data), resolution)
            except DocumentError as exc:
                raise RenderError(f"document {number}: {exc}") from exc
            cleanup.callback(source.close)
            if source.page_count < 1:
                raise RenderError(f"document {number}: produced no pages")
            sources.append(source)
        total = sum(source.page_count for source in sources)
        if total > max_pages:
            raise RenderError(f"too many pages: {total} (limit {max_pages})")
        pages: list[bytes] = []
        for number, source in enumerate(sources, start=1):
            try:
                if isinstance(source, FaxTiffSource):
                    for stored in source.fax_pages():
                        pages.append(_encode_stored(stored, resolution, coding, len(pages), total))
                    continue
                for image in source.pages():
                    pages.append(
                        encode_bitmap(
                            FaxBitmap.from_image(image),
                            resolution,
                            coding,
                            page_number=len(pages),
                            page_count=total,
                        )
                    )
            except DocumentError as exc:
                raise RenderError(f"document {number}: {exc}") from exc
        return pages
