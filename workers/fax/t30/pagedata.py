"""Pages as they travel on the line: rendered TIFF pages -> T.4/T.6 line data, and back.

Sending: the rendered page (a TIFF Class F page from :mod:`workers.render`) is decoded and
re-encoded by libtiff (through :mod:`workers.render.tiff`) in the negotiated coding, at
standard resolution if the receiver has no fine mode (two fine rows are OR-ed into one, so
hairlines survive). For T.4 (MH/MR) every coded line is padded with fill bits before the
next EOL to last the negotiated minimum scan-line time, and the page ends with RTC; for T.6
(MMR, only with ECM) it ends with EOFB. The result is in line order (LSB first).

Receiving: line data is decoded row by row in pure Python (:mod:`.t4`). A row that does not
decode to exactly 1728 pixels is *bad*: it is replaced by the row above it, as fax machines
print it, and counted. :func:`verdict` turns the counts into the T.30 answer.

Verdict thresholds (receiver side, per page):

- **MCF** (page good): at most :data:`MCF_BAD_SHARE` of rows bad and no more than
  :data:`MAX_BAD_RUN` bad rows in a row;
- **RTP** (page kept, but retrain before the next one): at most :data:`RTP_BAD_SHARE` bad;
- **RTN** (page not acceptable; the sender should retrain and send it again): anything
  worse, or a page without a single good row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from faxfleet.kinds import Resolution
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, encode_bitmap, read_pages

from . import t4
from .frames import Fcf, Parameters

MCF_BAD_SHARE = 0.05
RTP_BAD_SHARE = 0.15
MAX_BAD_RUN = 16


def page_is_fine(page_tiff: bytes) -> bool:
    """Whether a rendered page has fine rows (196 dpi) rather than standard (98)."""
    with Image.open(io.BytesIO(page_tiff)) as image:
        return float(image.info.get("dpi", (204, 98))[1]) > 150


def to_standard(bitmap: FaxBitmap) -> FaxBitmap:
    """Half the rows: each standard row is the OR (black wins) of two fine rows."""
    size = bitmap.row_bytes
    rows = []
    for top in range(0, bitmap.height, 2):
        upper = bitmap.bits[top * size : (top + 1) * size]
        lower = bitmap.bits[(top + 1) * size : (top + 2) * size] or upper
        rows.append(
            (int.from_bytes(upper, "big") | int.from_bytes(lower, "big")).to_bytes(size, "big")
        )
    return FaxBitmap(bitmap.width, len(rows), b"".join(rows))


def min_line_bits(params: Parameters) -> int:
    """Bits every coded T.4 line must last: the scan-line time at the page data rate."""
    return -(-params.rate.bit_rate * params.min_scan_ms // 1000)


def encode_rows(bitmap: FaxBitmap, params: Parameters) -> bytes:
    """A bitmap (already at the session's resolution) as line data for the session."""
    resolution = Resolution.FINE if params.fine else Resolution.STANDARD
    coded = next(read_pages(encode_bitmap(bitmap, resolution, params.coding)))
    if coded.raw is None:
        raise ValueError("libtiff produced no single-strip page")
    bits = t4.msb_to_bits(coded.raw)
    if params.coding is Coding.MMR:
        bits = t4.ensure_eofb(bits)
    else:
        bits = t4.pad_lines(bits, min_line_bits(params), params.coding is Coding.MR)
    return t4.from_bits(bits)


def line_data(page_tiff: bytes, params: Parameters) -> bytes:
    """A rendered single-page TIFF as line data for the negotiated session."""
    bitmap = next(read_pages(page_tiff)).bitmap
    if page_is_fine(page_tiff) and not params.fine:
        bitmap = to_standard(bitmap)
    return encode_rows(bitmap, params)


@dataclass(frozen=True)
class ReceivedPage:
    """A page decoded from line data, with what went wrong on the way."""

    bitmap: FaxBitmap
    bad_rows: int
    longest_bad_run: int

    @property
    def rows(self) -> int:
        return self.bitmap.height

    def tiff(self, fine: bool, coding: Coding = Coding.MMR) -> bytes:
        """The page as a single-page TIFF Class F file (MMR by default: smallest)."""
        resolution = Resolution.FINE if fine else Resolution.STANDARD
        return encode_bitmap(self.bitmap, resolution, coding)


def decode(line: bytes, coding: Coding) -> ReceivedPage:
    """Line data (line order) in ``coding`` -> the page, bad rows replaced and counted."""
    bits = t4.to_bits(line)
    rows = t4.g4_rows(bits) if coding is Coding.MMR else t4.g3_rows(bits, coding is Coding.MR)
    blank = bytes(t4.WIDTH // 8)
    out: list[bytes] = []
    bad = run = longest = 0
    for row in rows:
        if row is None:
            bad += 1
            run += 1
            longest = max(longest, run)
            out.append(out[-1] if out else blank)
        else:
            run = 0
            out.append(t4.row_bytes(row))
    return ReceivedPage(FaxBitmap(t4.WIDTH, len(out), b"".join(out)), bad, longest)


def verdict(page: ReceivedPage) -> Fcf:
    """MCF, RTP or RTN for a received page (see the module's thresholds)."""
    good = page.rows - page.bad_rows
    if good <= 0:
        return Fcf.RTN
    share = page.bad_rows / page.rows
    if share <= MCF_BAD_SHARE and page.longest_bad_run <= MAX_BAD_RUN:
        return Fcf.MCF
    if share <= RTP_BAD_SHARE:
        return Fcf.RTP
    return Fcf.RTN
