"""Fax calls end to end: two sessions, each running a T.30 engine over a Class 1 modem,
the modems emulated on ptys and joined by the emulated line (with its faults)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PIL import Image, ImageDraw

from faxfleet.kinds import Resolution
from faxfleet.messages import Cause
from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem
from workers.fax.session import Hooks, SessionResult, receive_fax, send_fax
from workers.fax.t30.engine import Config, Timers
from workers.fax.t30.negotiate import Wishes
from workers.render.coding import Coding
from workers.render.tiff import encode_page, read_pages

SCALE = 50
FAULTS = (
    "5550010=busy; 5550013=voice; 5550021=drop_after:3000; "
    "5550022=noisy_page:1,noise_every:10; 5550030=silent:3:dead"
)
TIMERS = Timers(t1=8.0, t2=3.0, t4=1.5)
"""Shorter than T.30's (the line runs 50 times faster), long enough for a busy machine."""


def _page(number: int) -> bytes:
    image = Image.new("1", (1728, 800), 1)
    draw = ImageDraw.Draw(image)
    for y in range(30, 770, 30):
        draw.rectangle((80 + 40 * number, y, 1600 - (y % 90), y + 12), fill=0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


PAGES = [_page(1), _page(2)]


@pytest.fixture
def modems() -> Iterator[tuple[Class1Modem, Class1Modem]]:
    with EmulatorPair(("5551001", "5551002"), time_scale=SCALE, faults=FAULTS) as pair:
        a = Class1Modem(AtPort.open(pair.urls[0], name="sender"))
        b = Class1Modem(AtPort.open(pair.urls[1], name="receiver"))
        for modem in (a, b):
            modem.port.command("ATE0V1Q0")
        yield a, b
        a.port.close()
        b.port.close()


class Recording(Hooks):
    def __init__(self, stop_at_page: int | None = None) -> None:
        self.remote: list[str] = []
        self.pages: list[int] = []
        self.stop_at_page = stop_at_page

    def connected(self, remote_id: str) -> None:
        self.remote.append(remote_id)

    def page_started(self, number: int) -> None:
        self.pages.append(number)

    def should_stop(self) -> bool:
        return self.stop_at_page is not None and self.stop_at_page in self.pages


class Answerer:
    """The receiving side in a thread: wait for RING, then answer and receive."""

    def __init__(self, modem: Class1Modem, config: Config) -> None:
        self.result: SessionResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(modem, config))
        self._thread.start()

    def _run(self, modem: Class1Modem, config: Config) -> None:
        try:
            if modem.port.wait_for(["RING"], 10) == "RING":
                self.result = receive_fax(modem, config, answer_timeout=10)
        except BaseException as error:  # reported by get()
            self.error = error

    def get(self) -> SessionResult | None:
        self._thread.join(120)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def _config(ident: str, **wishes: object) -> Config:
    return Config(ident=ident, wishes=Wishes(**wishes), timers=TIMERS)  # type: ignore[arg-type]


@pytest.mark.parametrize("ecm", [True, False])
def test_two_pages_cross_the_emulated_line(
    modems: tuple[Class1Modem, Class1Modem], ecm: bool
) -> None:
    a, b = modems
    answerer = Answerer(b, _config("+44 20 7946 0000"))
    hooks = Recording()
    sent = send_fax(a, "5551002", PAGES, _config("+1 555 0100", ecm=ecm), hooks)
    got = answerer.get()
    assert got is not None
    assert sent.ok, sent
    assert got.ok, got
    assert sent.pages == got.pages == 2
    assert (sent.ecm, sent.coding, sent.bit_rate) == (
        (True, "mmr", 14400) if ecm else (False, "mr", 14400)
    )
    assert sent.remote_id == "+44 20 7946 0000" and got.remote_id == "+1 555 0100"
    assert hooks.remote == ["+44 20 7946 0000"] and hooks.pages == [1, 2]
    originals = [next(read_pages(page)).bitmap for page in PAGES]
    assert [next(read_pages(page)).bitmap for page in got.received] == originals


def test_busy_number(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, _ = modems
    result = send_fax(a, "5550010", PAGES, _config("1"))
    assert (result.ok, result.cause, result.phase, result.pages) == (
        False,
        Cause.BUSY,
        "A",
        0,
    )


def test_a_voice_answer_is_not_a_fax(modems: tuple[Class1Modem, Class1Modem]) -> None:
    a, _ = modems
    result = send_fax(a, "5550013", PAGES, _config("1"), dial_timeout=20)
    assert not result.ok
    assert result.cause in (Cause.NOT_A_FAX, Cause.NO_CARRIER)
    assert result.pages == 0


def test_noisy_first_page_is_rejected_then_sent_again(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    answerer = Answerer(b, _config("2"))
    sent = send_fax(a, "5550022", PAGES, _config("1", ecm=False))
    got = answerer.get()
    assert got is not None
    assert sent.ok and got.ok
    assert sent.pages == 2
    assert len(got.received) == 2
    assert sent.bit_rate is not None and sent.bit_rate < 14400  # RTN: one rate slower


def test_dropped_line_mid_page_confirms_nothing_it_did_not_deliver(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    answerer = Answerer(b, _config("2"))
    sent = send_fax(a, "5550021", PAGES, _config("1", ecm=False))
    got = answerer.get()
    assert not sent.ok
    assert sent.cause in (Cause.REMOTE_DISCONNECTED, Cause.PROTOCOL_ERROR)
    assert got is not None and not got.ok
    assert sent.pages <= len(got.received) < 2


@pytest.mark.flaky(reruns=2)  # on a loaded machine the far end may see the hang-up first
def test_stopping_a_call_sends_dcn_and_reports_cancelled(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, b = modems
    answerer = Answerer(b, _config("2"))
    sent = send_fax(a, "5551002", PAGES, _config("1"), Recording(stop_at_page=2))
    got = answerer.get()
    assert (sent.ok, sent.cause, sent.pages) == (False, Cause.CANCELLED, 1)
    assert got is not None and got.cause is Cause.REMOTE_DISCONNECTED
    assert got.pages == 1


def test_a_modem_that_stops_answering_ends_the_call_with_a_modem_cause(
    modems: tuple[Class1Modem, Class1Modem],
) -> None:
    a, _ = modems
    result = send_fax(a, "5550030", PAGES, _config("1"), dial_timeout=5)
    assert not result.ok and result.pages == 0
    assert result.cause in (Cause.MODEM_NOT_RESPONDING, Cause.NO_ANSWER)
    assert result.phase == "A", result
