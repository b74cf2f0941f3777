"""The placement policy as pure functions: table-driven cases and properties."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.costs import CostTable, parse_csv
from routing.policy import Action, Knobs, SiteState, WaitingFax, candidates, plan

HEADER = "prefix,price_per_minute,connection_fee,first_increment,next_increment,currency,days,start,end,description\n"  # noqa: E501
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, 11:00 in Paris, 05:00 NY
KNOBS = Knobs()


def table(site: str, tz: str, rows: list[str]) -> CostTable:
    return parse_csv(HEADER + "\n".join(rows) + "\n", site=site, timezone=tz)


PARIS = table(
    "paris",
    "Europe/Paris",
    [
        "33,0.02,0,60,60,EUR,*,,,France",
        "1,0.20,0,60,60,EUR,*,,,North America",
        "44,0.10,0,60,60,EUR,*,,,UK",
    ],
)
NEWYORK = table(
    "newyork",
    "America/New_York",
    [
        "1,0.01,0,60,60,EUR,*,,,North America",
        "33,0.25,0,60,60,EUR,*,,,France",
    ],
)
LONDON_NO_US = table("london", "Europe/London", ["44,0.01,0,60,60,EUR,*,,,UK"])


def site(
    name: str,
    *,
    lines: int = 2,
    busy: int = 0,
    costs: CostTable | None = None,
    group: str | None = "g",
    success: dict[str, float] | None = None,
) -> SiteState:
    return SiteState(
        name=name, group=group, lines_up=lines, busy=busy, costs=costs, success=success or {}
    )


def fax(
    key: str,
    number: str,
    *,
    priority: int = 5,
    pages: int = 2,
    home: str = "paris",
    age: float = 0.0,
) -> WaitingFax:
    return WaitingFax(
        key=key,
        number=number,
        pages=pages,
        priority=priority,
        enqueued_at=NOW - timedelta(seconds=age),
        home_site=home,
    )


def groups(sites: dict[str, SiteState]):
    return lambda name: sites[name].group if name in sites else "g"


def decide(faxes: list[WaitingFax], sites: list[SiteState], knobs: Knobs = KNOBS):
    by_name = {s.name: s for s in sites}
    return {d.key: d for d in plan(faxes, by_name, NOW, knobs, groups(by_name))}


@pytest.mark.parametrize(
    ("number", "sites", "expected"),
    [
        ("+33142685300", [site("paris", costs=PARIS), site("newyork", costs=NEWYORK)], "paris"),
        ("+12125550100", [site("paris", costs=PARIS), site("newyork", costs=NEWYORK)], "newyork"),
        # the cheap site is full but the fax is urgent: it pays more to go now
        (
            "+12125550100",
            [site("paris", costs=PARIS), site("newyork", busy=2, costs=NEWYORK)],
            "paris",
        ),
        # a site that cannot dial the destination is never chosen
        ("+12125550100", [site("london", costs=LONDON_NO_US), site("paris", costs=PARIS)], "paris"),
        # without cost tables load decides; equal load prefers the home site
        ("+12125550100", [site("newyork"), site("paris")], "paris"),
        ("+12125550100", [site("newyork"), site("paris", busy=1)], "newyork"),
        # a cheap route that fails most calls is dearer than it looks
        (
            "+12125550100",
            [site("paris", costs=PARIS), site("newyork", costs=NEWYORK, success={"1212": 0.04})],
            "paris",
        ),
    ],
)
def test_urgent_placement(number: str, sites: list[SiteState], expected: str) -> None:
    d = decide([fax("a", number, priority=9)], sites)["a"]
    assert d.action == Action.DISPATCH
    assert d.site == expected


def test_bulk_fax_waits_for_the_cheap_site_while_urgent_overflows() -> None:
    sites = [site("paris", costs=PARIS), site("newyork", lines=2, busy=2, costs=NEWYORK)]
    d = decide(
        [fax("bulk", "+12125550100", priority=1), fax("urgent", "+12125550101", priority=9)], sites
    )
    assert d["bulk"].action == Action.WAIT and d["bulk"].site == "newyork"
    assert d["urgent"].action == Action.DISPATCH and d["urgent"].site == "paris"
    assert d["bulk"].expected_wait > 0


def test_most_urgent_takes_the_last_free_line() -> None:
    sites = [site("paris", lines=1, costs=PARIS)]
    d = decide(
        [
            fax("old-bulk", "+33142685300", priority=1, age=600),
            fax("new-urgent", "+33142685301", priority=9),
        ],
        sites,
    )
    assert d["new-urgent"].action == Action.DISPATCH
    assert d["old-bulk"].action == Action.WAIT


def test_same_priority_is_first_come_first_served() -> None:
    sites = [site("paris", lines=1, costs=PARIS)]
    d = decide([fax("young", "+33142685300", age=1), fax("old", "+33142685301", age=50)], sites)
    assert d["old"].action == Action.DISPATCH and d["young"].action == Action.WAIT


def test_standalone_site_routes_only_to_itself() -> None:
    sites = [site("paris", group=None, busy=2, costs=PARIS), site("newyork", costs=NEWYORK)]
    d = decide([fax("a", "+12125550100", priority=9)], sites)["a"]
    assert d.action == Action.WAIT and d.site is None and "no free line" in d.reason
    sites = [site("paris", group=None, busy=1, costs=PARIS), site("newyork", costs=NEWYORK)]
    d = decide([fax("a", "+12125550100", priority=9)], sites)["a"]
    assert d.action == Action.DISPATCH and d.site == "paris"


def test_group_boundaries_are_kept() -> None:
    sites = [
        site("paris", group="europe", busy=2, costs=PARIS),
        site("newyork", group="america", costs=NEWYORK),
    ]
    d = decide([fax("a", "+12125550100", priority=9)], sites)["a"]
    assert d.action == Action.WAIT and d.site is None  # newyork's free line is not its own
    assert "no free line" in d.reason


def test_no_site_up_and_no_route() -> None:
    d = decide([fax("a", "+33142685300")], [])["a"]
    assert d.action == Action.NO_SITE and "is up" in d.reason
    d = decide([fax("b", "+12125550100", home="london")], [site("london", costs=LONDON_NO_US)])
    assert d["b"].action == Action.NO_ROUTE and "+12125550100" in d["b"].reason


def test_time_of_day_band_in_the_sites_local_time() -> None:
    """Paris is dear for +1 by day and cheaper than New York in its evening."""
    evening = table(
        "paris",
        "Europe/Paris",
        [
            "1,0.30,0,60,60,EUR,mon-fri,08:00,18:00,day",
            "1,0.005,0,60,60,EUR,mon-fri,18:00,24:00,evening",
            "1,0.005,0,60,60,EUR,mon-fri,00:00,08:00,night",
            '1,0.005,0,60,60,EUR,"sat,sun",,,weekend',
        ],
    )
    sites = [site("paris", costs=evening), site("newyork", costs=NEWYORK)]
    by_name = {s.name: s for s in sites}
    urgent = [fax("a", "+12125550100", priority=9)]
    day = plan(urgent, by_name, NOW, KNOBS, groups(by_name))[0]
    paris_evening = datetime(2026, 11, 25, 17, 30, tzinfo=UTC)  # 18:30 in Paris (winter)
    paris_afternoon = datetime(2026, 7, 1, 15, 30, tzinfo=UTC)  # 17:30 in Paris (summer)
    evening_choice = plan(urgent, by_name, paris_evening, KNOBS, groups(by_name))[0]
    summer_choice = plan(urgent, by_name, paris_afternoon, KNOBS, groups(by_name))[0]
    assert day.site == "newyork"
    assert evening_choice.site == "paris"
    assert summer_choice.site == "newyork"


def test_cost_is_reported_for_the_airtime_estimate() -> None:
    d = decide([fax("a", "+33142685300", pages=3, priority=9)], [site("paris", costs=PARIS)])["a"]
    # 3 pages x 40 s + 25 s setup = 145 s, billed 180 s at 0.02/min
    assert d.cost == Decimal("0.060000")


def test_candidates_skip_sites_without_lines() -> None:
    sites = {"paris": site("paris", lines=0), "newyork": site("newyork")}
    assert [s.name for s in candidates(fax("a", "+1"), sites, groups(sites))] == ["newyork"]


# -- properties ---------------------------------------------------------------------------

TABLES = [PARIS, NEWYORK, LONDON_NO_US, None]
NUMBERS = ["+33142685300", "+12125550100", "+442079460000", "+4930901820"]

site_st = st.builds(
    lambda i, lines, busy, costs, rate: SiteState(
        name=f"s{i}",
        group="g",
        lines_up=lines,
        busy=min(busy, lines),
        costs=costs,
        success={"1212": rate} if rate is not None else {},
    ),
    st.integers(0, 1000),
    st.integers(0, 4),
    st.integers(0, 5),
    st.sampled_from(TABLES),
    st.one_of(st.none(), st.floats(0.1, 1.0)),
)
fax_st = st.builds(
    lambda i, number, priority, pages, age: fax(
        f"f{i}", number, priority=priority, pages=pages, home="s0", age=age
    ),
    st.integers(0, 10_000),
    st.sampled_from(NUMBERS),
    st.integers(0, 9),
    st.integers(1, 20),
    st.floats(0, 3600),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(site_st, max_size=5, unique_by=lambda s: s.name),
    st.lists(fax_st, max_size=12, unique_by=lambda f: f.key),
)
def test_properties(sites: list[SiteState], faxes: list[WaitingFax]) -> None:
    by_name = {s.name: s for s in sites}
    decisions = plan(faxes, by_name, NOW, KNOBS, lambda _: "g")
    numbers = {f.key: f.number for f in faxes}
    handed = dict.fromkeys(by_name, 0)
    for d in decisions:
        if d.action != Action.DISPATCH:
            continue
        chosen = by_name[d.site]
        # never a site that is down, full, or cannot dial the number
        assert chosen.lines_up > 0
        handed[d.site] += 1
        assert handed[d.site] <= chosen.free
        assert chosen.costs is None or chosen.costs.can_dial(numbers[d.key])
    # never a dearer site when a cheaper one with a free line could keep the promise:
    # check the first (most urgent) fax, which sees the fleet as it is
    if decisions and faxes:
        first = decisions[0]
        head = next(f for f in faxes if f.key == first.key)
        exchanged = "exchanged" in first.reason  # a pair swap lowers the total instead
        if first.action == Action.DISPATCH and first.cost is not None and not exchanged:
            airtime = head.pages * KNOBS.seconds_per_page + KNOBS.call_setup_seconds
            for s in sites:
                if s.free > 0 and s.costs is not None and s.costs.can_dial(head.number):
                    cost = s.costs.call_cost(head.number, NOW, airtime)
                    assert cost is not None
                    rate = Decimal(str(max(KNOBS.min_success, s.success_for(head.number))))
                    assert first.cost <= cost / rate
    # most urgent first: a dispatched fax is never less urgent than one that waits for
    # the same site while that site still had a line to give
    waiting_for = {d.site for d in decisions if d.action == Action.WAIT and d.site}
    assert all(handed.get(s, 0) <= by_name[s].free for s in waiting_for)
    # work conserving: a fax left waiting with no site named had no free line at all
    for d in decisions:
        if d.action == Action.WAIT and d.reason == "no free line in its group":
            assert all(handed[s.name] == s.free for s in sites if s.lines_up > 0)
    # one call per number: no number is handed out twice in one pass
    dispatched = [numbers[d.key] for d in decisions if d.action == Action.DISPATCH]
    assert len(dispatched) == len(set(dispatched))


def test_a_nearly_equal_idle_line_beats_waiting() -> None:
    """Within the cost tolerance, starting now wins over waiting for a slightly cheaper
    site; beyond it, the cheaper site is worth the wait."""
    near = table("london", "Europe/London", ["1,0.0102,0,60,60,EUR,*,,,North America"])
    far = table("london", "Europe/London", ["1,0.02,0,60,60,EUR,*,,,North America"])
    for london, expected in ((near, "london"), (far, "newyork")):
        sites = [site("newyork", busy=2, costs=NEWYORK), site("london", costs=london)]
        d = decide([fax("a", "+12125550100", priority=5)], sites)["a"]
        assert d.site == expected, (london.tariffs[0].price_per_minute, d)
    strict = Knobs(cost_tolerance=0.0)
    sites = [site("newyork", busy=2, costs=NEWYORK), site("london", costs=near)]
    assert decide([fax("a", "+12125550100")], sites, strict)["a"].site == "newyork"


def test_a_fax_with_time_to_spare_waits_for_the_evening_rate() -> None:
    """Paris's +33 day rate ends at 19:00 local; at 18:50 a bulk fax waits ten minutes
    for the night rate even though a line is free, while an urgent one goes now."""
    at = datetime(2026, 11, 25, 17, 50, tzinfo=UTC)  # 18:50 in Paris
    tables = table(
        "paris",
        "Europe/Paris",
        [
            "33,0.10,0,60,60,EUR,mon-fri,08:00,19:00,day",
            "33,0.01,0,60,60,EUR,mon-fri,19:00,24:00,evening",
            "33,0.01,0,60,60,EUR,mon-fri,00:00,08:00,night",
            '33,0.01,0,60,60,EUR,"sat,sun",,,weekend',
        ],
    )
    by_name = {"paris": site("paris", costs=tables)}
    bulk, urgent = fax("bulk", "+33142685300", priority=1), fax("now", "+33142685301", priority=9)
    decisions = {d.key: d for d in plan([bulk, urgent], by_name, at, KNOBS, groups(by_name))}
    assert decisions["now"].action == Action.DISPATCH
    assert decisions["bulk"].action == Action.WAIT and decisions["bulk"].site == "paris"
    assert "cheaper band" in decisions["bulk"].reason and decisions["bulk"].deferred
    assert decisions["bulk"].expected_wait == 600
    # ten minutes later the evening rate is in force and it goes
    later = plan([bulk], by_name, at + timedelta(minutes=10), KNOBS, groups(by_name))[0]
    assert later.action == Action.DISPATCH and later.cost is not None
    assert later.cost < decisions["now"].cost
    # holding for a band is limited by band_wait_seconds, not by the patience (which is
    # about waiting for a busy site while another has a free line)
    impatient = Knobs(patience_seconds=300)
    assert plan([bulk], by_name, at, impatient, groups(by_name))[0].deferred
    brief = Knobs(band_wait_seconds=300)
    assert plan([bulk], by_name, at, brief, groups(by_name))[0].action == Action.DISPATCH


def test_a_bulk_fax_is_held_for_the_night_rate_within_its_promise() -> None:
    """At 14:00 in Paris a priority-0 fax (promised within a day) is held five hours for
    the 19:00 rate; a priority-4 fax (promised within an hour) cannot be and goes now."""
    at = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)  # 14:00 in Paris
    tables = table(
        "paris",
        "Europe/Paris",
        [
            "33,0.10,0,60,60,EUR,mon-fri,08:00,19:00,day",
            "33,0.02,0,60,60,EUR,mon-fri,19:00,24:00,evening",
            "33,0.02,0,60,60,EUR,mon-fri,00:00,08:00,night",
            '33,0.02,0,60,60,EUR,"sat,sun",,,weekend',
        ],
    )
    by_name = {"paris": site("paris", costs=tables)}
    bulk, soon = fax("bulk", "+33142685300", priority=0), fax("soon", "+33142685301", priority=4)
    decisions = {d.key: d for d in plan([bulk, soon], by_name, at, KNOBS, groups(by_name))}
    assert decisions["soon"].action == Action.DISPATCH and not decisions["soon"].deferred
    assert decisions["bulk"].action == Action.WAIT and decisions["bulk"].deferred
    assert decisions["bulk"].expected_wait == 5 * 3600


def test_one_call_per_destination_number_at_a_time() -> None:
    sites = [site("paris", lines=4, costs=PARIS)]
    by_name = {s.name: s for s in sites}
    same = [fax(f"f{i}", "+33142685300", age=10 - i) for i in range(3)]
    other = fax("g", "+33142685301")
    decisions = {d.key: d for d in plan([*same, other], by_name, NOW, KNOBS, groups(by_name))}
    assert decisions["f0"].action == Action.DISPATCH  # the oldest goes
    assert [decisions[k].action for k in ("f1", "f2")] == [Action.WAIT, Action.WAIT]
    assert "in progress" in decisions["f1"].reason
    assert decisions["g"].action == Action.DISPATCH  # other numbers are not held up
    # a call already on the wire holds the number too
    held = plan([same[0]], by_name, NOW, KNOBS, groups(by_name), {"+33142685300": 1})
    assert held[0].action == Action.WAIT
    two = Knobs(max_calls_per_number=2)
    decisions = {d.key: d for d in plan(same, by_name, NOW, two, groups(by_name))}
    assert sum(d.action == Action.DISPATCH for d in decisions.values()) == 2


def test_two_faxes_starting_now_exchange_lines_when_cheaper_overall() -> None:
    """Greedy order gives the older urgent +33 fax the only Paris line, leaving the other
    urgent fax, to +44, London; exchanging is cheaper, and both still start now."""
    paris = table(
        "paris",
        "Europe/Paris",
        [
            "33,0.10,0,60,60,EUR,*,,,France",
            "44,0.01,0,60,60,EUR,*,,,UK",
        ],
    )
    london = table(
        "london",
        "Europe/London",
        [
            "33,0.11,0,60,60,EUR,*,,,France",
            "44,0.50,0,60,60,EUR,*,,,UK",
        ],
    )
    sites = {
        "paris": site("paris", lines=1, costs=paris),
        "london": site("london", lines=1, costs=london),
    }
    urgent = fax("fr", "+33142685300", priority=9, age=5)
    bulk = fax("uk", "+442079460000", priority=9)
    decisions = {d.key: d for d in plan([urgent, bulk], sites, NOW, KNOBS, groups(sites))}
    # alone, the +33 fax would take Paris (0.10 < 0.11); together, London for it and
    # Paris for the +44 fax costs 0.11 + 0.01 instead of 0.10 + 0.50
    assert decisions["fr"].site == "london" and decisions["uk"].site == "paris"
    assert all(d.action == Action.DISPATCH for d in decisions.values())
    assert "exchanged" in decisions["fr"].reason


def test_expected_start_follows_each_lines_timeline() -> None:
    """Busy lines free when their calls are expected to end, and faxes queued in one pass
    take the earliest line one after the other, each for its own call time. (New York has
    a free line, so the pass costs every fax, but is far dearer for +33.)"""
    paris = dataclasses.replace(site("paris", lines=1, busy=1, costs=PARIS), busy_until=(100.0,))
    faxes = [fax(f"f{i}", f"+3314268530{i}", pages=2, priority=5 - i) for i in range(3)]
    got = decide(faxes, [paris, site("newyork", lines=1, costs=NEWYORK)])
    # 2 pages x 40 s + 25 s set-up = 105 s per call, after the busy line frees at 100 s
    assert [got[f"f{i}"].expected_wait for i in range(3)] == [100.0, 205.0, 310.0]
    assert all(d.action == Action.WAIT and d.site == "paris" for d in got.values())


def test_a_fax_waits_for_the_cheap_line_that_frees_soon_not_the_one_that_does_not() -> None:
    """Paris is cheapest for +33; its only line frees in 60 s: worth waiting for. When it
    frees only in 1,200 s (beyond the 900 s patience), the fax takes New York's free line."""
    newyork = site("newyork", lines=1, costs=NEWYORK)
    soon = dataclasses.replace(site("paris", lines=1, busy=1, costs=PARIS), busy_until=(60.0,))
    late = dataclasses.replace(soon, busy_until=(1200.0,))
    one = fax("f", "+33142685300", priority=3)
    waited = decide([one], [soon, newyork])["f"]
    assert (waited.action, waited.site, waited.expected_wait) == (Action.WAIT, "paris", 60.0)
    went = decide([one], [late, newyork])["f"]
    assert (went.action, went.site) == (Action.DISPATCH, "newyork")


