"""The Class 1 modem line on emulated modems: the production driver behind the fleet's
line interface, with whole-fax page counts, phase details and a modem that goes silent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image, ImageDraw

from faxfleet.kinds import Resolution
from faxfleet.messages import Cause
from faxfleet.modems import ModemLine
from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem
from workers.fax.session import SessionResult, receive_fax
from workers.fax.t30.engine import Config, Timers
from workers.fax.t30.frames import Rate
from workers.lines.base import Call
from workers.lines.class1 import Class1ModemLine, rates_up_to
from workers.lines.modem import LineBroken
from workers.render.coding import Coding
from workers.render.tiff import encode_page, read_pages

SCALE = 50
TIMERS = Timers(t1=8.0, t2=3.0, t4=1.5)
FAULTS = "5550010=busy; 5550030=silent:10; 5550031=silent:3:dead"


def _page(number: int) -> bytes:
    image = Image.new("1", (1728, 600), 1)
    draw = ImageDraw.Draw(image)
    for y in range(30, 570, 40):
        draw.rectangle((100 + 50 * number, y, 1500 - (y % 70), y + 10), fill=0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


PAGES = [_page(n) for n in (1, 2, 3)]


class Hooks:
    def __init__(self, stop_at: int | None = None) -> None:
        self.remote: list[str | None] = []
        self.pages: list[int] = []
        self.stop_at = stop_at

    def connected(self, remote_id: str | None) -> None:
        self.remote.append(remote_id)

    def page_started(self, page: int) -> None:
        self.pages.append(page)

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.stop_at in self.pages


class FarEnd:
    def __init__(self, url: str) -> None:
        self.result: SessionResult | None = None
        self.port = AtPort.open(url, name="far")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        modem = Class1Modem(self.port)
        self.port.command("ATE0V1Q0")
        if self.port.wait_for(["RING"], 20) == "RING":
            self.result = receive_fax(modem, Config(ident="FAR END", timers=TIMERS))

    def get(self) -> SessionResult | None:
        self.thread.join(60)
        self.port.close()
        return self.result


@pytest.fixture
def pair() -> Iterator[EmulatorPair]:
    with EmulatorPair(("5551001", "5551002"), time_scale=SCALE, faults=FAULTS) as p:
        yield p


def _line(pair: EmulatorPair, **kw: object) -> Class1ModemLine:
    cfg = ModemLine(name="em0", url=pair.urls[0], local_id="+33 1 00 00 00 01")
    return Class1ModemLine.from_config(cfg, **{"timers": TIMERS, "dial_timeout": 10.0, **kw})


def _call(number: str, first: int = 1, total: int = 3) -> Call:
    return Call(number=number, dial_string=number, first_page=first, total_pages=total)


def test_max_rate_limits_the_offered_rates() -> None:
    assert rates_up_to(9600) == (
        Rate.V17_9600,
        Rate.V17_7200,
        Rate.V29_9600,
        Rate.V29_7200,
        Rate.V27_4800,
        Rate.V27_2400,
    )
    assert rates_up_to(2400) == (Rate.V27_2400,)


def test_probe_then_a_resumed_fax_counts_over_the_whole_fax(pair: EmulatorPair) -> None:
    line = _line(pair)
    assert "emulator" in line.probe()
    assert line.info is not None and line.info.class1 and line.broken is None
    far = FarEnd(pair.urls[1])
    hooks = Hooks()
    report = line.send(_call("5551002", first=2), PAGES[1:], hooks)
    got = far.get()
    line.close()
    assert report.ok and report.connected and report.cause is None, report
    assert report.pages_confirmed == 3  # page 1 went in an earlier attempt
    assert report.remote_id == "FAR END" and hooks.remote == ["FAR END"]
    assert hooks.pages == [2, 3]
    assert got is not None and got.ok and got.remote_id == "+33 1 00 00 00 01"
    sent = [next(read_pages(p)).bitmap for p in PAGES[1:]]
    assert [next(read_pages(p)).bitmap for p in got.received] == sent


def test_busy_is_a_dial_failure_in_phase_a(pair: EmulatorPair) -> None:
    line = _line(pair)
    report = line.send(_call("5550010", first=2), PAGES[1:], Hooks())
    line.close()
    assert (report.ok, report.connected, report.cause, report.pages_confirmed) == (
        False,
        False,
        Cause.BUSY,
        1,
    )
    assert report.detail is not None and "(phase A)" in report.detail
    assert line.broken is None


def test_cancel_between_pages_hangs_up_with_the_pages_confirmed(pair: EmulatorPair) -> None:
    line = _line(pair)
    far = FarEnd(pair.urls[1])
    report = line.send(_call("5551002"), PAGES, Hooks(stop_at=2))
    got = far.get()
    line.close()
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.CANCELLED, 1)
    assert got is not None and len(got.received) == 1


def test_a_silent_modem_breaks_the_line_until_a_probe_finds_it_again(
    pair: EmulatorPair,
) -> None:
    line = _line(pair, dial_timeout=2.0)
    report = line.send(_call("5550030"), PAGES, Hooks())
    assert (report.ok, report.cause) == (False, Cause.MODEM_NOT_RESPONDING)
    assert line.broken is not None and "stopped responding" in line.broken
    # While broken the line refuses calls without touching the modem.
    again = line.send(_call("5551002"), PAGES, Hooks())
    assert (again.cause, again.connected) == (Cause.MODEM_NOT_RESPONDING, False)
    # The fault lasts 10 s: once over, a probe puts the line back.
    deadline = time.monotonic() + 30
    while True:
        try:
            line.probe()
            break
        except LineBroken:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert line.broken is None
    line.close()


def test_a_dead_modem_fails_its_probe_with_the_reason(pair: EmulatorPair) -> None:
    line = _line(pair, dial_timeout=2.0)
    line.send(_call("5550031"), PAGES, Hooks())
    assert line.broken is not None
    with pytest.raises(LineBroken, match="probe failed: AtTimeout"):
        line.probe()
    assert line.broken is not None and "probe failed" in line.broken
    line.close()


def test_a_missing_device_is_a_broken_line() -> None:
    line = Class1ModemLine(name="gone", url="/dev/nonexistent-fax-modem")
    with pytest.raises(LineBroken, match="probe failed"):
        line.probe()
    report = line.send(_call("5551002"), PAGES, Hooks())
    assert report.cause is Cause.MODEM_NOT_RESPONDING and not report.connected
