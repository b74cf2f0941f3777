"""Encode one bilevel fax page as a single-page TIFF-F style file.

The line drivers want each page as a T.6 (Group 4) TIFF with min-is-white photometric,
FillOrder 1, 204 x 98/196 dpi and a single strip, because that is what fax software
(HylaFAX, t.38 gateways, libtiff's own fax tools) expects and can send without re-encoding.

Why the byte patch: Pillow writes mode "1" images as min-is-black (PhotometricInterpretation
1). Asking it for min-is-white via ``tiffinfo={262: 0}`` makes it invert the pixels with a
per-pixel Python loop (seconds per page), and ``ImageChops.invert`` on mode "1" images
yields invalid pixel values. So we invert with a lookup table, let libtiff encode that
(set bits = ink), and then rewrite the photometric value in the file's directory from 1 to
0; the compressed strip already has the bits min-is-white needs.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

from faxfleet.messages import Resolution

from .bitmap import HORIZONTAL_DPI, vertical_dpi

_PHOTOMETRIC = 262
_FILL_ORDER = 266
_ROWS_PER_STRIP = 278
_SHORT = 3

_INVERT_LUT = [255] + [0] * 255  # paper (255) -> 0 bits, ink (0) -> 1 bits


def encode_page(page: Image.Image, resolution: Resolution) -> bytes:
    """``page`` (mode "1", paper white = 255) as one Group 4, min-is-white TIFF file."""
    if page.mode != "1":
        raise ValueError(f"fax pages are bilevel (mode '1'), got mode {page.mode!r}")
    ink = page.convert("L").point(_INVERT_LUT, "1")
    out = io.BytesIO()
    ink.save(
        out,
        format="TIFF",
        compression="group4",
        dpi=(HORIZONTAL_DPI, vertical_dpi(resolution)),
        tiffinfo={_ROWS_PER_STRIP: page.height, _FILL_ORDER: 1},
    )
    return _set_min_is_white(out.getvalue())


def _set_min_is_white(tiff: bytes) -> bytes:
    """Rewrite PhotometricInterpretation in the first (only) directory from 1 to 0."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
        raise ValueError("not a classic TIFF file")
    data = bytearray(tiff)
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind, values = struct.unpack_from(order + "HHI", data, entry)
        if tag == _PHOTOMETRIC:
            if kind != _SHORT or values != 1:
                raise ValueError("unexpected PhotometricInterpretation entry")
            struct.pack_into(order + "H", data, entry + 8, 0)
            return bytes(data)
    raise ValueError("TIFF has no PhotometricInterpretation tag")
