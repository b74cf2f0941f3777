"""The T.30 engine: single-engine transitions, and sender + receiver engines wired by the
in-memory line (``workers.fax.t30.loopback``), with frames and data lost or damaged."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from faxfleet.kinds import Resolution
from faxfleet.messages import Cause
from workers.fax.t30 import ecm, loopback
from workers.fax.t30.engine import Config, Engine, State, tcf_ok
from workers.fax.t30.events import (
    CallResult,
    FrameReceived,
    Hangup,
    ModemFailed,
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
from workers.fax.t30.frames import Capabilities, Fcf, Parameters, Pps, Rate, decode_ppr
from workers.fax.t30.hdlc import Frame, parse
from workers.fax.t30.negotiate import Wishes
from workers.render.coding import Coding
from workers.render.tiff import encode_page, read_pages


def _page(number: int, rows: int = 400) -> bytes:
    image = Image.new("1", (1728, rows), 1)
    draw = ImageDraw.Draw(image)
    for y in range(20, rows - 20, 24):
        draw.rectangle((100 + 37 * number, y, 1500 - 11 * (y % 7), y + 9), fill=0)
    draw.text((200, 5), f"page {number}", fill=0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


PAGES = [_page(n) for n in range(3)]


def _pair(
    *, ecm: bool = True, pages: list[bytes] = PAGES, rx: Wishes | None = None, **tx_wishes: object
) -> tuple[Engine, Engine]:
    sender = Engine.sender(Config(ident="+1 555 0100", wishes=Wishes(ecm=ecm, **tx_wishes)), pages)
    receiver = Engine.receiver(Config(ident="+44 20 7946 0000", wishes=rx or Wishes()))
    return sender, receiver


def _bitmaps(pages: list[bytes]) -> list[object]:
    return [next(read_pages(page)).bitmap for page in pages]


# --- clean calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("ecm", [False, True])
def test_clean_call_delivers_every_page(ecm: bool) -> None:
    sender, receiver = _pair(ecm=ecm)
    result = loopback.run(sender, receiver)
    assert result.sender.ok and result.receiver.ok
    assert result.sender.pages == result.receiver.pages == 3
    assert _bitmaps(receiver.received) == _bitmaps(PAGES)
    assert result.sender.remote_id == "+44 20 7946 0000"
    assert result.receiver.remote_id == "+1 555 0100"
    params = result.sender.params
    assert params is not None and params.rate is Rate.V17_14400
    assert (params.ecm, params.coding) == ((True, Coding.MMR) if ecm else (False, Coding.MR))
    assert result.receiver.params == params


def test_standard_only_receiver_gets_halved_pages_in_mh() -> None:
    rx = Wishes(fine=False, ecm=False, codings=frozenset({Coding.MH}), rates=(Rate.V29_9600,))
    sender, receiver = _pair(rx=rx)
    result = loopback.run(sender, receiver)
    assert result.sender.ok
    params = result.sender.params
    assert params is not None
    assert (params.rate, params.coding, params.fine, params.ecm) == (
        Rate.V29_9600,
        Coding.MH,
        False,
        False,
    )
    assert [next(read_pages(p)).bitmap.height for p in receiver.received] == [200, 200, 200]


def test_ecm_without_t6_carries_mr_pages() -> None:
    rx = Wishes(codings=frozenset({Coding.MH, Coding.MR}))
    sender, receiver = _pair(rx=rx)
    result = loopback.run(sender, receiver)
    assert result.sender.ok
    params = result.sender.params
    assert params is not None and (params.ecm, params.coding) == (True, Coding.MR)
    assert _bitmaps(receiver.received) == _bitmaps(PAGES)


def test_standard_pages_are_never_sent_as_fine() -> None:
    standard = [encode_page(Image.new("1", (1728, 300), 1), Resolution.STANDARD, Coding.MMR)]
    sender, receiver = _pair(pages=standard)
    result = loopback.run(sender, receiver)
    assert result.sender.ok
    assert result.sender.params is not None and not result.sender.params.fine
    assert _bitmaps(receiver.received) == _bitmaps(standard)


# --- faults ---------------------------------------------------------------------------------


class Scripted(loopback.Faults):
    """Loses or damages chosen frames and data, and records what crossed the line."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.data_mods: list[tuple[str, int]] = []
        self.drop: dict[int, int] = {}  # FCF -> how many of them to lose
        self.bad_training_above: int | None = None
        self.bad_pages = 0
        self.ecm_bad_frames: list[set[int]] = []
        self.bursts: list[set[int]] = []

    def frame(self, frame: bytes) -> tuple[bytes, bool] | None:
        parsed = parse(frame)
        self.frames.append(parsed)
        if self.drop.get(parsed.fcf, 0) > 0:
            self.drop[parsed.fcf] -= 1
            return None
        return frame, True

    def data(self, kind: str, mod: int, data: bytes) -> bytes | None:
        self.data_mods.append((kind, mod))
        if kind == "page" and data.startswith(b"~~~~"):  # an ECM burst: note its frames
            self.bursts.append(set(ecm.decode_block(data).frames))
        bad_above = self.bad_training_above
        if kind == "training" and bad_above is not None and mod > bad_above:
            return bytes(random.Random(mod).getrandbits(8) for _ in range(len(data)))
        if kind == "page" and self.bad_pages > 0:
            self.bad_pages -= 1
            return bytes(random.Random(1).getrandbits(8) for _ in range(len(data)))
        if kind == "page" and self.ecm_bad_frames:
            return _damage_ecm_frames(data, self.ecm_bad_frames.pop(0))
        return data

    def sent(self, fcf: Fcf) -> list[Frame]:
        return [frame for frame in self.frames if frame.fcf == fcf]


