"""Encode and decode single-page TIFF Class F fax pages with libtiff, through ctypes.

Why libtiff and not Pillow: Pillow writes mode "1" images min-is-black (the CCITT codewords
come out inverted unless patched), garbles PageNumber, and cannot write T.4 2-D (MR) with
the K factor T.4 requires. libtiff's own fax codec does all three codings, picks K from
YResolution (2 below 150 dpi, 4 above) and is the decoder the rest of the fax world uses.

Why ctypes with one prototype per call shape: ``TIFFSetField`` and ``TIFFGetField`` are
variadic. ctypes cannot know the types of variadic arguments, so each shape (a 32-bit
integer, two 16-bit page numbers, a double resolution) gets its own function object with
fixed ``argtypes``; a resolution passed as a Python float without that would be read as
garbage. Resolutions are set before the strip is written, because the encoder reads
YResolution when it starts the strip to choose K.

Files live in a memfd so nothing touches the disk; libtiff closes the descriptor it is
given, so it gets a duplicate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from PIL import Image

from faxfleet.kinds import Resolution

from .bitmap import FAX_WIDTH_PX, HORIZONTAL_DPI, FaxBitmap, vertical_dpi
from .coding import T4_2D, TIFF_COMPRESSION, Coding, coding_of

# TIFF tags (TIFF 6.0 and the Class F additions).
_SUBFILE_TYPE = 254
_IMAGE_WIDTH = 256
_IMAGE_LENGTH = 257
_BITS_PER_SAMPLE = 258
_COMPRESSION = 259
_PHOTOMETRIC = 262
_FILL_ORDER = 266
_SAMPLES_PER_PIXEL = 277
_ROWS_PER_STRIP = 278
_X_RESOLUTION = 282
_Y_RESOLUTION = 283
_T4_OPTIONS = 292
_T6_OPTIONS = 293
_RESOLUTION_UNIT = 296
_PAGE_NUMBER = 297

_FILETYPE_PAGE = 2
_MIN_IS_WHITE = 0
_MIN_IS_BLACK = 1
_INCH = 2

_INVERT = bytes(255 - value for value in range(256))
"""Byte table flipping every bit: a min-is-black page's rows -> fax rows (1 = black)."""


class TiffError(Exception):
    """libtiff could not read or write a page."""


@dataclass(frozen=True)
class StoredPage:
    """A page of an existing fax TIFF: its pixels, and its compressed strip when reusable.

    ``raw`` is set only when the page is one strip, FillOrder 1 and min-is-white, so the
    bytes can be copied into a new file unchanged when the requested coding matches.
    """

    bitmap: FaxBitmap
    coding: Coding
    t4_options: int
    raw: bytes | None


@cache
def _lib() -> ctypes.CDLL:
    """libtiff, with error and warning handlers silenced (failures come back as codes)."""
    name = ctypes.util.find_library("tiff") or "libtiff.so.6"
    lib = ctypes.CDLL(name)
    lib.TIFFSetErrorHandler.argtypes = [ctypes.c_void_p]
    lib.TIFFSetErrorHandler.restype = ctypes.c_void_p
    lib.TIFFSetWarningHandler.argtypes = [ctypes.c_void_p]
    lib.TIFFSetWarningHandler.restype = ctypes.c_void_p
    lib.TIFFSetErrorHandler(None)
    lib.TIFFSetWarningHandler(None)
    lib.TIFFFdOpen.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
    lib.TIFFFdOpen.restype = ctypes.c_void_p
    lib.TIFFClose.argtypes = [ctypes.c_void_p]
    lib.TIFFClose.restype = None
    for name in ("TIFFWriteEncodedStrip", "TIFFWriteRawStrip"):
        function = getattr(lib, name)
        function.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_ssize_t]
        function.restype = ctypes.c_ssize_t
    for name in ("TIFFReadEncodedStrip", "TIFFReadRawStrip"):
        function = getattr(lib, name)
        function.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_ssize_t]
        function.restype = ctypes.c_ssize_t
    lib.TIFFNumberOfStrips.argtypes = [ctypes.c_void_p]
    lib.TIFFNumberOfStrips.restype = ctypes.c_uint32
    lib.TIFFStripSize.argtypes = [ctypes.c_void_p]
    lib.TIFFStripSize.restype = ctypes.c_ssize_t
    lib.TIFFNumberOfDirectories.argtypes = [ctypes.c_void_p]
    lib.TIFFNumberOfDirectories.restype = ctypes.c_uint32
    lib.TIFFSetDirectory.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.TIFFSetDirectory.restype = ctypes.c_int
    lib.TIFFGetFieldDefaulted.restype = ctypes.c_int
    return lib


def _variadic(name: str, *tail: type) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    """``name`` (TIFFSetField, TIFFGetFieldDefaulted) as a fixed-signature function object."""
    prototype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, *tail)
    return prototype((name, _lib()))


