"""Run a T.30 engine over a Class 1 modem: one fax call, sending or receiving.

The engine (:mod:`workers.fax.t30.engine`) decides; this module only performs its actions
on the modem and reports the results back as events. Anything with the methods of
:class:`Class1Line` will do: :class:`workers.fax.modem.class1.Class1Modem` on a real or
emulated modem, or a stand-in in tests.

Hooks let the worker follow the call (``connected`` once the far end is identified,
``page_started`` per page) and stop it (``should_stop``, polled before every modem
operation: the call then ends with DCN and cause ``cancelled``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faxfleet.log import get_logger
from faxfleet.messages import Cause
from workers.fax.modem.at import AtError
from workers.fax.modem.class1 import Modulation
from workers.fax.t30.engine import Config, Engine
from workers.fax.t30.events import (
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
from workers.fax.t30.frames import Fcf
from workers.fax.t30.hdlc import Frame

log = get_logger(__name__)


class _Received(Protocol):
    @property
    def status(self) -> str: ...


class HdlcReceived(_Received, Protocol):
    @property
    def frame(self) -> bytes | None: ...


class DataReceived(_Received, Protocol):
    @property
    def data(self) -> bytes: ...


class Class1Line(Protocol):
    """The Class 1 primitives a call needs (statuses are CallStatus values: "ok", ...)."""

    def dial(self, dial_string: str, timeout: float = ...) -> str: ...
    def answer(self, timeout: float = ...) -> str: ...
    def send_hdlc(self, frames: Sequence[bytes]) -> str: ...
    def receive_hdlc(self, timeout: float) -> HdlcReceived: ...
    def send_data(self, mod: Modulation, data: bytes) -> str: ...
    def receive_data(self, mod: Modulation, timeout: float) -> DataReceived: ...
    def send_silence(self, ms: int) -> str: ...
    def hangup(self) -> str: ...


class Hooks:
    """Callbacks during a call; override what you need."""

    def connected(self, remote_id: str) -> None:
        """Phase B is done: the far end is a fax machine, identified as ``remote_id``."""

    def page_started(self, number: int) -> None:
        """Page ``number`` (1-based) starts crossing the line."""

    def should_stop(self) -> bool:
        """True to end the call as soon as possible (DCN, then hang up)."""
        return False


@dataclass(frozen=True)
class SessionResult:
    """How one call went."""

    ok: bool
    pages: int
    """Sending: pages the far end confirmed. Receiving: pages stored."""
    cause: Cause | None
    detail: str
    phase: str
    remote_id: str
    bit_rate: int | None
    coding: str | None
    ecm: bool
    received: list[bytes] = field(default_factory=list)
    """Receiving: the pages, single-page TIFF Class F files."""
    seconds: float = 0.0

    @classmethod
    def of(cls, outcome: Outcome, received: list[bytes], seconds: float) -> SessionResult:
        params = outcome.params
        return cls(
            ok=outcome.ok,
            pages=outcome.pages,
            cause=outcome.cause,
            detail=outcome.detail,
            phase=outcome.phase,
            remote_id=outcome.remote_id,
            bit_rate=params.rate.bit_rate if params else None,
            coding=str(params.coding) if params else None,
            ecm=params.ecm if params else False,
            received=received,
            seconds=seconds,
        )


def send_fax(
    modem: Class1Line,
    dial_string: str,
    pages: Sequence[bytes],
    config: Config | None = None,
    hooks: Hooks | None = None,
    *,
    dial_timeout: float = 90.0,
) -> SessionResult:
    """Dial ``dial_string`` and send ``pages`` (rendered single-page TIFF files)."""
    engine = Engine.sender(config or Config(), pages)
    started = time.monotonic()
    try:
        status = str(modem.dial(dial_string, dial_timeout))
    except (AtError, OSError) as error:
        log.warning("dialling failed", error=str(error))
        status = "not_responding"
    return _run(modem, engine, status, hooks or Hooks(), started)


def receive_fax(
    modem: Class1Line,
    config: Config | None = None,
    hooks: Hooks | None = None,
    *,
    answer_timeout: float = 30.0,
) -> SessionResult:
    """Answer a ringing line and receive a fax."""
    engine = Engine.receiver(config or Config())
    started = time.monotonic()
    try:
        status = str(modem.answer(answer_timeout))
    except (AtError, OSError) as error:
        log.warning("answering failed", error=str(error))
        status = "not_responding"
    return _run(modem, engine, status, hooks or Hooks(), started)


def _run(
    modem: Class1Line, engine: Engine, status: str, hooks: Hooks, started: float
) -> SessionResult:
    action = engine.feed(CallResult(status))
    announced = False
    page_number = 0
    while not isinstance(action, Hangup):
        if hooks.should_stop():
            return _cancel(modem, engine, started)
        if not announced and isinstance(action, (SendPage, ReceivePage)):
            announced = True
            hooks.connected(engine.remote_id)
        if isinstance(action, (SendPage, ReceivePage)):
            current = (engine.confirmed if engine.role == "sender" else len(engine.received)) + 1
            if current != page_number:
                page_number = current
                hooks.page_started(current)
        try:
            event = _perform(modem, action)
        except (AtError, OSError) as error:
            # The port went away or the modem stopped answering mid-operation.
            log.warning("modem failed mid-call", error=str(error))
            event = ModemFailed("not_responding")
        action = engine.feed(event)
    if status == "ok":
        try:
            modem.hangup()
        except (AtError, OSError) as error:
            log.warning("hang-up failed", error=str(error))
    return SessionResult.of(action.outcome, engine.received, time.monotonic() - started)


def _cancel(modem: Class1Line, engine: Engine, started: float) -> SessionResult:
    """Stop a call at the caller's request: DCN (when a call is up), then hang up."""
    modem.send_hdlc([Frame(Fcf.DCN, x=engine.role == "sender").encode()])
    modem.hangup()
    pages = engine.confirmed if engine.role == "sender" else len(engine.received)
    outcome = Outcome(
        ok=False,
        cause=Cause.CANCELLED,
        phase=engine.outcome.phase if engine.outcome else "B",
        pages=pages,
        detail="stopped on request",
        remote_id=engine.remote_id,
        params=engine.params,
    )
    return SessionResult.of(outcome, engine.received, time.monotonic() - started)


