"""Two engines on one simulated half-duplex line, in memory: no modems, no threads.

For tests, benchmarks and simulated fleets: a sender's send actions become the receiver's
events and the other way round, with the line time each would take counted on a virtual
clock (V.21 at 300 bit/s with a 1 s preamble, page data at the negotiated rate). A
:class:`Faults` object may lose or damage what crosses the line.

The line behaves as a Class 1 modem pair does: frames sent while the other side waits for
page data are heard as V.21 (``+FCERROR``) and lost; page data sent while the other side
waits for frames is not heard (its wait times out); frames sent together in one message
are read one per receive; when both sides listen, the shorter wait expires first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .engine import Engine
from .events import (
    Action,
    CallResult,
    Event,
    FrameReceived,
    Hangup,
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
from .frames import Rate

V21_BPS = 300
PREAMBLE_S = 1.0
_BIT_RATE = {rate.modulation: rate.bit_rate for rate in Rate} | {
    rate.short_modulation: rate.bit_rate for rate in Rate
}


class Faults:
    """No faults. Subclass and override to lose or damage what crosses the line."""

    def frame(self, frame: bytes) -> tuple[bytes, bool] | None:
        """A frame as heard: (bytes, FCS good), or None when lost."""
        return frame, True

    def data(self, kind: str, mod: int, data: bytes) -> bytes | None:
        """``kind`` "training" or "page" data sent with Class 1 modulation ``mod``, as
        heard, or None when the carrier is lost."""
        return data


@dataclass
class LineResult:
    sender: Outcome
    receiver: Outcome
    line_seconds: float
    events: int
    trace: list[str] = field(default_factory=list)


_SENDS = (SendHdlc, SendTraining, SendPage)
_RECEIVES = (ReceiveHdlc, ReceiveTraining, ReceivePage)


def _duration(action: Action) -> float:
    if isinstance(action, SendHdlc):
        octets = sum(len(frame) + 3 for frame in action.frames)
        return PREAMBLE_S + octets * 8 / V21_BPS
    if isinstance(action, SendTraining):
        return action.n_bytes * 8 / _BIT_RATE.get(action.mod, 2400)
    if isinstance(action, SendPage):
        return len(action.data) * 8 / _BIT_RATE.get(action.mod, 2400)
    if isinstance(action, SendSilence):
        return action.ms / 1000
    return 0.0


def run(
    sender: Engine,
    receiver: Engine,
    faults: Faults | None = None,
    *,
    trace: bool = False,
    max_steps: int = 100_000,
) -> LineResult:
    """Connect the two engines and run the call to its end on both sides."""
    faults = faults or Faults()
    engines = (sender, receiver)
    actions: list[Action] = [sender.feed(CallResult("ok")), receiver.feed(CallResult("ok"))]
    queues: list[deque[tuple[bytes, bool]]] = [deque(), deque()]
    waited = [0.0, 0.0]
    clock = 0.0
    steps = 0
    log: list[str] = []

    def feed(side: int, event: Event) -> None:
        if trace:
            log.append(f"{clock:8.2f} {'SR'[side]} <- {_short(event)}")
        actions[side] = engines[side].feed(event)
        waited[side] = 0.0
        if trace:
            log.append(f"{clock:8.2f} {'SR'[side]} -> {_short(actions[side])}")
        if not isinstance(actions[side], ReceiveHdlc):
            queues[side].clear()

    while not (isinstance(actions[0], Hangup) and isinstance(actions[1], Hangup)):
        steps += 1
        if steps > max_steps:
            raise RuntimeError("the simulated call does not end")
        # 1. frames already received, read one per AT+FRH
        served = False
        for side in (0, 1):
            if isinstance(actions[side], ReceiveHdlc) and queues[side]:
                frame, good = queues[side].popleft()
                feed(side, FrameReceived(frame, good))
                served = True
        if served:
            continue
        # 2. silence takes only time
        silent = next((s for s in (0, 1) if isinstance(actions[s], SendSilence)), None)
        if silent is not None:
            clock += _duration(actions[silent])
            feed(silent, Sent())
            continue
        # 3. one side transmits
        talker = next((s for s in (0, 1) if isinstance(actions[s], _SENDS)), None)
        if talker is not None:
            other = 1 - talker
            sent = actions[talker]
            clock += _duration(sent)
            listening = actions[other]
            if isinstance(sent, SendHdlc):
                if isinstance(listening, ReceiveHdlc):
                    heard = [faults.frame(frame) for frame in sent.frames]
                    queues[other].extend(h for h in heard if h is not None)
                elif isinstance(listening, (ReceiveTraining, ReceivePage)):
                    feed(other, ReceiveFailed("fcerror"))
            elif isinstance(listening, (ReceiveTraining, ReceivePage)):
                if listening.mod != sent.mod:
                    feed(other, ReceiveFailed("fcerror"))
                else:
                    kind = "training" if isinstance(sent, SendTraining) else "page"
                    payload = bytes(sent.n_bytes) if isinstance(sent, SendTraining) else sent.data
                    heard_data = faults.data(kind, sent.mod, payload)
                    if heard_data is None:
                        feed(other, ReceiveFailed("no_carrier"))
                    elif isinstance(listening, ReceiveTraining):
                        feed(other, TrainingReceived(heard_data))
                    else:
                        feed(other, PageReceived(heard_data))
            elif isinstance(listening, ReceiveHdlc):
                waited[other] += _duration(sent)
            feed(talker, Sent())
            continue
        # 4. nobody transmits: the shorter wait expires (a hung-up side waits for nothing)
        waits = [
            (actions[s].timeout - waited[s], s) for s in (0, 1) if isinstance(actions[s], _RECEIVES)
        ]
        if not waits:
            break
        remaining, side = min(waits)
        remaining = max(remaining, 0.0)
        clock += remaining
        for s in (0, 1):
            waited[s] += remaining
        feed(side, Timeout())
    outcomes = [sender.outcome, receiver.outcome]
    assert outcomes[0] is not None and outcomes[1] is not None
    return LineResult(outcomes[0], outcomes[1], clock, steps, log)


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) < 120 else text[:117] + "..."
