"""The T.30 state machine, sans I/O: one table of every legal transition.

The engine is fed :mod:`.events` and answers each with exactly one :mod:`.events` action.
It never sleeps, reads a clock or touches a port: timers are data (:class:`Timers`) handed
to the runner inside receive actions, and a runner reports a timer's expiry as
:class:`.events.Timeout`.

How it works, h11-style: an event is first *classified* into a symbol (a frame's name, or
a refined name such as ``FTT_LAST`` when the context says no slower rate is left). Then
the single table :data:`TABLE` maps ``(state, symbol)`` to ``(next state, effect)``. The
effect updates the context (pages confirmed, rate, retry counters); entering a state
produces its action (:meth:`Engine._enter`). Anything not in the table is a protocol error.

Rules of the table:

1. Every command is sent at most ``max_command_tries`` times (T.30: 3): no answer within
   T4, a damaged answer (bad FCS) and CRP all repeat it; the last failure ends the call
   with DCN (cause ``protocol_error``), except no DIS at all within T1, which means the
   far end is not a fax machine (``not_a_fax``).
2. Training: TSI + DCS, 75 ms silence, TCF (1.5 s of zeros). CFR starts the page; FTT
   retrains one rate slower (:func:`.negotiate.fall_back`); FTT at the slowest common
   rate ends the call (``training_failed``).
3. A page is confirmed only by MCF or RTP (and, in ECM, by MCF to the PPS ending it).
   RTP: the page counts, the sender retrains before the next one. RTN: the page does not
   count; the sender retrains one rate slower and sends it again, at most
   ``max_page_tries`` times (then ``page_rejected``).
4. ECM: a block's PPS answered by PPR is followed by the listed frames only; the fourth
   PPR for one block brings CTC (continue one rate slower, answered by CTR), or at the
   slowest rate the end of the call (``page_rejected``). RNR is answered with RR (T5).
5. Receiver: DIS (with CSI) is repeated until a DCS arrives (T1); TCF passes when it holds
   :data:`TCF_GOOD_SECONDS` of unbroken zeros. A post-page command is answered from the
   page just received (:func:`.pagedata.verdict`); pages answered MCF or RTP are stored
   *before* the answer is sent. A command repeated because our answer was lost (we heard
   V.21 instead of page data) gets the same answer again; a command after page data we
   never heard gets RTN, so a sender can never count a page we do not have.
6. DCN from the far end, or the carrier lost mid-call, ends the call at once
   (``remote_disconnected``), except for a receiver that has answered EOP, for which it
   is the normal end. Modem failures end it at once (``modem_error``,
   ``modem_not_responding``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from faxfleet.messages import Cause
from workers.render.coding import Coding

from . import ecm, pagedata
from .events import (
    Action,
    CallResult,
    Event,
    FrameReceived,
    Hangup,
    ModemFailed,
    Outcome,
    PageReceived,
    ReceiveFailed,
    ReceiveHdlc,
    ReceivePage,
    ReceiveTraining,
    SendHdlc,
    SendPage,
    SendSilence,
    SendTraining,
    Sent,
    Timeout,
    TrainingReceived,
)
from .frames import (
    FALLBACK,
    PPS_NULL,
    Capabilities,
    Fcf,
    Parameters,
    Pps,
    Rate,
    decode_ident,
    decode_ppr,
    encode_ident,
    encode_ppr,
)
from .hdlc import Frame, FrameError, parse
from .negotiate import Wishes, accept, choose, fall_back

TCF_SECONDS = 1.5
TCF_GOOD_SECONDS = 1.0
"""A TCF passes with this long a run of zero bytes (two thirds of it: the modem may lose
the first and last few bytes while its receiver settles)."""
GAP_MS = 75
"""Silence between a V.21 message and high-speed data (T.30 5.3.2.4: 75 +/- 20 ms)."""
MAX_PPR = 4
"""PPRs for one block before the sender must change something (T.30 A.4.3)."""
MAX_RR = 20
"""RR polls while the receiver says RNR (T5, 60 s, at about one RR per 3 s)."""
MAX_FRAMES_PER_WAIT = 20
"""Frames accepted while waiting for one answer: a bound on a babbling far end."""
MAX_EVENTS = 20000
"""Events in one call: a bound no legal call comes near (a 256-page ECM fax ~ 5,000)."""


@dataclass(frozen=True)
class Timers:
    """T.30 timers in seconds (T.30 5.4.3 / Annex A)."""

    t1: float = 35.0
    """Sender: how long to wait for the called station's DIS."""
    t2: float = 6.0
    """Waiting for page data, or a command after page data."""
    t3: float = 10.0
    t4: float = 3.0
    """Waiting for a response to a command before repeating it."""
    t5: float = 60.0


