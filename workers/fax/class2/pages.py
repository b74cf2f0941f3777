"""Turn a rendered page (a single-page fax TIFF) into the bytes a Class 2.0 modem takes.

The modem negotiated a session (+FCS): a coding, a resolution, a bit order chosen with
AT+FBO. The page is re-coded if the session's coding differs, halved vertically when the
far end only takes standard resolution, closed with RTC (the end of a T.4 page; a T.6
strip already ends with EOFB), put in the modem's bit order, and DLE-stuffed. A TIFF strip
holds the rows only, MSB first (FillOrder 1); the line wants each byte's least significant
bit first, so with direct bit order (AT+FBO=0) every byte is reversed.
"""

from __future__ import annotations

import struct

from faxfleet.kinds import Resolution
from workers.fax.class2.codes import Params
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, StoredPage, TiffError, encode_bitmap, read_pages

DLE = b"\x10"

_EOL = "000000000001"
RTC_BITS = {
    Coding.MH: _EOL * 6,
    Coding.MR: (_EOL + "1") * 6,
    Coding.MMR: _EOL * 2,
}
"""What ends a page: six EOLs (T.4 1-D), six EOL+1 (T.4 2-D), EOFB (T.6)."""

REVERSE = bytes(int(format(value, "08b")[::-1], 2) for value in range(256))
"""``REVERSE[b]``: ``b`` with its bit order flipped (MSB-first <-> line order)."""

_Y_RESOLUTION_TAG = 283
_RESOLUTION_UNIT_TAG = 296


def rtc(coding: Coding) -> bytes:
    """The end-of-page code for ``coding``, MSB first, zero-padded to whole bytes."""
    bits = RTC_BITS[Coding(coding)]
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def stuff(data: bytes) -> bytes:
    """Double every DLE so page data never ends early."""
    return data.replace(DLE, DLE + DLE)


def page_resolution(page_tiff: bytes) -> Resolution:
    """Fine or standard, from the TIFF's YResolution (above 150 dpi is fine)."""
    order = {b"II": "<", b"MM": ">"}.get(page_tiff[:2])
    if order is None:
        raise TiffError("not a TIFF file")
    (offset,) = struct.unpack_from(order + "I", page_tiff, 4)
    (count,) = struct.unpack_from(order + "H", page_tiff, offset)
    y_res: float | None = None
    per_cm = False
    for index in range(count):
        tag, kind, _n, value = struct.unpack_from(
            order + "HHII", page_tiff, offset + 2 + 12 * index
        )
        if tag == _Y_RESOLUTION_TAG and kind == 5:
            num, den = struct.unpack_from(order + "II", page_tiff, value)
            y_res = num / den if den else 0.0
        elif tag == _RESOLUTION_UNIT_TAG:
            per_cm = (value & 0xFFFF if order == "<" else value >> 16) == 3
    if y_res is None:
        raise TiffError("the TIFF page has no YResolution")
    dpi = y_res * 2.54 if per_cm else y_res
    return Resolution.FINE if dpi > 150 else Resolution.STANDARD


def _halve(bitmap: FaxBitmap) -> FaxBitmap:
    """Every other row: a fine page for a machine that takes standard resolution only."""
    row = bitmap.row_bytes
    rows = [bitmap.bits[i : i + row] for i in range(0, len(bitmap.bits), row)][::2]
    return FaxBitmap(bitmap.width, len(rows), b"".join(rows))


def coded_rows(page_tiff: bytes, session: Params) -> bytes:
    """The page's rows coded as ``session`` says, MSB first, without RTC."""
    (page,) = list(read_pages(page_tiff))
    resolution = page_resolution(page_tiff)
    coding = session.coding
    if resolution is Resolution.FINE and not session.fine:
        return _raw(_halve(page.bitmap), Resolution.STANDARD, coding)
    if page.coding is coding and page.raw is not None:
        return page.raw
    return _raw(page.bitmap, resolution, coding)


def _raw(bitmap: FaxBitmap, resolution: Resolution, coding: Coding) -> bytes:
    (page,) = list(read_pages(encode_bitmap(bitmap, resolution, coding)))
    return _strip(page)


def _strip(page: StoredPage) -> bytes:
    if page.raw is None:
        raise TiffError("libtiff wrote a page it cannot hand back raw")
    return page.raw


def page_data(page_tiff: bytes, session: Params, *, reversed_order: bool = False) -> bytes:
    """What goes to the modem after CONNECT for this page, before the DLE post-page code.

    ``reversed_order`` is AT+FBO=1 (the modem takes MSB-first data and reverses it itself).
    """
    coding = session.coding
    # libtiff ends a T.6 strip with EOFB itself; T.4 strips carry no RTC.
    data = coded_rows(page_tiff, session) + (b"" if coding is Coding.MMR else rtc(coding))
    if not reversed_order:
        data = data.translate(REVERSE)
    return stuff(data)
