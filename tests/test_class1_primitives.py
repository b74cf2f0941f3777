"""Class 1 primitives between two emulated modems over real ptys: call setup, frames,
page data, and the ways each goes wrong."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from workers.fax.emulator import EmulatorPair
from workers.fax.emulator.modem import CARRIER_TAIL
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import CallStatus, Class1Modem, Modulation
from workers.fax.modem.dle import END, stuff

SCALE = 100
FAULTS = (
    "5550010=busy; 5550011=no_answer; 5550012=no_dialtone; 5550013=voice; "
    "5550020=bad_fcs:1; 5550021=drop_after:5000; 5550022=noisy_page:1,noise_every:50"
)
DIS = bytes.fromhex("ff13800073f8")
"""A final DIS frame as on the line (address, control with the final bit, FCF, FIF)."""
CSI = bytes.fromhex("ff03400000003130")


@pytest.fixture
def pair() -> Iterator[EmulatorPair]:
    with EmulatorPair(("5551001", "5551002"), time_scale=SCALE, faults=FAULTS) as p:
        yield p


@pytest.fixture
def modems(pair: EmulatorPair) -> Iterator[tuple[Class1Modem, Class1Modem]]:
    a = Class1Modem(AtPort.open(pair.urls[0], name="line-a"))
    b = Class1Modem(AtPort.open(pair.urls[1], name="line-b"))
    for m in (a, b):
        m.port.command("ATE0V1Q0")
    yield a, b
    a.port.close()
    b.port.close()


def page_of(data: bytes) -> bytes:
    """What was sent, from what a receiver got: like iaxmodem, the emulated modem hands
    over some junk as the carrier ends."""
    assert data.endswith(CARRIER_TAIL), data[-60:]
    return data[: -len(CARRIER_TAIL)]


class Background:
    """Run one side of a call in a thread and collect what it returns."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, args=(fn,))
        self._t.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def get(self, timeout: float = 20) -> Any:
        self._t.join(timeout)
        assert not self._t.is_alive(), "background side did not finish"
        if self.error:
            raise self.error
        return self.result


def connect(a: Class1Modem, b: Class1Modem, number: str = "5551002") -> None:
    def answer() -> CallStatus:
        assert b.port.wait_for(["RING"], 5) == "RING"
        return b.answer(10)

    side = Background(answer)
    assert a.dial(number, 10) is CallStatus.OK
    assert side.get() is CallStatus.OK


