"""The Class 2.0 driver and line against the emulated modem, over a real pty.

Everything below the driver is real: the AT layer opens the pty's slave end with
pyserial, the emulator answers on the master end in its own thread, and the page data the
far end received is decoded again with libtiff to prove it is the page that was sent.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib import resources

import pytest

from faxfleet.kinds import Resolution
from faxfleet.messages import Cause
from workers.fax.class2.codes import Params
from workers.fax.class2.driver import Class2Config, Class2Driver
from workers.fax.class2.line import Class2Line
from workers.fax.class2.pages import REVERSE
from workers.fax.emulator.class2 import Behaviour, Class2Emulator, FarEnd
from workers.fax.emulator.class2.__main__ import far_end
from workers.fax.emulator.class2.modem import count_lines
from workers.fax.modem.at import AtPort
from workers.lines.base import Call
from workers.render.coding import Coding
from workers.render.pipeline import render_documents
from workers.render.tiff import FaxBitmap, encode_bitmap, read_pages

FAST = Class2Config(
    dial_timeout=5.0,
    train_timeout=5.0,
    page_timeout=5.0,
    hangup_timeout=1.0,
    reset_patience=1.0,
    reset_guard=0.1,
)

NUMBERS = {
    "100": FarEnd(remote_id="+1 555 0100"),
    "200": FarEnd(Behaviour.BUSY),
    "300": FarEnd(Behaviour.NO_ANSWER),
    "400": FarEnd(Behaviour.VOICE),
    "500": FarEnd(Behaviour.REJECT_PAGE, page=2),
    "600": FarEnd(Behaviour.DROP_PAGE, page=3),
    "700": FarEnd(Behaviour.TRAIN_FAIL),
    "800": FarEnd(Behaviour.SILENT),
    "900": FarEnd(Behaviour.NO_DIALTONE),
    "110": FarEnd(remote_id="STANDARD ONLY", capabilities=Params(vr=0, br=3, ln=2, df=0)),
    "120": FarEnd(remote_id="ECM MMR", capabilities=Params(vr=1, br=5, ln=2, df=3, ec=1)),
}


def page(number: int, rows: int = 200, resolution: Resolution = Resolution.STANDARD) -> bytes:
    """A page whose rows differ from page to page (a bar per ``number`` rows)."""
    row_bytes = 1728 // 8
    bits = bytearray(row_bytes * rows)
    for r in range(0, rows, number + 2):
        start = r * row_bytes + number * 5
        bits[start : start + 20] = b"\xff" * 10 + b"\x10" * 10
    return encode_bitmap(FaxBitmap(1728, rows, bytes(bits)), resolution, Coding.MH)


def decoded(received: bytes, like: bytes, coding: Coding) -> bytes:
    """The rows of line-order page data as the far end received it, decoded by libtiff."""
    (template,) = list(read_pages(like))
    t4_options = 1 if coding is Coding.MR else 0
    tiff = encode_bitmap(
        template.bitmap, Resolution.STANDARD, coding, raw=(t4_options, received.translate(REVERSE))
    )
    (back,) = list(read_pages(tiff))
    return back.bitmap.bits


@dataclass
class Hooks:
    stop_before: int = 0
    remote: list[str | None] = field(default_factory=list)
    started: list[int] = field(default_factory=list)

    def connected(self, remote_id: str | None) -> None:
        self.remote.append(remote_id)

    def page_started(self, page: int) -> None:
        self.started.append(page)

    def should_stop(self) -> bool:
        return bool(self.stop_before) and len(self.started) + 1 >= self.stop_before


@pytest.fixture
def emulator() -> Iterator[Class2Emulator]:
    modem = Class2Emulator(NUMBERS, scale=1000.0)
    modem.start()
    yield modem
    modem.stop()


def line(emulator: Class2Emulator, config: Class2Config = FAST) -> Class2Line:
    return Class2Line("c2-test", emulator.url, config)


def call(number: str, pages: int = 3, first_page: int = 1) -> Call:
    return Call(
        number=f"+1555{number}",
        dial_string=number,
        first_page=first_page,
        total_pages=pages,
        local_id="FLEET TEST",
    )


PAGES = [page(1), page(2), page(3)]


def test_three_pages_accepted(emulator: Class2Emulator) -> None:
    hooks = Hooks()
    report = line(emulator).send(call("100"), PAGES, hooks)
    assert report.ok, report
    assert (report.pages_confirmed, report.connected, report.cause) == (3, True, None)
    assert report.remote_id == "+1 555 0100"
    assert hooks.remote == ["+1 555 0100"]
    assert hooks.started == [1, 2, 3]
    (received,) = emulator.calls
    assert received.local_id == "FLEET TEST"
    assert received.responses == ["MCF", "MCF", "MCF"]
    assert received.hangup == 0x00
    assert received.session == Params(vr=0, br=5, wd=0, ln=2, df=1)  # MR: both sides do it
    for sent, got in zip(PAGES, received.pages, strict=True):
        (original,) = list(read_pages(sent))
        assert decoded(got, sent, Coding.MR) == original.bitmap.bits
        assert count_lines(got) >= 200


def test_rendered_documents_arrive_intact(emulator: Class2Emulator) -> None:
    """Pages as the fleet renders them (MMR TIFFs, fine) arrive as MR rows, row for row."""
    pdf = resources.files("faxfleet.samples").joinpath("invoice.pdf").read_bytes()
    rendered = render_documents([pdf], Resolution.FINE)
    report = line(emulator).send(call("100", pages=len(rendered)), rendered, Hooks())
    assert report.ok, report
    (received,) = emulator.calls
    assert received.session == Params(vr=1, br=5, ln=2, df=1)
    for sent, got in zip(rendered, received.pages, strict=True):
        (original,) = list(read_pages(sent))
        assert original.coding is Coding.MMR
        assert decoded(got, sent, Coding.MR) == original.bitmap.bits


def test_resumed_fax_counts_the_whole_fax(emulator: Class2Emulator) -> None:
    hooks = Hooks()
    report = line(emulator).send(call("100", pages=5, first_page=4), PAGES[:2], hooks)
    assert report.ok
    assert report.pages_confirmed == 5
    assert hooks.started == [4, 5]


@pytest.mark.parametrize(
    ("number", "cause", "connected"),
    [
        ("200", Cause.BUSY, False),
        ("300", Cause.NO_ANSWER, False),
        ("900", Cause.NO_DIALTONE, False),
        ("400", Cause.NOT_A_FAX, False),
        ("700", Cause.TRAINING_FAILED, True),
    ],
)
def test_call_failures(
    emulator: Class2Emulator, number: str, cause: Cause, connected: bool
) -> None:
    hooks = Hooks()
    report = line(emulator).send(call(number), PAGES, hooks)
    assert not report.ok
    assert report.cause == cause, report.detail
    assert report.connected == connected
    assert report.pages_confirmed == 0
    assert hooks.started == []
    assert report.detail


def test_voice_answer_is_reported_with_its_hangup_code(emulator: Class2Emulator) -> None:
    report = line(emulator).send(call("400"), PAGES, Hooks())
    assert report.detail is not None and "+FHS:11" in report.detail
    assert report.detail.startswith("phase A")


def test_training_failure_is_a_phase_b_hangup(emulator: Class2Emulator) -> None:
    report = line(emulator).send(call("700"), PAGES, Hooks())
    assert report.detail is not None
    assert report.detail.startswith("phase B") and "+FHS:27" in report.detail


def test_page_rejected(emulator: Class2Emulator) -> None:
    hooks = Hooks()
    report = line(emulator).send(call("500"), PAGES, hooks)
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.PAGE_REJECTED, 1)
    assert hooks.started == [1, 2]
    (received,) = emulator.calls
    assert received.responses == ["MCF", "RTN"]
    assert received.hangup == 0x02  # the driver aborted the call (AT+FKS)


def test_rejected_page_sent_again_after_retraining(emulator: Class2Emulator) -> None:
    hooks = Hooks()
    report = line(emulator, replace(FAST, rtn_retries=1)).send(call("500"), PAGES, hooks)
    assert report.ok, report
    assert report.pages_confirmed == 3
    assert hooks.started == [1, 2, 3]
    (received,) = emulator.calls
    assert received.responses == ["MCF", "RTN", "MCF", "MCF"]
    assert received.session is not None and received.session.bit_rate == 12000
    (original,) = list(read_pages(PAGES[1]))
    assert decoded(received.pages[2], PAGES[1], Coding.MR) == original.bitmap.bits


def test_far_end_drops_during_page_three(emulator: Class2Emulator) -> None:
    report = line(emulator).send(call("600"), PAGES, Hooks())
    assert (report.ok, report.cause, report.pages_confirmed) == (
        False,
        Cause.REMOTE_DISCONNECTED,
        2,
    )
    assert report.detail is not None and "+FHS:54" in report.detail  # EOP went unanswered


def test_silent_modem(emulator: Class2Emulator) -> None:
    config = replace(FAST, dial_timeout=1.0)
    report = line(emulator, config).send(call("800"), PAGES, Hooks())
    assert (report.ok, report.cause, report.connected) == (
        False,
        Cause.MODEM_NOT_RESPONDING,
        False,
    )


def test_cancel_between_pages(emulator: Class2Emulator) -> None:
    hooks = Hooks(stop_before=2)
    report = line(emulator).send(call("100"), PAGES, hooks)
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.CANCELLED, 1)
    assert emulator.calls[0].hangup == 0x02


def test_fine_pages_to_a_standard_only_machine(emulator: Class2Emulator) -> None:
    fine = [page(1, rows=400, resolution=Resolution.FINE)]
    report = line(emulator).send(call("110", pages=1), fine, Hooks())
    assert report.ok, report
    (received,) = emulator.calls
    assert received.session == Params(vr=0, br=3, ln=2, df=0)  # MH at 9600, standard
    assert count_lines(received.pages[0]) == 200  # every other row
    (original,) = list(read_pages(fine[0]))
    rows = decoded(received.pages[0], page(1, rows=200), Coding.MH)
    row = 1728 // 8
    assert rows == b"".join(original.bitmap.bits[i : i + row] for i in range(0, 400 * row, 2 * row))


@pytest.mark.parametrize(
    "config",
    [
        replace(FAST, post_page="fet"),
        replace(FAST, bit_order_reversed=True),
        replace(FAST, capabilities=Params(vr=1, br=3, ln=2, df=0)),
    ],
    ids=["class2-style-fet", "reversed-bit-order", "mh-only-9600"],
)
def test_driver_options(emulator: Class2Emulator, config: Class2Config) -> None:
    report = line(emulator, config).send(call("100"), PAGES, Hooks())
    assert report.ok, report
    (received,) = emulator.calls
    assert received.responses == ["MCF"] * 3
    assert received.session is not None
    coding = received.session.coding
    assert coding is (Coding.MH if config.capabilities.df == 0 else Coding.MR)
    (original,) = list(read_pages(PAGES[2]))
    assert decoded(received.pages[2], PAGES[2], coding) == original.bitmap.bits


def test_mmr_with_ecm(emulator: Class2Emulator) -> None:
    config = replace(FAST, capabilities=Params(vr=1, br=5, ln=2, df=3, ec=1))
    report = line(emulator, config).send(call("120"), PAGES, Hooks())
    assert report.ok, report
    (received,) = emulator.calls
    assert received.session == Params(vr=0, br=5, ln=2, df=3, ec=1)
    for sent, got in zip(PAGES, received.pages, strict=True):
        (original,) = list(read_pages(sent))
        assert decoded(got, sent, Coding.MMR) == original.bitmap.bits


def test_driver_reports_session_and_capabilities(emulator: Class2Emulator) -> None:
    port = AtPort.open(emulator.url, name="c2-driver")
    try:
        result = Class2Driver(port, FAST).send("100", PAGES[:1], Hooks(), local_id="X")
    finally:
        port.close()
    assert result.ok and result.phase == "E"
    assert result.remote_capabilities == Params(vr=1, br=5, ln=2, df=1)
    assert result.session is not None and result.session.bit_rate == 14400
    assert [s.ppr.name for s in result.page_statuses] == ["MCF"]
    assert result.hangup is not None and result.hangup.normal


def test_flow_control_through_the_at_layer() -> None:
    """At a slow line the modem holds the driver off with XOFF and the page still arrives
    intact, taking the line time it should."""
    with Class2Emulator({"100": FarEnd(capabilities=Params(br=0, ln=2))}, scale=10.0) as modem:
        modem.buffer_bytes = 256
        started = time.monotonic()
        report = line(modem).send(call("100"), PAGES[:1], Hooks())
        elapsed = time.monotonic() - started
    assert report.ok, report
    assert modem.xoffs > 0
    (received,) = modem.calls
    assert received.session is not None and received.session.bit_rate == 2400
    (original,) = list(read_pages(PAGES[0]))
    assert decoded(received.pages[0], PAGES[0], received.session.coding) == original.bitmap.bits
    page_seconds = len(received.pages[0]) * 8 / 2400 / 10
    assert elapsed >= page_seconds


def test_modem_without_optional_commands() -> None:
    """A modem that refuses +FPP and +FIE still sends; one that refuses +FLI does not."""
    with Class2Emulator(scale=1000.0, unsupported=("+FPP", "+FIE")) as modem:
        assert line(modem).send(call("100"), PAGES[:1], Hooks()).ok
    with Class2Emulator(scale=1000.0, unsupported=("+FLI",)) as modem:
        report = line(modem).send(call("100"), PAGES[:1], Hooks())
        assert (report.ok, report.cause, report.connected) == (False, Cause.MODEM_ERROR, False)
        assert report.detail is not None and "AT+FLI" in report.detail
        assert modem.calls == []


def test_emulator_as_a_process() -> None:
    """``python -m workers.fax.emulator.class2`` serves a line site or a person by hand."""
    far_ends = ["--far-end", "200=busy", "--far-end", "500=reject_page:1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.fax.emulator.class2", "--scale", "1000", *far_ends],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("/dev/pts/")
        modem = Class2Line("c2-proc", url, FAST)
        assert modem.send(call("100"), PAGES[:1], Hooks()).ok
        assert modem.send(call("200"), PAGES[:1], Hooks()).cause == Cause.BUSY
        assert modem.send(call("500"), PAGES[:1], Hooks()).cause == Cause.PAGE_REJECTED
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert err.splitlines() == [
        "call 100: pages 1 ['MCF'] hangup 00",
        "call 200: pages 0 [] hangup None",
        "call 500: pages 1 ['RTN'] hangup 02",
    ]


def test_far_end_specs_are_checked() -> None:
    assert far_end("500=reject_page:2") == ("500", FarEnd(Behaviour.REJECT_PAGE, page=2))
    for bad in ("500", "=busy", "500=ringing", "500=drop_page:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            far_end(bad)
