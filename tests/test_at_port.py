"""The AT layer against emulated modems on real ptys (and a bare pty playing a modem)."""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Iterator

import pytest

from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort, AtTimeout, ModemNotResponding
from workers.fax.modem.class1 import CallStatus, Class1Modem, Modulation

SCALE = 100


@pytest.fixture
def pair() -> Iterator[EmulatorPair]:
    with EmulatorPair(
        ("5551001", "5551002"),
        time_scale=SCALE,
        faults="5550001=silent:2; 5550002=silent:1:dead; 5550003=slow_xoff:1.0",
    ) as p:
        yield p


@pytest.fixture
def ports(pair: EmulatorPair) -> Iterator[tuple[AtPort, AtPort]]:
    a = AtPort.open(pair.urls[0], name="line-a")
    b = AtPort.open(pair.urls[1], name="line-b")
    yield a, b
    a.close()
    b.close()


def test_answers_with_echo_on_and_off(ports: tuple[AtPort, AtPort]) -> None:
    a, _ = ports
    assert a.command("ATE1").ok
    on = a.command("AT+FCLASS=?")
    assert on.ok and on.lines == ["0,1,1.0"]
    assert a.command("ATE0").ok
    off = a.command("AT+FCLASS=?")
    assert off.lines == ["0,1,1.0"]
    assert a.command("ATI3").lines == ["faxfleet Class 1 emulator 1.0"]
    bad = a.command("AT+FNOPE=1")
    assert bad.final == "ERROR" and not bad.ok


def test_semicolon_then_basic_command_is_an_error_as_on_iaxmodem(
    ports: tuple[AtPort, AtPort],
) -> None:
    a, _ = ports
    assert a.command("AT+FCLASS=1;A").final == "ERROR"
    assert a.command("AT+FCLASS=1;+FCLASS?").lines == ["1"]


def test_timeout_when_the_modem_says_nothing(ports: tuple[AtPort, AtPort]) -> None:
    a, _ = ports
    a.command("AT+FCLASS=1")
    a.write(b"ATDT5550002\r")  # this number makes the modem fall silent for good
    started = time.monotonic()
    with pytest.raises(AtTimeout) as caught:
        a.command("AT", timeout=0.5)
    assert 0.45 <= time.monotonic() - started < 2
    assert caught.value.command == "AT"


def test_unsolicited_ring_is_queued_not_taken_as_an_answer(
    ports: tuple[AtPort, AtPort],
) -> None:
    a, b = ports
    a.command("AT+FCLASS=1")
    b.command("AT+FCLASS=1")
    a.write(b"ATDT5551002\r")
    assert b.wait_for(["RING"], timeout=5) == "RING"
    time.sleep(0.3)  # more rings arrive between commands
    resp = b.command("ATS0?")
    assert resp.ok and resp.lines == ["000"]
    assert "RING" in b.unsolicited()
    assert set(b.unsolicited()) <= {"RING"}
    assert b.command("ATA", timeout=5).final == "CONNECT"


def test_reset_brings_a_modem_back_from_data_mode(ports: tuple[AtPort, AtPort]) -> None:
    a, b = ports
    ma, mb = Class1Modem(a), Class1Modem(b)
    threading.Thread(target=lambda: (b.wait_for(["RING"], 5), mb.answer(5))).start()
    assert ma.dial("5551002", 10) is CallStatus.OK
    assert ma.receive_hdlc(0.3).status == "timeout"  # the answerer sends no frame
    assert a.command("AT+FTM=96").final == "CONNECT"
    a.write(b"\x01\x02\x03" * 100)  # the modem now takes everything as page data
    with pytest.raises(AtTimeout):
        a.command("AT", timeout=0.3)
    a.reset(patience=5)
    assert a.command("AT").ok
    assert a.command("ATI").lines == ["faxfleet Class 1 emulator"]
    # ATE0 came with the reset: no echo any more, and answers line up.
    a.write(b"AT\r")
    assert a.read_line(2) == "OK"


