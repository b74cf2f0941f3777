"""What the T.30 engine is told (events) and what it asks for (actions).

Each action maps one to one onto a Class 1 modem primitive (:mod:`workers.fax.session`
performs them); each result of a primitive comes back as exactly one event. The engine
answers every event with exactly one action, so a runner is a plain loop:
``action = engine.feed(perform(action))`` until the action is :class:`Hangup`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faxfleet.messages import Cause

from .frames import Parameters

# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallResult:
    """How dialling or answering ended: "ok" (connected, fax carrier expected) or a failure
    named like the modem's CallStatus (busy, no_answer, no_carrier, no_dialtone, error,
    timeout, not_responding)."""

    status: str


@dataclass(frozen=True)
class FrameReceived:
    """One HDLC frame (line-order bytes, no FCS) from AT+FRH=3; ``fcs_ok`` False when the
    modem reported a bad FCS (the bytes are then not to be trusted)."""

    frame: bytes
    fcs_ok: bool = True


@dataclass(frozen=True)
class Timeout:
    """The receive the engine asked for found nothing in time (``which`` names the wait)."""

    which: str = ""


@dataclass(frozen=True)
class ReceiveFailed:
    """A receive ended without data: "no_carrier", or "fcerror" (the far end is on another
    modulation: typically still talking V.21 while we wait for page data)."""

    status: str


@dataclass(frozen=True)
class TrainingReceived:
    """The TCF bytes the modem delivered after AT+FRM."""

    data: bytes


@dataclass(frozen=True)
class PageReceived:
    """High-speed data after AT+FRM: a page (T.4/T.6) or an ECM block burst."""

    data: bytes


@dataclass(frozen=True)
class Sent:
    """The last send (frames, training, page data, silence) is complete."""


@dataclass(frozen=True)
class ModemFailed:
    """A send failed mid-call: "error" (an ERROR result), "not_responding" (the modem
    stopped answering) or "no_carrier" (the line dropped)."""

    status: str


Event = (
    CallResult
    | FrameReceived
    | Timeout
    | ReceiveFailed
    | TrainingReceived
    | PageReceived
    | Sent
    | ModemFailed
)


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendHdlc:
    """AT+FTH=3 with these frames (line order, no FCS; the last one has control 0x13)."""

    frames: tuple[bytes, ...]


@dataclass(frozen=True)
class ReceiveHdlc:
    """AT+FRH=3 for one frame, giving up after ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True)
class SendTraining:
    """AT+FTM=<mod> with ``n_bytes`` zero bytes: the TCF check of the modem's training."""

    mod: int
    n_bytes: int


@dataclass(frozen=True)
class ReceiveTraining:
    """AT+FRM=<mod> for the TCF."""

    mod: int
    timeout: float


@dataclass(frozen=True)
class SendPage:
    """AT+FTM=<mod> with page data (or an ECM block burst), in line order."""

    mod: int
    data: bytes


@dataclass(frozen=True)
class ReceivePage:
    """AT+FRM=<mod> for page data (or an ECM block burst)."""

    mod: int
    timeout: float


@dataclass(frozen=True)
class SendSilence:
    """AT+FTS=<ms/10>: the pause T.30 puts between a V.21 message and high-speed data."""

    ms: int


@dataclass(frozen=True)
class Outcome:
    """How a call ended: success, or the cause, in which T.30 phase, after how many pages."""

    ok: bool
    cause: Cause | None
    phase: str
    """"A" call set-up, "B" pre-message, "C" page transfer, "D" post-message, "E" release."""
    pages: int
    """Sender: pages the receiver confirmed. Receiver: pages stored."""
    detail: str = ""
    remote_id: str = ""
    params: Parameters | None = None


@dataclass(frozen=True)
class Hangup:
    """ATH: the call is over (a DCN has already been sent when one was due)."""

    outcome: Outcome = field(default_factory=lambda: Outcome(False, None, "A", 0))


Action = (
    SendHdlc
    | ReceiveHdlc
    | SendTraining
    | ReceiveTraining
    | SendPage
    | ReceivePage
    | SendSilence
    | Hangup
)
