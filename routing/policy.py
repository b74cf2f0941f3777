"""Placement: which site sends each waiting fax, and when. Pure: data in, decisions out.

The rules, applied to the faxes waiting centrally from the most urgent down (priority,
then time waiting):

1. **Candidates** are the sites of the fax's group (the home site's group; a standalone
   home site is its own only candidate; undeclared sites form the group ``default``)
   that are up, have a line in service and can dial the number (their cost table has a
   tariff for it; a site without a cost table dials anything, at unknown cost).
2. **Expected start** at a site: now if it has a free line, otherwise when its next line
   frees, on a timeline of its lines: each busy line frees when its call is expected to
   end, and each fax placed or queued at the site in this pass (more urgent ones first)
   takes the earliest line for its own estimated call time.
3. **Expected cost** at a site: its tariff at the expected start (in the site's local
   time) for the estimated airtime (pages x ``seconds_per_page`` + ``call_setup``),
   divided by the site's recent success rate for the destination: a cheap line that
   fails half its calls costs double. Unknown cost sorts after every known cost.
4. **Promise**: each priority has a longest acceptable wait (``promise_seconds``),
   counted from when the fax started waiting; a fax waits for a busy cheaper site at
   most ``patience_seconds`` more, so lines elsewhere do not idle through a long
   backlog. A site is also priced at each moment its tariff for the number changes, up
   to the promise (or ``band_wait_seconds``): a fax with time to spare is *held* for a
   cheaper band (evening, night, weekend rates) even while a line is free; a held fax
   keeps no line. Among the candidates whose start is within these limits, the
   cheapest wins; costs within ``cost_tolerance`` of the cheapest count as equal, and
   among equals the earlier start wins, then the lower cost, the lower load, the home
   site, the name.
5. If no candidate keeps the promise, the **earliest expected start** wins (cost breaks
   ties): the most urgent faxes pay more to go now.
6. A fax waits while ``max_calls_per_number`` calls to its number are on the wire
   anywhere in the fleet (a burst to one number is not met by busy signals).
7. **Exchange**: two placed faxes (starting now, or queued for a line) at different
   sites of a group exchange places when that costs less in total and each still
   starts within what it may wait (the greedy order can give an earlier fax the line a
   later one needed more).
8. A fax is handed to a site only when that site has a free line; otherwise it keeps
   waiting centrally (and counts in that site's queue for the faxes after it) and is
   reconsidered whenever a line frees. No site ever holds a private backlog, so a new
   urgent fax never waits behind one.

Because faxes are taken most urgent first and a line is only ever given to the fax at
the head of those that want it, a less urgent fax never takes a line a more urgent one
would have taken (no priority inversion by construction).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Protocol

UNKNOWN_COST = Decimal("Infinity")


class Tariffs(Protocol):
    """What placement needs of a cost table (``routing.costs.CostTable`` has it)."""

    def can_dial(self, e164: str) -> bool: ...

    def call_cost(self, e164: str, at: datetime, seconds: float) -> Decimal | None: ...

    def band_starts(self, e164: str, after: datetime, until: datetime) -> list[datetime]: ...

    def floor_cost(self, e164: str, seconds: float) -> Decimal | None: ...


@dataclass(frozen=True)
class SiteState:
    """One site as placement sees it: live state plus its cost table."""

    name: str
    group: str | None
    """None: standalone."""
    lines_up: int
    busy: int
    """Faxes handed to the site and not yet ended."""
    costs: Tariffs | None = None
    seconds_per_page: float | None = None
    """Measured recently at this site (None: use the knob)."""
    success: Mapping[str, float] = field(default_factory=dict)
    """Recent success rate per destination prefix (digits of E.164, no '+')."""
    mean_call_seconds: float | None = None
    """Measured recently at this site (None: estimate from the fax)."""
    busy_until: tuple[float, ...] = ()
    """Seconds from now until each busy line is expected to be free (from when its call
    started and its pages). Busy lines without an estimate are taken to free evenly over
    one mean call."""

    @property
    def free(self) -> int:
        return max(0, self.lines_up - self.busy)

    def success_for(self, e164: str) -> float:
        if not self.success:
            return 1.0
        digits = e164.lstrip("+")
        for n in range(len(digits), 0, -1):
            rate = self.success.get(digits[:n])
            if rate is not None:
                return rate
        return 1.0


@dataclass(frozen=True)
class WaitingFax:
    key: str
    """The attempt id: what the dispatcher claims."""
    number: str
    pages: int
    priority: int
    enqueued_at: datetime
    home_site: str


@dataclass(frozen=True)
class Knobs:
    seconds_per_page: float = 40.0
    """Airtime per page used for cost (an A4 fine page at 14,400 bit/s is 20-50 s)."""
    call_setup_seconds: float = 25.0
    """Dialling, answer and handshake before the first page."""
    promise_seconds: tuple[float, ...] = (
        86400,
        28800,
        14400,
        7200,
        3600,
        1800,
        900,
        300,
        60,
        0,
    )
    """Longest acceptable wait for a line, by priority 0 .. 9."""
    min_success: float = 0.05
    max_calls_per_number: int = 1
    """Calls to one destination number at a time, fleet-wide (most fax numbers have one
    line: a second call would only get a busy signal and spend a dial)."""
    cost_tolerance: float = 0.05
    """Costs within this fraction of the cheapest count as equal: the earliest start wins
    among them (a near-equal idle line beats waiting)."""
    patience_seconds: float = 900.0
    """Longest a fax waits for a cheaper site while another could start it sooner."""
    band_wait_seconds: float | None = None
    """Longest a fax is held back for a cheaper tariff band (evening, night, weekend rates);
    None: as long as its promise allows. Held faxes are deferred, not queued: no line
    waits for them, so they do not count as backlog."""
    time_scale: float = 1.0
    """Multiplies promises and call times (a time-scaled simulated fleet)."""

    def promise(self, priority: int) -> float:
        index = max(0, min(len(self.promise_seconds) - 1, priority))
        return self.promise_seconds[index] * self.time_scale

    def wait_limit(self, fax: WaitingFax, now: datetime) -> float:
        """How much longer the fax may wait: what is left of its promise, and no more
        than the patience."""
        waited = max(0.0, (now - fax.enqueued_at).total_seconds())
        return min(
            max(0.0, self.promise(fax.priority) - waited), self.patience_seconds * self.time_scale
        )

    def band_limit(self, fax: WaitingFax, now: datetime) -> float:
        """How much longer the fax may be held for a cheaper band: what is left of its
        promise, and no more than ``band_wait_seconds``."""
        waited = max(0.0, (now - fax.enqueued_at).total_seconds())
        left = max(0.0, self.promise(fax.priority) - waited)
        if self.band_wait_seconds is None:
            return left
        return min(left, self.band_wait_seconds * self.time_scale)


class Action(StrEnum):
    DISPATCH = "dispatch"
    WAIT = "wait"
    NO_SITE = "no_site"
    """No site of the group is up: retry later."""
    NO_ROUTE = "no_route"
    """Sites are up but none can dial the number."""


@dataclass(frozen=True)
class Decision:
    key: str
    action: Action
    site: str | None
    reason: str
    cost: Decimal | None = None
    expected_wait: float = 0.0
    deferred: bool = False
    """WAIT for a cheaper tariff band (by choice), not for a line."""
    choices: int = 0
    """How many sites of the group that are up could dial the number (1: no choice)."""
    cheaper_busy: str | None = None
    """A site that would have sent it for less but had no free line in time (the fax
    overflows to a dearer one)."""


def urgency(fax: WaitingFax) -> tuple[int, datetime, str]:
    """Sort key: most urgent first, then longest waiting."""
    return (-fax.priority, fax.enqueued_at, fax.key)


def candidates(
    fax: WaitingFax, sites: Mapping[str, SiteState], group_of: Callable[[str], str | None]
) -> list[SiteState]:
    """Sites of the fax's group that are up with a line in service (rule 1, without the
    dialling check)."""
    group = group_of(fax.home_site)
    if group is None:
        home = sites.get(fax.home_site)
        return [home] if home and home.lines_up > 0 else []
    return [s for s in sites.values() if s.group == group and s.lines_up > 0]


def plan(
    faxes: Iterable[WaitingFax],
    sites: Mapping[str, SiteState],
    now: datetime,
    knobs: Knobs,
    group_of: Callable[[str], str | None],
    calls: Mapping[str, int] | None = None,
) -> list[Decision]:
    """Decide for every waiting fax, most urgent first.

    ``calls`` counts the calls already in progress per destination number: a fax waits
    while its number has ``max_calls_per_number`` of them, so a burst of faxes to one
    number is sent one after the other instead of meeting a busy signal.
    """
    faxes = list(faxes)
    in_progress = dict(calls or {})
    free = {name: s.free for name, s in sites.items()}
    timelines = {name: _timeline(s, knobs) for name, s in sites.items()}
    queued = dict.fromkeys(sites, 0)
    pool_free: dict[tuple[str, str | None], int] = {}
    for s in sites.values():
        if s.lines_up > 0:
            key = _pool(s.name, s.group)
            pool_free[key] = pool_free.get(key, 0) + s.free
    decisions: list[Decision] = []
    for fax in sorted(faxes, key=urgency):
        pool = _pool(fax.home_site, group_of(fax.home_site))
        if pool_free.get(pool) == 0:
            # Every line this fax could use is taken: nothing later in this pass can
            # start it, so it is not costed (this keeps a pass cheap under backlog).
            decisions.append(Decision(fax.key, Action.WAIT, None, "no free line in its group"))
            continue
        if in_progress.get(fax.number, 0) >= knobs.max_calls_per_number:
            reason = f"a call to {fax.number} is in progress"
            decisions.append(Decision(fax.key, Action.WAIT, None, reason))
            continue
        decision = _place(fax, sites, now, knobs, group_of, free, queued, timelines)
        if decision.action == Action.DISPATCH and decision.site:
            in_progress[fax.number] = in_progress.get(fax.number, 0) + 1
            free[decision.site] -= 1
            chosen = sites[decision.site]
            pool_free[_pool(chosen.name, chosen.group)] -= 1
        elif decision.action == Action.WAIT and decision.site and not decision.deferred:
            queued[decision.site] += 1
        takes_line = decision.action == Action.DISPATCH or (
            decision.action == Action.WAIT and not decision.deferred
        )
        if decision.site and takes_line:
            # The fax takes the site's earliest line for its call: later faxes see that.
            line = timelines[decision.site]
            start = line[0] if line else 0.0
            heapq.heapreplace(line, start + _call_seconds(sites[decision.site], fax, knobs))
        decisions.append(decision)
    return _swap_sites(decisions, {fax.key: fax for fax in faxes}, sites, now, knobs, in_progress)


SWAP_LIMIT = 64
"""How many of the most urgent planned faxes the exchange step compares (pairwise: it is
quadratic; later faxes are re-planned by later passes anyway)."""


def _swap_sites(
    decisions: list[Decision],
    faxes: Mapping[str, WaitingFax],
    sites: Mapping[str, SiteState],
    now: datetime,
    knobs: Knobs,
    calls: dict[str, int],
) -> list[Decision]:
    """Exchange the places of two planned faxes when that costs less in total.

    Faxes are placed one by one, most urgent first, so an earlier fax may take the line
    that a later one needed more (both cheap in Paris, but only one is dear elsewhere).
    A *place* is a site and an expected start (now on a free line, or on the site's
    timeline). Two faxes of a group exchange places when both can dial there, each still
    starts within what it may wait (or no later than before), and the total cost falls.
    Neither fax is held for a band, a fax only moves onto a line now if its number has no
    other call then (``calls``, this pass's starts included), and never in exchange for
    a more urgent fax that would then wait (``planned`` is in urgency order).
    """
    planned = [
        i
        for i, d in enumerate(decisions)
        if d.site is not None
        and (d.action == Action.DISPATCH or (d.action == Action.WAIT and not d.deferred))
    ][:SWAP_LIMIT]
    if len(planned) < 2:
        return decisions
    decisions = list(decisions)

    @cache
    def cost(i: int, site: str, wait: float) -> Decimal | None:
        """Fax ``i``'s cost at ``site`` starting ``wait`` seconds from now (None: unknown
        or not dialable)."""
        fax = faxes[decisions[i].key]
        state = sites[site]
        if state.costs is None or not state.costs.can_dial(fax.number):
            return None
        airtime = fax.pages * knobs.seconds_per_page + knobs.call_setup_seconds
        value = _expected_cost(state, fax.number, now + timedelta(seconds=wait), airtime, knobs)
        return None if value == UNKNOWN_COST else value

    def may_start(i: int, new: Decision) -> bool:
        """Fax ``i`` may take place ``new``: soon enough, and a free number if it is now."""
        old, fax = decisions[i], faxes[decisions[i].key]
        late = new.expected_wait > max(knobs.wait_limit(fax, now), old.expected_wait)
        if late:
            return False
        if new.action == Action.DISPATCH and old.action != Action.DISPATCH:
            return calls.get(fax.number, 0) < knobs.max_calls_per_number
        return True

    improved = True
    while improved:
        improved = False
        for a_pos, a in enumerate(planned):
            for b in planned[a_pos + 1 :]:
                place_a, place_b = decisions[a], decisions[b]
                site_a, site_b = place_a.site, place_b.site
                if site_a is None or site_b is None or site_a == site_b:
                    continue
                group = sites[site_a].group
                if group is None or sites[site_b].group != group:
                    continue  # only sites both faxes may use
                now_a = cost(a, site_a, place_a.expected_wait)
                now_b = cost(b, site_b, place_b.expected_wait)
                new_a = cost(a, site_b, place_b.expected_wait)
                new_b = cost(b, site_a, place_a.expected_wait)
                if None in (now_a, now_b, new_a, new_b):
                    continue
                if (
                    place_a.action == Action.DISPATCH
                    and place_b.action != Action.DISPATCH
                    and faxes[place_a.key].priority > faxes[place_b.key].priority
                ):
                    continue  # a less urgent fax would take a line now from a more urgent one
                if not new_a + new_b < now_a + now_b:  # type: ignore[operator]
                    continue
                why = "cheapest for the fleet: exchanged places with another fax"
                moved_a = _moved(place_a.key, place_b, why, new_a)
                moved_b = _moved(place_b.key, place_a, why, new_b)
                if not (may_start(a, moved_a) and may_start(b, moved_b)):
                    continue
                for i, old, new in ((a, place_a, moved_a), (b, place_b, moved_b)):
                    number = faxes[old.key].number
                    if old.action == Action.DISPATCH and new.action != Action.DISPATCH:
                        calls[number] = calls.get(number, 0) - 1
                    if new.action == Action.DISPATCH and old.action != Action.DISPATCH:
                        calls[number] = calls.get(number, 0) + 1
                    decisions[i] = new
                improved = True
    return decisions


def _moved(key: str, place: Decision, why: str, cost: Decimal | None) -> Decision:
    """Fax ``key`` taking over ``place`` (a site and an expected start)."""
    if place.action == Action.DISPATCH:
        return Decision(key, Action.DISPATCH, place.site, why, cost, 0.0)
    reason = f"waiting for a line at {place.site}: {why}"
    return Decision(key, Action.WAIT, place.site, reason, cost, place.expected_wait)


def _pool(site: str, group: str | None) -> tuple[str, str | None]:
    """The lines a fax from ``site`` may use: its group's, or its own when standalone."""
    return ("site", site) if group is None else ("group", group)