def test_probe_reports_classes_and_modulations(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, _ = modems
    info = a.probe()
    assert info.class1 and info.classes == ("0", "1", "1.0")
    assert a.fax_class == "1.0"
    assert Modulation.V17_14400 in info.transmit and Modulation.V27TER_2400 in info.receive
    assert len(info.transmit) == 12
    assert info.manufacturer == "faxfleet"
    assert Modulation.V17_14400_SHORT.bit_rate == 14400


def test_dial_answer_and_the_answerers_dis_arrives_intact(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    connect(a, b)
    assert a.fcs_included is None
    side = Background(lambda: b.send_hdlc([CSI, DIS]))
    first = a.receive_hdlc(5)
    second = a.receive_hdlc(5)
    assert side.get() is CallStatus.OK
    assert (first.status, first.frame) == ("ok", CSI)
    assert (second.status, second.frame) == ("ok", DIS)
    assert a.fcs_included is True  # the emulated modem passes the FCS on, as iaxmodem does
    # And back: the caller's frame reaches the answerer.
    dcs = bytes.fromhex("ff13830073f8")
    side = Background(lambda: b.receive_hdlc(5))
    assert a.send_hdlc([dcs]) is CallStatus.OK
    assert side.get().frame == dcs


def test_frames_take_their_line_time(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    side = Background(lambda: a.receive_hdlc(5))
    assert b.send_hdlc([DIS]) is CallStatus.OK
    assert side.get().frame == DIS
    frame = b"\xff\x13\x80" + bytes(range(60))
    side = Background(lambda: a.receive_hdlc(5))
    started = time.monotonic()
    assert b.send_hdlc([frame]) is CallStatus.OK
    took = time.monotonic() - started
    # 1 s of flags, then 66 bytes (with FCS and a flag) at 300 bit/s, over the time scale
    line_time = 1.0 + (len(frame) + 3) * 8 / 300
    assert took >= line_time / SCALE * 0.9
    assert side.get().frame == frame


@pytest.mark.parametrize(
    ("number", "status"),
    [
        ("5550010", CallStatus.BUSY),
        ("5550011", CallStatus.NO_ANSWER),
        ("5550012", CallStatus.NO_DIALTONE),
        ("5550013", CallStatus.NO_CARRIER),
        ("5551001", CallStatus.BUSY),  # its own number
    ],
)
def test_dial_failures(
    modems: tuple[Class1Modem, Class1Modem], number: str, status: CallStatus
) -> None:
    a, _ = modems
    assert a.dial(number, 10) is status
    assert a.port.command("AT").ok


def test_nobody_answers_gives_no_answer_then_the_line_is_free(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    a.port.command("ATS7=5")  # give up after five seconds of line time
    assert a.dial("5551002", 10) is CallStatus.NO_ANSWER
    assert "RING" in b.port.unsolicited()
    a.port.command("ATS7=60")
    connect(a, b)


def test_auto_answer_after_rings(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    b.port.command("AT+FCLASS=1")
    b.port.command("ATS0=2")
    assert a.dial("5551002", 10) is CallStatus.OK
    assert [b.port.read_line(2) for _ in range(3)] == ["RING", "RING", "CONNECT"]
    # Auto-answered: the modem is in V.21 transmit, waiting for the first frame.
    b.port.write(stuff(DIS) + END)
    assert b.port.read_line(2) == "OK"
    assert a.receive_hdlc(5).frame == DIS


def test_dial_timeout_aborts_the_call(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    started = time.monotonic()
    assert a.dial("5551002", 0.3) is CallStatus.TIMEOUT
    assert time.monotonic() - started < 4
    assert a.port.command("AT").ok
    assert b.port.command("ATA", timeout=3).final == "ERROR"  # nothing rings any more


def test_bad_fcs_is_reported(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b, "5550020")  # the first frame of the call arrives damaged
    side = Background(lambda: b.send_hdlc([CSI, DIS]))
    bad = a.receive_hdlc(5)
    good = a.receive_hdlc(5)
    side.get()
    assert bad.status == "bad_fcs" and bad.frame is not None and bad.frame != CSI
    assert (good.status, good.frame) == ("ok", DIS)


def test_missed_frame_when_not_listening(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    assert b.send_hdlc([DIS]) is CallStatus.OK
    assert a.receive_hdlc(0.5).status == "ok"  # this one was waited for
    assert b.send_hdlc([DIS]) is CallStatus.OK  # nobody listens to this one
    time.sleep(0.5)
    assert a.receive_hdlc(0.5).status == "timeout"
    assert a.port.command("AT").ok


def test_following_frames_of_a_carrier_wait_for_a_late_receiver(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    connect(a, b)
    assert b.send_hdlc([CSI, DIS]) is CallStatus.OK
    assert a.receive_hdlc(1).frame == CSI  # locked on this carrier now
    time.sleep(0.5)  # later than the turn-around tolerance
    assert a.receive_hdlc(1).frame == DIS


def test_page_data_with_dle_passes_intact(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    page = (b"\x10\x03\x10\x10\x11\x13\x00\xff" * 2000) + bytes(range(256)) * 10
    side = Background(lambda: b.receive_data(Modulation.V17_14400, 5))
    started = time.monotonic()
    assert a.send_data(Modulation.V17_14400, page) is CallStatus.OK
    took = time.monotonic() - started
    got = side.get()
    assert got.status == "ok" and page_of(got.data) == page
    assert took >= (1.39 + len(page) * 8 / 14400) / SCALE * 0.9


def test_tcf_then_short_train_page(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    tcf = bytes(1800)  # 1.5 s of zeros at 9600
    side = Background(lambda: b.receive_data(Modulation.V17_9600, 5))
    assert a.send_data(Modulation.V17_9600, tcf) is CallStatus.OK
    assert page_of(side.get().data) == tcf
    side = Background(lambda: b.receive_data(Modulation.V17_9600_SHORT, 5))
    assert a.send_data(Modulation.V17_9600_SHORT, b"page") is CallStatus.OK
    assert page_of(side.get().data) == b"page"


def listening(pair: EmulatorPair, modem: int, command: str) -> None:
    """Wait until the emulated modem has received ``command`` (so it listens now)."""
    deadline = time.monotonic() + 5
    while pair.modems[modem].commands[-1:] != [command]:
        assert time.monotonic() < deadline, pair.modems[modem].commands
        time.sleep(0.005)


def test_fcerror_on_modulation_mismatch(
    pair: EmulatorPair, modems: tuple[Class1Modem, Class1Modem]
) -> None:
    a, b = modems
    connect(a, b)
    side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
    listening(pair, 1, "AT+FRM=96")
    assert a.send_data(Modulation.V17_14400, b"\x00" * 500) is CallStatus.OK
    assert side.get().status == "fcerror"
    time.sleep(0.3)  # past the turn-around tolerance: that carrier is gone for good
    # A V.21 frame where page data was expected is a mismatch too.
    side = Background(lambda: b.receive_data(Modulation.V17_14400, 5))
    listening(pair, 1, "AT+FRM=145")
    assert a.send_hdlc([DIS]) is CallStatus.OK
    assert side.get().status == "fcerror"


def test_no_carrier_mid_page(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b, "5550021")  # the call drops after 5000 bytes of page data
    page = bytes((i % 255) + 1 for i in range(40000))
    side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
    assert a.send_data(Modulation.V29_9600, page) is CallStatus.NO_CARRIER
    got = side.get()
    assert page_of(got.data) == page[:5000]
    # Waiting when the call drops: NO CARRIER; asking after it dropped: ERROR (iaxmodem).
    assert b.receive_hdlc(2).status in ("no_carrier", "error")
    assert b.receive_hdlc(2).status == "error"
    assert a.port.command("AT").ok and b.port.command("AT").ok


def test_noisy_page_flips_bits_but_not_in_the_training_check(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    connect(a, b, "5550022")
    tcf = bytes(1800)
    side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
    a.send_data(Modulation.V29_9600, tcf)
    assert page_of(side.get().data) == tcf
    page = bytes((i % 200) + 1 for i in range(5000))
    side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
    assert a.send_data(Modulation.V29_9600, page) is CallStatus.OK
    got = page_of(side.get().data)
    assert len(got) == len(page)
    damaged = [i for i in range(len(page)) if got[i] != page[i]]
    assert len(damaged) == len(page) // 50
    assert all(bin(got[i] ^ page[i]).count("1") == 1 for i in damaged)
    # The second page is clean.
    side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
    a.send_data(Modulation.V29_9600, page)
    assert page_of(side.get().data) == page


def test_far_end_hangup_gives_no_carrier(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    side = Background(lambda: a.receive_hdlc(5))
    time.sleep(0.2)
    assert b.hangup() is CallStatus.OK
    assert side.get().status == "no_carrier"
    assert a.receive_hdlc(1).status == "error"  # asked after the call ended, as iaxmodem


def test_silence_primitives(pair: EmulatorPair, modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, b = modems
    connect(a, b)
    side = Background(lambda: a.receive_hdlc(5))
    assert b.send_hdlc([DIS]) is CallStatus.OK
    side.get()
    started = time.monotonic()
    assert a.send_silence(5000) is CallStatus.OK  # 5 s of line time: two AT+FTS
    assert time.monotonic() - started >= 5.0 / SCALE * 0.9
    assert pair.a.commands[-2:] == ["AT+FTS=255", "AT+FTS=245"]
    started = time.monotonic()
    assert a.wait_silence(2000) is CallStatus.OK  # nobody talks: two seconds of line time
    assert time.monotonic() - started >= 2.0 / SCALE * 0.9
    # While the far end talks, the wait lasts until it stops, then 200 ms more.
    frame = b"\xff\x13\x80" + bytes(200)
    side = Background(lambda: b.send_hdlc([frame]))
    listening(pair, 1, "AT+FTH=3")
    started = time.monotonic()
    assert a.wait_silence(200) is CallStatus.OK
    took = time.monotonic() - started
    side.get()
    assert took >= (1.0 + 203 * 8 / 300 + 0.2) / SCALE * 0.8


def test_frames_from_a_modem_that_keeps_the_fcs_to_itself() -> None:
    with EmulatorPair(time_scale=SCALE, fcs_to_host=False, carrier_tail=False) as pair:
        a = Class1Modem(AtPort.open(pair.urls[0], name="line-a"))
        b = Class1Modem(AtPort.open(pair.urls[1], name="line-b"))
        try:
            connect(a, b)
            side = Background(lambda: b.send_hdlc([CSI, DIS]))
            assert a.receive_hdlc(5).frame == CSI
            assert a.receive_hdlc(5).frame == DIS
            side.get()
            assert a.fcs_included is False
            side = Background(lambda: b.receive_data(Modulation.V29_9600, 5))
            assert a.send_data(Modulation.V29_9600, b"exact") is CallStatus.OK
            assert side.get().data == b"exact"
        finally:
            a.port.close()
            b.port.close()


def test_a_transmission_can_span_several_sends(
    pair: EmulatorPair, modems: tuple[Class1Modem, Class1Modem]
) -> None:
    a, b = modems
    connect(a, b)
    side = Background(lambda: [a.receive_hdlc(5) for _ in range(3)])
    assert b.send_hdlc([CSI]) is CallStatus.OK  # no final bit: the carrier stays up
    assert b.send_hdlc([CSI, DIS]) is CallStatus.OK
    assert [r.frame for r in side.get()] == [CSI, CSI, DIS]
    assert pair.b.commands[-1] == "ATA"  # one transmission: no AT+FTH=3 in between
