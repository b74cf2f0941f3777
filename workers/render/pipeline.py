"""Documents in, fax page TIFFs out: pick a reader per document, count, then render.

All documents are opened and counted before any page is drawn, so a fax that would exceed
``max_pages``, or whose third document is encrypted, fails in milliseconds rather than after
rasterising the first two.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from faxfleet.documents import DocumentType, UnsupportedDocument, detect_type
from faxfleet.kinds import Resolution

from . import office
from .coding import Coding
from .errors import DocumentError, RenderError
from .image import FaxTiffSource, open_image
from .pdf import PdfSource
from .source import PageSource
from .text import TextSource
from .tiff import StoredPage, encode_bitmap, transcode

__all__ = [
    "Coding",
    "OpenedJob",
    "open_document",
    "open_documents",
    "render_documents",
    "transcode",
]


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


class OpenedJob:
    """A fax's documents, opened and counted, ready to draw: all or a share of the pages.

    Close it (or use :func:`open_documents` as a context manager) to release the readers.
    """

    def __init__(
        self, sources: list[PageSource | FaxTiffSource], resolution: Resolution, coding: Coding
    ) -> None:
        self.sources = sources
        self.resolution = resolution
        self.coding = coding
        self.total = sum(source.page_count for source in sources)

    def render(self, share: tuple[int, int] = (0, 1)) -> list[bytes]:
        """Pages ``n`` with ``n % share[1] == share[0]``, in order (all pages by default).

        A page that fails raises :class:`RenderError` with ``page`` set to its 0-based
        number, so shares rendered apart can still report the first failure in page order.
        """
        mine, of = share
        pages: list[bytes] = []
        first = 0
        for number, source in enumerate(self.sources, start=1):
            current = first
            try:
                if isinstance(source, FaxTiffSource):
                    for stored in source.fax_pages():
                        if current % of == mine:
                            pages.append(
                                _encode_stored(
                                    stored, self.resolution, self.coding, current, self.total
                                )
                            )
                        current += 1
                else:
                    for index in range(source.page_count):
                        current = first + index
                        if current % of == mine:
                            pages.append(
                                encode_bitmap(
                                    source.bitmap(index),
                                    self.resolution,
                                    self.coding,
                                    page_number=current,
                                    page_count=self.total,
                                )
                            )
            except DocumentError as exc:
                failure = RenderError(f"document {number}: {exc}")
                failure.page = current
                raise failure from exc
            first += source.page_count
        return pages


@contextmanager
def open_documents(
    documents: Sequence[bytes],
    resolution: Resolution,
    *,
    coding: Coding = Coding.MMR,
    max_pages: int = 500,
) -> Iterator[OpenedJob]:
    """Open and count every document (the checks :func:`render_documents` makes first)."""
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
        job = OpenedJob(sources, resolution, coding)
        if job.total > max_pages:
            raise RenderError(f"too many pages: {job.total} (limit {max_pages})")
        yield job


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
    with open_documents(documents, resolution, coding=coding, max_pages=max_pages) as job:
        return job.render()
