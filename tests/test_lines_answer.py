"""Inbound answering: an idle line answers a ring and receives with our T.30 receiver,
and the same line still sends at once when the send task takes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from faxfleet.messages import LineStatus
from tests.test_lines_class1 import PAGES, TIMERS, FarEnd, Hooks
from workers.fax.emulator import EmulatorPair
from workers.fax.modem.at import AtPort
from workers.fax.modem.class1 import Class1Modem
from workers.fax.session import send_fax
from workers.fax.t30.engine import Config
from workers.lines.answer import Listener, Reception
from workers.lines.base import Call
from workers.lines.class1 import Class1ModemLine
from workers.lines.pool import LinePool
from workers.render.tiff import read_pages


class Inbox:
    def __init__(self) -> None:
        self.got: list[Reception] = []
        self.cond = threading.Condition()
        self.seen_busy: list[LineStatus] = []

    def deliver(self, reception: Reception) -> str:
        with self.cond:
            self.got.append(reception)
            self.cond.notify_all()
        return "in_test"

    def wait(self, n: int, timeout: float = 30) -> list[Reception]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)


@pytest.fixture
def setup() -> Iterator[tuple[EmulatorPair, LinePool, Class1ModemLine, Inbox, Listener]]:
    with EmulatorPair(("5551001", "5551002"), time_scale=50) as pair:
        line = Class1ModemLine(
            name="in0", url=pair.urls[0], local_id="+33 9 99", timers=TIMERS, dial_timeout=10
        )
        pool = LinePool([line])
        assert pool.probe_all() == {"in0": True}
        inbox = Inbox()
        listener = Listener(pool, line, line, inbox.deliver, did="+33999000111").start()
        yield pair, pool, line, inbox, listener
        listener.stop()
        line.close()


def test_an_idle_line_answers_and_hands_the_fax_over(setup) -> None:  # type: ignore[no-untyped-def]
    pair, pool, _, inbox, _ = setup
    caller = Class1Modem(AtPort.open(pair.urls[1], name="caller"))
    caller.port.command("ATE0V1Q0")
    busy_seen: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not inbox.got:
            for status in pool.statuses():
                if status.state == "busy":
                    busy_seen.append(status.job_id or "")
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sent = send_fax(caller, "5551001", PAGES[:2], Config(ident="CALLER 42", timers=TIMERS))
    caller.port.close()
    (got,) = inbox.wait(1)
    watcher.join()
    assert sent.ok and sent.pages == 2, sent
    assert (got.line, got.called, got.remote_id, got.ok, got.cause) == (
        "in0",
        "+33999000111",
        "CALLER 42",
        True,
        None,
    )
    originals = [next(read_pages(p)).bitmap for p in PAGES[:2]]
    assert [next(read_pages(p)).bitmap for p in got.pages] == originals
    assert "inbound" in busy_seen  # the site showed the line busy while it received
    assert pool.statuses()[0].state == "idle"


def test_a_listening_line_is_at_once_available_to_send(setup) -> None:  # type: ignore[no-untyped-def]
    pair, pool, line, inbox, listener = setup
    time.sleep(1.0)  # the listener is in its slices
    far = FarEnd(pair.urls[1])
    taken = pool.acquire("job-out", 0)
    assert taken is line
    started = time.monotonic()
    with line.modem.lock:
        waited = time.monotonic() - started
    report = line.send(
        Call(number="5551002", dial_string="5551002", first_page=1, total_pages=1),
        PAGES[:1],
        Hooks(),
    )
    pool.release(taken)
    assert far.get() is not None
    assert report.ok, report
    assert waited <= listener.slice + 0.3, waited
    assert inbox.got == []  # our own outgoing call was not taken for an inbound one


def test_an_emulated_line_takes_calls_placed_into_it(r) -> None:  # type: ignore[no-untyped-def]
    """With ``answer``, the emulated network places the calls listed in Redis into the
    line, and the line's listener receives them, between its own outgoing calls."""
    import json

    from workers.lines.emulated import EmulatedLine, calls_in_key
    from workers.lines.simulated import SimulatedNetwork

    line = EmulatedLine("paris-1", "paris", SimulatedNetwork(r), time_scale=100, answer=True)
    pool = LinePool([line])
    inbox = Inbox()
    listener = Listener(pool, line, line.modem_line, inbox.deliver, did="+33142685300").start()
    try:
        r.rpush(calls_in_key("paris-1"), json.dumps({"remote_id": "+1 212 555 0147", "pages": 2}))
        (got,) = inbox.wait(1)
        assert (got.line, got.called, got.remote_id, got.ok, len(got.pages)) == (
            "paris-1",
            "+33142685300",
            "+1 212 555 0147",
            True,
            2,
        )
        # The line still sends, to its scripted far end, as before.
        taken = pool.acquire("job-out", 0)
        assert taken is line
        report = line.send(
            Call(number="+331", dial_string="0331", first_page=1, total_pages=1, job_id="j"),
            PAGES[:1],
            Hooks(),
        )
        pool.release(line)
        assert report.ok, report
    finally:
        listener.stop()
        line.close()
