"""Send a fax through a Class 2.0 modem (ITU-T T.32): the modem runs T.30, we feed it pages.

One call, in the order T.32 lays out for a transmitting host:

1. Set the modem up: Class 2.0, XON/XOFF flow control, the bit order of page data
   (AT+FBO), reporting of the far end's identity and parameters (AT+FNR), the local
   identifier (AT+FLI), our capabilities (AT+FCC) and this document's session (AT+FIS).
2. ``ATD``: the modem dials and runs phase B up to the far end's DIS. ``+FCO`` says a fax
   machine answered, ``+FCI`` names it, ``+FIS`` gives its capabilities, ``OK`` ends it.
3. For each page ``AT+FDT``: the first one makes the modem send DCS and train (``+FCS``
   reports the session chosen); ``CONNECT`` asks for the page. The page goes out coded
   as the session says, DLE-stuffed, and ends with ``DLE`` + the post-page message
   (``,`` MPS, ``.`` EOP). The far end's answer comes back as ``+FPS:<ppr>`` and ``OK``
   (page good) or ``ERROR`` (page bad); after EOP the modem hangs up with ``+FHS:00``.
4. Any ``+FHS:<code>`` ends the call; its code says why (:mod:`.codes` maps it to a cause).

A rejected page (RTN) ends the call by default: the fax fleet retries the attempt later
from the first unconfirmed page. With ``rtn_retries`` the page is sent again in the same
call after the modem retrains (usually one step slower), as T.30 allows.
Older Class 2 hosts end a page with ``DLE ETX`` and ``AT+FET=<ppm>``; ``post_page="fet"``
does that for modems that need it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from faxfleet.log import get_logger
from faxfleet.messages import Cause
from workers.fax.class2.codes import (
    Connected,
    Hangup,
    HangupReport,
    PageStatus,
    Params,
    ParamsReport,
    PostPage,
    Ppr,
    StationId,
    hangup,
    parse_report,
    quote_id,
)
from workers.fax.class2.pages import page_data, page_resolution
from workers.fax.modem.at import AtPort, AtResponse, AtTimeout, ModemNotResponding
from workers.lines.base import CallHooks
from workers.render.tiff import TiffError

DLE = b"\x10"
ETX = b"\x03"

_DIAL_FAILURES = {
    "BUSY": Cause.BUSY,
    "NO ANSWER": Cause.NO_ANSWER,
    "NO CARRIER": Cause.NO_CARRIER,
    "NO DIALTONE": Cause.NO_DIALTONE,
    "NO DIAL TONE": Cause.NO_DIALTONE,
    "CONNECT": Cause.NOT_A_FAX,
    "ERROR": Cause.MODEM_ERROR,
}
"""Final results of ATD that end the call before any fax handshake (CONNECT: a data
modem answered)."""

_LINE_ENDS = ("OK", "ERROR", "NO CARRIER")

_OPTIONAL_SETUP = frozenset({"AT+FIE=0", "AT+FPP=0"})

_FLOW_CONTROL = {"none": 0, "xonxoff": 1, "rtscts": 2}
"""AT+FLO values for the serial line's flow control."""


SENDER_CAPABILITIES = Params(vr=1, br=5, wd=0, ln=2, df=1, ec=0, bf=0, st=0)


@dataclass(frozen=True)
class Class2Config:
    """How to drive one modem. Timeouts are in seconds of wall time."""

    capabilities: Params = SENDER_CAPABILITIES
    """What we send (AT+FCC): fine, 14400 bit/s, A4 width, any length, MH and MR."""
    bit_order_reversed: bool = False
    """AT+FBO=1: hand page data MSB first and let the modem reverse it."""
    post_page: Literal["dle", "fet"] = "dle"
    """End pages with T.32's DLE codes, or with DLE ETX and AT+FET (older Class 2)."""
    command_timeout: float = 5.0
    dial_timeout: float = 120.0
    """ATD until the far end's DIS (ringing, answer, CED, DIS)."""
    train_timeout: float = 60.0
    """AT+FDT until CONNECT (DCS, training, possibly at every rate down to 2400)."""
    page_timeout: float = 90.0
    """From the end of page data to the far end's answer (line drain, then 3 x T4)."""
    hangup_timeout: float = 3.0
    """How long to wait for the final result that follows +FHS."""
    rtn_retries: int = 0
    """How often a page the far end rejects (RTN) is sent again in the same call, after
    the modem retrains. 0 ends the call: the fleet's retry resends from that page."""
    reset_patience: float = 15.0
    reset_guard: float = 1.1
    init_commands: tuple[str, ...] = ()
    """Extra setup commands for a particular modem, sent after the standard ones."""


