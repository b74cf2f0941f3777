"""T.30 frame codes and the facsimile information fields of DIS, DTC and DCS.

All codes are line-order bytes (see :mod:`.hdlc`) with the X bit cleared: T.30's DCS
"X100 0001" is 0x82 here, 0x83 on the line when the sender has received a DIS.

DIS/DTC say what a machine can do (:class:`Capabilities`); DCS says what the sender chose
(:class:`Parameters`). Both are decoded from and encoded to the bit layout of T.30 Table 2,
where bit *n* is bit ``(n - 1) % 8`` (least significant first) of byte ``(n - 1) // 8``.
Only the bits this fax server acts on are modelled; the rest decode to nothing and encode
as 0, which T.30 defines as "not capable".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from workers.render.coding import Coding


class Fcf(IntEnum):
    """Facsimile control fields (X bit cleared)."""

    # Phase B, from the called station
    DIS = 0x80
    CSI = 0x40
    NSF = 0x20
    # Phase B, polling requests (first bit is part of the code, not an X bit)
    DTC = 0x81
    CIG = 0x41
    NSC = 0x21
    PWD_POLL = 0xC1
    SEP = 0xA1
    # Phase B, from the sender
    DCS = 0x82
    TSI = 0x42
    NSS = 0x22
    SUB = 0xC2
    PWD = 0xA2
    # Phase B responses
    CFR = 0x84
    FTT = 0x44
    # Phase D commands
    EOM = 0x8E
    MPS = 0x4E
    EOP = 0x2E
    PRI_EOM = 0x9E
    PRI_MPS = 0x5E
    PRI_EOP = 0x3E
    # Phase D responses
    MCF = 0x8C
    RTP = 0xCC
    RTN = 0x4C
    PIP = 0xAC
    PIN = 0x2C
    # Any phase
    DCN = 0xFA
    CRP = 0x1A
    FNV = 0xCA
    # Error correction mode (T.30 Annex A, T.4 Annex A)
    PPS = 0xBE
    PPR = 0xBC
    CTC = 0x12
    CTR = 0xC4
    ERR = 0x1C
    RR = 0x6E
    RNR = 0xEC
    EOR = 0xCE
    FCD = 0x06
    RCP = 0x86


PPS_NULL = 0x00
"""PPS sub-FCF of a partial page that is not the end of a page."""

POST_PAGE = (Fcf.MPS, Fcf.EOM, Fcf.EOP, Fcf.PRI_MPS, Fcf.PRI_EOM, Fcf.PRI_EOP)


# --- identifiers ---------------------------------------------------------------------------

IDENT_LENGTH = 20


def encode_ident(ident: str) -> bytes:
    """The FIF of CSI/TSI/CIG: 20 characters, last character first, padded with spaces.

    T.30 sends the number least significant digit first; characters beyond 20 and any
    outside printable ASCII are dropped.
    """
    clean = "".join(ch for ch in ident if " " <= ch <= "~")[:IDENT_LENGTH]
    return clean[::-1].ljust(IDENT_LENGTH).encode("ascii")


def decode_ident(fif: bytes) -> str:
    """The identifier as people write it, from a CSI/TSI/CIG FIF."""
    text = fif[:IDENT_LENGTH].decode("ascii", errors="replace")
    return text[::-1].strip()


# --- modems and rates ----------------------------------------------------------------------


class Rate(Enum):
    """A modem and bit rate for page data; value = (DCS code of bits 11-14, Class 1 mod)."""

    V17_14400 = (0b0001, 145)
    V17_12000 = (0b0101, 121)
    V17_9600 = (0b1001, 97)
    V17_7200 = (0b1101, 73)
    V29_9600 = (0b1000, 96)
    V29_7200 = (0b1100, 72)
    V27_4800 = (0b0100, 48)
    V27_2400 = (0b0000, 24)

    @property
    def dcs_code(self) -> int:
        """Bits 11, 12, 13, 14 of DCS, bit 11 as the most significant of four."""
        return self.value[0]

    @property
    def modulation(self) -> int:
        """The Class 1 ``<mod>`` (AT+FTM / AT+FRM) with long training."""
        return self.value[1]

    @property
    def short_modulation(self) -> int:
        """The ``<mod>`` for page data once the receiver has trained at this rate: V.17's
        short training (T.30: long train for TCF, short for the image data after it);
        other modems have only one training."""
        return self.value[1] + 1 if self.modem == "V17" else self.value[1]

    @property
    def bit_rate(self) -> int:
        return int(self.name.split("_")[1])

    @property
    def modem(self) -> str:
        return self.name.split("_")[0]


FALLBACK: tuple[Rate, ...] = (
    Rate.V17_14400,
    Rate.V17_12000,
    Rate.V17_9600,
    Rate.V17_7200,
    Rate.V29_9600,
    Rate.V29_7200,
    Rate.V27_4800,
    Rate.V27_2400,
)
"""Every rate, fastest first: the order a sender tries them in after each failed training."""

_DIS_MODEMS = {
    # bits 11-14 of DIS/DTC -> modems supported
    0b0000: frozenset({"V27"}),  # V.27 ter fall-back mode (2400 only in strict terms)
    0b0100: frozenset({"V27"}),
    0b1000: frozenset({"V29"}),
    0b1100: frozenset({"V27", "V29"}),
    0b1101: frozenset({"V27", "V29", "V17"}),
}


def _dis_modem_code(modems: frozenset[str]) -> int:
    if "V17" in modems:
        return 0b1101
    if "V29" in modems:
        return 0b1100 if "V27" in modems else 0b1000
    return 0b0100


# --- minimum scan-line time (bits 21-23) ---------------------------------------------------

_SCAN_DIS = {
    # bits 21, 22, 23 -> (ms at 3.85 l/mm, fine lines may take half of it)
    0b000: (20, False),
    0b001: (40, False),
    0b010: (10, False),
    0b100: (5, False),
    0b011: (10, True),
    0b110: (20, True),
    0b101: (40, True),
    0b111: (0, False),
}
_SCAN_DIS_CODE = {value: code for code, value in _SCAN_DIS.items()}
_SCAN_DCS = {0b000: 20, 0b001: 40, 0b010: 10, 0b100: 5, 0b111: 0}
_SCAN_DCS_CODE = {ms: code for code, ms in _SCAN_DCS.items()}


class Length(Enum):
    """Maximum recording length (bits 19-20)."""

    A4 = 0b00
    A4_B4 = 0b10
    UNLIMITED = 0b01


# --- bit fields ----------------------------------------------------------------------------


def _bit(fif: bytes, n: int) -> bool:
    index = (n - 1) // 8
    return index < len(fif) and bool(fif[index] >> ((n - 1) % 8) & 1)


def _field(fif: bytes, first: int, count: int) -> int:
    """Bits ``first .. first + count - 1``, the first one as the most significant."""
    value = 0
    for n in range(first, first + count):
        value = value << 1 | _bit(fif, n)
    return value


class _Bits:
    """A FIF being built: set bits by T.30 number, then extension bits are filled in."""

    def __init__(self) -> None:
        self.bits: set[int] = set()

    def set(self, n: int, on: bool = True) -> None:
        if on:
            self.bits.add(n)

    def field(self, first: int, count: int, value: int) -> None:
        for offset in range(count):
            self.set(first + offset, bool(value >> (count - 1 - offset) & 1))

    def encode(self) -> bytes:
        """At least 3 bytes; bit 24, 32, 40... set in every byte that has a successor."""
        last = max(self.bits, default=1)
        length = max(3, (last + 7) // 8)
        out = bytearray(length)
        for n in self.bits:
            out[(n - 1) // 8] |= 1 << ((n - 1) % 8)
        for index in range(2, length - 1):
            out[index] |= 0x80
        return bytes(out)


# --- DIS / DTC -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What a DIS (or DTC) says its sender can receive. Page width is always 1728 pixels."""

    modems: frozenset[str] = frozenset({"V27", "V29", "V17"})
    fine: bool = True
    mr: bool = True
    mmr: bool = False
    ecm: bool = False
    min_scan_ms: int = 0
    """Minimum time per scan line at standard resolution, in milliseconds."""
    half_for_fine: bool = False
    """Fine lines may take half of ``min_scan_ms`` (T7.7 = 1/2 T3.85)."""
    length: Length = Length.UNLIMITED
    ready_to_receive: bool = True
    ready_to_transmit: bool = False
    ecm_64_preferred: bool = False

    def rates(self) -> tuple[Rate, ...]:
        """The rates of :data:`FALLBACK` this machine can receive, fastest first."""
        return tuple(rate for rate in FALLBACK if rate.modem in self.modems)

    def scan_time_ms(self, fine: bool) -> int:
        """The minimum scan-line time at a resolution."""
        if fine and self.half_for_fine:
            return self.min_scan_ms // 2
        return self.min_scan_ms

    def encode(self) -> bytes:
        """The DIS/DTC FIF."""
        bits = _Bits()
        bits.set(7, self.ecm_64_preferred)
        bits.set(9, self.ready_to_transmit)
        bits.set(10, self.ready_to_receive)
        bits.field(11, 4, _dis_modem_code(self.modems))
        bits.set(15, self.fine)
        bits.set(16, self.mr)
        bits.field(19, 2, self.length.value)
        key = (self.min_scan_ms, self.half_for_fine)
        if key not in _SCAN_DIS_CODE:
            raise ValueError(f"no DIS code for a minimum scan-line time of {key}")
        bits.field(21, 3, _SCAN_DIS_CODE[key])
        bits.set(27, self.ecm)
        bits.set(31, self.mmr and self.ecm)
        return bits.encode()

    @classmethod
    def decode(cls, fif: bytes) -> Capabilities:
        """From a DIS/DTC FIF (at least 3 bytes). Unknown modem codes read as V.27 ter only."""
        if len(fif) < 3:
            raise ValueError(f"a DIS FIF has at least 3 bytes, got {len(fif)}")
        scan_ms, half = _SCAN_DIS[_field(fif, 21, 3)]
        length_code = _field(fif, 19, 2)
        ecm = _bit(fif, 27)
        return cls(
            modems=_DIS_MODEMS.get(_field(fif, 11, 4), frozenset({"V27"})),
            fine=_bit(fif, 15),
            mr=_bit(fif, 16),
            mmr=ecm and _bit(fif, 24) and _bit(fif, 31),
            ecm=ecm,
            min_scan_ms=scan_ms,
            half_for_fine=half,
            length=Length(length_code) if length_code != 0b11 else Length.A4,
            ready_to_receive=_bit(fif, 10),
            ready_to_transmit=_bit(fif, 9),
            ecm_64_preferred=_bit(fif, 7),
        )


