"""The demo's summary as a pure formatter, and the routing choice it reports: the policy
says when a cheaper site was busy, the dispatcher names the choice, the summary words
it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from faxfleet import summary
from faxfleet.demo import stories
from faxfleet.messages import (
    DocumentInfo,
    FaxStatus,
    JobState,
    RecipientStatus,
    RouteChoice,
    Transition,
)
from routing.dispatcher import route_choice
from routing.policy import Action, Decision
from tests.test_policy import NEWYORK, PARIS, decide, fax, site

S = JobState
T0 = datetime(2026, 12, 7, 13, 3, 21, tzinfo=UTC)
ESCAPE = re.compile(r"\x1b\[")


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _move(index: int, t: float, a: JobState, b: JobState) -> Transition:
    return Transition(at=_at(t), recipient=index, from_state=a, to_state=b)


def _calls(index: int, outcomes: list[str], site_name: str) -> list[Transition]:
    """History of ``outcomes`` ("busy", "drop", "ok", "no_answer") for recipient
    ``index``: each a call, from routing to its end."""
    history = [Transition(at=_at(0), recipient=index, from_state=None, to_state=S.SUBMITTED)]
    t = 1.0
    for outcome in outcomes:
        for a, b in ((S.ROUTING, S.QUEUED), (S.QUEUED, S.DIALING)):
            history.append(
                Transition(at=_at(t), recipient=index, from_state=a, to_state=b, site=site_name)
            )
            t += 1
        if outcome in ("busy", "no_answer"):
            end = S.RETRY_SCHEDULED
            history.append(
                Transition(at=_at(t), recipient=index, from_state=S.DIALING, to_state=end)
            )
        else:
            history.append(
                Transition(at=_at(t), recipient=index, from_state=S.DIALING, to_state=S.SENDING)
            )
            end = S.DONE if outcome == "ok" else S.RETRY_SCHEDULED
            history.append(
                Transition(at=_at(t), recipient=index, from_state=S.SENDING, to_state=end)
            )
        t += 1
        history.append(Transition(at=_at(t), recipient=index, from_state=end, to_state=S.ROUTING))
    return history[:-1]


def _fax(
    fax_id: str,
    priority: int,
    recipients: list[RecipientStatus],
    history: list[Transition],
    pages: int = 2,
) -> FaxStatus:
    return FaxStatus(
        id=fax_id,
        tenant="demo",
        state=S.DONE,
        priority=priority,
        resolution="fine",
        user="billing",
        home_site="paris",
        created_at=T0,
        kill_at=_at(10_800),
        documents=[DocumentInfo(name="invoice.pdf", content_type="application/pdf", size=1)],
        pages=pages,
        recipients=recipients,
        notified_by="paris",
        history=history,
    )


def _recipient(number: str, **fields) -> RecipientStatus:
    return RecipientStatus(index=0, number=number, **fields)


def sample() -> list[FaxStatus]:
    overflow = _recipient(
        "+12125550151",
        state=S.DONE,
        site="paris",
        pages_confirmed=2,
        cost_estimate="0.2912",
        currency="EUR",
        queued_since=_at(1),
        routed_at=_at(1.1),
        call_started_at=_at(1.4),
        route_choice=RouteChoice.OVERFLOW,
        route_reason="cheapest able to start within 0s; newyork, cheaper, had no free line",
    )
    waited = _recipient(
        "+16465550101",
        state=S.DONE,
        site="newyork",
        pages_confirmed=2,
        cost_estimate="0.0049",
        currency="EUR",
        queued_since=_at(1),
        routed_at=_at(5.5),
        call_started_at=_at(5.6),
        route_choice=RouteChoice.WAITED,
        dials=2,
    )
    failed = _recipient(
        "+442079460000",
        state=S.FAILED,
        site="paris",
        cost_estimate="1.005",
        currency="JPY",
        queued_since=_at(1),
        routed_at=_at(2),
        route_choice=RouteChoice.CHEAPEST,
        cause="too_many_dials",
        detail="4 dials, last: no_answer",
        dials=4,
    )
    return [
        _fax("fx_overflow", 9, [overflow], _calls(0, ["ok"], "paris")),
        _fax("fx_waited", 1, [waited], _calls(0, ["busy", "busy", "ok"], "newyork")),
        _fax("fx_failed", 5, [failed], _calls(0, ["no_answer"] * 4, "paris")),
    ]


def test_summary_fits_80_columns_without_escape_codes() -> None:
    text = summary.summary(sample(), zone=ZoneInfo("Europe/Paris"))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not ESCAPE.search(text)
    # Times with date and zone: 13:03:21 UTC is 14:03:21 in Paris (CET in December).
    assert "2026-12-07 14:03:21 CET" in text
    assert "notified: paris" in text


def test_summary_rows_say_why_wait_cost_and_calls() -> None:
    text = summary.summary(sample(), zone=UTC)
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(" +")}
    overflow, waited, failed = rows["+12125550151"], rows["+16465550101"], rows["+442079460000"]
    assert "overflow: cheaper busy" in overflow and "0.29 EUR" in overflow
    assert " 0.4s " in overflow  # queued at 1 s, call started at 1.4 s
    assert "waited for cheap line" in waited and "0.00 EUR" in waited and " 4.6s " in waited
    # Calls from the history: two busy signals and the call that went through.
    assert re.search(r" 3/1 done$", waited)
    # A currency without a minor unit is rounded to whole units; a call never started
    # shows the wait until it was handed to the site.
    assert "1 JPY" in failed and "1.005" not in failed and "~1.0s" in failed
    assert re.search(r" 4/0 failed$", failed)
    assert "too_many_dials: 4 dials, last: no_answer" in text


def test_calls_agree_with_the_fleets_counters() -> None:
    for item in sample():
        r = item.recipients[0]
        assert summary.counters_agree(item, r), item.id
    done = sample()[1]
    off = done.model_copy(
        update={"recipients": [done.recipients[0].model_copy(update={"dials": 1})]}
    )
    assert not summary.counters_agree(off, off.recipients[0])
    assert "3/1!" in summary.summary([off])


def test_money_rounds_to_the_minor_unit() -> None:
    assert summary.money("0.125", "EUR") == "0.13 EUR"
    assert summary.money("0.0049", "EUR") == "0.00 EUR"
    assert summary.money("2.5", "JPY") == "3 JPY"
    assert summary.money("1.2345", "KWD") == "1.235 KWD"
    assert summary.money(None, "EUR") == "-"


def test_final_line_counts_done_failed_mails_and_calls_per_site() -> None:
    line = summary.final_line(sample(), 3, ["paris", "newyork"])
    assert line == "2/3 recipients done, 1 failed; 3 mails; calls: paris 5, newyork 3"
    assert len(line) <= 80


def test_progress_line_is_plain() -> None:
    line = summary.progress_line(sample(), T0, UTC)
    assert line == "2026-12-07 13:03:21 UTC  done 2 failed 1"


def test_stories_name_the_overflow_and_the_wait() -> None:
    told = stories(sample())
    assert any("+12125550151" in s and "overflowed to paris" in s for s in told)
    assert any("+16465550101" in s and "waited 4.6s" in s and "newyork" in s for s in told)
    assert not any("+442079460000" in s for s in told)


# -- where the choice comes from -----------------------------------------------------------


def test_policy_names_the_busy_cheaper_site() -> None:
    sites = [site("paris", costs=PARIS), site("newyork", lines=2, busy=2, costs=NEWYORK)]
    d = decide(
        [fax("bulk", "+12125550100", priority=1), fax("urgent", "+12125550101", priority=9)], sites
    )
    assert d["urgent"].cheaper_busy == "newyork" and d["urgent"].choices == 2
    assert "newyork, cheaper, had no free line" in d["urgent"].reason
    assert d["bulk"].cheaper_busy is None  # it waits for the cheap line instead
    free = decide([fax("a", "+12125550100", priority=9)], [site("paris", costs=PARIS)])
    assert free["a"].choices == 1 and free["a"].cheaper_busy is None


def test_dispatcher_choice_words() -> None:
    plain = Decision(
        "k", Action.DISPATCH, "newyork", "cheapest able to start within 60s", choices=2
    )
    assert route_choice(plain, False, None) == RouteChoice.CHEAPEST
    assert route_choice(plain, False, "newyork") == RouteChoice.WAITED
    assert route_choice(plain, False, "paris") == RouteChoice.CHEAPEST
    assert route_choice(plain, True, "newyork") == RouteChoice.BAND
    busy = Decision("k", Action.DISPATCH, "paris", "cheapest ...", choices=2, cheaper_busy="ny")
    assert route_choice(busy, False, None) == RouteChoice.OVERFLOW
    only = Decision("k", Action.DISPATCH, "paris", "cheapest ...", choices=1)
    assert route_choice(only, False, "paris") == RouteChoice.ONLY
    late = Decision("k", Action.DISPATCH, "paris", "earliest start (no site ...)", choices=2)
    assert route_choice(late, False, None) == RouteChoice.EARLIEST
    swap = Decision("k", Action.DISPATCH, "paris", "cheapest for the fleet: exchanged", choices=2)
    assert route_choice(swap, True, "paris") == RouteChoice.EXCHANGED


def test_live_view_fits_80_columns() -> None:
    from rich.console import Console

    from faxfleet.demo import live_table

    console = Console(width=80, record=True, force_terminal=False)
    console.print(live_table(sample()))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "+442079460000" in text and "4/0" in text and "3/1" in text


def test_the_demo_prints_the_recorded_costs_by_site_in_80_columns() -> None:
    from faxfleet.demo import costs_text
    from faxfleet.reports import aggregate
    from tests.test_reports import rec

    report = aggregate(
        [
            rec(1, site="paris", cost="0.125000"),
            rec(2, site="newyork", cost="0.004000"),
            rec(3, site="paris", cost="0", connected=False, ok=False, pages=0),
        ],
        "site",
    )
    text = costs_text(report)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert "\x1b" not in text
    assert lines[1].split() == [
        "site",
        "calls",
        "connected",
        "completed",
        "minutes",
        "pages",
        "cost",
        "EUR",
    ]
    rows = {line.split()[0]: line.split() for line in lines[3:] if not line.startswith("-")}
    assert rows["paris"][1:3] == ["2", "1"] and rows["paris"][-1] == "0.13"
    assert rows["newyork"][-1] == "0.00"
    assert rows["total"][1] == "3" and rows["total"][-1] == "0.13"