def _send_event(status: str) -> Event:
    if status == "ok":
        return Sent()
    if status in ("timeout", "not_responding"):
        return ModemFailed("not_responding")
    if status == "no_carrier":
        return ModemFailed("no_carrier")
    return ModemFailed("error")


def _perform(modem: Class1Line, action: Action) -> Event:
    """Do one action on the modem; its result as the engine's event."""
    match action:
        case SendHdlc(frames=frames):
            return _send_event(str(modem.send_hdlc(list(frames))))
        case SendSilence(ms=ms):
            return _send_event(str(modem.send_silence(ms)))
        case SendTraining(mod=mod, n_bytes=n):
            return _send_event(str(modem.send_data(Modulation(mod), bytes(n))))
        case SendPage(mod=mod, data=data):
            return _send_event(str(modem.send_data(Modulation(mod), data)))
        case ReceiveHdlc(timeout=timeout):
            got = modem.receive_hdlc(timeout)
            if got.status == "ok" and got.frame:
                return FrameReceived(got.frame, True)
            if got.status == "bad_fcs":
                return FrameReceived(got.frame or b"", False)
            if got.status in ("timeout", "ok"):
                return Timeout("frame")
            return ReceiveFailed(got.status)
        case ReceiveTraining(mod=mod, timeout=timeout):
            data = modem.receive_data(Modulation(mod), timeout)
            if data.status in ("ok", "timeout") and data.data:
                return TrainingReceived(data.data)
            return ReceiveFailed(data.status) if data.status != "ok" else Timeout("training")
        case ReceivePage(mod=mod, timeout=timeout):
            data = modem.receive_data(Modulation(mod), timeout)
            if data.status in ("ok", "timeout") and data.data:
                return PageReceived(data.data)
            if data.status == "timeout":
                return Timeout("page")
            return ReceiveFailed(data.status if data.status != "ok" else "no_carrier")
    raise AssertionError(f"no way to perform {action!r}")
