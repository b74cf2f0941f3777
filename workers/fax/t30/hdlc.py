"""HDLC control frames as T.30 exchanges them at 300 bit/s (V.21) and inside ECM blocks.

Bit order, stated once for the whole package: every byte here is in **line order**, the
order a Class 1 modem takes and gives them (AT+FTH / AT+FRH): the least significant bit of
each byte is the first bit on the line. T.30 writes its tables in transmission order, left
to right, so the DIS code "0000 0001" is the byte 0x80 here, and bit 1 of a facsimile
information field is the least significant bit of its first byte.

A frame is ``address (0xFF) | control (0x03, or 0x13 on the last frame of a message) |
FCF | FIF``. The modem adds and checks the FCS itself, so the frames the engine hands to a
modem carry none; :func:`fcs` exists for the places that see raw HDLC (ECM block checks in
tests, independent peers) and to check what a modem reports.
"""

from __future__ import annotations

from dataclasses import dataclass

ADDRESS = 0xFF
"""The only HDLC address T.30 uses (all stations, on a point-to-point line)."""

CONTROL = 0x03
"""Control field of a frame followed by more frames of the same message."""

CONTROL_FINAL = 0x13
"""Control field of the last frame of a message: the far end may answer after it."""

X_BIT = 0x01
"""The FCF's first transmitted bit: set by the station that received a valid DIS."""

_NO_X_BIT = frozenset({0x80, 0x40, 0x20, 0xC0, 0xA0, 0x60, 0xE0, 0x10})
"""FCFs (first bit cleared) of the identification frames, which carry no X bit: for them
the first bit is part of the code (0 for DIS, CSI, NSF...; 1 for DTC, CIG, NSC...)."""

REVERSE = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))
"""``REVERSE[b]`` is ``b`` with its bit order flipped: line order <-> MSB-first order."""


def reverse_bits(data: bytes) -> bytes:
    """Flip the bit order of every byte (TIFF FillOrder 1 data <-> line order)."""
    return data.translate(REVERSE)


def _crc_table() -> tuple[int, ...]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """The ITU-T V.42 / T.30 CRC register after ``data`` (line-order bytes), not inverted.

    The generator is x^16 + x^12 + x^5 + 1 processed least significant bit first, as the
    bits leave the line; a frame with its FCS appended leaves the register at 0xF0B8.
    """
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


GOOD_RESIDUE = 0xF0B8
"""The CRC register after a frame *and* its correct FCS (the "magic" check value)."""


def fcs(data: bytes) -> bytes:
    """The two FCS bytes that follow ``data`` on the line (ones' complement, low byte first).

    ``fcs(b"123456789")`` is ``b"\\x6e\\x90"`` (the CRC-16/X.25 check value 0x906E).
    """
    value = crc16(data) ^ 0xFFFF
    return bytes((value & 0xFF, value >> 8))


def fcs_ok(data_with_fcs: bytes) -> bool:
    """Whether a received frame (FCS included, line order) arrived intact."""
    return len(data_with_fcs) >= 3 and crc16(data_with_fcs) == GOOD_RESIDUE


@dataclass(frozen=True)
class Frame:
    """One T.30 control frame: its FCF without the X bit, the X bit, and the FIF."""

    fcf: int
    fif: bytes = b""
    x: bool = False
    final: bool = True

    def encode(self) -> bytes:
        """Line-order bytes without FCS: what AT+FTH=3 takes."""
        control = CONTROL_FINAL if self.final else CONTROL
        return bytes((ADDRESS, control, self.fcf | (X_BIT if self.x else 0))) + self.fif


class FrameError(ValueError):
    """Bytes that are not a T.30 frame (wrong address or control field, or too short)."""


def parse(data: bytes) -> Frame:
    """A frame from line-order bytes as a Class 1 modem reports them, without FCS.

    The X bit is reported separately and cleared from ``fcf``, except in the
    identification frames (DIS/DTC, CSI/CIG, NSF/NSC...) whose first bit is part of the code.
    """
    if len(data) < 3:
        raise FrameError(f"a frame has at least 3 bytes, got {len(data)}")
    if data[0] != ADDRESS:
        raise FrameError(f"address field 0x{data[0]:02X}, expected 0xFF")
    if data[1] not in (CONTROL, CONTROL_FINAL):
        raise FrameError(f"control field 0x{data[1]:02X}, expected 0x03 or 0x13")
    raw = data[2]
    has_x = (raw & ~X_BIT & 0xFF) not in _NO_X_BIT
    return Frame(
        fcf=raw & ~X_BIT & 0xFF if has_x else raw,
        fif=bytes(data[3:]),
        x=has_x and bool(raw & X_BIT),
        final=data[1] == CONTROL_FINAL,
    )
