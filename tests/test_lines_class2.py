"""The Class 2.0 modem line: probed for Class 2.0, sending through the Class 2.0 driver,
and broken when its modem goes silent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faxfleet.messages import Cause
from faxfleet.modems import ModemLine
from tests.test_lines_class1 import PAGES, Hooks
from workers.fax.class2.driver import Class2Config
from workers.fax.emulator.class2.farend import Behaviour, FarEnd
from workers.fax.emulator.class2.modem import Class2Emulator
from workers.fax.emulator.pair import EmulatorPair
from workers.lines.base import Call
from workers.lines.class2 import Class2ModemLine
from workers.lines.modem import LineBroken


@pytest.fixture
def emulator() -> Iterator[Class2Emulator]:
    modem = Class2Emulator({"666": FarEnd(Behaviour.SILENT)}, scale=1000.0)
    modem.start()
    yield modem
    modem.stop()


def _line(url: str) -> Class2ModemLine:
    line = Class2ModemLine.from_config(
        ModemLine(name="c2", url=url, fax_class="2.0", max_rate=9600, local_id="+1 555 0100")
    )
    line.line.config = Class2Config(
        capabilities=line.line.config.capabilities,
        command_timeout=2.0,
        dial_timeout=5.0,
        reset_patience=2.0,
    )
    return line


def _call(number: str) -> Call:
    return Call(number=number, dial_string=number, first_page=2, total_pages=4)


def test_probe_and_send_through_the_class2_driver(emulator: Class2Emulator) -> None:
    line = _line(emulator.url)
    assert line.line.config.capabilities.br == 3  # 9600 bit/s
    assert line.probe()
    report = line.send(_call("5551234"), PAGES[:3], Hooks())
    assert report.ok and report.pages_confirmed == 4, report
    (record,) = emulator.calls
    assert record.local_id == "+1 555 0100" and len(record.pages) == 3


def test_a_silent_class2_modem_breaks_the_line(emulator: Class2Emulator) -> None:
    line = _line(emulator.url)
    report = line.send(_call("666"), PAGES[:1], Hooks())
    assert not report.ok
    assert report.cause in (Cause.MODEM_NOT_RESPONDING, Cause.MODEM_ERROR)
    assert line.broken is not None
    assert line.send(_call("5551234"), PAGES[:1], Hooks()).cause is Cause.MODEM_NOT_RESPONDING


def test_a_class1_only_modem_is_refused() -> None:
    with EmulatorPair(("5551001", "5551002"), time_scale=100) as pair:
        line = _line(pair.urls[0])
        with pytest.raises(LineBroken, match=r"no fax Class 2\.0"):
            line.probe()
        assert line.broken is not None and "Class 2.0" in line.broken