@dataclass(frozen=True)
class Config:
    """One side's settings for a call."""

    ident: str = ""
    """Our CSI/TSI: the number as people write it (20 characters at most)."""
    wishes: Wishes = field(default_factory=Wishes)
    timers: Timers = field(default_factory=Timers)
    max_command_tries: int = 3
    max_page_tries: int = 3

    @property
    def max_dis_tries(self) -> int:
        """DIS repeats for a receiver: as many as fit in T1 at one per T4 (+ 1.5 s of DIS)."""
        return max(1, int(self.timers.t1 // (self.timers.t4 + 1.5)))


class State(StrEnum):
    # sender
    CALLING = "calling"
    S_WAIT_DIS = "s_wait_dis"
    S_SEND_DCS = "s_send_dcs"
    S_TCF_GAP = "s_tcf_gap"
    S_SEND_TCF = "s_send_tcf"
    S_WAIT_CFR = "s_wait_cfr"
    S_PAGE_GAP = "s_page_gap"
    S_SEND_PAGE = "s_send_page"
    S_PPM_GAP = "s_ppm_gap"
    S_SEND_PPM = "s_send_ppm"
    S_WAIT_MCF = "s_wait_mcf"
    S_SEND_CTC = "s_send_ctc"
    S_WAIT_CTR = "s_wait_ctr"
    S_SEND_DCN = "s_send_dcn"
    # receiver
    ANSWERING = "answering"
    R_SEND_DIS = "r_send_dis"
    R_REPEAT = "r_repeat"
    R_WAIT_DCS = "r_wait_dcs"
    R_TCF = "r_tcf"
    R_SEND_CFR = "r_send_cfr"
    R_SEND_FTT = "r_send_ftt"
    R_PAGE = "r_page"
    R_WAIT_PPM = "r_wait_ppm"
    R_SEND_RESPONSE = "r_send_response"
    R_WAIT_DCN = "r_wait_dcn"
    # both
    DONE = "done"


S = State

PHASE: dict[State, str] = {
    S.CALLING: "A",
    S.ANSWERING: "A",
    S.S_PAGE_GAP: "C",
    S.S_SEND_PAGE: "C",
    S.R_PAGE: "C",
    S.S_PPM_GAP: "D",
    S.S_SEND_PPM: "D",
    S.S_WAIT_MCF: "D",
    S.S_SEND_CTC: "D",
    S.S_WAIT_CTR: "D",
    S.R_WAIT_PPM: "D",
    S.R_SEND_RESPONSE: "D",
    S.S_SEND_DCN: "E",
    S.R_WAIT_DCN: "E",
    S.DONE: "E",
}
"""T.30 phase of each state; every other state is phase B."""


ANY = None
"""Wildcard state in :data:`TABLE`: the row applies in every state but DONE."""

TABLE: dict[tuple[State | None, str], tuple[State, str | None]] = {
    # -- anywhere: the modem gives up, or the far end hangs up -------------------------------
    (ANY, "MODEM_ERROR"): (S.DONE, "modem_error"),
    (ANY, "MODEM_GONE"): (S.DONE, "modem_gone"),
    (ANY, "DCN"): (S.DONE, "remote_dcn"),
    (ANY, "LINE_LOST"): (S.DONE, "line_lost"),
    # -- sender, phase A/B ---------------------------------------------------------------------
    (S.CALLING, "CONNECTED"): (S.S_WAIT_DIS, None),
    (S.CALLING, "CALL_FAILED"): (S.DONE, "call_failed"),
    (S.S_WAIT_DIS, "ID"): (S.S_WAIT_DIS, "remote_ident"),
    (S.S_WAIT_DIS, "IGNORED"): (S.S_WAIT_DIS, None),
    (S.S_WAIT_DIS, "DIS"): (S.S_SEND_DCS, "negotiate"),
    (S.S_WAIT_DIS, "DIS_NO_MATCH"): (S.S_SEND_DCN, "no_common_mode"),
    (S.S_WAIT_DIS, "RETRY"): (S.S_WAIT_DIS, None),
    (S.S_WAIT_DIS, "RETRY_LAST"): (S.DONE, "no_dis"),
    (S.S_SEND_DCS, "SENT"): (S.S_TCF_GAP, "page_sent"),
    (S.S_TCF_GAP, "SENT"): (S.S_SEND_TCF, None),
    (S.S_SEND_TCF, "SENT"): (S.S_WAIT_CFR, None),
    (S.S_WAIT_CFR, "IGNORED"): (S.S_WAIT_CFR, None),
    (S.S_WAIT_CFR, "ID"): (S.S_WAIT_CFR, "remote_ident"),
    (S.S_WAIT_CFR, "CFR"): (S.S_PAGE_GAP, "trained"),
    (S.S_WAIT_CFR, "FTT"): (S.S_SEND_DCS, "slower"),
    (S.S_WAIT_CFR, "FTT_LAST"): (S.S_SEND_DCN, "training_failed"),
    (S.S_WAIT_CFR, "RETRY"): (S.S_SEND_DCS, "repeat"),
    (S.S_WAIT_CFR, "RETRY_LAST"): (S.S_SEND_DCN, "no_response"),
    # -- sender, phases C/D --------------------------------------------------------------------
    (S.S_PAGE_GAP, "SENT"): (S.S_SEND_PAGE, None),
    (S.S_SEND_PAGE, "SENT"): (S.S_PPM_GAP, "page_sent"),
    (S.S_PPM_GAP, "SENT"): (S.S_SEND_PPM, "post_page_command"),
    (S.S_SEND_PPM, "SENT"): (S.S_WAIT_MCF, None),
    (S.S_WAIT_MCF, "IGNORED"): (S.S_WAIT_MCF, None),
    (S.S_WAIT_MCF, "ID"): (S.S_WAIT_MCF, None),
    (S.S_WAIT_MCF, "MCF_NEXT_BLOCK"): (S.S_PAGE_GAP, "block_confirmed"),
    (S.S_WAIT_MCF, "MCF_NEXT_PAGE"): (S.S_PAGE_GAP, "page_confirmed"),
    (S.S_WAIT_MCF, "MCF_LAST"): (S.S_SEND_DCN, "page_confirmed"),
    (S.S_WAIT_MCF, "RTP_NEXT_PAGE"): (S.S_SEND_DCS, "page_confirmed"),
    (S.S_WAIT_MCF, "RTN"): (S.S_SEND_DCS, "page_again"),
    (S.S_WAIT_MCF, "RTN_LAST"): (S.S_SEND_DCN, "page_rejected"),
    (S.S_WAIT_MCF, "PPR"): (S.S_PAGE_GAP, "resend_frames"),
    (S.S_WAIT_MCF, "PPR_CTC"): (S.S_SEND_CTC, "continue_slower"),
    (S.S_WAIT_MCF, "PPR_LAST"): (S.S_SEND_DCN, "page_rejected"),
    (S.S_WAIT_MCF, "RNR"): (S.S_SEND_PPM, "poll_ready"),
    (S.S_WAIT_MCF, "RNR_LAST"): (S.S_SEND_DCN, "no_response"),
    (S.S_WAIT_MCF, "RETRY"): (S.S_SEND_PPM, "repeat"),
    (S.S_WAIT_MCF, "RETRY_LAST"): (S.S_SEND_DCN, "no_response"),
    (S.S_SEND_CTC, "SENT"): (S.S_WAIT_CTR, None),
    (S.S_WAIT_CTR, "IGNORED"): (S.S_WAIT_CTR, None),
    (S.S_WAIT_CTR, "ID"): (S.S_WAIT_CTR, None),
    (S.S_WAIT_CTR, "CTR"): (S.S_PAGE_GAP, None),
    (S.S_WAIT_CTR, "RETRY"): (S.S_SEND_CTC, "repeat"),
    (S.S_WAIT_CTR, "RETRY_LAST"): (S.S_SEND_DCN, "no_response"),
    (S.S_SEND_DCN, "SENT"): (S.DONE, None),
    # -- receiver, phase A/B -------------------------------------------------------------------
    (S.ANSWERING, "CONNECTED"): (S.R_SEND_DIS, None),
    (S.ANSWERING, "CALL_FAILED"): (S.DONE, "call_failed"),
    (S.R_SEND_DIS, "SENT"): (S.R_WAIT_DCS, None),
    (S.R_REPEAT, "SENT"): (S.R_WAIT_DCS, None),
    (S.R_WAIT_DCS, "ID"): (S.R_WAIT_DCS, "remote_ident"),
    (S.R_WAIT_DCS, "IGNORED"): (S.R_WAIT_DCS, None),
    (S.R_WAIT_DCS, "DCS"): (S.R_TCF, "accept_dcs"),
    (S.R_WAIT_DCS, "DCS_REFUSED"): (S.DONE, "dcs_refused"),
    (S.R_WAIT_DCS, "PPM"): (S.R_SEND_RESPONSE, "answer_page"),
    (S.R_WAIT_DCS, "RETRY"): (S.R_REPEAT, None),
    (S.R_WAIT_DCS, "RETRY_LAST"): (S.DONE, "no_command"),
    (S.R_TCF, "TCF_GOOD"): (S.R_SEND_CFR, None),
    (S.R_TCF, "TCF_BAD"): (S.R_SEND_FTT, None),
    (S.R_SEND_CFR, "SENT"): (S.R_PAGE, "expect_page"),
    (S.R_SEND_FTT, "SENT"): (S.R_WAIT_DCS, None),
    # -- receiver, phases C/D/E ----------------------------------------------------------------
    (S.R_PAGE, "PAGE"): (S.R_WAIT_PPM, "take_page"),
    (S.R_PAGE, "HEARD_V21"): (S.R_WAIT_PPM, "heard_v21"),
    (S.R_PAGE, "NO_PAGE"): (S.R_WAIT_PPM, None),
    (S.R_WAIT_PPM, "ID"): (S.R_WAIT_PPM, "remote_ident"),
    (S.R_WAIT_PPM, "IGNORED"): (S.R_WAIT_PPM, None),
    (S.R_WAIT_PPM, "PPM"): (S.R_SEND_RESPONSE, "answer_page"),
    (S.R_WAIT_PPM, "PPS"): (S.R_SEND_RESPONSE, "answer_block"),
    (S.R_WAIT_PPM, "CTC"): (S.R_SEND_RESPONSE, "answer_ctc"),
    (S.R_WAIT_PPM, "RR"): (S.R_SEND_RESPONSE, "answer_again"),
    (S.R_WAIT_PPM, "DCS"): (S.R_TCF, "accept_dcs"),
    (S.R_WAIT_PPM, "DCS_REFUSED"): (S.DONE, "dcs_refused"),
    (S.R_WAIT_PPM, "RETRY"): (S.R_WAIT_PPM, None),
    (S.R_WAIT_PPM, "RETRY_LAST"): (S.DONE, "no_command"),
    (S.R_SEND_RESPONSE, "TO_PAGE"): (S.R_PAGE, "expect_page"),
    (S.R_SEND_RESPONSE, "TO_DCS"): (S.R_WAIT_DCS, None),
    (S.R_SEND_RESPONSE, "TO_DIS"): (S.R_SEND_DIS, None),
    (S.R_SEND_RESPONSE, "TO_END"): (S.R_WAIT_DCN, None),
    (S.R_WAIT_DCN, "IGNORED"): (S.R_WAIT_DCN, None),
    (S.R_WAIT_DCN, "ID"): (S.R_WAIT_DCN, None),
    (S.R_WAIT_DCN, "PPM"): (S.R_SEND_RESPONSE, "answer_page"),
    (S.R_WAIT_DCN, "PPS"): (S.R_SEND_RESPONSE, "answer_block"),
    (S.R_WAIT_DCN, "RETRY"): (S.R_WAIT_DCN, None),
    (S.R_WAIT_DCN, "RETRY_LAST"): (S.DONE, "received"),
}

_IDENT_FRAMES = {Fcf.CSI, Fcf.TSI, Fcf.CIG}
_OPTIONAL_FRAMES = {Fcf.NSF, Fcf.NSS, Fcf.NSC, Fcf.SUB, Fcf.PWD, Fcf.SEP, Fcf.PWD_POLL}
_PPM = {
    Fcf.MPS: Fcf.MPS,
    Fcf.EOP: Fcf.EOP,
    Fcf.EOM: Fcf.EOM,
    Fcf.PRI_MPS: Fcf.MPS,
    Fcf.PRI_EOP: Fcf.EOP,
    Fcf.PRI_EOM: Fcf.EOM,
}
_CALL_CAUSE = {
    "busy": Cause.BUSY,
    "no_answer": Cause.NO_ANSWER,
    "timeout": Cause.NO_ANSWER,
    "no_carrier": Cause.NO_CARRIER,
    "no_dialtone": Cause.NO_DIALTONE,
    "error": Cause.MODEM_ERROR,
    "not_responding": Cause.MODEM_NOT_RESPONDING,
}


_ZERO_RUNS = re.compile(b"\x00+")


def tcf_ok(data: bytes, rate: Rate) -> bool:
    """Whether a TCF shows a usable line: a long enough unbroken run of zero bytes."""
    needed = int(rate.bit_rate * TCF_GOOD_SECONDS / 8)
    return max(map(len, _ZERO_RUNS.findall(data)), default=0) >= needed


class ProtocolError(Exception):
    """An event the table has no row for (reported as ``protocol_error``)."""


class Engine:
    """One side of one fax call. Create with :meth:`sender` or :meth:`receiver`."""

    def __init__(self, role: str, config: Config, pages: Sequence[bytes] = ()) -> None:
        self.role = role
        self.config = config
        self.state = S.CALLING if role == "sender" else S.ANSWERING
        self._phase = "A"
        self._pages = list(pages)
        self.remote_id = ""
        self.remote_caps: Capabilities | None = None
        self.params: Parameters | None = None
        self.confirmed = 0
        """Sender: pages the receiver confirmed."""
        self.received: list[bytes] = []
        """Receiver: stored pages, single-page TIFF files."""
        self._cause: Cause | None = None
        self._fail_phase = "A"
        self._detail = ""
        self._ok = False
        self._tries = 0
        self._frames_seen = 0
        self._events = 0
        self._command: tuple[bytes, ...] = ()
        self._page_index = 0
        self._outcome: Outcome | None = None
        # sender page state
        self._page_tries = 0
        self._retrain_next = False
        self._blocks: list[list[bytes]] = []
        self._block = 0
        self._missing: frozenset[int] = frozenset()
        self._pprs = 0
        self._rr = 0
        self._line_cache: dict[tuple[int, Parameters], bytes] = {}
        # receiver page state
        self._fresh: bytes | None = None
        self._heard_v21 = False
        self._last_response: tuple[bytes, ...] = ()
        self._last_sent: tuple[bytes, ...] = ()
        self._last_route = "TO_DCS"
        self._answered_eop = False
        self._ecm_frames: dict[int, bytes] = {}
        self._ecm_page = bytearray()
        self._ecm_done: tuple[int, int] | None = None
        self._ecm_page_no = 0
        self._long_train = False

    @classmethod
    def sender(cls, config: Config, pages: Sequence[bytes]) -> Engine:
        """An engine that sends ``pages`` (rendered single-page TIFF files)."""
        if not pages:
            raise ValueError("a fax has at least one page")
        if config.wishes.fine and not all(pagedata.page_is_fine(page) for page in pages):
            # Standard pages are never sent as fine; fine pages among them are halved.
            config = replace(config, wishes=replace(config.wishes, fine=False))
        return cls("sender", config, pages)

    @classmethod
    def receiver(cls, config: Config) -> Engine:
        return cls("receiver", config)

    @property
    def done(self) -> bool:
        return self.state is S.DONE

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    # --- the loop -------------------------------------------------------------------------

    def feed(self, event: Event) -> Action:
        """The next action after ``event``."""
        if self.state is S.DONE:
            raise ProtocolError("the call is over")
        self._events += 1
        try:
            if self._events > MAX_EVENTS:
                raise ProtocolError(f"more than {MAX_EVENTS} events in one call")
            symbol = self._classify(event)
            row = TABLE.get((self.state, symbol)) or TABLE.get((ANY, symbol))
            if row is None:
                raise ProtocolError(f"{symbol} in state {self.state}")
            next_state, effect = row
            if effect is not None:
                getattr(self, f"_do_{effect}")(event)
        except ProtocolError as error:
            self._fail(Cause.PROTOCOL_ERROR, str(error))
            next_state = S.DONE
        if next_state is not self.state:
            self._tries = 0 if next_state not in _KEEP_TRIES.get(self.state, ()) else self._tries
            self._frames_seen = 0
        self.state = next_state
        if next_state is not S.DONE:
            self._phase = PHASE.get(next_state, "B")
        return self._enter()

    # --- classification ---------------------------------------------------------------------

    def _classify(self, event: Event) -> str:
        match event:
            case CallResult(status="ok"):
                return "CONNECTED"
            case CallResult():
                return "CALL_FAILED"
            case ModemFailed(status="not_responding"):
                return "MODEM_GONE"
            case ModemFailed(status="no_carrier"):
                return "LINE_LOST"
            case ModemFailed() | ReceiveFailed(status="error"):
                return "MODEM_ERROR"
            case Sent():
                if self.state is S.R_SEND_RESPONSE:
                    return self._last_route
                return "SENT"
            case TrainingReceived(data=data):
                if self.state is not S.R_TCF or self.params is None:
                    return "IGNORED"
                return "TCF_GOOD" if tcf_ok(data, self.params.rate) else "TCF_BAD"
            case PageReceived():
                return "PAGE" if self.state is S.R_PAGE else "IGNORED"
            case ReceiveFailed(status="fcerror") if self.state is S.R_PAGE:
                return "HEARD_V21"
            case Timeout() | ReceiveFailed():
                if self.state is S.S_WAIT_DIS:
                    return "RETRY_LAST"  # T1 is over
                if self.state is S.R_TCF:
                    return "TCF_BAD"
                if self.state is S.R_PAGE:
                    return "NO_PAGE"
                return self._retry()
            case FrameReceived(frame=raw, fcs_ok=good):
                self._frames_seen += 1
                if self._frames_seen > MAX_FRAMES_PER_WAIT:
                    return self._retry(last=True)
                if not good:
                    return self._retry()
                try:
                    frame = parse(raw)
                except FrameError:
                    return self._retry()
                return self._classify_frame(frame)
        raise ProtocolError(f"unexpected event {event!r}")

    def _retry(self, last: bool = False) -> str:
        """RETRY or RETRY_LAST: one more failed wait for the current command's answer."""
        self._tries += 1
        limit = self.config.max_command_tries
        if self.state in (S.R_WAIT_DCS, S.S_WAIT_DIS):
            limit = self.config.max_dis_tries
        if self.state in (S.R_WAIT_PPM, S.R_WAIT_DCN):
            limit = self.config.max_command_tries + 1
        return "RETRY_LAST" if last or self._tries >= limit else "RETRY"

    def _classify_frame(self, frame: Frame) -> str:
        fcf = frame.fcf
        if fcf == Fcf.DCN:
            return "DCN"
        if fcf in _IDENT_FRAMES:
            self._pending_ident = frame
            return "ID"
        if fcf in _OPTIONAL_FRAMES:
            return "IGNORED"
        if self.role == "sender":
            return self._classify_response(frame)
        return self._classify_command(frame)

    def _classify_response(self, frame: Frame) -> str:
        fcf = frame.fcf
        if fcf == Fcf.CRP:
            return self._retry()
        if self.state is S.S_WAIT_DIS:
            if fcf != Fcf.DIS:
                return "IGNORED"
            self._pending_dis = Capabilities.decode(frame.fif)
            self.remote_caps = self._pending_dis
            if choose(self.config.wishes, self._pending_dis) is None:
                return "DIS_NO_MATCH"
            return "DIS"
        if self.state is S.S_WAIT_CFR:
            if fcf == Fcf.CFR:
                return "CFR"
            if fcf == Fcf.FTT:
                assert self.params is not None and self.remote_caps is not None
                slower = fall_back(self.params, self.config.wishes, self.remote_caps)
                return "FTT" if slower is not None else "FTT_LAST"
            if fcf == Fcf.DIS:  # our DCS was not heard: the receiver repeats its DIS
                return self._retry()
            return "IGNORED"
        if self.state is S.S_WAIT_CTR:
            return "CTR" if fcf == Fcf.CTR else "IGNORED"
        if self.state is S.S_WAIT_MCF:
            return self._classify_post_page(fcf, frame)
        return "IGNORED"

    def _classify_post_page(self, fcf: int, frame: Frame) -> str:
        assert self.params is not None
        last_page = self._page_index >= len(self._pages) - 1
        if fcf in (Fcf.MCF, Fcf.PIP):
            if self.params.ecm and self._block < len(self._blocks) - 1:
                return "MCF_NEXT_BLOCK"
            return "MCF_LAST" if last_page else "MCF_NEXT_PAGE"
        if fcf == Fcf.RTP:
            return "MCF_LAST" if last_page else "RTP_NEXT_PAGE"
        if fcf in (Fcf.RTN, Fcf.PIN):
            return "RTN" if self._page_tries + 1 < self.config.max_page_tries else "RTN_LAST"
        if fcf == Fcf.PPR and self.params.ecm:
            self._pending_ppr = decode_ppr(frame.fif)
            if self._pprs + 1 < MAX_PPR:
                return "PPR"
            assert self.remote_caps is not None
            if fall_back(self.params, self.config.wishes, self.remote_caps) is None:
                return "PPR_LAST"
            return "PPR_CTC"
        if fcf == Fcf.RNR:
            return "RNR" if self._rr + 1 < MAX_RR else "RNR_LAST"
        return "IGNORED"

    def _classify_command(self, frame: Frame) -> str:
        fcf = frame.fcf
        if fcf == Fcf.DCS:
            try:
                params = Parameters.decode(frame.fif)
            except ValueError:
                return "DCS_REFUSED"
            self._pending_dcs = params
            return "DCS" if accept(self.config.wishes, params) else "DCS_REFUSED"
        if fcf in _PPM:
            self._pending_command = _PPM[Fcf(fcf)]
            return "PPM"
        if fcf == Fcf.PPS:
            try:
                self._pending_pps = Pps.decode(frame.fif)
            except ValueError:
                return "IGNORED"
            return "PPS"
        if fcf == Fcf.CTC:
            self._pending_ctc = frame.fif
            return "CTC"
        if fcf == Fcf.RR:
            return "RR" if self._last_response else "IGNORED"
        return "IGNORED"

    # --- effects ----------------------------------------------------------------------------

    def _fail(self, cause: Cause, detail: str) -> None:
        if self._cause is None and not self._ok:
            self._cause = cause
            self._detail = detail
            self._fail_phase = self._phase

    def _do_modem_error(self, event: Event) -> None:
        if self._fax_complete():
            return
        self._fail(Cause.MODEM_ERROR, f"modem error in phase {self._phase}")

    def _do_modem_gone(self, event: Event) -> None:
        if self._fax_complete():
            return
        self._fail(Cause.MODEM_NOT_RESPONDING, f"modem stopped responding in phase {self._phase}")

    def _fax_complete(self) -> bool:
        """A receiver that has answered EOP has the whole fax: whatever ends the call
        now (DCN, the line dropping, the modem failing) ends it successfully."""
        if self.role == "receiver" and self._answered_eop:
            self._ok = True
        return self._ok

    def _do_remote_dcn(self, event: Event) -> None:
        if self._fax_complete():
            return
        self._fail(Cause.REMOTE_DISCONNECTED, f"the far end sent DCN in phase {self._phase}")

    def _do_line_lost(self, event: Event) -> None:
        if self._fax_complete():
            return
        self._fail(Cause.REMOTE_DISCONNECTED, f"the line dropped in phase {self._phase}")

    def _do_call_failed(self, event: Event) -> None:
        assert isinstance(event, CallResult)
        cause = _CALL_CAUSE.get(event.status, Cause.MODEM_ERROR)
        self._fail(cause, f"call set-up ended with {event.status}")

    def _do_remote_ident(self, event: Event) -> None:
        self.remote_id = decode_ident(self._pending_ident.fif)

    def _do_negotiate(self, event: Event) -> None:
        self.params = choose(self.config.wishes, self._pending_dis)
        self._page_index = 0
        self._tries = 0

    def _do_no_common_mode(self, event: Event) -> None:
        self._fail(Cause.NOT_A_FAX, "no modulation or coding in common with the far end")

    def _do_no_dis(self, event: Event) -> None:
        self._fail(Cause.NOT_A_FAX, "no DIS from the called station")

    def _do_slower(self, event: Event) -> None:
        assert self.params is not None and self.remote_caps is not None
        self.params = fall_back(self.params, self.config.wishes, self.remote_caps)
        self._tries = 0

    def _do_training_failed(self, event: Event) -> None:
        self._fail(Cause.TRAINING_FAILED, "FTT at the slowest common rate")

    def _do_repeat(self, event: Event) -> None:
        """The same command again (the retry counter carries over, see _KEEP_TRIES)."""

    def _do_no_response(self, event: Event) -> None:
        self._fail(
            Cause.PROTOCOL_ERROR,
            f"no valid answer after {self.config.max_command_tries} tries in phase {self._phase}",
        )

    def _do_trained(self, event: Event) -> None:
        if self._retrain_next:
            self._retrain_next = False
        self._start_page_if_needed()

    def _start_page_if_needed(self) -> None:
        """Cut the current page into ECM blocks when a page starts."""
        assert self.params is not None
        if self.params.ecm and not self._blocks:
            data = self._line_data()
            self._blocks = ecm.cut(data, self.params.ecm_frame_size)
            self._block = 0
            self._missing = frozenset(range(len(self._blocks[0])))
            self._pprs = 0

    def _line_data(self) -> bytes:
        assert self.params is not None
        key = (self._page_index, self.params)
        if key not in self._line_cache:
            self._line_cache = {key: pagedata.line_data(self._pages[self._page_index], self.params)}
        return self._line_cache[key]

    def _do_block_confirmed(self, event: Event) -> None:
        self._block += 1
        self._missing = frozenset(range(len(self._blocks[self._block])))
        self._pprs = 0
        self._rr = 0

    def _do_page_confirmed(self, event: Event) -> None:
        self.confirmed += 1
        self._ok = self.confirmed == len(self._pages)
        self._page_index += 1
        self._page_tries = 0
        self._blocks = []
        self._rr = 0
        if self._page_index < len(self._pages):
            self._start_page_if_needed()

    def _do_page_again(self, event: Event) -> None:
        """RTN: the page does not count; retrain one rate slower when there is one."""
        assert self.params is not None and self.remote_caps is not None
        self._page_tries += 1
        slower = fall_back(self.params, self.config.wishes, self.remote_caps)
        if slower is not None:
            self.params = slower
        self._blocks = []

    def _do_page_rejected(self, event: Event) -> None:
        self._fail(Cause.PAGE_REJECTED, f"page {self._page_index + 1} was not accepted")

    def _do_resend_frames(self, event: Event) -> None:
        self._pprs += 1
        self._missing = frozenset(
            n for n in self._pending_ppr if n < len(self._blocks[self._block])
        ) or frozenset(range(len(self._blocks[self._block])))

    def _do_continue_slower(self, event: Event) -> None:
        assert self.params is not None and self.remote_caps is not None
        self._missing = frozenset(
            n for n in self._pending_ppr if n < len(self._blocks[self._block])
        ) or frozenset(range(len(self._blocks[self._block])))
        slower = fall_back(self.params, self.config.wishes, self.remote_caps)
        assert slower is not None
        self.params = slower
        self._pprs = 0
        self._long_train = True

    def _do_poll_ready(self, event: Event) -> None:
        self._rr += 1
        self._tries = 0
        self._command = (Frame(Fcf.RR, x=True).encode(),)

    def _do_page_sent(self, event: Event) -> None:
        self._long_train = False

    def _do_post_page_command(self, event: Event) -> None:
        self._command = (self._post_page_command(),)

    # receiver effects

    def _do_accept_dcs(self, event: Event) -> None:
        self.params = self._pending_dcs
        self._long_train = False

    def _do_dcs_refused(self, event: Event) -> None:
        self._fail(Cause.PROTOCOL_ERROR, "DCS asks for a mode we did not offer")

    def _do_no_command(self, event: Event) -> None:
        if self._answered_eop:
            self._ok = True
            return
        if not self.received and self.remote_id == "" and self.params is None:
            self._fail(Cause.NOT_A_FAX, "the caller sent no fax command")
        else:
            self._fail(Cause.REMOTE_DISCONNECTED, f"the caller fell silent in phase {self._phase}")

    def _do_received(self, event: Event) -> None:
        self._ok = True

    def _do_expect_page(self, event: Event) -> None:
        self._fresh = None
        self._heard_v21 = False

    def _do_heard_v21(self, event: Event) -> None:
        self._heard_v21 = True

    def _do_take_page(self, event: Event) -> None:
        assert isinstance(event, PageReceived) and self.params is not None
        self._long_train = False
        if self.params.ecm:
            burst = ecm.decode_block(event.data)
            self._ecm_frames.update(burst.frames)
        else:
            # Decoded when the post-page command arrives: the far end sends it 75 ms
            # after the page, and the modem must be listening by then.
            self._fresh = event.data

    def _respond(self, fcf: Fcf, route: str, fif: bytes = b"") -> None:
        self._last_response = (Frame(fcf, fif).encode(),)
        self._last_route = route

    def _store(self, page: pagedata.ReceivedPage) -> None:
        assert self.params is not None
        self.received.append(page.tiff(self.params.fine))

    def _do_answer_page(self, event: Event) -> None:
        """A post-page command (non-ECM): answer from the page just received."""
        command = self._pending_command
        if self._fresh is not None:
            assert self.params is not None
            page = pagedata.decode(self._fresh, self.params.coding)
            verdict = pagedata.verdict(page)
            if verdict is not Fcf.RTN:
                self._store(page)
            self._fresh = None
        elif self._last_response and (self._heard_v21 or self.state is not S.R_WAIT_PPM):
            # Our answer was lost and the command repeated: answer the same again.
            self._heard_v21 = False
            return
        else:
            verdict = Fcf.RTN
        if command is Fcf.EOM:
            route = "TO_DIS"
        elif verdict is Fcf.MCF and command is Fcf.MPS:
            route = "TO_PAGE"
        elif verdict is not Fcf.RTN and command is Fcf.EOP:
            route = "TO_END"
            self._answered_eop = True
        else:
            route = "TO_DCS"
        self._respond(verdict, route)

    def _do_answer_block(self, event: Event) -> None:
        """A PPS (ECM): MCF when every frame of the block is here, else PPR."""
        assert self.params is not None
        pps = self._pending_pps
        key = (pps.page, pps.block)
        if key == self._ecm_done:
            return  # our MCF was lost: say it again
        missing = frozenset(range(pps.frames)) - self._ecm_frames.keys()
        if missing:
            self._respond(Fcf.PPR, "TO_PAGE", encode_ppr(missing))
            return
        for number in range(pps.frames):
            self._ecm_page += self._ecm_frames[number]
        self._ecm_frames = {}
        self._ecm_done = key
        route = "TO_PAGE"
        if pps.command != PPS_NULL:
            command = _PPM.get(pps.command, Fcf.EOP)
            page = pagedata.decode(bytes(self._ecm_page), self.params.coding)
            self._store(page)
            self._ecm_page = bytearray()
            if command is Fcf.EOP:
                route = "TO_END"
                self._answered_eop = True
            elif command is Fcf.EOM:
                route = "TO_DIS"
        self._respond(Fcf.MCF, route)

    def _do_answer_ctc(self, event: Event) -> None:
        assert self.params is not None
        fif = self._pending_ctc
        if len(fif) >= 2:
            code = (fif[1] >> 2) & 0x0F
            code = int(f"{code:04b}"[::-1], 2)
            rate = next((r for r in FALLBACK if r.dcs_code == code), None)
            if rate is not None:
                self.params = Parameters(
                    rate=rate,
                    fine=self.params.fine,
                    coding=self.params.coding,
                    ecm=self.params.ecm,
                    ecm_frame_size=self.params.ecm_frame_size,
                    min_scan_ms=self.params.min_scan_ms,
                    length=self.params.length,
                )
        self._long_train = True
        self._respond(Fcf.CTR, "TO_PAGE")

    def _do_answer_again(self, event: Event) -> None:
        """RR: repeat the last answer."""

    # --- entering a state: its action -------------------------------------------------------

    def _enter(self) -> Action:
        timers = self.config.timers
        state = self.state
        if state is S.DONE:
            self._outcome = Outcome(
                ok=self._ok,
                cause=None if self._ok else (self._cause or Cause.PROTOCOL_ERROR),
                phase=self._phase if self._ok or self._cause is None else self._fail_phase,
                pages=self.confirmed if self.role == "sender" else len(self.received),
                detail="" if self._ok else self._detail,
                remote_id=self.remote_id,
                params=self.params,
            )
            return Hangup(self._outcome)
        if state is S.S_WAIT_DIS:
            return ReceiveHdlc(timers.t1)
        if state in (S.S_WAIT_CFR, S.S_WAIT_MCF, S.S_WAIT_CTR, S.R_WAIT_DCS, S.R_WAIT_DCN):
            return ReceiveHdlc(timers.t4)
        if state is S.R_WAIT_PPM:
            return ReceiveHdlc(timers.t2)
        assert state not in (S.CALLING, S.ANSWERING)
        return self._enter_send(state)

    def _enter_send(self, state: State) -> Action:
        timers = self.config.timers
        params = self.params
        if state is S.S_SEND_DCS:
            assert params is not None
            tsi = Frame(Fcf.TSI, encode_ident(self.config.ident), x=True, final=False)
            dcs = Frame(Fcf.DCS, params.encode(), x=True)
            return SendHdlc((tsi.encode(), dcs.encode()))
        if state in (S.S_TCF_GAP, S.S_PAGE_GAP, S.S_PPM_GAP):
            return SendSilence(GAP_MS)
        if state is S.S_SEND_TCF:
            assert params is not None
            n_bytes = int(params.rate.bit_rate * TCF_SECONDS / 8)
            return SendTraining(params.rate.modulation, n_bytes)
        if state is S.S_SEND_PAGE:
            assert params is not None
            if params.ecm:
                block = self._blocks[self._block]
                frames = {n: block[n] for n in self._missing}
                return SendPage(self._page_mod(), ecm.encode_block(frames))
            return SendPage(self._page_mod(), self._line_data())
        if state is S.S_SEND_PPM:
            return SendHdlc(self._command)
        if state is S.S_SEND_CTC:
            assert params is not None
            code = int(f"{params.rate.dcs_code:04b}"[::-1], 2) << 2
            return SendHdlc((Frame(Fcf.CTC, bytes((0, code)), x=True).encode(),))
        if state is S.S_SEND_DCN:
            return SendHdlc((Frame(Fcf.DCN, x=True).encode(),))
        if state is S.R_SEND_DIS:
            csi = Frame(Fcf.CSI, encode_ident(self.config.ident), final=False)
            dis = Frame(Fcf.DIS, self._our_capabilities().encode())
            return self._send((csi.encode(), dis.encode()))
        if state is S.R_REPEAT:
            return SendHdlc(self._last_sent)
        if state is S.R_TCF:
            assert params is not None
            return ReceiveTraining(params.rate.modulation, timers.t2)
        if state is S.R_SEND_CFR:
            return self._send((Frame(Fcf.CFR).encode(),))
        if state is S.R_SEND_FTT:
            return self._send((Frame(Fcf.FTT).encode(),))
        if state is S.R_PAGE:
            assert params is not None
            return ReceivePage(self._page_mod(), timers.t2)
        if state is S.R_SEND_RESPONSE:
            return self._send(self._last_response)
        raise AssertionError(f"no action for {state}")

    def _send(self, frames: tuple[bytes, ...]) -> SendHdlc:
        """A receiver's frames, remembered so a lost answer can be repeated."""
        self._last_sent = frames
        return SendHdlc(frames)

    def _page_mod(self) -> int:
        """Page data goes with V.17's short training after a TCF at the same rate; the
        first burst after CTC/CTR (a new rate without TCF) takes the long one."""
        assert self.params is not None
        if self._long_train:
            return self.params.rate.modulation
        return self.params.rate.short_modulation

    def _post_page_command(self) -> bytes:
        assert self.params is not None
        last_page = self._page_index >= len(self._pages) - 1
        command = Fcf.EOP if last_page else Fcf.MPS
        if not self.params.ecm:
            return Frame(command, x=True).encode()
        last_block = self._block >= len(self._blocks) - 1
        pps = Pps(
            command=int(command) if last_block else PPS_NULL,
            page=self._page_index,
            block=self._block,
            frames=len(self._blocks[self._block]),
        )
        return Frame(Fcf.PPS, pps.encode(), x=True).encode()

    def _our_capabilities(self) -> Capabilities:
        wishes = self.config.wishes
        return Capabilities(
            modems=frozenset(rate.modem for rate in wishes.rates),
            fine=wishes.fine,
            mr=Coding.MR in wishes.codings,
            mmr=wishes.ecm and Coding.MMR in wishes.codings,
            ecm=wishes.ecm,
            min_scan_ms=0,
        )


_KEEP_TRIES: dict[State, tuple[State, ...]] = {
    # A repeated command keeps counting tries across the send and the wait.
    S.S_WAIT_CFR: (S.S_SEND_DCS, S.S_TCF_GAP, S.S_SEND_TCF, S.S_WAIT_CFR),
    S.S_SEND_DCS: (S.S_TCF_GAP,),
    S.S_TCF_GAP: (S.S_SEND_TCF,),
    S.S_SEND_TCF: (S.S_WAIT_CFR,),
    S.S_WAIT_MCF: (S.S_SEND_PPM,),
    S.S_SEND_PPM: (S.S_WAIT_MCF,),
    S.S_WAIT_CTR: (S.S_SEND_CTC,),
    S.S_SEND_CTC: (S.S_WAIT_CTR,),
    S.R_WAIT_DCS: (S.R_REPEAT,),
    S.R_REPEAT: (S.R_WAIT_DCS,),
}
