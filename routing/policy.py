"""Placement: which site sends each waiting fax, and when. Pure: data in, decisions out.

The rules, applied to the faxes waiting centrally from the most urgent down (priority,
then time waiting):

1. **Candidates** are the sites of the fax's group (the home site's group; a standalone
   home site is its own only candidate; undeclared sites form the group ``default``)
   that are up, have a line in service and can dial the number (their cost table has a
   tariff for it; a site without a cost table dials anything, at unknown cost).
2. **Expected start** at a site: now if it has a free line, otherwise after the faxes
   already waiting for it: ``(waiting + 1) / lines x mean call time`` (the site's
   measured mean call, or this fax's estimate before it has one).
3. **Expected cost** at a site: its tariff at the expected start (in the site's local
   time) for the estimated airtime (pages x ``seconds_per_page`` + ``call_setup``),
   divided by the site's recent success rate for the destination: a cheap line that
   fails half its calls costs double. Unknown cost sorts after every known cost.
4. **Promise**: each priority has a longest acceptable wait (``promise_seconds``),
   counted from when the fax started waiting; a fax waits for a cheaper site at most
   ``patience_seconds`` more, so lines elsewhere do not idle through a long backlog.
   Among the candidates whose expected start is within both, the cheapest wins; costs
   within ``cost_tolerance`` of the cheapest count as equal, and among equals the
   earlier start wins, then the lower cost, the lower load, the home site, the name.
   A site is also priced at each moment its tariff for the number changes before the
   limit, so a fax with time to spare may wait for a cheaper band (evening rates).
5. If no candidate keeps the promise, the **earliest expected start** wins (cost breaks
   ties): the most urgent faxes pay more to go now.
6. A fax waits while ``max_calls_per_number`` calls to its number are on the wire
   anywhere in the fleet (a burst to one number is not met by busy signals).
7. **Exchange**: two faxes starting now at different sites of a group exchange those
   sites when that costs less in total (the greedy order can give an earlier fax the
   line a later one needed more); both still start now, so priority is untouched.
8. A fax is handed to a site only when that site has a free line; otherwise it keeps
   waiting centrally (and counts in that site's queue for the faxes after it) and is
   reconsidered whenever a line frees. No site ever holds a private backlog, so a new
   urgent fax never waits behind one.

Because faxes are taken most urgent first and a line is only ever given to the fax at
the head of those that want it, a less urgent fax never takes a line a more urgent one
would have taken (no priority inversion by construction).
"""

from __future__ import annotations

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
        decision = _place(fax, sites, now, knobs, group_of, free, queued)
        if decision.action == Action.DISPATCH and decision.site:
            in_progress[fax.number] = in_progress.get(fax.number, 0) + 1
            free[decision.site] -= 1
            chosen = sites[decision.site]
            pool_free[_pool(chosen.name, chosen.group)] -= 1
        elif decision.action == Action.WAIT and decision.site:
            queued[decision.site] += 1
        decisions.append(decision)
    return _swap_sites(decisions, {fax.key: fax for fax in faxes}, sites, now, knobs)


SWAP_LIMIT = 64
"""Passes handing out more faxes than this skip the swap step (it is quadratic)."""


