"""Error correction mode (T.30 Annex A, T.4 Annex A): pages cut into numbered HDLC frames.

A page's coded data is cut into frames of 64 or 256 bytes (the last one padded with
zeros, which every decoder reads as fill); up to 256 frames make a *block* (partial page),
sent as FCD frames each carrying its number, followed by three RCP frames. The receiver
answers the block's PPS with MCF when every frame arrived, or with PPR listing the frames
to send again.

Class 1 modems carry these frames as plain high-speed data (AT+FTM / AT+FRM), so the host
does the HDLC framing itself: flags, zero-bit insertion after five ones, and the FCS. This
module does that in both directions on line-order bytes (see :mod:`.hdlc`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import t4
from .frames import Fcf
from .hdlc import ADDRESS, CONTROL, fcs, fcs_ok

FRAMES_PER_BLOCK = 256
FLAG = "01111110"
PREAMBLE_FLAGS = 8
"""Flags before the first frame: time for the far modem's HDLC receiver to lock on."""
RCP_COUNT = 3


def cut(data: bytes, frame_size: int) -> list[list[bytes]]:
    """A page's data as blocks of frames (each frame exactly ``frame_size`` bytes)."""
    frames = [
        data[start : start + frame_size].ljust(frame_size, b"\x00")
        for start in range(0, len(data), frame_size)
    ] or [bytes(frame_size)]
    return [
        frames[start : start + FRAMES_PER_BLOCK]
        for start in range(0, len(frames), FRAMES_PER_BLOCK)
    ]


def fcd(number: int, payload: bytes) -> bytes:
    """One FCD frame (without FCS): address, control, FCD, frame number, data."""
    return bytes((ADDRESS, CONTROL, Fcf.FCD, number)) + payload


RCP = bytes((ADDRESS, CONTROL, Fcf.RCP))


def _stuffed_bits(frame: bytes) -> str:
    bits = t4.to_bits(frame + fcs(frame))
    # Zero-bit insertion: str.replace scans left to right without overlap, so after each
    # inserted zero the count of ones restarts, exactly as HDLC requires.
    return bits.replace("11111", "111110")


def encode_block(frames: dict[int, bytes]) -> bytes:
    """The high-speed data for some frames of a block (by number), then RCP x 3."""
    parts = [FLAG * PREAMBLE_FLAGS]
    for number in sorted(frames):
        parts.append(_stuffed_bits(fcd(number, frames[number])))
        parts.append(FLAG)
    for _ in range(RCP_COUNT):
        parts.append(_stuffed_bits(RCP))
        parts.append(FLAG)
    parts.append(FLAG)
    return t4.from_bits("".join(parts))


@dataclass(frozen=True)
class Received:
    """What one high-speed burst of ECM data held."""

    frames: dict[int, bytes]
    """Intact FCD frames by number."""
    bad: int
    """Frames whose FCS failed (or that were not FCD/RCP)."""
    rcp: bool
    """Whether an RCP ended the burst."""


def decode_block(data: bytes) -> Received:
    """The intact FCD frames in a burst of high-speed data, and whether RCP was seen."""
    frames: dict[int, bytes] = {}
    bad = 0
    rcp = False
    for segment in t4.to_bits(data).split(FLAG):
        if len(segment) < 32 or "1111111" in segment:
            continue  # idle between flags, or an abort
        bits = segment.replace("111110", "11111")
        if len(bits) % 8:
            bad += 1
            continue
        raw = t4.from_bits(bits)
        if not fcs_ok(raw) or raw[0] != ADDRESS:
            bad += 1
            continue
        body = raw[:-2]
        if body[2] == Fcf.FCD and len(body) > 4:
            frames[body[3]] = body[4:]
        elif body[2] == Fcf.RCP:
            rcp = True
        else:
            bad += 1
    return Received(frames, bad, rcp)
