"""What a Class 2.0 modem says, as data: hang-up codes, session parameters, reports.

A Class 2.0 modem (ITU-T T.32, which standardised EIA/TIA-592) runs T.30 itself and tells
the host how it went in a handful of responses. This module turns those lines into values
and the values into the fleet's :class:`~faxfleet.messages.Cause`; it does no I/O, so the
driver and the emulator share one reading of the standard.

Rules stated once:

- Class 2.0 writes numbers in **hexadecimal**: ``+FHS:A0`` is hang-up code 0xA0 and a
  resolution bitmap ``VR=10`` is 0x10. (The older Class 2, SP-2388, wrote ``+FHNG:100`` in
  decimal; the same codes became ``+FHS:`` in hex with the same digits below 100.)
- Hang-up codes are grouped by the T.30 phase that failed; a code missing from the table
  still falls in a range, which gives its phase and a cause.
- Session parameters are the T.32 subparameters VR, BR, WD, LN, DF, EC, BF, ST, JP in that
  order, the same list for capabilities (+FCC, +FIS, a remote DIS) and for the session
  actually negotiated (+FCS, the DCS sent).

Source of the code table: the Class 2 hang-up list of EIA/TIA-592 as reproduced by
mgetty's and efax's code tables, in the hex form T.32 uses for Class 2.0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum, StrEnum

from faxfleet.messages import Cause
from workers.render.coding import Coding


class Phase(StrEnum):
    """Where in a call a hang-up happened (T.30 phases, split by direction)."""

    CALL = "call"
    """Call placement and termination, before or after T.30 proper."""
    TX_A = "transmit A"
    TX_B = "transmit B"
    TX_C = "transmit C"
    TX_D = "transmit D"
    RX_B = "receive B"
    RX_C = "receive C"
    RX_D = "receive D"
    RESERVED = "reserved"


@dataclass(frozen=True)
class Hangup:
    """One +FHS code: what it means, which phase failed, and why the fax did not get through.

    ``cause`` is None only for code 00, a normal end of call.
    """

    code: int
    meaning: str
    phase: Phase
    cause: Cause | None

    @property
    def normal(self) -> bool:
        return self.code == 0

    @property
    def text(self) -> str:
        """The code as the modem prints it (two hex digits) and its meaning."""
        return f"+FHS:{self.code:02X} {self.meaning}"


_C = Cause
_TABLE: list[tuple[int, str, Phase, Cause | None]] = [
    (0x00, "normal end of call", Phase.CALL, None),
    (0x01, "ring detected without successful handshake", Phase.CALL, _C.NOT_A_FAX),
    (0x02, "call aborted, from +FK or <CAN>", Phase.CALL, _C.MODEM_ERROR),
    (0x03, "no loop current", Phase.CALL, _C.REMOTE_DISCONNECTED),
    (0x04, "ringback detected, no answer", Phase.CALL, _C.NO_ANSWER),
    (0x05, "ringback detected, no answer without CED", Phase.CALL, _C.NO_ANSWER),
    (0x10, "unspecified transmit phase A error", Phase.TX_A, _C.NO_CARRIER),
    (0x11, "no answer (T.30 T1 timeout)", Phase.TX_A, _C.NOT_A_FAX),
    (0x20, "unspecified transmit phase B error", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x21, "remote cannot receive or send", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x22, "COMREC error in transmit phase B", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x23, "COMREC invalid command received", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x24, "RSPREC error", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x25, "DCS sent three times without response", Phase.TX_B, _C.REMOTE_DISCONNECTED),
    (0x26, "DIS/DTC received three times; DCS not recognised", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x27, "failure to train at 2400 bit/s or the +FMS minimum", Phase.TX_B, _C.TRAINING_FAILED),
    (0x28, "RSPREC invalid response received", Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x40, "unspecified transmit phase C error", Phase.TX_C, _C.MODEM_ERROR),
    (0x43, "DTE to DCE data underflow", Phase.TX_C, _C.MODEM_ERROR),
    (0x50, "unspecified transmit phase D error", Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x51, "RSPREC error", Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x52, "no response to MPS repeated three times", Phase.TX_D, _C.REMOTE_DISCONNECTED),
    (0x53, "invalid response to MPS", Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x54, "no response to EOP repeated three times", Phase.TX_D, _C.REMOTE_DISCONNECTED),
    (0x55, "invalid response to EOP", Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x56, "no response to EOM repeated three times", Phase.TX_D, _C.REMOTE_DISCONNECTED),
    (0x57, "invalid response to EOM", Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x58, "unable to continue after PIN or PIP", Phase.TX_D, _C.PAGE_REJECTED),
    (0x70, "unspecified receive phase B error", Phase.RX_B, _C.PROTOCOL_ERROR),
    (0x71, "RSPREC error", Phase.RX_B, _C.PROTOCOL_ERROR),
    (0x72, "COMREC error", Phase.RX_B, _C.PROTOCOL_ERROR),
    (0x73, "T.30 T2 timeout, expected page not received", Phase.RX_B, _C.REMOTE_DISCONNECTED),
    (0x74, "T.30 T1 timeout after EOM received", Phase.RX_B, _C.REMOTE_DISCONNECTED),
    (0x90, "unspecified receive phase C error", Phase.RX_C, _C.PROTOCOL_ERROR),
    (0x91, "missing EOL after 5 seconds", Phase.RX_C, _C.PROTOCOL_ERROR),
    (0x93, "DCE to DTE buffer overflow", Phase.RX_C, _C.MODEM_ERROR),
    (0x94, "bad CRC or frame (ECM or BFT modes)", Phase.RX_C, _C.PROTOCOL_ERROR),
    (0xA0, "unspecified receive phase D error", Phase.RX_D, _C.PROTOCOL_ERROR),
    (0xA1, "RSPREC invalid response received", Phase.RX_D, _C.PROTOCOL_ERROR),
    (0xA2, "COMREC invalid response received", Phase.RX_D, _C.PROTOCOL_ERROR),
    (0xA3, "unable to continue after PIN or PIP", Phase.RX_D, _C.PROTOCOL_ERROR),
]

HANGUP_CODES: dict[int, Hangup] = {row[0]: Hangup(*row) for row in _TABLE}
"""Every hang-up code T.32 names, by value."""

_RANGES: list[tuple[int, int, Phase, Cause]] = [
    (0x00, 0x0F, Phase.CALL, _C.MODEM_ERROR),
    (0x10, 0x1F, Phase.TX_A, _C.NO_CARRIER),
    (0x20, 0x3F, Phase.TX_B, _C.PROTOCOL_ERROR),
    (0x40, 0x4F, Phase.TX_C, _C.MODEM_ERROR),
    (0x50, 0x6F, Phase.TX_D, _C.PROTOCOL_ERROR),
    (0x70, 0x8F, Phase.RX_B, _C.PROTOCOL_ERROR),
    (0x90, 0x9F, Phase.RX_C, _C.PROTOCOL_ERROR),
    (0xA0, 0xBF, Phase.RX_D, _C.PROTOCOL_ERROR),
    (0xC0, 0xFF, Phase.RESERVED, _C.MODEM_ERROR),
]
"""Code ranges by phase (T.32 reserves the unnamed codes in each range for that phase)."""


def hangup(code: int | str) -> Hangup:
    """The meaning of a hang-up code: an int, or the hex digits a Class 2.0 modem prints."""
    value = int(code, 16) if isinstance(code, str) else code
    if value in HANGUP_CODES:
        return HANGUP_CODES[value]
    for low, high, phase, cause in _RANGES:
        if low <= value <= high:
            return Hangup(value, f"unnamed {phase} code", phase, cause)
    raise ValueError(f"hang-up code out of range: {code!r}")


def class2_hangup(decimal: int) -> Hangup:
    """The meaning of an old Class 2 ``+FHNG:`` code (decimal: 100 is 2.0's A0)."""
    if decimal >= 100:
        return hangup(0xA0 + decimal - 100)
    return hangup(int(str(decimal), 16))


class Ppr(IntEnum):
    """Post-page response codes in +FPS: (what the far end answered to a page)."""

    PARTIAL_PAGE_ERRORS = 0
    MCF = 1
    """Message confirmation: page good."""
    RTN = 2
    """Retrain negative: page bad, retrain."""
    RTP = 3
    """Retrain positive: page good, retrain."""
    PIN = 4
    """Procedure interrupt negative: page bad, operator wanted."""
    PIP = 5
    """Procedure interrupt positive: page good, operator wanted."""

    @property
    def page_good(self) -> bool:
        return self in (Ppr.MCF, Ppr.RTP, Ppr.PIP)


class PostPage(IntEnum):
    """Post-page messages (+FET values), and the in-band byte Class 2.0 ends a page with."""

    MPS = 0
    """Another page of the same document follows."""
    EOM = 1
    """Another document follows (back to phase B)."""
    EOP = 2
    """No more pages: end of procedure."""

    @property
    def dle_code(self) -> bytes:
        """The byte sent after DLE to end page data with this message (T.32 stream codes)."""
        return _PPM_DLE[self]

    @classmethod
    def from_dle_code(cls, code: int) -> PostPage | None:
        for ppm, byte in _PPM_DLE.items():
            if byte[0] == code:
                return ppm
        return None


_PPM_DLE = {PostPage.MPS: b",", PostPage.EOM: b";", PostPage.EOP: b"."}

BIT_RATES = (2400, 4800, 7200, 9600, 12000, 14400)
"""The BR subparameter's values 0..5 as bit rates (V.27 ter, V.29, V.17)."""

PAGE_WIDTHS = (1728, 2048, 2432, 1216, 864)
"""The WD subparameter's values 0..4 as pixels per row."""

VR_FINE = 0x01
"""VR bit: R8 x 7.7 lines/mm (196 lpi, "fine"). Normal (98 lpi) is always supported."""

_DF_CODING = {0: Coding.MH, 1: Coding.MR, 3: Coding.MMR}
_CODING_DF = {coding: df for df, coding in _DF_CODING.items()}


@dataclass(frozen=True)
class Params:
    """The T.32 session subparameters, as capabilities or as one negotiated session.

    As capabilities (a DIS, +FCC, +FIS) VR is a bitmap of resolutions and BR, WD, LN, DF
    the best the station does; as a session (+FCS) each names the one in use.
    """

    vr: int = 0
    br: int = 0
    wd: int = 0
    ln: int = 0
    df: int = 0
    ec: int = 0
    bf: int = 0
    st: int = 0
    jp: int = 0

    @classmethod
    def parse(cls, text: str) -> Params:
        """``"1,5,0,2,0,0,0,0"`` (hex fields; missing or empty fields keep their default)."""
        text = text.strip()
        if not text:
            raise ValueError("empty parameter list")
        values: dict[str, int] = {}
        names = [f.name for f in fields(cls)]
        parts = text.split(",")
        if len(parts) > len(names):
            raise ValueError(f"too many subparameters: {text!r}")
        for name, part in zip(names, parts, strict=False):
            part = part.strip()
            if part:
                values[name] = int(part, 16)
        return cls(**values)

    def format(self, count: int = 8) -> str:
        """The first ``count`` subparameters, comma separated, in hex (8: up to ST)."""
        values = [getattr(self, f.name) for f in fields(self)][:count]
        return ",".join(f"{value:X}" for value in values)

    @property
    def bit_rate(self) -> int:
        return BIT_RATES[self.br] if self.br < len(BIT_RATES) else 33600

    @property
    def fine(self) -> bool:
        return bool(self.vr & VR_FINE)

    @property
    def coding(self) -> Coding:
        """The data format as a coding (raises for uncompressed or JBIG data)."""
        if self.df not in _DF_CODING:
            raise ValueError(f"data format {self.df} is not a T.4/T.6 coding")
        return _DF_CODING[self.df]

    @property
    def width(self) -> int:
        return PAGE_WIDTHS[self.wd] if self.wd < len(PAGE_WIDTHS) else PAGE_WIDTHS[0]

    def with_coding(self, coding: Coding) -> Params:
        return replace(self, df=_CODING_DF[Coding(coding)])


def negotiate(local: Params, remote: Params) -> Params:
    """The session a transmitting modem picks from what its host asked for and the DIS.

    Every value is the lower of the two, except the resolution (fine only if both do it)
    and the scan time, which is the receiver's to set. MMR needs error correction, so
    without ECM on both sides the coding falls back to MR, and 2-D to 1-D likewise.
    """
    ec = min(local.ec, remote.ec)
    df = min(local.df, remote.df)
    if df == 3 and ec == 0:
        df = 1
    if df == 2:
        df = 1
    return Params(
        vr=VR_FINE if local.fine and remote.fine else 0,
        br=min(local.br, remote.br),
        wd=min(local.wd, remote.wd),
        ln=min(local.ln, remote.ln),
        df=df,
        ec=ec,
        bf=min(local.bf, remote.bf),
        st=remote.st,
        jp=0,
    )


# ----------------------------------------------------------------------------------------
# Reports: the information lines a Class 2.0 modem sends during a call


@dataclass(frozen=True)
class Connected:
    """+FCO (2.0) / +FCON (2): the far end is a fax machine."""


@dataclass(frozen=True)
class StationId:
    """+FCI (called station, CSI), +FTI (transmitting station, TSI), +FPI (polling)."""

    kind: str
    id: str


@dataclass(frozen=True)
class ParamsReport:
    """+FIS (remote DIS), +FCS (session DCS), +FTC (remote DTC)."""

    kind: str
    params: Params


@dataclass(frozen=True)
class PageStatus:
    """+FPS: the far end's answer to a page, with line counts when the modem gives them."""

    ppr: Ppr
    lines: int | None = None
    bad_lines: int | None = None


@dataclass(frozen=True)
class PostPageReport:
    """+FET: the post-page message received (the receiving side's view)."""

    ppm: int


@dataclass(frozen=True)
class HangupReport:
    """+FHS (2.0) / +FHNG (2): the call is over."""

    hangup: Hangup


Report = Connected | StationId | ParamsReport | PageStatus | PostPageReport | HangupReport

_STATION_IDS = {"+FCI": "csi", "+FCSI": "csi", "+FTI": "tsi", "+FTSI": "tsi", "+FPI": "cig"}
_PARAMS = {"+FIS": "dis", "+FDIS": "dis", "+FCS": "dcs", "+FDCS": "dcs", "+FTC": "dtc"}


def station_id(text: str) -> str:
    """A T.30 identifier without the quotes and the padding (CSI/TSI are right-justified)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text.strip()


def quote_id(identifier: str) -> str:
    """An identifier for AT+FLI: 20 characters at most, printable, no double quote."""
    cleaned = "".join(ch for ch in identifier if " " <= ch <= "~" and ch != '"')
    return f'"{cleaned[:20]}"'


def parse_report(line: str) -> Report | None:
    """The report a modem line carries, or None when the line is no Class 2 report."""
    line = line.strip()
    if line in ("+FCO", "+FCON"):
        return Connected()
    name, colon, value = line.partition(":")
    if not colon:
        return None
    name = name.strip().upper()
    try:
        if name in _STATION_IDS:
            return StationId(_STATION_IDS[name], station_id(value))
        if name in _PARAMS:
            return ParamsReport(_PARAMS[name], Params.parse(value))
        if name in ("+FPS", "+FPTS"):
            parts = [p.strip() for p in value.split(",")]
            numbers = [int(p, 16) if name == "+FPS" else int(p) for p in parts if p]
            return PageStatus(
                Ppr(numbers[0]),
                numbers[1] if len(numbers) > 1 else None,
                numbers[2] if len(numbers) > 2 else None,
            )
        if name == "+FET":
            return PostPageReport(int(value.strip(), 16))
        if name == "+FHS":
            return HangupReport(hangup(value.strip()))
        if name == "+FHNG":
            return HangupReport(class2_hangup(int(value.strip())))
    except (ValueError, IndexError):
        return None
    return None


def hangup_table_markdown() -> str:
    """The hang-up code table as docs/class2.md shows it (a test keeps the two equal)."""
    rows = ["| +FHS | meaning | phase | cause |", "| --- | --- | --- | --- |"]
    for code in sorted(HANGUP_CODES):
        h = HANGUP_CODES[code]
        cause = h.cause.value if h.cause is not None else "none (success)"
        rows.append(f"| {code:02X} | {h.meaning} | {h.phase.value} | {cause} |")
    rows.append("")
    rows.append("| unnamed codes in | phase | cause |")
    rows.append("| --- | --- | --- |")
    for low, high, phase, cause in _RANGES:
        rows.append(f"| {low:02X}-{high:02X} | {phase.value} | {cause.value} |")
    return "\n".join(rows) + "\n"
