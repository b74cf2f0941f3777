"""The line pool with modem lines: probed at start, a modem that goes silent taken out of
service with its reason while faxes go out on the other, and put back by the re-probe."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from faxfleet.messages import Cause, LineStatus, SiteStatus, now
from faxfleet.modems import ModemLine
from faxfleet.settings import Settings
from tests.test_lines_class1 import PAGES, TIMERS, FarEnd, Hooks
from workers.fax.emulator import EmulatorPair
from workers.lines.base import Call
from workers.lines.class1 import Class1ModemLine
from workers.lines.class2 import Class2ModemLine
from workers.lines.emulated import EmulatedLine
from workers.lines.factory import LineFactory
from workers.lines.pool import LinePool
from workers.lines.simulated import SimulatedLine, SimulatedNetwork


@pytest.fixture
def pairs() -> Iterator[tuple[EmulatorPair, EmulatorPair]]:
    with (
        EmulatorPair(("5551001", "5551002"), time_scale=50, faults="5550030=silent:8") as one,
        EmulatorPair(("5551001", "5551002"), time_scale=50) as two,
    ):
        yield one, two


def _line(name: str, url: str) -> Class1ModemLine:
    return Class1ModemLine(name=name, url=url, timers=TIMERS, dial_timeout=2.0)


def _states(pool: LinePool) -> dict[str, tuple[str, str | None]]:
    return {s.name: (s.state, s.reason) for s in pool.statuses()}


def _call(number: str) -> Call:
    return Call(number=number, dial_string=number, first_page=1, total_pages=3, job_id="j")


def test_a_silent_modem_leaves_service_and_comes_back(
    pairs: tuple[EmulatorPair, EmulatorPair],
) -> None:
    one, two = pairs
    pool = LinePool([_line("m1", one.urls[0]), _line("m2", two.urls[0])])
    assert pool.probe_all() == {"m1": True, "m2": True}
    assert _states(pool) == {"m1": ("idle", None), "m2": ("idle", None)}

    first = pool.acquire("job-a", 0)
    assert first is not None and first.name == "m1"
    report = first.send(_call("5550030"), PAGES, Hooks())  # m1's modem goes silent
    pool.release(first)
    assert report.cause is Cause.MODEM_NOT_RESPONDING
    state, reason = _states(pool)["m1"]
    assert state == "out_of_service" and reason is not None and "stopped responding" in reason

    # The next fax goes out on the other modem.
    second = pool.acquire("job-b", 0)
    assert second is not None and second.name == "m2"
    far = FarEnd(two.urls[1])
    assert second.send(_call("5551002"), PAGES, Hooks()).ok
    assert far.get() is not None
    pool.release(second)
    assert _states(pool)["m2"] == ("idle", None)

    # The re-probe puts m1 back once its modem answers again.
    pool.start_reprobing(0.5)
    deadline = time.monotonic() + 30
    while _states(pool)["m1"][0] != "idle":
        assert time.monotonic() < deadline, pool.statuses()
        time.sleep(0.2)
    assert _states(pool)["m1"] == ("idle", None)
    again = pool.acquire("job-d", 0)
    assert again is not None and again.name == "m1"
    pool.release(again)
    pool.close()


def test_a_modem_missing_at_start_is_out_of_service_with_its_reason(
    pairs: tuple[EmulatorPair, EmulatorPair],
) -> None:
    one, _ = pairs
    pool = LinePool([_line("gone", "/dev/no-such-modem"), _line("ok", one.urls[0])])
    assert pool.probe_all() == {"gone": False, "ok": True}
    statuses = {s.name: s for s in pool.statuses()}
    assert statuses["gone"].state == "out_of_service"
    assert statuses["gone"].reason is not None and "probe failed" in statuses["gone"].reason
    line = pool.acquire("job", 0)
    assert line is not None and line.name == "ok"
    assert pool.acquire("job2", 0) is None  # the broken line is never handed out
    pool.release(line)
    # Published status: routing sees one line up of two.
    site = SiteStatus(name="s", lines=pool.statuses(), worker="w", updated_at=now())
    assert site.lines_up == 1
    assert LineStatus.model_validate_json(statuses["gone"].model_dump_json()).reason
    pool.close()


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(f"FAXFLEET_{key.upper()}", value)
    return Settings()


def test_factory_builds_each_kind(monkeypatch: pytest.MonkeyPatch, r: redis.Redis) -> None:
    network = SimulatedNetwork(r)
    sim = LineFactory(_settings(monkeypatch, line_kind="simulated", lines="2"), network)
    lines = sim.initial()
    assert [type(x) for x in lines] == [SimulatedLine, SimulatedLine] and sim.resizable
    assert [x.name for x in lines] == ["paris-1", "paris-2"]

    emu = LineFactory(
        _settings(
            monkeypatch,
            line_kind="emulated",
            lines="1",
            emulator_time_scale="80",
            emulator_answer="true",
        ),
        network,
    )
    (em,) = emu.initial()
    assert isinstance(em, EmulatedLine) and em.time_scale == 80 and em.name == "paris-1"
    assert em.far_end.calls_in
    em.close()

    modems = (
        '[{"name": "a", "url": "/dev/ttyACM0", "max_rate": 9600, "ecm": false},'
        ' {"name": "b", "url": "socket://host:7001", "fax_class": "2.0"}]'
    )
    mod = LineFactory(_settings(monkeypatch, line_kind="modem", modems=modems), network)
    a, b = mod.initial()
    assert isinstance(a, Class1ModemLine) and isinstance(b, Class2ModemLine)
    assert not mod.resizable
    assert a.wishes.ecm is False and a.wishes.rates[0].name == "V17_9600"
    assert b.name == "b" and b.line.url == "socket://host:7001"
    assert isinstance(ModemLine(name="x", url="y"), ModemLine)