def _damage_ecm_frames(data: bytes, numbers: set[int]) -> bytes:
    """Re-encode an ECM burst without the chosen frames (as if their FCS failed)."""
    burst = ecm.decode_block(data)
    good = {n: payload for n, payload in burst.frames.items() if n not in numbers}
    stream = ecm.encode_block(good)
    return stream


def test_lost_dcs_is_repeated_after_t4() -> None:
    faults = Scripted()
    faults.drop[Fcf.DCS] = 1
    sender, receiver = _pair()
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    assert len(faults.sent(Fcf.DCS)) == 2


def test_ftt_falls_back_until_training_passes() -> None:
    faults = Scripted()
    faults.bad_training_above = 48  # only V.27 ter 4800 and 2400 train
    sender, receiver = _pair(ecm=False)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    assert result.sender.params is not None
    assert result.sender.params.rate is Rate.V27_4800
    trained = [mod for kind, mod in faults.data_mods if kind == "training"]
    assert trained == [145, 121, 97, 73, 96, 72, 48]
    assert len(faults.sent(Fcf.FTT)) == 6


def test_training_failing_at_every_rate_ends_with_training_failed() -> None:
    faults = Scripted()
    faults.bad_training_above = 0
    sender, receiver = _pair(ecm=False)
    result = loopback.run(sender, receiver, faults)
    assert not result.sender.ok
    assert result.sender.cause is Cause.TRAINING_FAILED
    assert result.sender.phase == "B"
    assert result.sender.pages == 0
    trained = [mod for kind, mod in faults.data_mods if kind == "training"]
    assert trained == [145, 121, 97, 73, 96, 72, 48, 24]
    assert faults.sent(Fcf.DCN)
    assert result.receiver.cause is Cause.REMOTE_DISCONNECTED


def test_rtn_retrains_slower_and_resends_the_page() -> None:
    faults = Scripted()
    faults.bad_pages = 1
    sender, receiver = _pair(ecm=False)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok and result.sender.pages == 3
    assert len(faults.sent(Fcf.RTN)) == 1
    assert _bitmaps(receiver.received) == _bitmaps(PAGES)  # no page twice, none missing
    assert result.sender.params is not None
    assert result.sender.params.rate is Rate.V17_12000


def test_pages_rejected_every_time_end_with_page_rejected() -> None:
    faults = Scripted()
    faults.bad_pages = 100
    sender, receiver = _pair(ecm=False)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.cause is Cause.PAGE_REJECTED
    assert result.sender.pages == 0 and receiver.received == []
    assert len(faults.sent(Fcf.RTN)) == 3