def _swap_sites(
    decisions: list[Decision],
    faxes: Mapping[str, WaitingFax],
    sites: Mapping[str, SiteState],
    now: datetime,
    knobs: Knobs,
) -> list[Decision]:
    """Exchange the sites of two faxes starting now when that costs less in total.

    Faxes are placed one by one, most urgent first, so an earlier fax may take the line
    that a later one needed more (both cheap in Paris, but only one is dear elsewhere).
    Both start now either way, so swapping never delays anyone: priority is untouched.
    """
    starting = [i for i, d in enumerate(decisions) if d.action == Action.DISPATCH]
    if not 2 <= len(starting) <= SWAP_LIMIT:
        return decisions
    decisions = list(decisions)

    @cache
    def cost(i: int, site: str) -> Decimal | None:
        """Fax ``i``'s cost at ``site`` starting now (None: unknown or not dialable)."""
        fax = faxes[decisions[i].key]
        state = sites[site]
        if state.costs is None or not state.costs.can_dial(fax.number):
            return None
        airtime = fax.pages * knobs.seconds_per_page + knobs.call_setup_seconds
        value = _expected_cost(state, fax.number, now, airtime, knobs)
        return None if value == UNKNOWN_COST else value

    improved = True
    while improved:
        improved = False
        for a_pos, a in enumerate(starting):
            for b in starting[a_pos + 1 :]:
                site_a, site_b = decisions[a].site, decisions[b].site
                if site_a is None or site_b is None or site_a == site_b:
                    continue
                group = sites[site_a].group
                if group is None or sites[site_b].group != group:
                    continue  # only sites both faxes may use
                now_a, now_b = cost(a, site_a), cost(b, site_b)
                new_a, new_b = cost(a, site_b), cost(b, site_a)
                if None in (now_a, now_b, new_a, new_b):
                    continue
                if new_a + new_b < now_a + now_b:  # type: ignore[operator]
                    why = "cheapest for the fleet: exchanged lines with another fax"
                    decisions[a] = Decision(decisions[a].key, Action.DISPATCH, site_b, why, new_a)
                    decisions[b] = Decision(decisions[b].key, Action.DISPATCH, site_a, why, new_b)
                    improved = True
    return decisions


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
    options = []
    for site in dialable:
        wait = _expected_wait(site, fax, knobs, free[site.name], queued[site.name])
        cost = _expected_cost(site, fax.number, now + timedelta(seconds=wait), airtime, knobs)
        load = (site.lines_up - free[site.name] + queued[site.name]) / site.lines_up
        options.append((site, wait, cost, load))
        if site.costs is not None and limit > wait:
            # A fax with time to spare may wait for a cheaper band at this site.
            start = now + timedelta(seconds=wait)
            for moment in site.costs.band_starts(fax.number, start, now + timedelta(seconds=limit)):
                later = _expected_cost(site, fax.number, moment, airtime, knobs)
                if later < cost:
                    options.append((site, (moment - now).total_seconds(), later, load))
    keeping = [o for o in options if o[1] <= limit]
    if keeping:
        cheapest = min(o[2] for o in keeping)
        near = [o for o in keeping if o[2] <= cheapest * (1 + Decimal(str(knobs.cost_tolerance)))]
        site, wait, cost, _ = min(
            near, key=lambda o: (o[1], o[2], o[3], o[0].name != fax.home_site, o[0].name)
        )
        why = f"cheapest able to start within {limit:g}s"
    else:
        site, wait, cost, _ = min(
            options, key=lambda o: (o[1], o[2], o[0].name != fax.home_site, o[0].name)
        )
        why = "earliest start (no site keeps the promise)"
    known = None if cost == UNKNOWN_COST else cost
    if free[site.name] > 0 and wait <= 0:
        return Decision(fax.key, Action.DISPATCH, site.name, why, known, 0.0)
    what = "a line" if free[site.name] <= 0 else "a cheaper band"
    return Decision(
        fax.key, Action.WAIT, site.name, f"waiting for {what} at {site.name}: {why}", known, wait
    )


def _expected_wait(site: SiteState, fax: WaitingFax, knobs: Knobs, free: int, queued: int) -> float:
    if free > 0:
        return 0.0
    call = site.mean_call_seconds
    if call is None:
        per_page = site.seconds_per_page or knobs.seconds_per_page * knobs.time_scale
        call = fax.pages * per_page + knobs.call_setup_seconds * knobs.time_scale
    return (queued + 1) / site.lines_up * call


def _expected_cost(
    site: SiteState, number: str, start: datetime, airtime: float, knobs: Knobs
) -> Decimal:
    if site.costs is None:
        return UNKNOWN_COST
    cost = site.costs.call_cost(number, start, airtime)
    if cost is None:
        return UNKNOWN_COST
    success = max(knobs.min_success, site.success_for(number))
    return cost / Decimal(str(success))
