"""The simulated fax machines an emulated modem calls, and what each call left behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from workers.fax.class2.codes import Params


class Behaviour(StrEnum):
    """How the far end of a dialled number behaves."""

    FAX = "fax"
    """Answers as a fax machine and confirms every page."""
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    """Rings out."""
    NO_DIALTONE = "no_dialtone"
    """The local line is dead."""
    VOICE = "voice"
    """A person answers: no fax tones, T.30's T1 runs out."""
    REJECT_PAGE = "reject_page"
    """Answers RTN to page ``page`` (page bad, retrain) and MCF to the others."""
    DROP_PAGE = "drop_page"
    """Hangs up while page ``page`` is on the line: its post-page message gets no answer."""
    TRAIN_FAIL = "train_fail"
    """Answers FTT to every training check, down to 2400 bit/s."""
    SILENT = "silent"
    """The local modem stops responding to anything once this number is dialled."""


FAX_MACHINE_DIS = Params(vr=1, br=5, wd=0, ln=2, df=1, ec=0, bf=0, st=0)
"""A common Group 3 machine: fine, 14400 bit/s, A4 width, unlimited length, MH and MR."""


@dataclass(frozen=True)
class FarEnd:
    behaviour: Behaviour = Behaviour.FAX
    page: int = 0
    """The page (1-based within the call) that REJECT_PAGE and DROP_PAGE act on."""
    remote_id: str = "EMULATED FAX"
    """Its CSI, reported as +FCI."""
    capabilities: Params = FAX_MACHINE_DIS
    """Its DIS, reported as +FIS."""


@dataclass
class CallRecord:
    """One call as the far end saw it; pages are in line order (first bit = LSB)."""

    number: str
    far_end: FarEnd
    local_id: str = ""
    """The caller's TSI (AT+FLI)."""
    session: Params | None = None
    """The DCS the modem sent (the last one, after any retrain)."""
    pages: list[bytes] = field(default_factory=list)
    """Page data received, DLE stuffing removed, one entry per page sent (even rejected)."""
    responses: list[str] = field(default_factory=list)
    """The post-page response to each page: MCF, RTN, or "none" when nobody answered."""
    hangup: int | None = None
    """The +FHS code the call ended with (None while it is up)."""
