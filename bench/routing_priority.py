"""Priority under backlog: the real placement policy in a simulated fleet that receives
faxes faster than it can send them.

Run: ``.venv/bin/python bench/routing_priority.py [--quick]``

The fleet: paris, newyork and london, 8 lines each, one group, generated EUR cost tables
(cheap at home, dearer abroad, day/evening bands in local time). 2,000 faxes (500 with
``--quick``) arrive as a Poisson stream at 0.16 per second from Wednesday 06:00 UTC,
priorities 0-9 uniformly, 1-8 pages, numbers spread over +33, +1, +44 and +49; the fleet
sends about 0.12 per second, so a backlog builds up. 5% of calls fail at a random moment
and the fax goes back to the waiting set (with its original enqueue time).

Figures:

* **priority inversions**, checked at every dispatch pass: a fax of priority p started
  on a line of site X while a fax of a higher priority, waiting in the same pass, was
  not started, and either its decision named X (*named*) or X was one of its candidate
  sites that can dial its number (*could*; X had the free line the lower fax took).
  Same priority overtaking (a younger fax of equal priority first) is counted apart.
* **line utilisation under backlog**: busy line-seconds / (lines x seconds) over the
  intervals during which at least one fax waits, for the fleet and per site.
* **wait per priority**: from arrival to the start of the first call; mean, p95, and the
  share started within the priority's promise.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime

from routing_sim import (
    Pass,
    SimFax,
    SimSite,
    Simulator,
    add_knob_options,
    knobs_from_args,
    machine,
    make_site,
    random_number,
)

from routing.policy import Action, Knobs, SiteState, WaitingFax, candidates


class InversionCounter:
    """Observer of every pass (decisions come most urgent first, as ``plan`` returns them)."""

    def __init__(self, group_of) -> None:
        self.group_of = group_of
        self.named = 0
        self.could = 0
        self.same_priority = 0
        self.could_pairs = 0
        self.examples: list[str] = []
        self.dialable: dict[tuple[str, str], bool] = {}
        self.dispatched = 0
        self.wanted: list[tuple[float, frozenset[str]]] = []
        """After each pass: the sites a fax left waiting had chosen (held for a band
        excluded)."""

    def can_use(self, fax: WaitingFax, sites: dict[str, SiteState]) -> list[str]:
        names = []
        for site in candidates(fax, sites, self.group_of):
            key = (site.name, fax.number)
            ok = self.dialable.get(key)
            if ok is None:
                ok = self.dialable[key] = site.costs is None or site.costs.can_dial(fax.number)
            if ok:
                names.append(site.name)
        return names

    def __call__(self, p: Pass) -> None:
        by_key = {f.key: f for f in p.waiting}
        started = set(p.started)
        named_max: dict[str, int] = defaultdict(lambda: -1)
        could: dict[str, list[WaitingFax]] = defaultdict(list)
        for decision in p.decisions:
            fax = by_key[decision.key]
            if decision.key in started:
                self.dispatched += 1
                site = decision.site
                assert site is not None
                if named_max[site] > fax.priority:
                    self.named += 1
                elif named_max[site] == fax.priority:
                    self.same_priority += 1
                higher = [a for a in could[site] if a.priority > fax.priority]
                if higher:
                    self.could += 1
                    self.could_pairs += len(higher)
                    if len(self.examples) < 3:
                        a = higher[0]
                        ad = next(d for d in p.decisions if d.key == a.key)
                        self.examples.append(
                            f"t={p.now:.0f}s: {fax.key} (priority {fax.priority}, {fax.number})"
                            f" started at {site} while {a.key} (priority {a.priority},"
                            f" {a.number}) kept waiting: {ad.reason}"
                        )
            elif decision.action in (Action.WAIT, Action.DISPATCH):
                if decision.site:
                    named_max[decision.site] = max(named_max[decision.site], fax.priority)
                for name in self.can_use(fax, p.sites):
                    could[name].append(fax)
        self.wanted.append(
            (
                p.now,
                frozenset(
                    d.site
                    for d in p.decisions
                    if d.site
                    and d.key not in started
                    and not d.deferred
                    and d.action in (Action.WAIT, Action.DISPATCH)
                ),
            )
        )

    def wanted_spans(self, site: str, end: float) -> list[tuple[float, float]]:
        """Intervals during which at least one fax waited for a line of ``site``."""
        spans: list[tuple[float, float]] = []
        for (t, names), (t_next, _) in zip(
            self.wanted, [*self.wanted[1:], (end, frozenset())], strict=True
        ):
            if site in names and t_next > t:
                if spans and spans[-1][1] == t:
                    spans[-1] = (spans[-1][0], t_next)
                else:
                    spans.append((t, t_next))
        return spans


def workload(
    n: int, rate: float, seed: int, sites: list[SimSite], countries: tuple[str, ...]
) -> list[SimFax]:
    rng = random.Random(seed)
    t = 0.0
    faxes = []
    for i in range(n):
        t += rng.expovariate(rate)
        faxes.append(
            SimFax(
                key=f"f{i:05d}",
                number=random_number(rng, rng.choice(countries)),
                pages=rng.randint(1, 8),
                priority=rng.randint(0, 9),
                arrival=round(t, 3),
                home_site=rng.choice(sites).name,
            )
        )
    return faxes


SCENARIOS = {
    "spread": ("33", "1", "44", "49"),
    "home-only": ("33", "1", "44"),
}
"""Destinations: +33, +1, +44, +49 in equal shares; or only the three sites' own
countries (each site the cheapest for a third of the faxes)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run(name: str, n: int, args: argparse.Namespace, knobs: Knobs) -> None:
    sites = [make_site(site, 8, "fleet", seed=args.seed) for site in ("paris", "newyork", "london")]
    faxes = workload(n, args.rate, args.seed, sites, SCENARIOS[name])
    epoch = datetime(2026, 11, 25, 6, tzinfo=UTC)
    mean_call = statistics.mean(
        f.pages * knobs.seconds_per_page + knobs.call_setup_seconds for f in faxes
    )
    capacity = sum(s.lines for s in sites) / mean_call
    groups = {s.name: s.group for s in sites}
    counter = InversionCounter(lambda site: groups.get(site, "default"))
    sim = Simulator(
        sites,
        epoch=epoch,
        knobs=knobs,
        failure_rate=args.failure_rate,
        tick=60.0,
        seed=args.seed,
        observer=counter,
    )
    began = time.perf_counter()
    result = sim.run(faxes)
    wall = time.perf_counter() - began

    print(
        f"routing priority, scenario {name!r} (destinations +{', +'.join(SCENARIOS[name])}):"
        f" {n} faxes, {len(sites)} sites x 8 lines, arrivals {args.rate}/s from Wed 06:00 UTC"
        f" (capacity ~{capacity:.3f}/s at {mean_call:.0f} s per call),"
        f" {args.failure_rate:.0%} of calls fail and return to waiting"
    )
    failed = sum(c.failed for r in result.records.values() for c in r.calls)
    sent = sum(r.done for r in result.records.values())
    print(
        f"  simulated {result.end / 3600:.2f} h in {wall:.1f} s wall, {result.passes} dispatch "
        f"passes, {sent}/{n} sent, {failed} failed calls requeued, peak backlog "
        f"{max(q for _, q in result.queue)}"
    )
    print("  priority inversions (target 0):")
    print(
        f"    named the site:           {counter.named:>5} of {counter.dispatched} starts"
        " (a more urgent waiting fax had chosen the site)"
    )
    print(
        f"    could have used the site: {counter.could:>5} of {counter.dispatched} starts,"
        f" {counter.could_pairs} pairs (the site could dial a more urgent fax that waited"
        " for another site)"
    )
    print(f"    same priority, younger first on a named site: {counter.same_priority}")
    for example in counter.examples:
        print(f"      e.g. {example}")
    spans = result.backlog_intervals()
    busy, available, ratio = result.utilisation(spans)
    print(
        f"  line utilisation under backlog (target >= 99%): {ratio:.2%} "
        f"({busy / 3600:.1f} of {available / 3600:.1f} line-hours; backlog for "
        f"{sum(b - a for a, b in spans) / 3600:.2f} h of {result.end / 3600:.2f} h)"
    )
    for site in sites:
        site_busy, site_available, site_ratio = result.utilisation(spans, site.name)
        print(
            f"    {site.name:<9} {site_ratio:.2%} ({site_busy / 3600:.1f} of "
            f"{site_available / 3600:.1f} line-hours)"
        )
    print(
        "  lines busy while a fax waited for them (its decision named the site; held for a"
        " band excluded) (target >= 99%):"
    )
    total_busy = total_available = 0.0
    for site in sites:
        site_busy, site_available, site_ratio = result.utilisation(
            counter.wanted_spans(site.name, result.end), site.name
        )
        total_busy += site_busy
        total_available += site_available
        print(
            f"    {site.name:<9} {site_ratio:.2%} ({site_busy / 3600:.1f} of "
            f"{site_available / 3600:.1f} line-hours)"
        )
    print(f"    fleet     {total_busy / total_available:.2%}")
    print("  wait for a line by priority (arrival -> first call start):")
    print(f"    {'prio':>4} {'faxes':>6} {'mean s':>9} {'p95 s':>9} {'promise s':>9} {'kept':>7}")
    for priority in range(9, -1, -1):
        waits = [
            r.start - r.fax.arrival
            for r in result.records.values()
            if r.fax.priority == priority and r.start is not None
        ]
        promise = knobs.promise(priority)
        kept = sum(w <= promise for w in waits) / len(waits) if waits else float("nan")
        print(
            f"    {priority:>4} {len(waits):>6} {statistics.mean(waits):>9.0f}"
            f" {percentile(waits, 0.95):>9.0f} {promise:>9.0f} {kept:>7.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 faxes instead of 2,000")
    parser.add_argument("--faxes", type=int, default=None)
    parser.add_argument("--rate", type=float, default=0.16, help="arrivals per second")
    parser.add_argument("--failure-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    add_knob_options(parser)
    args = parser.parse_args()
    n = args.faxes or (500 if args.quick else 2000)
    # Nothing is held for a cheaper band here: every fax competes for a line at once, so
    # the backlog this benchmark is about builds up (--band-wait overrides).
    knobs = knobs_from_args(args, band_wait_seconds=0.0)
    print(machine())
    for name in args.scenario or list(SCENARIOS):
        run(name, n, args, knobs)


if __name__ == "__main__":
    sys.exit(main())
