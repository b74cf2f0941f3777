"""The emulated telephone line: calls between two modems and what travels on them.

No audio is made. What one modem transmits becomes a :class:`Transmission` in the other
modem's inbox, stamped with the wall-clock times its parts reach the far end: the line
time of every bit (bits / bit rate, plus training and flag preambles) divided by the time
scale. Time is what makes the emulation honest: a receiver only hears what starts while
it listens (give or take a short tolerance for normal turn-around), so a host that is late
to AT+FRH or AT+FRM misses the frame or the page, as it would on a real line.

All state lives under one condition variable shared by both modems; every change
notifies it, and every wait re-checks its own predicate.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from workers.fax.emulator.faults import Faults

V21_RATE = 300
FLAG_PREAMBLE = 1.0
"""Seconds of V.21 flags before the first frame of a transmission (T.30: 1 s)."""
ANSWER_TONE = 2.675
"""CED (2.6 s) and the 75 ms pause before the answerer's first flags."""
DIAL_TIME = 1.5
RING_PERIOD = 5.0
"""Seconds between RINGs (iaxmodem: about 5.1)."""

TRAINING: dict[int, float] = {
    24: 0.95,
    48: 0.71,
    72: 0.26,
    96: 0.26,
    73: 1.39,
    97: 1.39,
    121: 1.39,
    145: 1.39,
    74: 0.14,
    98: 0.14,
    122: 0.14,
    146: 0.14,
}
"""Training time (seconds) of each high-speed modulation; short V.17 train is used after
the first page."""

BIT_RATES: dict[int, int] = {
    3: 300,
    24: 2400,
    48: 4800,
    72: 7200,
    96: 9600,
    73: 7200,
    74: 7200,
    97: 9600,
    98: 9600,
    121: 12000,
    122: 12000,
    145: 14400,
    146: 14400,
}


@dataclass
class Item:
    """One frame, or one piece of page data, as it travels: ``start`` when its first bit
    is on the line, ``arrival`` when its last bit reaches the far end (wall clock)."""

    start: float
    arrival: float
    payload: bytes
    good: bool = True


@dataclass
class Transmission:
    """One carrier from one modem: V.21 HDLC frames, or high-speed data at ``mod``."""

    kind: Literal["hdlc", "data"]
    mod: int
    start: float
    ready: float
    items: list[Item] = field(default_factory=list)
    end: float | None = None
    delivered: int = 0
    locked: bool = False
    """The receiver has taken a frame of this carrier: it stays locked on it and gets the
    following frames even when it asks for them a little late, as a real modem does."""
    received: bool = False
    page: int | None = None
    nbytes: int = 0
    line_free: float = 0.0

    def active(self, now: float) -> bool:
        return self.start <= now and (self.end is None or self.end > now)


class Clock:
    """Line time to wall time: ``wall(seconds_of_line_time)``."""

    def __init__(self, scale: float, tolerance: float, min_tolerance: float) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self.tolerance = max(tolerance / scale, min_tolerance)

    def wall(self, line_seconds: float) -> float:
        return line_seconds / self.scale

    @staticmethod
    def now() -> float:
        return time.monotonic()


class Call:
    """One call between two modems, with the faults of the number dialled."""

    def __init__(self, caller: object, callee: object, number: str, faults: Faults) -> None:
        self.caller = caller
        self.callee = callee
        self.number = number
        self.faults = faults
        self.state: Literal["ringing", "up", "down"] = "ringing"
        self.up_at = 0.0
        self.frames = 0
        self.pages = 0
        self.page_bytes = 0
        self.xoff_done = False

    @property
    def down(self) -> bool:
        return self.state == "down"

    def peer(self, modem: object) -> object:
        return self.callee if modem is self.caller else self.caller

    def next_frame_good(self) -> bool:
        """Count a frame on the line; False for the one the ``bad_fcs`` fault corrupts."""
        self.frames += 1
        return self.faults.bad_fcs != self.frames


class Switch:
    """The exchange both modems hang on: numbers, the shared lock, the clock, the faults."""

    def __init__(
        self,
        clock: Clock,
        faults: dict[str, Faults] | None = None,
    ) -> None:
        self.clock = clock
        self.cond = threading.Condition()
        self.faults = dict(faults or {})
        self.modems: dict[str, object] = {}
        self.stopped = False

    def faults_for(self, number: str) -> Faults:
        return self.faults.get(number, Faults())

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