@cache
def _setters() -> dict[str, ctypes._CFuncPtr]:  # type: ignore[name-defined]
    return {
        "int": _variadic("TIFFSetField", ctypes.c_uint),
        "pair": _variadic("TIFFSetField", ctypes.c_uint, ctypes.c_uint),
        "double": _variadic("TIFFSetField", ctypes.c_double),
        "get16": _variadic("TIFFGetFieldDefaulted", ctypes.POINTER(ctypes.c_uint16)),
        "get32": _variadic("TIFFGetFieldDefaulted", ctypes.POINTER(ctypes.c_uint32)),
    }


def _set(tif: int, tag: int, *values: int) -> None:
    setter = _setters()["int" if len(values) == 1 else "pair"]
    if not setter(tif, tag, *values):
        raise TiffError(f"libtiff refused tag {tag} = {values}")


def _set_double(tif: int, tag: int, value: float) -> None:
    if not _setters()["double"](tif, tag, float(value)):
        raise TiffError(f"libtiff refused tag {tag} = {value}")


def _get(tif: int, tag: int, *, wide: bool = False) -> int:
    value: ctypes.c_uint16 | ctypes.c_uint32 = ctypes.c_uint32() if wide else ctypes.c_uint16()
    getter = _setters()["get32" if wide else "get16"]
    if not getter(tif, tag, ctypes.byref(value)):
        raise TiffError(f"the TIFF page has no tag {tag}")
    return int(value.value)


class _MemoryTiff:
    """A libtiff handle on an in-memory file; ``contents()`` after ``close()``."""

    def __init__(self, mode: str, data: bytes = b"") -> None:
        self._fd = os.memfd_create("faxpage", os.MFD_CLOEXEC)
        if data:
            os.write(self._fd, data)
            os.lseek(self._fd, 0, os.SEEK_SET)
        handle = _lib().TIFFFdOpen(os.dup(self._fd), b"faxpage", mode.encode())
        if not handle:
            os.close(self._fd)
            raise TiffError("libtiff could not open the TIFF data")
        self.handle: int = handle

    def close(self) -> None:
        if self.handle:
            _lib().TIFFClose(self.handle)
            self.handle = 0

    def contents(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0)

    def release(self) -> None:
        self.close()
        os.close(self._fd)


def _write_tags(
    tif: int,
    width: int,
    height: int,
    resolution: Resolution,
    coding: Coding,
    t4_options: int,
    page_number: int,
    page_count: int,
) -> None:
    _set(tif, _SUBFILE_TYPE, _FILETYPE_PAGE)
    _set(tif, _IMAGE_WIDTH, width)
    _set(tif, _IMAGE_LENGTH, height)
    _set(tif, _BITS_PER_SAMPLE, 1)
    _set(tif, _SAMPLES_PER_PIXEL, 1)
    # Compression first: the T4/T6 option tags exist only once the fax codec is selected.
    _set(tif, _COMPRESSION, TIFF_COMPRESSION[coding])
    if coding is Coding.MMR:
        _set(tif, _T6_OPTIONS, 0)
    else:
        _set(tif, _T4_OPTIONS, t4_options)
    _set(tif, _PHOTOMETRIC, _MIN_IS_WHITE)
    _set(tif, _FILL_ORDER, 1)
    # Before the strip: the MR encoder takes K (2 or 4) from YResolution when it starts.
    _set_double(tif, _X_RESOLUTION, HORIZONTAL_DPI)
    _set_double(tif, _Y_RESOLUTION, vertical_dpi(resolution))
    _set(tif, _RESOLUTION_UNIT, _INCH)
    _set(tif, _ROWS_PER_STRIP, height)
    _set(tif, _PAGE_NUMBER, page_number, page_count)


def _t4_options(coding: Coding) -> int:
    return T4_2D if coding is Coding.MR else 0


def encode_bitmap(
    bitmap: FaxBitmap,
    resolution: Resolution,
    coding: Coding = Coding.MMR,
    *,
    page_number: int = 0,
    page_count: int = 1,
    raw: tuple[int, bytes] | None = None,
) -> bytes:
    """One single-page Class F TIFF file.

    ``page_number`` is 0-based, as the PageNumber tag stores it. ``raw`` is (T4Options,
    strip) already compressed with ``coding``: it is copied, not re-encoded.
    """
    coding = Coding(coding)
    if bitmap.width != FAX_WIDTH_PX or len(bitmap.bits) != bitmap.row_bytes * bitmap.height:
        raise ValueError(f"not a fax page bitmap: {bitmap.width} x {bitmap.height}")
    t4_options, strip = raw if raw is not None else (_t4_options(coding), bitmap.bits)
    out = _MemoryTiff("w")
    try:
        tif = out.handle
        _write_tags(
            tif,
            bitmap.width,
            bitmap.height,
            resolution,
            coding,
            t4_options,
            page_number,
            page_count,
        )
        write = _lib().TIFFWriteRawStrip if raw is not None else _lib().TIFFWriteEncodedStrip
        if write(tif, 0, strip, len(strip)) < 0:
            raise TiffError("libtiff could not write the page")
        out.close()
        return out.contents()
    finally:
        out.release()


