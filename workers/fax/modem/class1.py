"""Class 1 (and Class 1.0) fax modem primitives: the moves the T.30 engine makes.

A Class 1 modem only modulates: the host sends and receives each HDLC frame
(AT+FTH/AT+FRH, V.21 at 300 bit/s) and each stretch of page data (AT+FTM/AT+FRM at the
negotiated modulation), and runs the T.30 protocol itself. Each method here is one such
move, returns a plain status and leaves the modem in command mode, except for the two
states Class 1 defines after a call is set up: after ATD the modem is already receiving
V.21 frames, and after ATA it is already sending them; the first receive/send after those
skips its AT+FRH/AT+FTH accordingly.

Frames travel without their FCS (the modem adds and checks it), bytes exactly as on the
line: address 0xFF, control 0x03 (0x13 on the last frame of a transmission), FCF, FIF.
Page data is in line bit order (the first bit sent is the least significant of each byte).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal

from faxfleet.log import get_logger
from workers.fax.modem.at import AtPort, AtResponse, AtTimeout, ModemNotResponding
from workers.fax.modem.dle import END, Unstuffer, stuff
from workers.fax.t30.hdlc import fcs_ok

HDLC_FINAL = 0x10
"""The bit in the control byte (0x13 rather than 0x03) that marks a transmission's last
frame: after it the modem drops the carrier and answers OK instead of CONNECT."""


FRAME_TIMEOUT = 10.0
"""Seconds from CONNECT to the end of a frame: the longest V.21 frames (NSF) take ~3 s."""


class Modulation(IntEnum):
    """The ``<mod>`` codes of AT+FTM/AT+FRM (T.31 table)."""

    V21 = 3
    V27TER_2400 = 24
    V27TER_4800 = 48
    V29_7200 = 72
    V29_9600 = 96
    V17_7200 = 73
    V17_7200_SHORT = 74
    V17_9600 = 97
    V17_9600_SHORT = 98
    V17_12000 = 121
    V17_12000_SHORT = 122
    V17_14400 = 145
    V17_14400_SHORT = 146

    @property
    def bit_rate(self) -> int:
        return _BIT_RATES[self]


_BIT_RATES = {
    Modulation.V21: 300,
    Modulation.V27TER_2400: 2400,
    Modulation.V27TER_4800: 4800,
    Modulation.V29_7200: 7200,
    Modulation.V29_9600: 9600,
    Modulation.V17_7200: 7200,
    Modulation.V17_7200_SHORT: 7200,
    Modulation.V17_9600: 9600,
    Modulation.V17_9600_SHORT: 9600,
    Modulation.V17_12000: 12000,
    Modulation.V17_12000_SHORT: 12000,
    Modulation.V17_14400: 14400,
    Modulation.V17_14400_SHORT: 14400,
}


class CallStatus(StrEnum):
    OK = "ok"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    NO_CARRIER = "no_carrier"
    NO_DIALTONE = "no_dialtone"
    ERROR = "error"
    TIMEOUT = "timeout"
    NOT_RESPONDING = "not_responding"


_RESULT_STATUS = {
    "OK": CallStatus.OK,
    "CONNECT": CallStatus.OK,
    "BUSY": CallStatus.BUSY,
    "NO ANSWER": CallStatus.NO_ANSWER,
    "NO CARRIER": CallStatus.NO_CARRIER,
    "NO DIALTONE": CallStatus.NO_DIALTONE,
    "NO DIAL TONE": CallStatus.NO_DIALTONE,
}


def _status(resp: AtResponse) -> CallStatus:
    for code, status in _RESULT_STATUS.items():
        if resp.is_(code):
            return status
    return CallStatus.ERROR


ReceiveStatus = Literal["ok", "bad_fcs", "timeout", "no_carrier", "fcerror", "error"]


@dataclass(frozen=True)
class HdlcResult:
    """One received frame (without FCS). ``bad_fcs`` still carries the damaged frame."""

    status: ReceiveStatus
    frame: bytes | None = None


@dataclass(frozen=True)
class DataResult:
    status: ReceiveStatus
    data: bytes = b""


@dataclass(frozen=True)
class ModemInfo:
    """What a modem says about itself."""

    identity: list[str] = field(default_factory=list)
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    classes: tuple[str, ...] = ()
    transmit: frozenset[Modulation] = frozenset()
    receive: frozenset[Modulation] = frozenset()

    @property
    def class1(self) -> bool:
        return "1" in self.classes or "1.0" in self.classes


def _parse_list(lines: list[str]) -> list[str]:
    """``(0,1,1.0)`` or ``0,1,1.0`` or ``+FCLASS: 0,1`` into its items; ranges kept whole."""
    text = ",".join(lines)
    text = re.sub(r"^\+F[A-Z]+:\s*", "", text)
    return [p.strip() for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]


def _parse_modulations(lines: list[str]) -> frozenset[Modulation]:
    known = {m.value for m in Modulation}
    out: set[Modulation] = set()
    for item in _parse_list(lines):
        if "-" in item:
            lo, _, hi = item.partition("-")
            if lo.isdigit() and hi.isdigit():
                out |= {Modulation(v) for v in known if int(lo) <= v <= int(hi)}
        elif item.isdigit() and int(item) in known:
            out.add(Modulation(int(item)))
    return frozenset(out)


def _line_seconds(nbytes: int, bit_rate: int) -> float:
    return nbytes * 8 / bit_rate


class Class1Modem:
    """Class 1 primitives over one :class:`AtPort`.

    Timeouts for transmissions are computed from the line time of what is sent, plus a
    margin, so a modem that stops talking mid-frame is noticed, not waited on forever.
    """

    ABORT = b"\x18"
    """Sent to abort a receive that waits too long: any character does, this one is never
    mistaken for the start of a command."""

    def __init__(self, port: AtPort, *, fax_class: str = "1") -> None:
        self.port = port
        self.fax_class = fax_class
        self._mode: Literal["command", "rx_hdlc", "tx_hdlc"] = "command"
        self.fcs_included: bool | None = None
        """Whether this modem passes each received frame's FCS on (T.31 modems such as
        iaxmodem do); learnt from the first good frame."""
        self._log = get_logger("faxfleet.modem")

    # -- setup -----------------------------------------------------------------------

    def probe(self) -> ModemInfo:
        """Identify the modem and what it can do; leaves it in fax Class 1 (or 1.0)."""
        p = self.port
        p.command("ATE0V1Q0")
        identity = p.command("ATI", timeout=3).lines
        classes = tuple(_parse_list(p.command("AT+FCLASS=?").lines))

        def query(cmd: str) -> str:
            try:
                resp = p.command(cmd, timeout=3)
            except AtTimeout:
                return ""
            return " ".join(resp.lines).strip('" ') if resp.ok else ""

        self.fax_class = "1.0" if "1.0" in classes else "1"
        manufacturer, model, revision = "", "", ""
        tx: frozenset[Modulation] = frozenset()
        rx: frozenset[Modulation] = frozenset()
        if p.command(f"AT+FCLASS={self.fax_class}").ok:
            manufacturer = query("AT+FMI?")
            model = query("AT+FMM?")
            revision = query("AT+FMR?")
            tx = _parse_modulations(p.command("AT+FTM=?").lines)
            rx = _parse_modulations(p.command("AT+FRM=?").lines)
        info = ModemInfo(identity, manufacturer, model, revision, classes, tx, rx)
        self._log.info(
            "modem probed",
            line=p.name,
            model=model or " ".join(identity),
            classes=",".join(classes),
            tx=",".join(str(int(m)) for m in sorted(tx)),
        )
        return info

    def _fax_mode(self) -> None:
        self.port.command(f"AT+FCLASS={self.fax_class}")

    # -- calls -----------------------------------------------------------------------

    def dial(self, dial_string: str, timeout: float = 90.0) -> CallStatus:
        """Dial; on CONNECT the modem is receiving the called side's V.21 frames."""
        self._fax_mode()
        number = dial_string if dial_string[:1].upper() in ("T", "P") else "T" + dial_string
        status = self._setup(f"ATD{number}", timeout)
        if status is CallStatus.OK:
            self._mode = "rx_hdlc"
        return status

    def answer(self, timeout: float = 30.0) -> CallStatus:
        """Answer a ringing call; on CONNECT the modem is sending V.21 (our DIS goes next)."""
        self._fax_mode()
        status = self._setup("ATA", timeout)
        if status is CallStatus.OK:
            self._mode = "tx_hdlc"
        return status

    def _setup(self, cmd: str, timeout: float) -> CallStatus:
        try:
            status = _status(self.port.command(cmd, timeout=timeout))
        except AtTimeout:
            self._abort_to_command()
            return CallStatus.TIMEOUT
        self._log.info("call setup", line=self.port.name, cmd=cmd, status=str(status))
        return status

    def hangup(self) -> CallStatus:
        self._settle()
        try:
            return _status(self.port.command("ATH0", timeout=10))
        except AtTimeout:
            return CallStatus.TIMEOUT

    def reset(self) -> CallStatus:
        """Recover the modem (see :meth:`AtPort.reset`) and put it back into fax mode."""
        self._mode = "command"
        try:
            self.port.reset()
            self._fax_mode()
        except (ModemNotResponding, AtTimeout):
            return CallStatus.NOT_RESPONDING
        return CallStatus.OK

    def _settle(self) -> None:
        """Leave the state a call setup left the modem in, when the host wants something
        else first: a pending V.21 receive is aborted, a pending V.21 transmit is ended
        with an empty frame."""
        if self._mode == "rx_hdlc":
            self._abort_to_command()
        elif self._mode == "tx_hdlc":
            self.port.write(END)
            self._drain_result(5.0)
        self._mode = "command"

    def _abort_to_command(self) -> None:
        """Abort whatever the modem waits for (any character does) and expect its OK."""
        self.port.write(self.ABORT)
        deadline = time.monotonic() + 3.0
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line is None or line in ("OK", "NO CARRIER", "ERROR"):
                break
        self._mode = "command"

    # -- HDLC frames -----------------------------------------------------------------

    def send_hdlc(self, frames: Sequence[bytes]) -> CallStatus:
        """Send ``frames`` as one V.21 transmission; the last one should carry the final
        bit (control 0x13), after which the modem drops the carrier and answers OK."""
        p = self.port
        if self._mode == "rx_hdlc":
            self._settle()
        if self._mode != "tx_hdlc":
            try:
                resp = p.command("AT+FTH=3", timeout=5)
            except AtTimeout:
                self._mode = "command"
                return CallStatus.TIMEOUT
            if not resp.is_("CONNECT"):
                self._mode = "command"
                return _status(resp) if not resp.is_("OK") else CallStatus.ERROR
        self._mode = "command"
        # The first frame waits behind a second of flags; each frame takes its bits at 300.
        margin = 5.0 + 1.0
        for i, frame in enumerate(frames):
            last = i == len(frames) - 1
            p.write(stuff(frame) + END)
            timeout = margin + _line_seconds(len(frame) + 4, 300) * 1.5
            margin = 5.0
            try:
                resp = self._result(timeout)
            except AtTimeout:
                return CallStatus.TIMEOUT
            if resp.is_("CONNECT"):
                if last:
                    # No final bit on the last frame: the carrier stays up and the next
                    # send_hdlc continues this transmission.
                    self._mode = "tx_hdlc"
                continue
            status = _status(resp)
            if status is CallStatus.OK and not last:
                return CallStatus.ERROR  # the modem ended the transmission early
            return status
        return CallStatus.OK

    def _result(self, timeout: float) -> AtResponse:
        """The result code the modem sends by itself (after a frame, after data)."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line is None:
                break
            if line in ("OK", "ERROR", "NO CARRIER", "+FCERROR") or line.startswith("CONNECT"):
                return AtResponse(line, lines)
            lines.append(line)
        raise AtTimeout("<result>", lines, timeout)

    def receive_hdlc(self, timeout: float) -> HdlcResult:
        """Receive one frame (AT+FRH=3); ``timeout`` bounds the wait for its carrier."""
        p = self.port
        if self._mode == "rx_hdlc":
            self._mode = "command"
            # After ATD the modem already sent CONNECT: the frame itself comes next.
            return self._read_frame(timeout)
        self._mode = "command"
        try:
            resp = p.command("AT+FRH=3", timeout=timeout)
        except AtTimeout:
            return self._abort_receive_hdlc()
        if resp.is_("CONNECT"):
            return self._read_frame(FRAME_TIMEOUT)
        if resp.is_("NO CARRIER"):
            return HdlcResult("no_carrier")
        if resp.is_("+FCERROR"):
            return HdlcResult("fcerror")
        return HdlcResult("error")

    def _abort_receive_hdlc(self) -> HdlcResult:
        """Cancel a receive that timed out. The frame may have started arriving in the
        meantime: if the modem answers CONNECT rather than OK, the frame is taken."""
        self.port.write(self.ABORT)
        deadline = time.monotonic() + 3.0
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line is None or line in ("OK", "ERROR"):
                break
            if line == "NO CARRIER":
                return HdlcResult("no_carrier")
            if line.startswith("CONNECT"):
                return self._read_frame(FRAME_TIMEOUT)
        return HdlcResult("timeout")

    def _read_frame(self, timeout: float) -> HdlcResult:
        """Frame bytes up to DLE ETX, then OK (good FCS) or ERROR (bad FCS)."""
        p = self.port
        unstuffer = Unstuffer()
        frame = bytearray()
        deadline = time.monotonic() + timeout
        while not unstuffer.done:
            if not frame and time.monotonic() >= deadline:
                return self._abort_receive_hdlc()
            chunk = p.read(4096, timeout=max(0.05, deadline - time.monotonic()))
            if not chunk:
                if time.monotonic() >= deadline:
                    if not frame:
                        return self._abort_receive_hdlc()
                    return HdlcResult("timeout", bytes(frame))
                continue
            # Before any frame byte, a result code can arrive instead of a frame.
            if not frame and not unstuffer.done and chunk[:1] in (b"\r", b"\n"):
                p.unread(chunk)
                line = p.read_line(max(0.05, deadline - time.monotonic()))
                if line == "NO CARRIER":
                    return HdlcResult("no_carrier")
                if line in ("ERROR", "+FCERROR", "OK"):
                    return HdlcResult("error" if line != "+FCERROR" else "fcerror")
                continue
            frame += unstuffer.feed(chunk)
        p.unread(unstuffer.rest)
        try:
            resp = self._result(5.0)
        except AtTimeout:
            return HdlcResult("timeout", bytes(frame))
        if resp.is_("OK"):
            if self.fcs_included is None:
                self.fcs_included = fcs_ok(bytes(frame))
            return HdlcResult("ok", self._without_fcs(bytes(frame)))
        if resp.is_("ERROR"):
            return HdlcResult("bad_fcs", self._without_fcs(bytes(frame)))
        if resp.is_("NO CARRIER"):
            return HdlcResult("no_carrier", bytes(frame) or None)
        return HdlcResult("error", bytes(frame))

    def _without_fcs(self, frame: bytes) -> bytes:
        """The frame without the FCS the modem may have passed on. Before the first good
        frame has shown which kind of modem this is, a damaged frame is assumed to carry
        it, as T.31 says it should."""
        if self.fcs_included is False or len(frame) < 5:
            return frame
        return frame[:-2]

    # -- page data and silence -------------------------------------------------------

    def send_data(self, mod: Modulation, data: bytes) -> CallStatus:
        """Send ``data`` (line bit order) at ``mod``: training, data, then carrier off."""
        p = self.port
        self._settle()
        try:
            resp = p.command(f"AT+FTM={int(mod)}", timeout=5)
        except AtTimeout:
            return CallStatus.TIMEOUT
        if not resp.is_("CONNECT"):
            return _status(resp) if not resp.is_("OK") else CallStatus.ERROR
        try:
            complete = p.send_stream(stuff(data) + END)
        except AtTimeout:
            return self._recover_after_send()
        if not complete:
            p.write(END)
            return self._status_after_send(10.0)
        return self._status_after_send(10.0 + _line_seconds(len(data), mod.bit_rate) * 1.5)

    def _status_after_send(self, timeout: float) -> CallStatus:
        try:
            resp = self._result(timeout)
        except AtTimeout:
            return CallStatus.TIMEOUT
        return _status(resp)

    def _recover_after_send(self) -> CallStatus:
        self.port.write(END)
        return CallStatus.TIMEOUT

    def receive_data(self, mod: Modulation, timeout: float) -> DataResult:
        """Receive one stretch of data at ``mod`` (AT+FRM), up to the carrier's end.

        ``timeout`` bounds the wait for the carrier; once data flows, a gap of more than
        ten seconds with nothing from the modem ends the receive as a timeout.
        """
        p = self.port
        self._settle()
        try:
            resp = p.command(f"AT+FRM={int(mod)}", timeout=timeout)
        except AtTimeout:
            return self._abort_receive_data()
        if resp.is_("+FCERROR"):
            return DataResult("fcerror")
        if resp.is_("NO CARRIER"):
            return DataResult("no_carrier")
        if not resp.is_("CONNECT"):
            return DataResult("error")
        unstuffer = Unstuffer()
        data = bytearray()
        while not unstuffer.done:
            chunk = p.read(65536, timeout=10.0)
            if not chunk:
                p.write(self.ABORT)
                self._drain_result(3.0)
                return DataResult("timeout", bytes(data))
            data += unstuffer.feed(chunk)
        p.unread(unstuffer.rest)
        try:
            final = self._result(5.0)
        except AtTimeout:
            return DataResult("timeout", bytes(data))
        if final.is_("NO CARRIER") or final.is_("OK"):
            return DataResult("ok", bytes(data))
        return DataResult("error", bytes(data))

    def _abort_receive_data(self) -> DataResult:
        self.port.write(self.ABORT)
        line = self._drain_result(3.0)
        if line == "+FCERROR":
            return DataResult("fcerror")
        if line == "NO CARRIER":
            return DataResult("no_carrier")
        return DataResult("timeout")

    def _drain_result(self, timeout: float) -> str | None:
        """Skip data up to the next result code (after an abort) and return it."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line in ("OK", "ERROR", "NO CARRIER", "+FCERROR"):
                return line
            if line is None:
                return None
        return None

    def send_silence(self, ms: int) -> CallStatus:
        """Keep the line silent for ``ms`` (AT+FTS, in units of 10 ms, at most 2.55 s
        per command: longer silences take several)."""
        tens = max(0, round(ms / 10))
        while True:
            step = min(tens, 255)
            status = self._timed(f"AT+FTS={step}", step * 10)
            tens -= step
            if status is not CallStatus.OK or tens <= 0:
                return status

    def wait_silence(self, ms: int) -> CallStatus:
        """Wait until the far end has been silent for ``ms`` (AT+FRS, units of 10 ms)."""
        return self._timed(f"AT+FRS={max(0, round(ms / 10))}", ms)

    def _timed(self, cmd: str, ms: int) -> CallStatus:
        self._settle()
        try:
            return _status(self.port.command(cmd, timeout=5 + ms / 1000))
        except AtTimeout:
            self._abort_to_command()
            return CallStatus.TIMEOUT
