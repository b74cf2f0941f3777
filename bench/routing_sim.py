"""A discrete-event simulation of the routing dispatcher around the real placement policy.

Simulated time only: no Redis, no Celery, no sleeping. The simulation mirrors
``routing.dispatcher.Dispatcher.step``:

* faxes wait centrally; a pass reads at most ``limit`` of them, most urgent first (the
  dispatcher's ``zrange`` over ``urgency_score``);
* the pass builds one ``SiteState`` per site (``busy`` = faxes handed to the site and not
  yet ended, exactly the dispatcher's in-flight count) and calls the planner, by default
  the real ``routing.policy.plan``;
* only ``DISPATCH`` decisions act: the fax is claimed if the site still has a free line
  (the dispatcher's Lua claim) and starts on the lowest free line; ``WAIT`` leaves the fax
  waiting; ``NO_SITE`` / ``NO_ROUTE`` take it out of the waiting set (unroutable).

A pass runs after every event (a fax arrives, a line frees) and, while faxes wait, every
``tick`` simulated seconds (the real dispatcher also passes every 0.5 s when idle; between
events a decision can only change when a tariff band starts or ends).

A call lasts ``pages x seconds_per_page + call_setup`` seconds. With ``failure_rate`` a
call fails at a uniformly drawn moment of its duration: the line frees and the fax goes
back to the waiting set (keeping its enqueue time unless ``requeue_as_new``). Every call,
failed or not, is billed with the site's ``CostTable.call_cost`` at its start for the
airtime actually used.

Also here: the tariff and fleet generators shared by the routing benchmarks, and the
machine description every benchmark prints.
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from routing.costs import HEADER, CostTable, parse_csv
from routing.policy import Action, Decision, Knobs, SiteState, WaitingFax, plan

Planner = Callable[
    [Iterable[WaitingFax], Mapping[str, SiteState], datetime, Knobs, Callable[[str], str | None]],
    list[Decision],
]

# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class SimSite:
    name: str
    group: str | None
    lines: int
    costs: CostTable | None
    seconds_per_page: float | None = None
    """Real airtime per page at this site (None: the knob's value)."""


@dataclass(frozen=True)
class SimFax:
    key: str
    number: str
    pages: int
    priority: int
    arrival: float
    """Seconds after the simulation's start."""
    home_site: str


@dataclass(frozen=True)
class Call:
    key: str
    site: str
    line: int
    start: float
    end: float
    cost: Decimal | None
    failed: bool


@dataclass
class FaxRecord:
    fax: SimFax
    calls: list[Call] = field(default_factory=list)
    refused: str | None = None
    """Set when a decision was NO_SITE or NO_ROUTE."""

    @property
    def start(self) -> float | None:
        """Start of the first call (the end of the fax's first wait for a line)."""
        return self.calls[0].start if self.calls else None

    @property
    def site(self) -> str | None:
        return self.calls[-1].site if self.calls else None

    @property
    def done(self) -> bool:
        return bool(self.calls) and not self.calls[-1].failed

    @property
    def cost(self) -> Decimal | None:
        """Every call's cost added up; None if any call had no known cost."""
        total = Decimal(0)
        for call in self.calls:
            if call.cost is None:
                return None
            total += call.cost
        return total


@dataclass(frozen=True)
class Pass:
    """One dispatch pass, as an observer sees it."""

    now: float
    waiting: list[WaitingFax]
    sites: dict[str, SiteState]
    decisions: list[Decision]
    started: list[str]
    """Keys actually started on a line by this pass."""


@dataclass
class SimResult:
    epoch: datetime
    sites: list[SimSite]
    records: dict[str, FaxRecord]
    busy: dict[tuple[str, int], list[tuple[float, float, str]]]
    """(site, line) -> busy intervals (start, end, fax key)."""
    queue: list[tuple[float, int]]
    """(time, faxes waiting after the pass at that time), one entry per event time."""
    passes: int
    end: float

    def total_cost(self) -> Decimal:
        total = Decimal(0)
        for record in self.records.values():
            cost = record.cost
            if cost is None:
                raise ValueError(f"{record.fax.key}: a call has no known cost")
            total += cost
        return total

    def backlog_intervals(self) -> list[tuple[float, float]]:
        """Intervals during which at least one fax was waiting for a line."""
        spans: list[tuple[float, float]] = []
        for (t, n), (t_next, _) in zip(self.queue, [*self.queue[1:], (self.end, 0)], strict=True):
            if n > 0 and t_next > t:
                if spans and spans[-1][1] == t:
                    spans[-1] = (spans[-1][0], t_next)
                else:
                    spans.append((t, t_next))
        return spans

    def utilisation(
        self, spans: Sequence[tuple[float, float]], site: str | None = None
    ) -> tuple[float, float, float]:
        """(busy line-seconds, line-seconds, ratio) over the given intervals, for the whole
        fleet or one site."""
        lines = sum(s.lines for s in self.sites if site is None or s.name == site)
        available = sum(b - a for a, b in spans) * lines
        busy = 0.0
        for (name, _), intervals in self.busy.items():
            if site is None or name == site:
                busy += _overlap(intervals, spans)
        return busy, available, (busy / available if available else float("nan"))


def _overlap(
    intervals: list[tuple[float, float, str]], spans: Sequence[tuple[float, float]]
) -> float:
    total = 0.0
    j = 0
    for start, end, _ in intervals:  # both lists are sorted and each is non-overlapping
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        k = j
        while k < len(spans) and spans[k][0] < end:
            total += max(0.0, min(end, spans[k][1]) - max(start, spans[k][0]))
            k += 1
    return total


# --------------------------------------------------------------------------- the engine

_ARRIVE, _FREE, _TICK = 0, 1, 2


class Simulator:
    def __init__(
        self,
        sites: Sequence[SimSite],
        *,
        epoch: datetime,
        knobs: Knobs | None = None,
        planner: Planner = plan,
        failure_rate: float = 0.0,
        requeue_as_new: bool = False,
        tick: float | None = 60.0,
        limit: int = 5000,
        seed: int = 0,
        observer: Callable[[Pass], None] | None = None,
    ) -> None:
        if epoch.utcoffset() is None:
            raise ValueError("epoch must be timezone-aware")
        self.sites = list(sites)
        self.by_name = {s.name: s for s in self.sites}
        self.epoch = epoch
        self.knobs = knobs or Knobs()
        self.planner = planner
        self.failure_rate = failure_rate
        self.requeue_as_new = requeue_as_new
        self.tick = tick
        self.limit = limit
        self.rng = random.Random(seed)
        self.observer = observer
        groups = {s.name: s.group for s in self.sites}
        self.group_of: Callable[[str], str | None] = lambda name: groups.get(name, "default")

    def duration(self, fax: SimFax, site: SimSite) -> float:
        per_page = site.seconds_per_page or self.knobs.seconds_per_page
        return fax.pages * per_page + self.knobs.call_setup_seconds

    def at(self, t: float) -> datetime:
        return self.epoch + timedelta(seconds=t)

    def run(self, faxes: Iterable[SimFax]) -> SimResult:
        events: list[tuple[float, int, int, object]] = []
        seq = 0
        records: dict[str, FaxRecord] = {}
        for fax in faxes:
            records[fax.key] = FaxRecord(fax)
            heapq.heappush(events, (fax.arrival, seq, _ARRIVE, fax))
            seq += 1
        waiting: dict[str, WaitingFax] = {}
        free_lines = {s.name: list(range(s.lines)) for s in self.sites}  # heaps
        busy = dict.fromkeys(self.by_name, 0)
        # per site, when each call in progress is expected to end (what the dispatcher
        # estimates from the call's start and pages; a failing call ends sooner)
        self._expected_end: dict[str, dict[str, float]] = {s.name: {} for s in self.sites}
        intervals: dict[tuple[str, int], list[tuple[float, float, str]]] = {
            (s.name, i): [] for s in self.sites for i in range(s.lines)
        }
        queue: list[tuple[float, int]] = []
        tick_pending = False
        passes = 0
        now = 0.0
        while events:
            now = events[0][0]
            while events and events[0][0] == now:
                _, _, kind, data = heapq.heappop(events)
                if kind == _ARRIVE:
                    assert isinstance(data, SimFax)
                    waiting[data.key] = self._waiting(data, data.arrival)
                elif kind == _FREE:
                    assert isinstance(data, Call)
                    busy[data.site] -= 1
                    self._expected_end[data.site].pop(data.key, None)
                    heapq.heappush(free_lines[data.site], data.line)
                    if data.failed:
                        fax = records[data.key].fax
                        enqueued = now if self.requeue_as_new else fax.arrival
                        waiting[fax.key] = self._waiting(fax, enqueued)
                else:
                    tick_pending = False
            deferred = 0
            if waiting:
                passes += 1
                calls, deferred = self._pass(now, waiting, busy, free_lines, records)
                for call in calls:
                    intervals[(call.site, call.line)].append((call.start, call.end, call.key))
                    heapq.heappush(events, (call.end, seq, _FREE, call))
                    seq += 1
            queue.append((now, len(waiting) - deferred))
            if waiting and self.tick and not tick_pending:
                heapq.heappush(events, (now + self.tick, seq, _TICK, None))
                seq += 1
                tick_pending = True
        return SimResult(self.epoch, self.sites, records, intervals, queue, passes, now)

    def _waiting(self, fax: SimFax, enqueued: float) -> WaitingFax:
        return WaitingFax(
            key=fax.key,
            number=fax.number,
            pages=fax.pages,
            priority=fax.priority,
            enqueued_at=self.at(enqueued),
            home_site=fax.home_site,
        )

    def _pass(
        self,
        now: float,
        waiting: dict[str, WaitingFax],
        busy: dict[str, int],
        free_lines: dict[str, list[int]],
        records: dict[str, FaxRecord],
    ) -> tuple[list[Call], int]:
        """One ``Dispatcher.step``: plan, then act on DISPATCH and refusals only. Returns
        the calls started and how many faxes are held for a cheaper band."""
        states = {
            s.name: SiteState(
                name=s.name,
                group=s.group,
                lines_up=s.lines,
                busy=busy[s.name],
                costs=s.costs,
                seconds_per_page=None,
                busy_until=tuple(end - now for end in self._expected_end[s.name].values()),
            )
            for s in self.sites
        }
        head = sorted(waiting.values(), key=_score)[: self.limit]
        when = self.at(now)
        decisions = self.planner(head, states, when, self.knobs, self.group_of)
        calls: list[Call] = []
        for decision in decisions:
            if decision.action == Action.DISPATCH and decision.site:
                site = self.by_name[decision.site]
                if busy[site.name] >= site.lines:
                    continue  # the claim refuses: the site is full
                fax = records[decision.key].fax
                del waiting[fax.key]
                busy[site.name] += 1
                line = heapq.heappop(free_lines[site.name])
                calls.append(self._call(fax, site, line, now))
                self._expected_end[site.name][fax.key] = now + self.duration(fax, site)
            elif decision.action in (Action.NO_SITE, Action.NO_ROUTE):
                del waiting[decision.key]
                records[decision.key].refused = f"{decision.action}: {decision.reason}"
        for call in calls:
            records[call.key].calls.append(call)
        if self.observer:
            self.observer(Pass(now, head, states, decisions, [c.key for c in calls]))
        return calls, sum(d.deferred for d in decisions)

    def _call(self, fax: SimFax, site: SimSite, line: int, now: float) -> Call:
        seconds = self.duration(fax, site)
        failed = self.failure_rate > 0 and self.rng.random() < self.failure_rate
        if failed:
            seconds *= self.rng.random()
        cost = site.costs.call_cost(fax.number, self.at(now), seconds) if site.costs else None
        return Call(fax.key, site.name, line, now, now + seconds, cost, failed)


def _score(fax: WaitingFax) -> tuple[int, datetime, str]:
    """The dispatcher's waiting-set order (``urgency_score``): priority, then age."""
    return (-fax.priority, fax.enqueued_at, fax.key)


# --------------------------------------------------------------------------- baselines


class RoundRobin:
    """Naive placement: each fax is given, when first seen, to the next site of its group
    (in a fixed cycle, skipping sites that cannot dial it) and waits for that site."""

    def __init__(self) -> None:
        self.assigned: dict[str, str] = {}
        self.turn: dict[str | None, int] = {}

    def __call__(
        self,
        faxes: Iterable[WaitingFax],
        sites: Mapping[str, SiteState],
        now: datetime,
        knobs: Knobs,
        group_of: Callable[[str], str | None],
    ) -> list[Decision]:
        free = {name: s.free for name, s in sites.items()}
        decisions = []
        for fax in sorted(faxes, key=_score):
            site = self.assigned.get(fax.key) or self._assign(fax, sites, group_of)
            if site is None:
                decisions.append(Decision(fax.key, Action.NO_ROUTE, None, "no site"))
            elif free[site] > 0:
                free[site] -= 1
                decisions.append(Decision(fax.key, Action.DISPATCH, site, "round robin"))
            else:
                decisions.append(Decision(fax.key, Action.WAIT, site, "round robin"))
        return decisions

    def _assign(
        self, fax: WaitingFax, sites: Mapping[str, SiteState], group_of: Callable[[str], str | None]
    ) -> str | None:
        group = group_of(fax.home_site)
        members = sorted(
            s.name
            for s in sites.values()
            if (s.group == group if group is not None else s.name == fax.home_site)
            and s.lines_up > 0
        )
        usable = [
            n for n in members if sites[n].costs is None or sites[n].costs.can_dial(fax.number)
        ]
        if not usable:
            return None
        turn = self.turn.get(group, 0)
        # the next site in the cycle of the whole group that can dial this number
        for k in range(len(members)):
            name = members[(turn + k) % len(members)]
            if name in usable:
                self.turn[group] = (turn + k + 1) % len(members)
                self.assigned[fax.key] = name
                return name
        return None  # pragma: no cover


# --------------------------------------------------------------------------- fleets


@dataclass(frozen=True)
class Country:
    code: str
    """Calling code (E.164 digits)."""
    name: str
    area: str
    """A major area code (longer prefix with a cheaper local rate at the home site)."""
    national_digits: int
    """Digits after the country code."""


COUNTRIES: dict[str, Country] = {
    "33": Country("33", "France", "1", 9),
    "1": Country("1", "North America", "212", 10),
    "44": Country("44", "United Kingdom", "20", 10),
    "49": Country("49", "Germany", "30", 10),
}
EUROPE = {"33", "44", "49"}

SITE_HOMES: dict[str, tuple[str, str]] = {
    # site -> (country code, IANA time zone)
    "paris": ("33", "Europe/Paris"),
    "newyork": ("1", "America/New_York"),
    "london": ("44", "Europe/London"),
    "frankfurt": ("49", "Europe/Berlin"),
}
INCREMENTS = {"paris": (60, 60), "newyork": (6, 6), "london": (30, 6), "frankfurt": (60, 1)}


def tariff_csv(site: str, seed: int = 0, currency: str = "EUR") -> str:
    """A site's cost table as CSV: cheap at home (cheaper still in its own area), dearer
    in the rest of Europe, dearest across the Atlantic; week days 08:00-20:00 local at the
    day rate, evenings, nights and weekends at a lower rate."""
    home, _ = SITE_HOMES[site]
    rng = random.Random(f"{site}/{seed}")
    first, step = INCREMENTS.get(site, (60, 60))
    rows = [",".join(HEADER)]

    def add(prefix: str, day: float, evening: float, fee: float, label: str) -> None:
        d, e, f = f"{day:.4f}", f"{evening:.4f}", f"{fee:.3f}"
        rows.append(f"{prefix},{d},{f},{first},{step},{currency},mon-fri,08:00,20:00,{label} day")
        rows.append(f"{prefix},{e},{f},{first},{step},{currency},mon-fri,20:00,24:00,{label} eve")
        rows.append(f"{prefix},{e},{f},{first},{step},{currency},mon-fri,00:00,08:00,{label} night")
        rows.append(f'{prefix},{e},{f},{first},{step},{currency},"sat,sun",,,{label} weekend')

    for code, country in COUNTRIES.items():
        if code == home:
            base = 0.02
        elif code in EUROPE and home in EUROPE:
            base = 0.06
        else:
            base = 0.12
        day = base * rng.uniform(0.8, 1.25)
        evening = day * rng.uniform(0.35, 0.6)
        fee = rng.choice([0.0, 0.005, 0.01, 0.02])
        add(code, day, evening, fee, country.name)
        if code == home:
            add(code + country.area, day * 0.6, evening * 0.6, fee, country.name + " local")
    return "\n".join(rows) + "\n"


def make_site(name: str, lines: int, group: str | None = "fleet", seed: int = 0) -> SimSite:
    _, timezone = SITE_HOMES[name]
    table = parse_csv(tariff_csv(name, seed), site=name, timezone=timezone)
    return SimSite(name=name, group=group, lines=lines, costs=table)


def random_number(rng: random.Random, code: str | None = None) -> str:
    """A number in one of the four countries (its major area a third of the time)."""
    country = COUNTRIES[code or rng.choice(list(COUNTRIES))]
    lead = country.area if rng.random() < 1 / 3 else str(rng.randint(2, 9))
    rest = country.national_digits - len(lead)
    return f"+{country.code}{lead}{rng.randrange(10**rest):0{rest}d}"


# --------------------------------------------------------------------------- reporting


def add_knob_options(parser: argparse.ArgumentParser) -> None:
    """Command-line options for the policy knobs a benchmark may vary."""
    parser.add_argument(
        "--patience",
        type=float,
        default=None,
        help="the policy's patience_seconds (default: the policy's default)",
    )
    parser.add_argument(
        "--band-wait",
        type=float,
        default=None,
        help="the policy's band_wait_seconds (default: the policy's default, the promise)",
    )


def knobs_from_args(args: argparse.Namespace, **defaults: float | None) -> Knobs:
    """The knobs the options ask for (``defaults`` override the policy's own defaults for
    this benchmark), printed so the figures say what they ran with."""
    chosen = dict(defaults)
    if args.patience is not None:
        chosen["patience_seconds"] = args.patience
    if args.band_wait is not None:
        chosen["band_wait_seconds"] = args.band_wait
    knobs = Knobs(**chosen)  # type: ignore[arg-type]
    held = "the promise" if knobs.band_wait_seconds is None else f"{knobs.band_wait_seconds:g} s"
    print(f"policy patience: {knobs.patience_seconds:g} s; held for a cheaper band: up to {held}")
    return knobs


def machine() -> str:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"machine: nproc {len(os.sched_getaffinity(0))}, CPU {model}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