@dataclass
class SendResult:
    """How a call went: pages confirmed in this call, and why it ended."""

    ok: bool
    pages_confirmed: int
    connected: bool
    cause: Cause | None = None
    detail: str | None = None
    remote_id: str | None = None
    phase: str = "A"
    """T.30 phase the call ended in: A (call setup), B, C (page data), D (post page), E."""
    hangup: Hangup | None = None
    remote_capabilities: Params | None = None
    session: Params | None = None
    page_statuses: list[PageStatus] = field(default_factory=list)


class _CallEnded(Exception):
    def __init__(self, cause: Cause | None, detail: str, hangup: Hangup | None = None) -> None:
        super().__init__(detail)
        self.cause = cause
        self.detail = detail
        self.hangup = hangup


class Class2Driver:
    """Sends faxes through one Class 2.0 modem on an open :class:`AtPort`."""

    def __init__(self, port: AtPort, config: Class2Config | None = None) -> None:
        self.port = port
        self.config = config or Class2Config()
        self._log = get_logger("faxfleet.class2")

    # -- commands --------------------------------------------------------------------

    def _command(self, cmd: str, timeout: float | None = None) -> AtResponse:
        return self.port.command(
            cmd, timeout=timeout or self.config.command_timeout, finals=("+FHS:",)
        )

    def _require_ok(self, cmd: str) -> None:
        response = self._command(cmd)
        if response.final.startswith("+FHS:"):
            self._ended_by(response.final)
        if not response.ok:
            raise _CallEnded(Cause.MODEM_ERROR, f"{cmd} answered {response.final}")

    def _ended_by(self, final: str) -> NoReturn:
        """Raise for a +FHS line: the modem hung up; its trailing result is read first."""
        report = parse_report(final)
        code = report.hangup if isinstance(report, HangupReport) else hangup(0x50)
        self._drain_final()
        if code.normal:
            raise _CallEnded(None, code.text, code)
        raise _CallEnded(code.cause, code.text, code)

    def _drain_final(self) -> None:
        deadline = time.monotonic() + self.config.hangup_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line is None or line in _LINE_ENDS:
                return

    def setup(self, local_id: str | None, session: Params) -> None:
        """Put the modem in Class 2.0 with our settings (raises on a modem fault).

        Interrupt handling (+FIE) and the packet protocol (+FPP) are off after reset on
        most modems and missing on some: an ERROR to them is noted, not fatal.
        """
        c = self.config
        self.port.discard_input()
        commands = [
            "ATE0V1Q0",
            "AT+FCLASS=2.0",
            f"AT+FLO={_FLOW_CONTROL[self.port.flow]}",
            f"AT+FBO={1 if c.bit_order_reversed else 0}",
            "AT+FNR=1,1,1,0",
            "AT+FIE=0",
            "AT+FPP=0",
            f"AT+FLI={quote_id(local_id or '')}",
            f"AT+FCC={c.capabilities.format()}",
            f"AT+FIS={session.format()}",
            *c.init_commands,
        ]
        for cmd in commands:
            if cmd in _OPTIONAL_SETUP:
                response = self._command(cmd)
                if not response.ok:
                    self._log.info("class2 optional setup refused", line=self.port.name, cmd=cmd)
                continue
            self._require_ok(cmd)

    # -- the call --------------------------------------------------------------------

    def send(
        self,
        dial_string: str,
        pages: Sequence[bytes],
        hooks: CallHooks,
        *,
        local_id: str | None = None,
        first_page: int = 1,
    ) -> SendResult:
        """Dial ``dial_string`` and send ``pages`` (single-page fax TIFFs).

        ``first_page`` numbers the pages for ``hooks`` (the fax's page number of
        ``pages[0]``). Never raises for anything the modem or the far end does.
        """
        result = SendResult(False, 0, False)
        try:
            self._call(dial_string, pages, hooks, local_id, first_page, result)
        except _CallEnded as ended:
            result.cause = ended.cause
            result.detail = ended.detail
            result.hangup = ended.hangup or result.hangup
            result.ok = ended.cause is None and result.pages_confirmed == len(pages)
            if not result.ok and result.cause is None:
                result.cause = Cause.PROTOCOL_ERROR
                result.detail = (
                    f"call ended normally after {result.pages_confirmed} of {len(pages)} pages"
                )
        except (AtTimeout, ModemNotResponding, OSError) as exc:
            result.cause, result.detail = self._silence(exc)
        if result.cause is not None:
            result.detail = f"phase {result.phase}: {result.detail}"
            self._log.info(
                "class2 call failed",
                line=self.port.name,
                cause=str(result.cause),
                detail=result.detail,
                pages=result.pages_confirmed,
            )
        return result

    def _silence(self, exc: Exception) -> tuple[Cause, str]:
        """The modem stopped answering: try to wake it, and say which it was."""
        if isinstance(exc, OSError):
            return Cause.MODEM_ERROR, f"serial line error: {exc}"
        try:
            self.port.reset(patience=self.config.reset_patience, guard=self.config.reset_guard)
        except (ModemNotResponding, AtTimeout, OSError):
            return Cause.MODEM_NOT_RESPONDING, f"modem silent: {exc}"
        return Cause.MODEM_ERROR, f"modem stopped answering, recovered by reset: {exc}"

    def _call(
        self,
        dial_string: str,
        pages: Sequence[bytes],
        hooks: CallHooks,
        local_id: str | None,
        first_page: int,
        result: SendResult,
    ) -> None:
        if not pages:
            raise _CallEnded(Cause.PROTOCOL_ERROR, "nothing to send")
        try:
            fine = page_resolution(pages[0]).value == "fine"
        except (TiffError, ValueError, IndexError) as exc:
            raise _CallEnded(Cause.RENDER_ERROR, f"page 1 is no fax TIFF: {exc}") from exc
        wanted = Params(
            vr=1 if fine else 0,
            br=self.config.capabilities.br,
            wd=0,
            ln=2,
            df=self.config.capabilities.df,
            ec=self.config.capabilities.ec,
        )
        self.setup(local_id, wanted)
        session = self._dial(dial_string, wanted, result)
        hooks.connected(result.remote_id)
        for index, page in enumerate(pages):
            number = first_page + index
            if hooks.should_stop():
                self._abort()
                raise _CallEnded(Cause.CANCELLED, f"cancelled before page {number}")
            ppm = PostPage.EOP if index == len(pages) - 1 else PostPage.MPS
            session = self._start_page(session, result)
            hooks.page_started(number)
            retries = self.config.rtn_retries
            while not self._send_page(page, session, ppm, result, may_resend=retries > 0):
                retries -= 1
                session = self._start_page(session, result)
        result.ok = True

    def _dial(self, dial_string: str, wanted: Params, result: SendResult) -> Params:
        result.phase = "A"
        response = self._command(f"ATD{dial_string}", self.config.dial_timeout)
        self._take_reports(response.lines, result)
        if response.final.startswith("+FHS:"):
            self._ended_by(response.final)
        if response.final in _DIAL_FAILURES or not response.ok:
            cause = _DIAL_FAILURES.get(response.final, Cause.MODEM_ERROR)
            if response.final == "CONNECT":
                self._abort()
            raise _CallEnded(cause, f"dial: {response.final}")
        if not result.connected:
            raise _CallEnded(Cause.NO_CARRIER, "dial: OK without a fax connection (+FCO)")
        result.phase = "B"
        return wanted

    def _take_reports(self, lines: Sequence[str], result: SendResult) -> None:
        for line in lines:
            report = parse_report(line)
            if isinstance(report, Connected):
                result.connected = True
            elif isinstance(report, StationId) and report.kind == "csi":
                result.remote_id = report.id or None
            elif isinstance(report, ParamsReport) and report.kind == "dis":
                result.remote_capabilities = report.params
            elif isinstance(report, ParamsReport) and report.kind == "dcs":
                result.session = report.params
            elif isinstance(report, PageStatus):
                result.page_statuses.append(report)

    def _start_page(self, session: Params, result: SendResult) -> Params:
        if result.session is None:
            result.phase = "B"
        response = self._command("AT+FDT", self.config.train_timeout)
        self._take_reports(response.lines, result)
        if response.final.startswith("+FHS:"):
            self._ended_by(response.final)
        if not response.is_("CONNECT"):
            raise _CallEnded(Cause.PROTOCOL_ERROR, f"AT+FDT answered {response.final}")
        return result.session or session

    def _send_page(
        self, page: bytes, session: Params, ppm: PostPage, result: SendResult, *, may_resend: bool
    ) -> bool:
        """Send one page; True once confirmed, False when it was rejected (RTN) and may be
        sent again (the next AT+FDT retrains first). Raises when the call ends."""
        result.phase = "C"
        try:
            data = page_data(page, session, reversed_order=self.config.bit_order_reversed)
        except (TiffError, ValueError) as exc:
            self.port.write(DLE + ETX)
            self._abort()
            raise _CallEnded(Cause.RENDER_ERROR, f"page cannot be coded: {exc}") from exc
        ending = DLE + (ETX if self.config.post_page == "fet" else ppm.dle_code)
        if not self.port.send_stream(data + ending):
            raise _CallEnded(Cause.REMOTE_DISCONNECTED, "the modem dropped the call mid-page")
        result.phase = "D"
        if self.config.post_page == "fet":
            self._await_page_end()
            response = self._command(f"AT+FET={int(ppm)}", self.config.page_timeout)
            lines, final = response.lines, response.final
        else:
            lines, final = self._read_until_final(self.config.page_timeout)
        self._take_reports(lines, result)
        statuses = [r for r in map(parse_report, lines) if isinstance(r, PageStatus)]
        status = statuses[-1] if statuses else None
        if final.startswith("+FHS:"):
            report = parse_report(final)
            normal = isinstance(report, HangupReport) and report.hangup.normal
            if status is not None and not status.ppr.page_good:
                self._drain_final()
                raise _CallEnded(Cause.PAGE_REJECTED, f"page rejected ({status.ppr.name})")
            if (status is not None and status.ppr.page_good) or (normal and ppm is PostPage.EOP):
                result.pages_confirmed += 1
            result.phase = "E" if normal else "D"
            self._ended_by(final)
        if final == "NO CARRIER":
            raise _CallEnded(Cause.REMOTE_DISCONNECTED, "carrier lost after the page")
        ppr = status.ppr if status is not None else (Ppr.MCF if final == "OK" else Ppr.RTN)
        if ppr is Ppr.RTN and may_resend:
            self._log.info("class2 page rejected, resending", line=self.port.name)
            return False
        if not ppr.page_good:
            self._abort()
            raise _CallEnded(Cause.PAGE_REJECTED, f"page rejected by the far end ({ppr.name})")
        result.pages_confirmed += 1
        if ppr is Ppr.PIP:
            self._abort()
            raise _CallEnded(Cause.PROTOCOL_ERROR, "the far end asked for an operator (PIP)")
        if ppm is PostPage.EOP:
            result.phase = "E"
            if not self._drain_hangup():
                self._command("ATH")
        return True

    def _await_page_end(self) -> None:
        """After DLE ETX (the +FET style) the modem says OK before taking AT+FET."""
        _, final = self._read_until_final(self.config.page_timeout)
        if final.startswith("+FHS:"):
            self._ended_by(final)
        if final != "OK":
            raise _CallEnded(Cause.PROTOCOL_ERROR, f"end of page data answered {final}")

    def _command_lines(self, cmd: str) -> tuple[list[str], str]:
        response = self._command(cmd, self.config.page_timeout)
        return response.lines, response.final

    def _read_until_final(self, timeout: float) -> tuple[list[str], str]:
        """Lines up to OK, ERROR, NO CARRIER or +FHS (raises AtTimeout on silence)."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            line = self.port.read_line(remaining) if remaining > 0 else None
            if line is None:
                raise AtTimeout("<end of page>", lines, timeout)
            if line in _LINE_ENDS or line.startswith("+FHS:"):
                return lines, line
            lines.append(line)

    def _drain_hangup(self) -> bool:
        """After EOP and MCF the modem disconnects: +FHS:00 may follow the OK.

        Raises (like any +FHS) when the hang-up report comes; False when none did."""
        deadline = time.monotonic() + self.config.hangup_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.port.read_line(remaining)
            if line is None:
                return False
            if line.startswith("+FHS:"):
                self._ended_by(line)
        return False

    def _abort(self) -> None:
        """End the call from our side: AT+FKS makes the modem send DCN and hang up."""
        try:
            timeout = self.config.command_timeout + self.config.hangup_timeout
            response = self._command("AT+FKS", timeout)
            if response.final.startswith("+FHS:"):
                self._drain_final()
        except AtTimeout:
            self._log.warning("class2 abort unanswered", line=self.port.name)
