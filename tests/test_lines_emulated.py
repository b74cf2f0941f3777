"""The emulated line: our Class 1 driver against a far end running our T.30 receiver on
an emulated modem pair, each scripted outcome happening on the line for real."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis
from PIL import Image, ImageDraw

from faxfleet import keys
from faxfleet.kinds import Resolution
from faxfleet.messages import Cause
from workers.lines.base import Call
from workers.lines.emulated import EmulatedLine, page_image_hash, scaled_timers
from workers.lines.simulated import SimulatedNetwork
from workers.render.coding import Coding
from workers.render.tiff import encode_page

NUMBER = "+33142685399"


def _page(number: int) -> bytes:
    image = Image.new("1", (1728, 500), 1)
    draw = ImageDraw.Draw(image)
    for y in range(20, 480, 35):
        draw.rectangle((60 + 70 * number, y, 1650 - (y % 90), y + 9), fill=0)
    return encode_page(image, Resolution.FINE, Coding.MMR)


PAGES = [_page(n) for n in (1, 2, 3)]


class Hooks:
    def __init__(self, stop_at: int | None = None) -> None:
        self.connects: list[str | None] = []
        self.pages: list[int] = []
        self.stop_at = stop_at

    def connected(self, remote_id: str | None) -> None:
        self.connects.append(remote_id)

    def page_started(self, page: int) -> None:
        self.pages.append(page)

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.stop_at in self.pages


@pytest.fixture
def line(r: redis.Redis) -> Iterator[EmulatedLine]:
    em = EmulatedLine("paris-1", "paris", SimulatedNetwork(r), time_scale=100)
    yield em
    em.close()


def _call(first: int = 1, job: str = "job-1") -> Call:
    return Call(
        number=NUMBER,
        dial_string="0142685399",
        first_page=first,
        total_pages=3,
        local_id="+33 1 00 00 00 00",
        job_id=job,
        recipient=0,
        attempt=1,
    )


def _records(r: redis.Redis) -> list[dict]:
    return [json.loads(x) for x in r.lrange(keys.sim_received(NUMBER), 0, -1)]


def _script(r: redis.Redis, *outcomes: str) -> None:
    r.rpush(keys.sim_script(NUMBER), *outcomes)


def test_timers_shrink_with_the_time_scale_but_not_below_a_floor() -> None:
    assert scaled_timers(1).t1 == 35.0
    fast = scaled_timers(100)
    assert (fast.t1, fast.t2, fast.t4) == (6.0, 3.0, 1.5)


def test_a_fax_crosses_and_the_far_end_records_what_it_got(
    line: EmulatedLine, r: redis.Redis
) -> None:
    hooks = Hooks()
    started = time.monotonic()
    report = line.send(_call(), PAGES, hooks)
    took = time.monotonic() - started
    assert report.ok and report.connected and report.pages_confirmed == 3, report
    assert report.remote_id == NUMBER and hooks.connects == [NUMBER]
    assert hooks.pages == [1, 2, 3]
    (rec,) = _records(r)
    assert (rec["job"], rec["pages"], rec["outcome"], rec["line"]) == (
        "job-1",
        [1, 2, 3],
        "complete",
        "paris-1",
    )
    assert rec["page_hashes"] == [page_image_hash(p) for p in PAGES]
    assert took < 5, took


def test_a_resumed_call_records_absolute_pages(line: EmulatedLine, r: redis.Redis) -> None:
    report = line.send(_call(first=2), PAGES[1:], Hooks())
    assert report.ok and report.pages_confirmed == 3
    assert [rec["pages"] for rec in _records(r)] == [[2, 3]]


@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        ("busy", Cause.BUSY),
        ("no_answer", Cause.NO_ANSWER),
        ("no_dialtone", Cause.NO_DIALTONE),
        ("no_carrier", Cause.NO_CARRIER),
    ],
)
def test_dial_failures_come_from_the_exchange(
    line: EmulatedLine, r: redis.Redis, outcome: str, cause: Cause
) -> None:
    _script(r, outcome)
    report = line.send(_call(), PAGES, Hooks())
    assert (report.ok, report.connected, report.cause, report.pages_confirmed) == (
        False,
        False,
        cause,
        0,
    )
    assert _records(r) == []
    # The script entry was used up: the next call goes through.
    assert line.send(_call(), PAGES, Hooks()).ok


def test_a_modem_that_dies_takes_its_line_out_of_service(
    line: EmulatedLine, r: redis.Redis
) -> None:
    """``silent`` (``silent:S[:dead]``): the line's own modem stops answering AT commands
    as it dials, as a hung, unplugged or unpowered modem does."""
    _script(r, "silent")
    first = line.send(_call(), PAGES, Hooks())
    assert not first.ok and not first.connected and first.pages_confirmed == 0
    second = line.send(_call(), PAGES, Hooks())
    assert second.cause is Cause.MODEM_NOT_RESPONDING
    assert line.broken is not None  # the pool keeps it out of service until a probe works
    assert _records(r) == []


def test_a_voice_answer_is_not_a_fax(line: EmulatedLine, r: redis.Redis) -> None:
    _script(r, "not_a_fax")
    report = line.send(_call(), PAGES, Hooks())
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.NOT_A_FAX, 0)
    assert report.connected
    assert [(rec["pages"], rec["outcome"]) for rec in _records(r)] == [([], "answered by a voice")]


def test_dropped_carrier_on_page_2(line: EmulatedLine, r: redis.Redis) -> None:
    _script(r, "drop:2")
    hooks = Hooks()
    report = line.send(_call(), PAGES, hooks)
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.NO_CARRIER, 1)
    assert report.detail is not None and "page 2" in report.detail, report.detail
    (rec,) = _records(r)
    assert (rec["pages"], rec["outcome"]) == ([1], "carrier lost on page 2")
    # The retry resumes at page 2.
    assert line.send(_call(first=2), PAGES[1:], Hooks()).ok
    assert [rec["pages"] for rec in _records(r)] == [[1], [2, 3]]


def test_page_rejected_with_rtn(line: EmulatedLine, r: redis.Redis) -> None:
    _script(r, "rtn:2")
    report = line.send(_call(), PAGES, Hooks())
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.PAGE_REJECTED, 1)
    (rec,) = _records(r)
    assert (rec["pages"], rec["outcome"]) == ([1], "page 2 rejected")


def test_cancel_stops_between_pages(line: EmulatedLine, r: redis.Redis) -> None:
    report = line.send(_call(), PAGES, Hooks(stop_at=2))
    assert (report.ok, report.cause, report.pages_confirmed) == (False, Cause.CANCELLED, 1)
    assert [rec["pages"] for rec in _records(r)] == [[1]]


def test_stall_holds_the_call_after_page_1(line: EmulatedLine, r: redis.Redis) -> None:
    """The far end answers "not ready" after page 1 for the scripted seconds: the call
    hangs on the line (a worker killed now dies mid-call), then carries on."""
    _script(r, "stall:3")
    hooks = Hooks()
    started = time.monotonic()
    report = line.send(_call(), PAGES, hooks)
    took = time.monotonic() - started
    assert 3 <= took < 8, took
    assert report.ok and report.pages_confirmed == 3, report
    assert hooks.connects and hooks.pages == [1, 2, 3]
    assert [rec["pages"] for rec in _records(r)] == [[1, 2, 3]]