def _place(
    fax: WaitingFax,
    sites: Mapping[str, SiteState],
    now: datetime,
    knobs: Knobs,
    group_of: Callable[[str], str | None],
    free: Mapping[str, int],
    queued: Mapping[str, int],
    timelines: Mapping[str, list[float]],
) -> Decision:
    live = candidates(fax, sites, group_of)
    if not live:
        group = group_of(fax.home_site)
        where = f"group {group!r}" if group else f"standalone site {fax.home_site!r}"
        return Decision(fax.key, Action.NO_SITE, None, f"no site of {where} is up")
    dialable = [s for s in live if s.costs is None or s.costs.can_dial(fax.number)]
    if not dialable:
        names = ", ".join(sorted(s.name for s in live))
        return Decision(fax.key, Action.NO_ROUTE, None, f"no site ({names}) can dial {fax.number}")
    airtime = fax.pages * knobs.seconds_per_page + knobs.call_setup_seconds
    limit = knobs.wait_limit(fax, now)
    band_limit = knobs.band_limit(fax, now)
    # (site, expected start, cost, load, a band start: held for a cheaper band)
    options: list[tuple[SiteState, float, Decimal, float, bool]] = []
    for site in dialable:
        wait = 0.0 if free[site.name] > 0 else timelines[site.name][0]
        cost = _expected_cost(site, fax.number, now + timedelta(seconds=wait), airtime, knobs)
        load = (site.lines_up - free[site.name] + queued[site.name]) / site.lines_up
        options.append((site, wait, cost, load, False))
    best_now = min((o[2] for o in options if o[1] <= limit), default=UNKNOWN_COST)
    worth = best_now / (1 + Decimal(str(knobs.cost_tolerance)))
    for site, wait, cost, load, _ in list(options):
        if site.costs is None or wait > limit or band_limit <= wait:
            continue
        floor = site.costs.floor_cost(fax.number, airtime)
        if floor is None or floor / _success(site, fax.number, knobs) >= worth:
            continue  # no band here could beat what the fax can have now
        # A fax with time to spare may be held for a cheaper band at this site.
        start = now + timedelta(seconds=wait)
        until = now + timedelta(seconds=band_limit)
        for moment in site.costs.band_starts(fax.number, start, until):
            later = _expected_cost(site, fax.number, moment, airtime, knobs)
            if later < cost:
                options.append((site, (moment - now).total_seconds(), later, load, True))
    keeping = [o for o in options if o[1] <= (band_limit if o[4] else limit)]
    if keeping:
        cheapest = min(o[2] for o in keeping)
        near = [o for o in keeping if o[2] <= cheapest * (1 + Decimal(str(knobs.cost_tolerance)))]
        site, wait, cost, _, band = min(
            near, key=lambda o: (o[1], o[2], o[3], o[0].name != fax.home_site, o[0].name)
        )
        why = f"cheapest able to start within {band_limit if band else limit:g}s"
    else:
        site, wait, cost, _, band = min(
            options, key=lambda o: (o[1], o[2], o[0].name != fax.home_site, o[0].name)
        )
        why = "earliest start (no site keeps the promise)"
    known = None if cost == UNKNOWN_COST else cost
    tolerance = 1 + Decimal(str(knobs.cost_tolerance))
    busy_cheaper = sorted(
        o[0].name
        for o in options
        if not o[4] and o[0].name != site.name and free[o[0].name] <= 0 and o[2] * tolerance < cost
    )
    cheaper_busy = busy_cheaper[0] if busy_cheaper else None
    if cheaper_busy:
        why += f"; {cheaper_busy}, cheaper, had no free line in time"
    extra = {"choices": len(dialable), "cheaper_busy": cheaper_busy}
    if free[site.name] > 0 and wait <= 0:
        return Decision(fax.key, Action.DISPATCH, site.name, why, known, 0.0, **extra)
    what = "a cheaper band" if band else "a line"
    return Decision(
        fax.key,
        Action.WAIT,
        site.name,
        f"waiting for {what} at {site.name}: {why}",
        known,
        wait,
        deferred=band,
        **extra,
    )


