"""DLE framing of the data a Class 1 modem and its host exchange in data mode.

Inside HDLC frames and page data, the byte DLE (0x10) introduces a control pair:
``DLE ETX`` ends the data, ``DLE DLE`` stands for one data byte 0x10. Both directions use
the same rule, so the sender doubles every DLE (:func:`stuff`) and the receiver undoes it
while watching for the end (:class:`Unstuffer`). The receiver is incremental because data
arrives in arbitrary pieces: a DLE may be the last byte of one read and its partner the
first byte of the next.
"""

from __future__ import annotations

DLE = 0x10
ETX = 0x03
SUB = 0x1A
END = bytes((DLE, ETX))
"""What ends a frame or a page in either direction."""


def stuff(data: bytes) -> bytes:
    """Double every DLE so that the data can never contain a premature ``DLE ETX``."""
    return data.replace(b"\x10", b"\x10\x10")


class Unstuffer:
    """Undoes :func:`stuff` on pieces of a stream and notices ``DLE ETX``.

    ``feed`` returns the data bytes found in the piece; once the end has been seen,
    :attr:`done` is true and :attr:`rest` holds whatever followed ``DLE ETX`` in the same
    piece (usually the modem's result code), which the caller must not lose. ``DLE SUB``
    (two DLEs, an abbreviation some modems use) becomes two data DLEs; any other pair is
    a control code that carries no data and is dropped.
    """

    def __init__(self) -> None:
        self.done = False
        self.rest = b""
        self._pending_dle = False

    def feed(self, piece: bytes) -> bytes:
        if self.done:
            self.rest += piece
            return b""
        out = bytearray()
        i = 0
        n = len(piece)
        while i < n:
            if self._pending_dle:
                self._pending_dle = False
                code = piece[i]
                i += 1
                if code == DLE:
                    out.append(DLE)
                elif code == ETX:
                    self.done = True
                    self.rest = piece[i:]
                    return bytes(out)
                elif code == SUB:
                    out += b"\x10\x10"
                continue
            j = piece.find(DLE, i)
            if j < 0:
                out += piece[i:]
                break
            out += piece[i:j]
            self._pending_dle = True
            i = j + 1
        return bytes(out)