def encode_page(
    page: Image.Image,
    resolution: Resolution,
    coding: Coding = Coding.MMR,
    *,
    page_number: int = 0,
    page_count: int = 1,
) -> bytes:
    """``page`` (mode "1", paper white = 255) as one single-page Class F TIFF file."""
    return encode_bitmap(
        FaxBitmap.from_image(page),
        resolution,
        coding,
        page_number=page_number,
        page_count=page_count,
    )


def _read_page(tif: int) -> StoredPage:
    width = _get(tif, _IMAGE_WIDTH, wide=True)
    height = _get(tif, _IMAGE_LENGTH, wide=True)
    compression = _get(tif, _COMPRESSION)
    t4_options = _get(tif, _T4_OPTIONS, wide=True) if compression == 3 else 0
    coding = coding_of(compression, t4_options)
    if coding is None or _get(tif, _BITS_PER_SAMPLE) != 1:
        raise TiffError("the TIFF page is not CCITT-coded bilevel")
    photometric = _get(tif, _PHOTOMETRIC)
    lib = _lib()
    strips = lib.TIFFNumberOfStrips(tif)
    strip_size = lib.TIFFStripSize(tif)
    buffer = ctypes.create_string_buffer(strip_size)
    decoded = bytearray()
    for strip in range(strips):
        got = lib.TIFFReadEncodedStrip(tif, strip, buffer, strip_size)
        if got < 0:
            raise TiffError(f"libtiff could not decode strip {strip}")
        decoded += buffer.raw[:got]
    expected = (width + 7) // 8 * height
    if len(decoded) < expected:
        raise TiffError("the TIFF page is truncated")
    bits = bytes(decoded[:expected])
    if photometric == _MIN_IS_BLACK:
        bits = bits.translate(_INVERT)
    raw: bytes | None = None
    reusable = strips == 1 and photometric == _MIN_IS_WHITE and _get(tif, _FILL_ORDER) == 1
    if reusable:
        size = _raw_strip_size(tif)
        raw_buffer = ctypes.create_string_buffer(size)
        got = lib.TIFFReadRawStrip(tif, 0, raw_buffer, size)
        raw = raw_buffer.raw[:got] if got > 0 else None
    return StoredPage(FaxBitmap(width, height, bits), coding, t4_options, raw)


def _raw_strip_size(tif: int) -> int:
    """Bytes in strip 0 as stored (StripByteCounts[0])."""
    counts = ctypes.POINTER(ctypes.c_uint64)()
    getter = _variadic("TIFFGetField", ctypes.POINTER(ctypes.POINTER(ctypes.c_uint64)))
    if not getter(tif, 279, ctypes.byref(counts)) or not counts:
        raise TiffError("the TIFF page has no StripByteCounts")
    return int(counts[0])


def read_pages(data: bytes) -> Iterator[StoredPage]:
    """Every page of a CCITT-coded TIFF file, decoded by libtiff."""
    tiff = _MemoryTiff("r", data)
    try:
        lib = _lib()
        for index in range(lib.TIFFNumberOfDirectories(tiff.handle)):
            if not lib.TIFFSetDirectory(tiff.handle, index):
                raise TiffError(f"libtiff could not read page {index + 1}")
            yield _read_page(tiff.handle)
    finally:
        tiff.release()


def transcode(page_tiff: bytes, coding: Coding) -> bytes:
    """Re-encode a single-page fax TIFF with ``coding`` (the one the modem negotiated).

    Tags other than the coding (resolution, PageNumber) are kept; a page already in
    ``coding`` comes back unchanged.
    """
    coding = Coding(coding)
    tiff = _MemoryTiff("r", page_tiff)
    try:
        page = _read_page(tiff.handle)
        y_dpi = _get_resolution(tiff.handle)
        number = _page_number(tiff.handle)
    finally:
        tiff.release()
    if page.coding is coding:
        return page_tiff
    resolution = Resolution.FINE if y_dpi > 150 else Resolution.STANDARD
    return encode_bitmap(
        page.bitmap, resolution, coding, page_number=number[0], page_count=number[1]
    )


def _get_resolution(tif: int) -> float:
    value = ctypes.c_float()
    getter = _variadic("TIFFGetField", ctypes.POINTER(ctypes.c_float))
    if not getter(tif, _Y_RESOLUTION, ctypes.byref(value)):
        raise TiffError("the TIFF page has no YResolution")
    return float(value.value)


def _page_number(tif: int) -> tuple[int, int]:
    number, count = ctypes.c_uint16(), ctypes.c_uint16()
    getter = _variadic(
        "TIFFGetField", ctypes.POINTER(ctypes.c_uint16), ctypes.POINTER(ctypes.c_uint16)
    )
    if not getter(tif, _PAGE_NUMBER, ctypes.byref(number), ctypes.byref(count)):
        return (0, 1)
    return (int(number.value), int(count.value))