# --- DCS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameters:
    """What a DCS commands: the session the sender chose from the receiver's DIS."""

    rate: Rate
    fine: bool = False
    coding: Coding = Coding.MH
    ecm: bool = False
    ecm_frame_size: int = 256
    min_scan_ms: int = 0
    """Minimum scan-line time for lines at the chosen resolution, in milliseconds."""
    length: Length = Length.A4

    def __post_init__(self) -> None:
        if self.coding is Coding.MMR and not self.ecm:
            raise ValueError("T.6 (MMR) coding needs error correction mode")
        if self.ecm_frame_size not in (64, 256):
            raise ValueError(f"ECM frames are 64 or 256 bytes, not {self.ecm_frame_size}")
        if self.min_scan_ms not in _SCAN_DCS_CODE:
            raise ValueError(f"no DCS code for a minimum scan-line time of {self.min_scan_ms}")

    def encode(self) -> bytes:
        """The DCS FIF."""
        bits = _Bits()
        bits.set(10)  # receive the document
        bits.field(11, 4, self.rate.dcs_code)
        bits.set(15, self.fine)
        bits.set(16, self.coding is Coding.MR)
        bits.field(19, 2, self.length.value)
        bits.field(21, 3, _SCAN_DCS_CODE[self.min_scan_ms])
        bits.set(27, self.ecm)
        bits.set(28, self.ecm and self.ecm_frame_size == 64)
        bits.set(31, self.coding is Coding.MMR)
        return bits.encode()

    @classmethod
    def decode(cls, fif: bytes) -> Parameters:
        """From a DCS FIF; ValueError when it names no rate or an impossible combination."""
        if len(fif) < 3:
            raise ValueError(f"a DCS FIF has at least 3 bytes, got {len(fif)}")
        code = _field(fif, 11, 4)
        rate = next((rate for rate in Rate if rate.dcs_code == code), None)
        if rate is None:
            raise ValueError(f"DCS names no data rate (bits 11-14 = {code:04b})")
        scan_code = _field(fif, 21, 3)
        if scan_code not in _SCAN_DCS:
            raise ValueError(f"DCS minimum scan-line code {scan_code:03b} is not defined")
        ecm = _bit(fif, 27)
        if ecm and _bit(fif, 24) and _bit(fif, 31):
            coding = Coding.MMR
        elif _bit(fif, 16):
            coding = Coding.MR
        else:
            coding = Coding.MH
        length_code = _field(fif, 19, 2)
        return cls(
            rate=rate,
            fine=_bit(fif, 15),
            coding=coding,
            ecm=ecm,
            ecm_frame_size=64 if ecm and _bit(fif, 28) else 256,
            min_scan_ms=_SCAN_DCS[scan_code],
            length=Length(length_code) if length_code != 0b11 else Length.A4,
        )


