"""Hand a received fax over to the scheduler: store it whole, announce it, return its id.

A site's line answers a call and the T.30 engine receives pages; what happens next is
here. The pages (single-page Class F TIFFs, as the renderer writes them) are joined into
one multi-page TIFF, the file a user downloads or gets by mail, and stored once under
``faxfleet.keys.inbound_fax`` with the inbound retention. Then an ``InboundReceived``
event goes to the receiving site's scheduler through the ordinary event path; it routes
the fax to a tenant by the called number and notifies.

Why the site joins the pages and not the scheduler: the scheduler imports no worker code,
and a fax stored as one file serves the download, the mail attachment and the page
previews (any TIFF reader can seek to page n) without a second copy.

A call that breaks off after some pages (``ok`` False) is kept all the same, marked with
its cause: the pages that arrived are often all the sender needed to get through.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence

import redis

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.messages import Cause, InboundReceived, now
from faxfleet.runtime import Runtime


def new_inbound_id() -> str:
    return "in_" + secrets.token_hex(8)


def deliver_inbound(
    r: redis.Redis,
    rt: Runtime,
    *,
    site: str,
    line: str,
    called: str | None,
    remote_id: str | None,
    pages: list[bytes],
    ok: bool,
    cause: Cause | None = None,
    detail: str | None = None,
) -> str:
    """Store the pages of a reception as one TIFF and tell the scheduler; return the id.

    A reception reported ``ok`` without a single page is filed as failed ("no page
    received"): a fax is never complete with nothing in it.
    """
    inbound_id = new_inbound_id()
    if ok and not pages:
        ok, detail = False, detail or "no page received"
    whole = join_pages(pages) if pages else b""
    if whole:
        r.set(keys.inbound_fax(inbound_id), whole, ex=rt.settings.inbound_retention_seconds)
    event = InboundReceived(
        inbound_id=inbound_id,
        site=site,
        line=line,
        called=called or None,
        remote_id=(remote_id or "").strip() or None,
        pages=len(pages),
        size=len(whole),
        ok=ok,
        cause=None if ok else cause,
        detail=detail,
        at=now(),
    )
    names.emit(rt.app, event, rt.settings.inbound_scheduler_site or site)
    rt.log.info(
        "fax received",
        inbound=inbound_id,
        site=site,
        line=line,
        called=called,
        remote=event.remote_id,
        pages=len(pages),
        ok=ok,
        cause=event.cause,
    )
    return inbound_id


# -- one multi-page TIFF from single-page ones ------------------------------------------
#
# A plain rewrite of the files' directories, no decoding: every page keeps its coding,
# resolution and compressed strips byte for byte. The output is little-endian classic
# TIFF, one directory per page in order, PageNumber set to (n, total).

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TYPE_FORMATS = {3: "H", 4: "I", 5: "II", 8: "h", 9: "i", 10: "ii", 11: "f", 12: "d", 13: "I"}
_STRIP_OFFSETS, _STRIP_BYTE_COUNTS = 273, 279
_TILE_OFFSETS, _TILE_BYTE_COUNTS = 324, 325
_PAGE_NUMBER = 297
_SHORT, _LONG = 3, 4
_DROPPED = {288, 289, 330, 513, 514, 34665, 34853, 40965}
"""Tags that point at structures a page copy does not carry along (free lists, sub-IFDs,
JPEG tables, EXIF/GPS directories): left out rather than left dangling."""


class NotAFaxTiff(ValueError):
    """A page that is not a readable TIFF file."""


Entry = tuple[int, int, int, bytes]
"""(tag, type, count, value bytes in little-endian order)."""


def _directories(data: bytes) -> list[list[Entry]]:
    """Every directory of a TIFF file, its values read out and made little-endian."""
    if data[:4] == b"II*\x00":
        order = "<"
    elif data[:4] == b"MM\x00*":
        order = ">"
    else:
        raise NotAFaxTiff("not a TIFF file")
    (offset,) = struct.unpack_from(order + "I", data, 4)
    directories: list[list[Entry]] = []
    seen: set[int] = set()
    while offset:
        if offset in seen or offset + 2 > len(data):
            raise NotAFaxTiff(f"broken directory chain at offset {offset}")
        seen.add(offset)
        (count,) = struct.unpack_from(order + "H", data, offset)
        if offset + 2 + 12 * count + 4 > len(data):
            raise NotAFaxTiff(f"directory at {offset} runs past the end")
        entries = []
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", data, at)
            if kind not in _TYPE_SIZES:
                continue  # an unknown type cannot be copied safely
            size = _TYPE_SIZES[kind] * n
            where = at + 8 if size <= 4 else struct.unpack_from(order + "I", data, at + 8)[0]
            if where + size > len(data):
                raise NotAFaxTiff(f"tag {tag} points past the end")
            raw = data[where : where + size]
            if order == ">" and kind in _TYPE_FORMATS:
                fmt = _TYPE_FORMATS[kind]
                raw = struct.pack("<" + fmt * n, *struct.unpack(">" + fmt * n, raw))
            entries.append((tag, kind, n, raw))
        directories.append(entries)
        (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    return directories


def _numbers(kind: int, count: int, raw: bytes) -> tuple[int, ...]:
    return struct.unpack("<" + _TYPE_FORMATS[kind] * count, raw)


def _strips(data: bytes, entries: list[Entry]) -> tuple[int, int, list[bytes]]:
    """The compressed strips (or tiles) of a directory: (offsets tag, counts tag, data)."""
    by_tag = {tag: (kind, n, raw) for tag, kind, n, raw in entries}
    for offsets_tag, counts_tag in (
        (_STRIP_OFFSETS, _STRIP_BYTE_COUNTS),
        (_TILE_OFFSETS, _TILE_BYTE_COUNTS),
    ):
        if offsets_tag in by_tag and counts_tag in by_tag:
            offsets = _numbers(*by_tag[offsets_tag])
            counts = _numbers(*by_tag[counts_tag])
            if len(offsets) != len(counts):
                raise NotAFaxTiff("strip offsets and byte counts disagree")
            if any(o + c > len(data) for o, c in zip(offsets, counts, strict=True)):
                raise NotAFaxTiff("a strip runs past the end of the file")
            return (
                offsets_tag,
                counts_tag,
                [data[o : o + c] for o, c in zip(offsets, counts, strict=True)],
            )
    raise NotAFaxTiff("a page without image data")


def join_pages(pages: Sequence[bytes]) -> bytes:
    """One multi-page TIFF holding every page of ``pages`` (each a TIFF file; all its
    directories are taken, in order), with PageNumber renumbered 0..N-1 of N."""
    parsed = []
    for position, page in enumerate(pages, start=1):
        try:
            for entries in _directories(page):
                parsed.append((entries, _strips(page, entries)))
        except (NotAFaxTiff, struct.error) as exc:
            raise NotAFaxTiff(f"page {position}: {exc}") from None
    total = len(parsed)
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    link_at = 4  # where the offset of the next directory goes
    for number, (entries, (offsets_tag, counts_tag, strips)) in enumerate(parsed):
        strip_offsets = []
        for strip in strips:
            strip_offsets.append(len(out))
            out += strip
            if len(out) % 2:
                out += b"\x00"
        values = {tag: (kind, n, raw) for tag, kind, n, raw in entries if tag not in _DROPPED}
        values[offsets_tag] = (_LONG, len(strips), struct.pack(f"<{len(strips)}I", *strip_offsets))
        values[counts_tag] = (
            _LONG,
            len(strips),
            struct.pack(f"<{len(strips)}I", *(len(s) for s in strips)),
        )
        values[_PAGE_NUMBER] = (_SHORT, 2, struct.pack("<HH", number, total))
        # Values longer than four bytes go before the directory that points at them.
        placed: dict[int, int] = {}
        for tag, (_kind, _n, raw) in sorted(values.items()):
            if len(raw) > 4:
                placed[tag] = len(out)
                out += raw
                if len(out) % 2:
                    out += b"\x00"
        directory_at = len(out)
        struct.pack_into("<I", out, link_at, directory_at)
        out += struct.pack("<H", len(values))
        for tag, (kind, n, raw) in sorted(values.items()):
            field = struct.pack("<I", placed[tag]) if tag in placed else raw.ljust(4, b"\x00")
            out += struct.pack("<HHI", tag, kind, n) + field
        link_at = len(out)
        out += b"\x00\x00\x00\x00"
    return bytes(out)