def test_lost_mcf_does_not_duplicate_or_lose_a_page() -> None:
    faults = Scripted()
    faults.drop[Fcf.MCF] = 1
    sender, receiver = _pair(ecm=False)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    assert len(faults.sent(Fcf.MPS)) == 3  # the first MPS was repeated once
    assert _bitmaps(receiver.received) == _bitmaps(PAGES)


def _noise_page(dots: int, rows: int) -> bytes:
    rng = random.Random(2)
    image = Image.new("1", (1728, rows), 1)
    for _ in range(dots):
        image.putpixel((rng.randrange(1728), rng.randrange(rows)), 0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


NOISE = _noise_page(20000, 600)


def test_ecm_ppr_names_the_missing_frames_and_only_those_are_sent_again() -> None:
    pages = [NOISE]
    faults = Scripted()
    faults.ecm_bad_frames = [{3, 7, 11}]
    sender, receiver = _pair(pages=pages)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    pprs = faults.sent(Fcf.PPR)
    assert [decode_ppr(frame.fif) for frame in pprs] == [{3, 7, 11}]
    pps = [Pps.decode(frame.fif) for frame in faults.sent(Fcf.PPS)]
    assert len(pps) == 2 and pps[0] == pps[1]
    assert len(faults.bursts) == 2
    assert len(faults.bursts[0]) > 12 and faults.bursts[1] == {3, 7, 11}
    assert _bitmaps(receiver.received) == _bitmaps(pages)


def test_ecm_four_pprs_bring_ctc_and_a_slower_rate() -> None:
    faults = Scripted()
    faults.ecm_bad_frames = [{0}, {0}, {0}, {0}]
    sender, receiver = _pair(pages=PAGES[:1])
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    assert len(faults.sent(Fcf.PPR)) == 4
    assert len(faults.sent(Fcf.CTC)) == 1 and len(faults.sent(Fcf.CTR)) == 1
    mods = [mod for kind, mod in faults.data_mods if kind == "page"]
    assert mods == [146, 146, 146, 146, 121]  # long training only at the new rate
    assert result.sender.params is not None
    assert result.sender.params.rate is Rate.V17_12000


def test_multi_block_ecm_page() -> None:
    # 64-byte frames: a page of noise needs more than 256 of them.
    pages = [NOISE]
    faults = Scripted()
    sender, receiver = _pair(pages=pages, ecm_frame_size=64)
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok
    pps = [Pps.decode(frame.fif) for frame in faults.sent(Fcf.PPS)]
    assert len(pps) >= 2
    assert [p.command for p in pps[:-1]] == [0] * (len(pps) - 1)
    assert pps[-1].command == Fcf.EOP and [p.block for p in pps] == list(range(len(pps)))
    assert _bitmaps(receiver.received) == _bitmaps(pages)


# --- single-engine transitions --------------------------------------------------------------


def _dis(caps: Capabilities | None = None) -> bytes:
    return Frame(Fcf.DIS, (caps or Capabilities(ecm=True, mmr=True)).encode()).encode()


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        ("busy", Cause.BUSY),
        ("no_answer", Cause.NO_ANSWER),
        ("no_carrier", Cause.NO_CARRIER),
        ("no_dialtone", Cause.NO_DIALTONE),
        ("error", Cause.MODEM_ERROR),
        ("not_responding", Cause.MODEM_NOT_RESPONDING),
    ],
)
def test_call_set_up_failures(status: str, cause: Cause) -> None:
    action = Engine.sender(Config(), PAGES).feed(CallResult(status))
    assert isinstance(action, Hangup)
    assert (action.outcome.cause, action.outcome.phase) == (cause, "A")


def test_no_dis_within_t1_is_not_a_fax() -> None:
    engine = Engine.sender(Config(), PAGES)
    assert engine.feed(CallResult("ok")) == ReceiveHdlc(35.0)
    action = engine.feed(Timeout("T1"))
    assert isinstance(action, Hangup)
    assert action.outcome.cause is Cause.NOT_A_FAX and action.outcome.phase == "B"