# --- ECM fields ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pps:
    """The FIF of a PPS: which post-page command it carries and what was sent."""

    command: int
    """PPS_NULL, or the FCF (X bit cleared) of MPS, EOM, EOP or a PRI- variant."""
    page: int
    block: int
    frames: int
    """Frames in the partial page (1 to 256)."""

    def encode(self) -> bytes:
        return bytes((self.command, self.page & 0xFF, self.block & 0xFF, self.frames - 1))

    @classmethod
    def decode(cls, fif: bytes) -> Pps:
        if len(fif) < 4:
            raise ValueError(f"a PPS FIF has 4 bytes, got {len(fif)}")
        return cls(fif[0] & 0xFE, fif[1], fif[2], fif[3] + 1)


def encode_ppr(missing: set[int] | frozenset[int]) -> bytes:
    """The PPR FIF: 256 bits, bit *n* (LSB first) set when frame *n* must be sent again."""
    out = bytearray(32)
    for number in missing:
        out[number // 8] |= 1 << (number % 8)
    return bytes(out)


def decode_ppr(fif: bytes) -> frozenset[int]:
    """Frame numbers a PPR asks for."""
    return frozenset(
        index * 8 + bit
        for index, byte in enumerate(fif[:32])
        for bit in range(8)
        if byte >> bit & 1
    )