def test_reset_brings_a_modem_back_from_a_receive(ports: tuple[AtPort, AtPort]) -> None:
    a, b = ports
    ma, mb = Class1Modem(a), Class1Modem(b)
    threading.Thread(target=lambda: (b.wait_for(["RING"], 5), mb.answer(5))).start()
    assert ma.dial("5551002", 10) is CallStatus.OK
    assert ma.receive_hdlc(0.3).status == "timeout"
    a.write(b"AT+FRM=96\r")  # nobody sends: the modem waits for a carrier forever
    a.reset(patience=5)
    assert a.command("AT").ok


def test_reset_waits_out_a_silent_modem(ports: tuple[AtPort, AtPort]) -> None:
    a, _ = ports
    a.command("AT+FCLASS=1")
    a.write(b"ATDT5550001\r")  # silent for two seconds, then itself again
    time.sleep(0.2)
    with pytest.raises(AtTimeout):
        a.command("AT", timeout=0.3)
    a.reset(patience=10)
    assert a.command("AT").ok


def test_reset_gives_up_on_a_dead_modem(ports: tuple[AtPort, AtPort]) -> None:
    a, _ = ports
    a.command("AT+FCLASS=1")
    a.write(b"ATDT5550002\r")
    started = time.monotonic()
    with pytest.raises(ModemNotResponding):
        a.reset(patience=3)
    assert time.monotonic() - started < 10


def _call(pair: EmulatorPair, a: AtPort, b: AtPort, number: str) -> tuple[Class1Modem, Class1Modem]:
    ma, mb = Class1Modem(a), Class1Modem(b)
    t = threading.Thread(target=lambda: (b.wait_for(["RING"], 5), mb.answer(5)))
    t.start()
    assert ma.dial(number, 10) is CallStatus.OK
    t.join()
    return ma, mb


@pytest.mark.parametrize("flow", ["xonxoff", "none"])
def test_xoff_is_honoured_while_sending_data(pair: EmulatorPair, flow: str) -> None:
    a = AtPort.open(pair.urls[0], name="line-a", flow=flow)  # type: ignore[arg-type]
    b = AtPort.open(pair.urls[1], name="line-b")
    try:
        ma, mb = _call(pair, a, b, "5550003")  # holds XOFF for a second after 1 KiB
        page = bytes((i * 7 + 1) % 256 for i in range(60000))
        got: dict[str, object] = {}
        t = threading.Thread(target=lambda: got.update(r=mb.receive_data(Modulation.V29_9600, 5)))
        t.start()
        started = time.monotonic()
        assert ma.send_data(Modulation.V29_9600, page) is CallStatus.OK
        took = time.monotonic() - started
        t.join()
        result = got["r"]
        if flow == "xonxoff":
            assert took >= 0.9
            assert pair.a.overruns == 0, pair.a.overruns
            assert result.status == "ok" and result.data[: len(page)] == page  # type: ignore[attr-defined]
        else:
            # The same send without flow control loses data at the modem.
            assert pair.a.overruns > 0
            assert result.data[: len(page)] != page  # type: ignore[attr-defined]
    finally:
        a.close()
        b.close()


def test_socket_url_reaches_the_same_modem() -> None:
    with EmulatorPair(time_scale=SCALE, tcp=True) as pair:
        url_a, _ = pair.tcp_urls
        assert url_a is not None and url_a.startswith("socket://127.0.0.1:")
        with AtPort.open(url_a, name="tcp-a") as a:
            assert a.command("ATI").lines == ["faxfleet Class 1 emulator"]
            assert a.command("AT+FCLASS=1").ok
            assert a.command("AT+FCLASS?").lines == ["1"]
        assert pair.a.commands[-1] == "AT+FCLASS?"


def test_line_split_between_cr_and_lf_does_not_eat_data() -> None:
    """CONNECT\\r at the end of one read, \\n at the start of the next: the LF belongs to
    the line, and the data after it is intact."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = AtPort.open(os.ttyname(slave), name="raw")
    try:
        os.write(master, b"\r\nCONNECT\r")
        assert port.read_line(1) == "CONNECT"
        os.write(master, b"\n\xff\x03\x10")
        assert port.read(10, 1) == b"\xff\x03\x10"
        os.write(master, b"\x13\r\nOK\x11\r\n")  # flow characters never reach a line
        assert port.read_line(1) == "OK"
        assert port.read_line(0.2) is None
    finally:
        port.close()
        os.close(master)
        os.close(slave)