def test_sender_phase_b_sequence() -> None:
    engine = Engine.sender(Config(ident="42"), PAGES)
    engine.feed(CallResult("ok"))
    csi = Frame(Fcf.CSI, b"99".ljust(20), final=False).encode()
    assert engine.feed(FrameReceived(csi)) == ReceiveHdlc(35.0)
    action = engine.feed(FrameReceived(_dis()))
    assert isinstance(action, SendHdlc)
    tsi, dcs = (parse(f) for f in action.frames)
    assert (tsi.fcf, tsi.x, tsi.final, dcs.fcf, dcs.x) == (Fcf.TSI, True, False, Fcf.DCS, True)
    assert Parameters.decode(dcs.fif).rate is Rate.V17_14400
    assert engine.feed(Sent()) == SendSilence(75)
    assert engine.feed(Sent()) == SendTraining(145, 2700)
    assert engine.feed(Sent()) == ReceiveHdlc(3.0)
    assert engine.remote_id == "99"
    # A damaged answer counts as no answer: DCS is repeated, at most 3 times in all.
    assert isinstance(engine.feed(FrameReceived(b"\xff\x13\x84", fcs_ok=False)), SendHdlc)
    for _ in range(3):
        engine.feed(Sent())
    assert engine.state is State.S_WAIT_CFR
    engine.feed(Timeout("T4"))
    for _ in range(3):
        engine.feed(Sent())
    action = engine.feed(Timeout("T4"))
    assert engine.state is State.S_SEND_DCN
    assert isinstance(action, SendHdlc) and parse(action.frames[0]).fcf == Fcf.DCN
    final = engine.feed(Sent())
    assert isinstance(final, Hangup)
    assert final.outcome.cause is Cause.PROTOCOL_ERROR and final.outcome.phase == "B"


def test_receiver_answers_with_csi_and_dis_and_judges_tcf() -> None:
    engine = Engine.receiver(Config(ident="+49 30 1234"))
    action = engine.feed(CallResult("ok"))
    assert isinstance(action, SendHdlc)
    csi, dis = (parse(f) for f in action.frames)
    assert (csi.fcf, dis.fcf, csi.final, dis.final) == (Fcf.CSI, Fcf.DIS, False, True)
    assert Capabilities.decode(dis.fif).ecm
    assert engine.feed(Sent()) == ReceiveHdlc(3.0)
    dcs = Parameters(rate=Rate.V29_9600, fine=True, coding=Coding.MR, min_scan_ms=0)
    assert engine.feed(FrameReceived(Frame(Fcf.DCS, dcs.encode(), x=True).encode())) == (
        ReceiveTraining(96, 6.0)
    )
    noisy = bytes(600) + b"\x10" + bytes(600)  # no full second of zeros at 9600 bit/s
    action = engine.feed(TrainingReceived(noisy))
    assert isinstance(action, SendHdlc) and parse(action.frames[0]).fcf == Fcf.FTT
    engine.feed(Sent())
    engine.feed(FrameReceived(Frame(Fcf.DCS, dcs.encode(), x=True).encode()))
    action = engine.feed(TrainingReceived(bytes(1800)))
    assert isinstance(action, SendHdlc) and parse(action.frames[0]).fcf == Fcf.CFR
    assert engine.feed(Sent()) == ReceivePage(96, 6.0)


def test_tcf_judgement() -> None:
    assert tcf_ok(bytes(1200), Rate.V29_9600)
    assert not tcf_ok(bytes(1199), Rate.V29_9600)
    assert tcf_ok(b"\xff\x01" + bytes(1800) + b"\x80", Rate.V17_9600)


def test_modem_failure_mid_call() -> None:
    engine = Engine.sender(Config(), PAGES)
    engine.feed(CallResult("ok"))
    engine.feed(FrameReceived(_dis()))
    action = engine.feed(ModemFailed("not_responding"))
    assert isinstance(action, Hangup)
    assert action.outcome.cause is Cause.MODEM_NOT_RESPONDING and action.outcome.phase == "B"


