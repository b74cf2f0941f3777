"""Count the pages (image directories) of a received TIFF without decoding it.

The far-end receivers write plain TIFF (efax: one page per file; HylaFAX: one file per
call). Walking the IFD chain is enough to count pages and needs no imaging library, so the
rig can report page counts even where Pillow or libtiff are not installed.
"""

from __future__ import annotations

import struct
from pathlib import Path


class NotATiff(ValueError):
    """The file does not start with a TIFF header (or its IFD chain is broken)."""


def tiff_page_count(path: Path) -> int:
    """How many image directories ``path`` holds (0 for a header with no directory)."""
    data = Path(path).read_bytes()
    if data[:4] == b"II*\x00":
        order = "<"
    elif data[:4] == b"MM\x00*":
        order = ">"
    else:
        raise NotATiff(f"{path}: not a TIFF file")
    (offset,) = struct.unpack_from(order + "I", data, 4)
    seen: set[int] = set()
    pages = 0
    while offset:
        # A loop or an offset past the end means a truncated or corrupt file.
        if offset in seen or offset + 2 > len(data):
            raise NotATiff(f"{path}: broken directory chain at offset {offset}")
        seen.add(offset)
        (entries,) = struct.unpack_from(order + "H", data, offset)
        next_at = offset + 2 + 12 * entries
        if next_at + 4 > len(data):
            raise NotATiff(f"{path}: directory at {offset} runs past the end")
        pages += 1
        (offset,) = struct.unpack_from(order + "I", data, next_at)
    return pages
