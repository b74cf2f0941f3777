"""Documents in, fax page TIFFs out: pick a reader per document, count, then render.

All documents are opened and counted before any page is drawn, so a fax that would exceed
``max_pages``, or whose third document is encrypted, fails in milliseconds rather than after
rasterising the first two.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

from faxfleet.documents import DocumentType, UnsupportedDocument, detect_type
from faxfleet.messages import Resolution

from .errors import DocumentError, RenderError
from .image import ImageSource
from .pdf import PdfSource
from .source import PageSource
from .text import TextSource
from .tiff import encode_page


def open_document(data: bytes, resolution: Resolution) -> PageSource:
    """The reader for ``data``'s content type (sniffed, never taken from a file name)."""
    try:
        kind = detect_type(data)
    except UnsupportedDocument as exc:
        raise DocumentError(str(exc)) from exc
    if kind is DocumentType.PDF:
        return PdfSource(data, resolution)
    if kind is DocumentType.TEXT:
        return TextSource(data, resolution)
    return ImageSource(data, kind, resolution)


def render_documents(
    documents: Sequence[bytes], resolution: Resolution, *, max_pages: int = 500
) -> list[bytes]:
    """All documents, in order, as fax pages. Each element is ONE single-page TIFF file.

    Raises :class:`RenderError` whose message names the document (1-based) and the reason.
    """
    resolution = Resolution(resolution)
    if max_pages < 1:
        raise ValueError(f"max_pages must be at least 1, got {max_pages}")
    if not documents:
        raise RenderError("no documents to render")
    with ExitStack() as cleanup:
        sources: list[PageSource] = []
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
                pages.extend(encode_page(page, resolution) for page in source.pages())
            except DocumentError as exc:
                raise RenderError(f"document {number}: {exc}") from exc
        return pages