def test_remote_dcn_mid_call() -> None:
    engine = Engine.sender(Config(), PAGES)
    engine.feed(CallResult("ok"))
    engine.feed(FrameReceived(_dis()))
    for _ in range(3):
        engine.feed(Sent())
    action = engine.feed(FrameReceived(Frame(Fcf.DCN).encode()))
    assert isinstance(action, Hangup)
    assert action.outcome.cause is Cause.REMOTE_DISCONNECTED


def test_sender_sends_the_page_after_cfr() -> None:
    engine = Engine.sender(Config(wishes=Wishes(ecm=False)), PAGES[:1])
    engine.feed(CallResult("ok"))
    engine.feed(FrameReceived(_dis(Capabilities())))
    for _ in range(3):
        engine.feed(Sent())
    assert engine.feed(FrameReceived(Frame(Fcf.CFR).encode())) == SendSilence(75)
    action = engine.feed(Sent())
    assert isinstance(action, SendPage) and action.mod == 146  # V.17 short training
    engine.feed(Sent())
    action = engine.feed(Sent())
    assert isinstance(action, SendHdlc) and parse(action.frames[0]).fcf == Fcf.EOP
    engine.feed(Sent())
    action = engine.feed(FrameReceived(Frame(Fcf.MCF).encode()))
    assert isinstance(action, SendHdlc) and parse(action.frames[0]).fcf == Fcf.DCN
    final = engine.feed(Sent())
    assert isinstance(final, Hangup) and final.outcome.ok and final.outcome.pages == 1


# --- property: never claim a page the receiver does not have --------------------------------


class Random(loopback.Faults):
    def __init__(self, seed: int, loss: float, damage: float, data_loss: float) -> None:
        self.rng = random.Random(seed)
        self.loss, self.damage, self.data_loss = loss, damage, data_loss

    def frame(self, frame: bytes) -> tuple[bytes, bool] | None:
        roll = self.rng.random()
        if roll < self.loss:
            return None
        if roll < self.loss + self.damage:
            return frame, False
        return frame, True

    def data(self, kind: str, mod: int, data: bytes) -> bytes | None:
        roll = self.rng.random()
        if roll < self.data_loss:
            return None
        if roll < 2 * self.data_loss and data:
            damaged = bytearray(data)
            for _ in range(self.rng.randint(1, 40)):
                damaged[self.rng.randrange(len(damaged))] ^= 1 << self.rng.randrange(8)
            return bytes(damaged)
        return data


SMALL = [_page(n, rows=120) for n in range(3)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0, 0.3),
    damage=st.floats(0, 0.3),
    data_loss=st.floats(0, 0.3),
    ecm=st.booleans(),
)
def test_faults_never_make_the_sender_claim_pages_the_receiver_lacks(
    seed: int, loss: float, damage: float, data_loss: float, ecm: bool
) -> None:
    sender, receiver = _pair(ecm=ecm, pages=SMALL)
    result = loopback.run(sender, receiver, Random(seed, loss, damage, data_loss))
    assert result.sender.pages <= len(receiver.received)
    if result.sender.ok:
        assert result.sender.pages == len(SMALL)
        if ecm:  # ECM pages arrive exact (without ECM a page may carry a few bad rows)
            stored = _bitmaps(receiver.received)
            assert all(page in stored for page in _bitmaps(SMALL))
    else:
        assert result.sender.cause is not None
    assert result.receiver.pages == len(receiver.received)


def test_receiver_that_answered_eop_succeeds_even_without_dcn() -> None:
    faults = Scripted()
    faults.drop[Fcf.DCN] = 1
    sender, receiver = _pair()
    result = loopback.run(sender, receiver, faults)
    assert result.sender.ok and result.receiver.ok
    assert result.receiver.pages == 3


def test_receiver_modem_failure_after_eop_keeps_the_fax() -> None:
    engine = Engine.receiver(Config())
    engine._answered_eop = True  # the state after answering EOP with MCF
    engine.state = State.R_WAIT_DCN
    action = engine.feed(ModemFailed("error"))
    assert isinstance(action, Hangup) and action.outcome.ok