def test_busy_lines_without_an_estimate_free_evenly_over_a_mean_call() -> None:
    paris = dataclasses.replace(
        site("paris", lines=2, busy=2, costs=PARIS), mean_call_seconds=200.0
    )
    newyork = site("newyork", lines=1, costs=NEWYORK)
    got = decide([fax("a", "+33142685300"), fax("b", "+33142685301")], [paris, newyork])
    assert sorted(d.expected_wait for d in got.values()) == [100.0, 200.0]


def test_two_waiting_faxes_exchange_places_when_that_costs_less() -> None:
    """A (+44) is placed first and takes Frankfurt's line, due in 225 s, which B (+49)
    needed far more; Paris's line is due in 105 s. Both must start within 300 s
    (priority 7), so after A, B's only option is Paris. Exchanging places saves money and
    both still start in time."""
    frankfurt = table(
        "frankfurt", "Europe/Berlin", ["44,0.17,0,60,60,EUR,*,,,UK", "49,0.03,0,60,60,EUR,*,,,DE"]
    )
    paris = table(
        "paris", "Europe/Paris", ["44,0.22,0,60,60,EUR,*,,,UK", "49,0.13,0,60,60,EUR,*,,,DE"]
    )
    sites = [
        dataclasses.replace(
            site("frankfurt", lines=1, busy=1, costs=frankfurt), busy_until=(225.0,)
        ),
        dataclasses.replace(site("paris", lines=1, busy=1, costs=paris), busy_until=(105.0,)),
        site("newyork", lines=1, costs=NEWYORK),  # free, but dials neither number
    ]
    # 3 pages: 145 s a call, so only one of them fits on Frankfurt's line before 300 s
    a = fax("a", "+442079460000", priority=7, pages=3)
    b = fax("b", "+4930901820", priority=7, pages=3)
    got = decide([a, b], sites)
    assert (got["a"].site, got["a"].expected_wait) == ("paris", 105.0)
    assert (got["b"].site, got["b"].expected_wait) == ("frankfurt", 225.0)
    assert "exchanged" in got["a"].reason and "exchanged" in got["b"].reason
    # 3 minutes each: A at Paris 0.66 + B at Frankfurt 0.09, instead of 0.51 + 0.39
    assert (got["a"].cost, got["b"].cost) == (Decimal("0.66"), Decimal("0.09"))
