"""What every document reader provides: a page count up front, then the pages.

Counting before rendering lets the pipeline refuse an over-long fax (``max_pages``) after
only opening the documents, instead of after rasterising hundreds of pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from PIL import Image

from .bitmap import FaxBitmap


class PageSource(Protocol):
    """An opened document. Readers raise ``DocumentError`` for anything wrong with it."""

    @property
    def page_count(self) -> int:
        """Fax pages this document will produce."""
        ...

    def pages(self) -> Iterator[Image.Image]:
        """The fax pages in order: mode "1", 1728 wide, paper white (255)."""
        ...

    def page(self, index: int) -> Image.Image:
        """Fax page ``index`` (0-based) alone, as ``pages`` gives it: a job split over
        several processes draws only the pages that are its share."""
        ...

    def bitmap(self, index: int) -> FaxBitmap:
        """Fax page ``index`` as packed fax rows: what the pipeline encodes, made without
        a bilevel image in between."""
        ...

    def close(self) -> None:
        """Release whatever the reader holds (native PDF handles, image files)."""
        ...
