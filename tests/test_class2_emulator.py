"""The emulated Class 2.0 modem, spoken to over its pty with plain pyserial.

These tests talk to the emulator byte by byte, without the project's AT layer, so they
pin the emulator's own behaviour (what a driver can rely on) independently of the driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from faxfleet.kinds import Resolution
from workers.fax.class2.codes import Params
from workers.fax.class2.pages import REVERSE, page_data, rtc
from workers.fax.emulator.class2 import Behaviour, Class2Emulator, FarEnd
from workers.fax.emulator.class2.commands import Command, CommandSyntaxError, split
from workers.fax.emulator.class2.modem import count_lines
from workers.render.coding import Coding
from workers.render.tiff import FaxBitmap, encode_bitmap, read_pages

SCALE = 2000.0


def bars_page(rows: int = 120, resolution: Resolution = Resolution.STANDARD) -> bytes:
    """A page with a few black bars, as a single-page MH TIFF."""
    row_bytes = 1728 // 8
    bits = bytearray(row_bytes * rows)
    for r in range(0, rows, 10):
        bits[r * row_bytes : r * row_bytes + 40] = b"\xff" * 40
        bits[r * row_bytes + 100 : r * row_bytes + 101] = b"\x10"  # a DLE once rows invert
    return encode_bitmap(FaxBitmap(1728, rows, bytes(bits)), resolution, Coding.MH)


class Host:
    """A bare-bones host: one line out, lines in."""

    def __init__(self, url: str) -> None:
        self.ser = serial.serial_for_url(url, timeout=0.05)
        self.buf = b""

    def lines(self, until: tuple[str, ...], timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while time.monotonic() < deadline:
            self.buf += self.ser.read(4096)
            while b"\n" in self.buf:
                raw, _, self.buf = self.buf.partition(b"\n")
                line = raw.replace(b"\x11", b"").replace(b"\x13", b"").decode().strip()
                if line:
                    out.append(line)
                    if line in until or any(line.startswith(u) for u in until if u[-1] == ":"):
                        return out
        raise AssertionError(f"no {until} within {timeout}s; got {out}")

    def at(self, cmd: str, until: tuple[str, ...] = ("OK", "ERROR")) -> list[str]:
        self.ser.write(cmd.encode() + b"\r")
        return self.lines(until)

    def close(self) -> None:
        self.ser.close()


@pytest.fixture
def modem() -> Iterator[tuple[Class2Emulator, Host]]:
    emulator = Class2Emulator(
        {
            "5551000": FarEnd(remote_id="+1 555 1000"),
            "5552000": FarEnd(Behaviour.BUSY),
            "5553000": FarEnd(Behaviour.VOICE),
            "5554000": FarEnd(Behaviour.REJECT_PAGE, page=1),
            "5555000": FarEnd(Behaviour.TRAIN_FAIL),
            "5556000": FarEnd(Behaviour.DROP_PAGE, page=1),
            "5557000": FarEnd(Behaviour.SILENT),
        },
        scale=SCALE,
    )
    url = emulator.start()
    host = Host(url)
    try:
        assert host.at("ATE0")[-1] == "OK"
        yield emulator, host
    finally:
        host.close()
        emulator.stop()


def setup_call(host: Host) -> None:
    for cmd in ("AT+FCLASS=2.0", 'AT+FLI="  FLEET 1 "', "AT+FNR=1,1,1,0", "AT+FIS=1,5,0,2,0"):
        assert host.at(cmd) == ["OK"], cmd


def test_split_command_lines() -> None:
    assert split("ATE0V1Q0") == [
        Command("E", "", "0"),
        Command("V", "", "1"),
        Command("Q", "", "0"),
    ]
    assert split('at+fclass=2.0;+FLI="a;b" ;+fcc=?') == [
        Command("+FCLASS", "=", "2.0"),
        Command("+FLI", "=", '"a;b"'),
        Command("+FCC", "=?"),
    ]
    assert split("ATS0=1&FH0") == [Command("S0", "=", "1"), Command("&F"), Command("H", "", "0")]
    assert split("AT+FHS?") == [Command("+FHS", "?")]
    assert split("ATDT 555-1000") == [Command("D", "", "T 555-1000")]
    for bad in ("HELLO", "AT+", 'AT+FLI="open', "ATS0", "AT!"):
        with pytest.raises(CommandSyntaxError):
            split(bad)


def test_rtc_codes() -> None:
    assert rtc(Coding.MH) == bytes.fromhex("001001001001001001")
    assert len(rtc(Coding.MR)) == 10  # 78 bits, padded
    assert count_lines((b"\x00" * 3 + rtc(Coding.MH)).translate(REVERSE)) == 0


def test_identity_and_parameters(modem: tuple[Class2Emulator, Host]) -> None:
    _, host = modem
    assert host.at("AT+FLI?") == ["ERROR"]  # fax commands need Class 2.0 first
    assert host.at("AT+FCLASS=?") == ["0,2.0", "OK"]
    assert host.at("AT+FCLASS=1") == ["ERROR"]
    setup_call(host)
    assert host.at("AT+FCLASS?") == ["2.0", "OK"]
    assert host.at("AT+FLI?") == ['"  FLEET 1 "', "OK"]
    assert host.at("AT+FIS?") == ["1,5,0,2,0,0,0,0,0", "OK"]
    assert host.at("AT+FCC=,3") == ["OK"]
    assert host.at("AT+FCC?") == ["1,3,0,2,1,0,0,0,0", "OK"]
    assert host.at("AT+FIS=0,9") == ["ERROR"]
    assert host.at("AT+FBO=1;+FBO?") == ["1", "OK"]
    assert host.at("AT+FNOPE=1") == ["ERROR"]
    assert host.at("AT+FHS?") == ["00", "OK"]


def test_three_page_call_with_data(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    assert host.at("ATDT555-1000") == [
        "+FCO",
        '+FCI:"         +1 555 1000"',
        "+FIS:1,5,0,2,1,0,0,0",
        "OK",
    ]
    session: Params | None = None
    tiff = bars_page()
    for page, ppm in enumerate((b",", b",", b"."), start=1):
        lines = host.at("AT+FDT", ("CONNECT", "ERROR"))
        if page == 1:
            assert lines == ["+FCS:1,5,0,2,0,0,0,0", "CONNECT"]
            session = Params.parse(lines[0][5:])
        else:
            assert lines == ["CONNECT"]
        assert session is not None
        host.ser.write(page_data(tiff, session) + b"\x10" + ppm)
        if ppm == b".":
            assert host.lines(("OK",)) == ["+FPS:1,78,0,0,0", "+FHS:00", "OK"]
        else:
            assert host.lines(("OK",)) == ["+FPS:1,78,0,0,0", "OK"]  # 120 rows = 0x78
    (call,) = emulator.calls
    assert (call.number, call.local_id, call.hangup) == ("5551000", "  FLEET 1 ", 0)
    assert call.responses == ["MCF"] * 3
    # the far end got the page's rows exactly, in line order, closed by RTC
    (original,) = list(read_pages(tiff))
    assert original.raw is not None
    assert call.pages[0].translate(REVERSE) == original.raw + rtc(Coding.MH)
    assert host.at("AT+FHS?") == ["00", "OK"]


def test_class2_style_page_end_with_fet(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("ATD5551000")
    lines = host.at("AT+FDT", ("CONNECT",))
    session = Params.parse(lines[0][5:])
    host.ser.write(page_data(bars_page(), session) + b"\x10\x03")
    assert host.lines(("OK",)) == ["OK"]
    assert host.at("AT+FET=2") == ["+FPS:1,78,0,0,0", "+FHS:00", "OK"]
    assert emulator.calls[0].responses == ["MCF"]


def test_reversed_bit_order(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("AT+FBO=1")
    host.at("ATD5551000")
    session = Params.parse(host.at("AT+FDT", ("CONNECT",))[0][5:])
    tiff = bars_page()
    host.ser.write(page_data(tiff, session, reversed_order=True) + b"\x10.")
    assert host.lines(("OK",))[0] == "+FPS:1,78,0,0,0"
    (original,) = list(read_pages(tiff))
    assert emulator.calls[0].pages[0].translate(REVERSE) == original.raw + rtc(Coding.MH)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("5552000", ["BUSY"]),
        ("5553000", ["+FCO", "+FHS:11", "OK"]),
    ],
)
def test_dial_failures(
    modem: tuple[Class2Emulator, Host], number: str, expected: list[str]
) -> None:
    _, host = modem
    setup_call(host)
    host.ser.write(f"ATD{number}\r".encode())
    got = host.lines(("BUSY", "OK"))
    assert [line for line in got if line != "+FCO"] == [e for e in expected if e != "+FCO"]


def test_rejected_page_then_retrain(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("ATD5554000")
    session = Params.parse(host.at("AT+FDT", ("CONNECT",))[0][5:])
    host.ser.write(page_data(bars_page(), session) + b"\x10,")
    assert host.lines(("ERROR",)) == ["+FPS:2,78,78,78,0", "ERROR"]
    # the next page trains again, one step slower
    assert host.at("AT+FDT", ("CONNECT",)) == ["+FCS:1,4,0,2,0,0,0,0", "CONNECT"]
    host.ser.write(page_data(bars_page(), session) + b"\x10.")
    assert host.lines(("OK",))[-2:] == ["+FHS:00", "OK"]
    assert emulator.calls[0].responses == ["RTN", "MCF"]


def test_abort_after_rejection(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("ATD5554000")
    session = Params.parse(host.at("AT+FDT", ("CONNECT",))[0][5:])
    host.ser.write(page_data(bars_page(), session) + b"\x10.")
    host.lines(("ERROR",))
    assert host.at("AT+FKS") == ["+FHS:02", "OK"]
    assert emulator.calls[0].hangup == 0x02


def test_training_failure(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("ATD5555000")
    assert host.at("AT+FDT", ("CONNECT", "OK")) == ["+FHS:27", "OK"]
    assert emulator.calls[0].hangup == 0x27


def test_far_end_drops_during_page(modem: tuple[Class2Emulator, Host]) -> None:
    emulator, host = modem
    setup_call(host)
    host.at("ATD5556000")
    session = Params.parse(host.at("AT+FDT", ("CONNECT",))[0][5:])
    host.ser.write(page_data(bars_page(), session) + b"\x10,")
    assert host.lines(("OK",)) == ["+FHS:52", "OK"]
    assert emulator.calls[0].responses == ["none"]


def test_silent_modem(modem: tuple[Class2Emulator, Host]) -> None:
    _, host = modem
    setup_call(host)
    host.ser.write(b"ATD5557000\r")
    with pytest.raises(AssertionError):
        host.lines(("OK", "ERROR", "BUSY"), timeout=0.5)
    host.ser.write(b"AT\r")
    with pytest.raises(AssertionError):
        host.lines(("OK",), timeout=0.5)


def test_flow_control_paces_a_slow_line() -> None:
    """At real line speed the modem holds the host off with XOFF instead of buffering."""
    emulator = Class2Emulator(scale=20.0, buffer_bytes=512)
    url = emulator.start()
    host = Host(url)
    try:
        host.at("ATE0")
        setup_call(host)
        host.at("AT+FIS=0,0")  # 2400 bit/s: 6000 bytes/s at scale 20
        host.at("ATD1")
        session = Params.parse(host.at("AT+FDT", ("CONNECT",))[0][5:])
        assert session.bit_rate == 2400
        data = b"\x00" * 3000 + (b"\x00" * 3 + rtc(Coding.MH)).translate(REVERSE)
        started = time.monotonic()
        host.ser.write(data)
        host.ser.flush()
        seen = b""
        while b"\x13" not in seen and time.monotonic() - started < 2:
            seen += host.ser.read(64)
        assert b"\x13" in seen, "no XOFF"
        host.ser.write(b"\x10.")
        host.buf = seen.replace(b"\x13", b"").replace(b"\x11", b"")
        assert host.lines(("OK",))[-1] == "OK"
        # 3012 bytes at 300 bytes/s of real line (scaled 20x) take about half a second
        assert time.monotonic() - started >= 0.45
    finally:
        host.close()
        emulator.stop()