def _call_seconds(site: SiteState, fax: WaitingFax, knobs: Knobs) -> float:
    """How long ``fax``'s call is expected to hold a line at ``site``."""
    per_page = site.seconds_per_page or knobs.seconds_per_page * knobs.time_scale
    return fax.pages * per_page + knobs.call_setup_seconds * knobs.time_scale


DEFAULT_PAGES = 4
"""Pages assumed for a call in progress whose length the site has not measured."""


def _timeline(site: SiteState, knobs: Knobs) -> list[float]:
    """A heap of when each of the site's lines is expected to be free (seconds from now):
    0 for free lines, the estimates for busy ones, and for busy lines without one an even
    spread over a mean call."""
    lines = max(0, site.lines_up)
    busy = min(lines, site.busy)
    known = sorted(max(0.0, t) for t in site.busy_until)[:busy]
    missing = busy - len(known)
    if missing:
        call = site.mean_call_seconds
        if call is None:
            per_page = site.seconds_per_page or knobs.seconds_per_page * knobs.time_scale
            call = DEFAULT_PAGES * per_page + knobs.call_setup_seconds * knobs.time_scale
        known += [(i + 1) / missing * call for i in range(missing)]
    timeline = [0.0] * (lines - busy) + known
    heapq.heapify(timeline)
    return timeline


def _expected_cost(
    site: SiteState, number: str, start: datetime, airtime: float, knobs: Knobs
) -> Decimal:
    if site.costs is None:
        return UNKNOWN_COST
    cost = site.costs.call_cost(number, start, airtime)
    if cost is None:
        return UNKNOWN_COST
    return cost / _success(site, number, knobs)


def _success(site: SiteState, number: str, knobs: Knobs) -> Decimal:
    """The site's recent success rate for the number (a failed call must be paid again)."""
    return Decimal(str(max(knobs.min_success, site.success_for(number))))
