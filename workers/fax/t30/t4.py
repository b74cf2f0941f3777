"""T.4/T.6 page data at the bit level: fill bits and RTC for sending, rows for receiving.

Everything works on a page's bits as a ``str`` of "0"/"1" in transmission order (the
first character is the first bit on the line); :func:`to_bits` and :func:`from_bits` move
between that and line-order bytes (LSB first, as a Class 1 modem takes them).

A row is a list of *changing elements*: the pixel positions where the colour changes,
starting from an imaginary white pixel left of the row (so the first entry is where the
first black run starts). That is the form T.4's two-dimensional coding reasons in.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from .hdlc import reverse_bits
from .t4codes import BLACK, END, EOL, EXTENSION, HORIZONTAL, MODES, PASS, PEEK, WHITE

WIDTH = 1728

Row = list[int]


class DecodeError(ValueError):
    """The bits do not decode to a row (corrupted data, or the wrong coding)."""


def to_bits(line_data: bytes) -> str:
    """Line-order bytes (LSB first) -> the bits in transmission order."""
    if not line_data:
        return ""
    return format(int.from_bytes(reverse_bits(line_data), "big"), f"0{len(line_data) * 8}b")


def from_bits(bits: str) -> bytes:
    """Bits in transmission order -> line-order bytes, zero-padded to a whole byte."""
    bits += "0" * (-len(bits) % 8)
    if not bits:
        return b""
    return reverse_bits(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def msb_to_bits(data: bytes) -> str:
    """MSB-first bytes (TIFF FillOrder 1) -> bits in transmission order."""
    if not data:
        return ""
    return format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")


# --- sending: fill bits and RTC --------------------------------------------------------------


def pad_lines(bits: str, min_bits: int, two_d: bool) -> str:
    """T.4 data with fill, ending in RTC.

    ``bits`` holds coded rows each starting with an EOL (and, with MR, its tag bit), as
    libtiff writes Group 3 strips. Zeros go before each following EOL until every coded
    line (its EOL, data and fill) is at least ``min_bits`` long, so a slow receiver has
    its minimum scan-line time for every row. RTC is six EOLs (EOL + 1 with MR).
    """
    starts = []
    position = bits.find(EOL)
    while position >= 0:
        starts.append(position)
        position = bits.find(EOL, position + len(EOL))
    if not starts:
        raise DecodeError("no EOL in Group 3 data")
    pieces = []
    ends = [*starts[1:], len(bits)]
    for start, end in zip(starts, ends, strict=True):
        line = bits[start:end]
        pieces.append(line)
        if len(line) < min_bits:
            pieces.append("0" * (min_bits - len(line)))
    rtc_code = EOL + "1" if two_d else EOL
    return "".join(pieces) + rtc_code * 6


def ensure_eofb(bits: str) -> str:
    """T.6 data ending in EOFB (two EOLs), as ECM pages must."""
    stripped = bits.rstrip("0")
    if stripped.endswith(EOL + EOL):
        return stripped
    return stripped + EOL + EOL


# --- receiving: rows ------------------------------------------------------------------------


def runs_to_changes(runs: list[int]) -> Row:
    changes = []
    position = 0
    for run in runs:
        position += run
        changes.append(position)
    return changes


def decode_1d(bits: str, position: int, width: int = WIDTH) -> tuple[Row, int]:
    """One MH row from ``position``: (changing elements, position after the row)."""
    changes: Row = []
    a0 = 0
    white = True
    while a0 < width:
        run, position = _run(bits, position, white)
        a0 += run
        if a0 > width:
            raise DecodeError(f"row longer than {width} pixels at bit {position}")
        changes.append(a0)
        white = not white
    return _trim(changes, width), _after_empty_runs(bits, position, white)


def _after_empty_runs(bits: str, position: int, white: bool) -> int:
    """Skip zero-length runs closing a full row: they add no pixels, and some encoders
    (efax ends a page's last blank row "white 1728, black 0") send one. Fill bits and
    the next EOL match no run code, so they stop the skipping."""
    while True:
        try:
            run, after = _run(bits, position, white)
        except DecodeError:
            return position
        if run:
            return position
        position, white = after, not white


def _trim(changes: Row, width: int) -> Row:
    """Drop a changing element at the right edge (a zero-length run's echo)."""
    while changes and changes[-1] >= width:
        changes.pop()
    return changes


def decode_2d(bits: str, position: int, reference: Row, width: int = WIDTH) -> tuple[Row, int]:
    """One two-dimensionally coded row from ``position`` against ``reference``."""
    ref = [*reference, width, width, width]  # sentinels: b1 and b2 always exist
    changes: Row = []
    a0 = -1
    white = True
    modes = MODES.get
    while a0 < width:
        # b1: first changing element on the reference line right of a0, of the colour
        # opposite to a0's; even entries are white->black changes, odd black->white.
        index = bisect_right(ref, a0)
        if (index % 2 == 0) != white:
            index += 1
        b1 = ref[index]
        b2 = ref[index + 1]
        mode, length = modes(bits[position : position + PEEK], (None, 0))
        if mode is None or mode in (EXTENSION, END):
            raise DecodeError(f"bad mode code at bit {position}")
        position += length
        if mode == PASS:
            a0 = b2
            continue
        if mode == HORIZONTAL:
            start = max(a0, 0)
            first, position = _run(bits, position, white)
            second, position = _run(bits, position, not white)
            a1 = start + first
            a2 = a1 + second
            if a2 > width:
                raise DecodeError(f"horizontal mode runs past the row at bit {position}")
            changes += [a1, a2]
            a0 = a2
            continue
        a1 = b1 + mode  # type: ignore[operator]
        if a1 <= a0 or a1 > width:
            raise DecodeError(f"vertical mode outside the row at bit {position}")
        changes.append(a1)
        a0 = a1
        white = not white
    if a0 != width:
        raise DecodeError(f"row of {a0} pixels")
    return _trim(changes, width), position


def _run(bits: str, position: int, white: bool) -> tuple[int, int]:
    """One run (make-up codes and a terminating code) of one colour."""
    total = 0
    table = WHITE if white else BLACK
    while True:
        value, length = table.get(bits[position : position + PEEK], (None, 0))
        if value is None or value == END:
            raise DecodeError(f"bad run code at bit {position}")
        position += length
        total += value  # type: ignore[operator]
        if value < 64:  # type: ignore[operator]
            return total, position


def g3_rows(bits: str, two_d: bool, width: int = WIDTH) -> Iterator[Row | None]:
    """Rows of T.4 data (MH or MR), None for a row that did not decode; stops at RTC.

    Each EOL starts a row, so a damaged row costs that row only: decoding resumes at the
    next EOL. A damaged 2-D row is replaced, for the next row's reference, by the one
    above it, as receivers print it.
    """
    reference: Row = []
    start = bits.find(EOL)
    empty = 0
    padded = bits + "0" * PEEK
    while start >= 0:
        position = start + len(EOL)
        following = bits.find(EOL, position)
        segment_end = following if following >= 0 else len(bits)
        one_d = True
        if two_d:
            one_d = bits[position : position + 1] == "1"
            position += 1
        if bits[position:segment_end].strip("0") == "":
            empty += 1
            if empty >= 2:  # RTC (or EOFB): the page is over
                return
            start = following
            continue
        empty = 0
        try:
            if one_d:
                row, after = decode_1d(padded, position, width)
            else:
                row, after = decode_2d(padded, position, reference, width)
            if after > segment_end or "1" in bits[after:segment_end]:
                raise DecodeError(f"stray bits after the row at bit {after}")
        except DecodeError:
            yield None
        else:
            reference = row
            yield row
        start = following


def g4_rows(bits: str, width: int = WIDTH) -> Iterator[Row | None]:
    """Rows of T.6 data up to EOFB; after a damaged row nothing more can be decoded."""
    reference: Row = []
    padded = bits + "0" * PEEK
    position = 0
    last_one = bits.rfind("1")  # beyond it, only padding
    while position <= last_one:
        if padded.startswith(EOL, position):
            return
        try:
            row, position = decode_2d(padded, position, reference, width)
        except DecodeError:
            yield None
            return
        reference = row
        yield row


def row_bytes(changes: Row, width: int = WIDTH) -> bytes:
    """A row packed MSB first with 1 = black, as :class:`workers.render.tiff.FaxBitmap`."""
    parts = []
    previous = 0
    black = False
    for change in [*changes, width]:
        parts.append(("1" if black else "0") * (change - previous))
        previous = change
        black = not black
    return int("".join(parts), 2).to_bytes(width // 8, "big")


def row_changes(row: bytes, width: int = WIDTH) -> Row:
    """Changing elements of a packed row (MSB first, 1 = black)."""
    bits = format(int.from_bytes(row, "big"), f"0{len(row) * 8}b")[:width]
    changes = []
    colour = "0"
    position = bits.find("1")
    while position >= 0:
        changes.append(position)
        colour = "1" if colour == "0" else "0"
        position = bits.find("0" if colour == "1" else "1", position)
    return changes
