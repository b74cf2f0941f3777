"""The HDLC frame check sequence (CRC-16/X.25) of T.30 frames.

The modem adds it when sending and checks it when receiving; the host needs it only to
tell whether the last two bytes a modem hands over are the FCS (T.31 modems such as
iaxmodem pass it on after each received frame, others leave it out).
"""

from __future__ import annotations


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def fcs16(frame: bytes) -> bytes:
    """The two FCS bytes of ``frame`` in the order they follow it on the line."""
    crc = 0xFFFF
    for b in frame:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    crc ^= 0xFFFF
    return bytes((crc & 0xFF, crc >> 8))


def has_fcs(data: bytes) -> bool:
    """Whether ``data`` ends with the correct FCS of what precedes it."""
    return len(data) >= 3 and fcs16(data[:-2]) == data[-2:]
