"""What the placement policy's choices cost, against the exact offline optimum and a naive
round-robin, on small generated fleets simulated with ``routing_sim``.

Run: ``.venv/bin/python bench/routing_cost.py [--quick] [--selftest]``

Each instance: up to 12 faxes, all arriving at t=0, on 3 or 4 sites in three or four call
zones (Paris +33, New York +1, London +44, Frankfurt +49) with generated cost tables
(EUR; cheap at home, dearer abroad, evening/night/weekend bands in each site's local
time). Three schedules are costed with the sites' real ``CostTable.call_cost`` at each
call's start, for its airtime:

* **policy**: the real ``routing.policy.plan`` driven by the dispatcher simulation;
* **round-robin**: each fax goes to the next site of its group (that can dial it) and
  waits for it, most urgent first;
* **OPT**: the exact offline optimum, computed here (see ``optimum``).

OPT minimises the total cost of the calls over every schedule that puts each fax on one
line of a site of its group that can dial it, one call at a time per line, each call
lasting pages x seconds_per_page + call_setup, where fax j starts no later than its
deadline D_j = max(promise_j, the policy's start of fax j) (so it keeps every promise
the policy kept and starts no fax later than the policy did; the policy's own schedule
is feasible, so OPT <= policy). Starts may be delayed (a line may stay idle, waiting for
a cheaper tariff band). OPT-nd is the same optimum without delays: each line starts its
next fax the moment its previous call ends (the policy never deliberately delays a fax
whose chosen site has a free line, so OPT-nd isolates the quality of the assignment).

Exactness: a call's cost depends only on the site, the fax and the tariff band in force
at its start, and bands change only at the sites' band boundaries (whole local minutes).
Moving a call earlier within its band keeps its cost and delays nobody, so some optimal
schedule starts every call either when the previous call on its line ends or at a band
boundary. Per site, a dynamic programme over subsets of faxes keeps for each subset the
Pareto set of (line free again at, cost) over every order and every such start; a line's
best cost for a subset is the cheapest entry. Lines are then combined by an exact
minimum-cost partition of the faxes over all lines (subset DP, O(lines x 3^n)).
``--selftest`` checks it against brute force on tiny instances.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from zoneinfo import ZoneInfo

from routing_sim import (
    RoundRobin,
    SimFax,
    SimResult,
    SimSite,
    Simulator,
    add_knob_options,
    knobs_from_args,
    machine,
    make_site,
    random_number,
)

from routing.policy import Knobs

INF = 10**18
MICRO = Decimal(10**6)


# --------------------------------------------------------------------------- the optimum


@dataclass(frozen=True)
class Job:
    number: str
    duration: float
    deadline: float
    sites: frozenset[str]


class CostOracle:
    """Cost of job j at site s starting at t (micro-EUR), constant within a band piece."""

    def __init__(self, jobs: Sequence[Job], sites: Sequence[SimSite], epoch: datetime) -> None:
        self.jobs = jobs
        self.sites = {s.name: s for s in sites}
        self.epoch = epoch
        horizon = max((j.deadline for j in jobs), default=0.0)
        self.bounds = {s.name: band_boundaries(s, epoch, horizon) if s.costs else [] for s in sites}
        self.memo: dict[tuple[int, str, int], int] = {}

    def cost(self, j: int, site: str, t: float) -> int:
        piece = bisect.bisect_right(self.bounds[site], t)
        key = (j, site, piece)
        value = self.memo.get(key)
        if value is None:
            value = self.exact(j, site, t)
            self.memo[key] = value
        return value

    def exact(self, j: int, site: str, t: float) -> int:
        table = self.sites[site].costs
        job = self.jobs[j]
        if table is None:
            return INF
        cost = table.call_cost(job.number, self.epoch + timedelta(seconds=t), job.duration)
        return INF if cost is None else int(cost * MICRO)


def band_boundaries(site: SimSite, epoch: datetime, horizon: float) -> list[float]:
    """Seconds after ``epoch`` (in (0, horizon]) at which the site's tariff may change:
    every row's start and end, and local midnight, on every local day of the horizon."""
    assert site.costs is not None
    zone = ZoneInfo(site.costs.timezone)
    minutes = {0}
    for tariff in site.costs.tariffs:
        minutes.update((tariff.start, tariff.end % 1440))
    day = epoch.astimezone(zone).date()
    found: set[float] = set()
    while True:
        midnight = (datetime.combine(day, clock(0), tzinfo=zone) - epoch).total_seconds()
        if midnight > horizon:
            break
        for minute in minutes:
            at = datetime.combine(day, clock(minute // 60, minute % 60), tzinfo=zone)
            seconds = (at - epoch).total_seconds()
            if 0 < seconds <= horizon:
                found.add(seconds)
        day += timedelta(days=1)
    return sorted(found)


def _add_pareto(front: list[tuple[float, int]], end: float, cost: int) -> None:
    for e, c in front:
        if e <= end and c <= cost:
            return
    front[:] = [(e, c) for e, c in front if not (end <= e and cost <= c)]
    front.append((end, cost))


def line_costs(jobs: Sequence[Job], site: str, oracle: CostOracle, delay: bool) -> list[int]:
    """f[mask]: cheapest way for ONE line of ``site`` to send exactly the faxes of ``mask``."""
    n = len(jobs)
    full = 1 << n
    bounds = oracle.bounds[site] if delay else []
    allowed = [j for j in range(n) if site in jobs[j].sites]
    fronts: list[list[tuple[float, int]] | None] = [None] * full
    fronts[0] = [(0.0, 0)]
    best = [INF] * full
    for mask in range(full):
        front = fronts[mask]
        if not front:
            continue
        best[mask] = min(c for _, c in front)
        for j in allowed:
            bit = 1 << j
            if mask & bit:
                continue
            job = jobs[j]
            for end, cost in front:
                if end > job.deadline:
                    continue
                starts = [end]
                k = bisect.bisect_right(bounds, end)
                while k < len(bounds) and bounds[k] <= job.deadline:
                    starts.append(bounds[k])
                    k += 1
                cheapest = INF
                for start in starts:
                    c = oracle.cost(j, site, start)
                    if c >= cheapest:  # later and no cheaper: dominated
                        continue
                    cheapest = c
                    target = fronts[mask | bit]
                    if target is None:
                        target = fronts[mask | bit] = []
                    _add_pareto(target, start + job.duration, cost + c)
    return best


def partition(f: list[int], parts: int) -> list[int]:
    """h[mask]: cheapest split of ``mask`` over at most ``parts`` identical lines."""
    h = f[:]
    for _ in range(parts - 1):
        new = h[:]
        for mask in range(1, len(f)):
            low = mask & -mask
            rest = mask ^ low
            best = new[mask]
            sub = rest
            while True:
                a = f[low | sub]
                if a < best:
                    total = a + h[rest ^ sub]
                    if total < best:
                        best = total
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            new[mask] = best
        h = new
    return h


def combine(g: list[int], h: list[int], only_full: bool) -> list[int]:
    """Cheapest split of each mask between two disjoint resources (site groups)."""
    size = len(g)
    out = [INF] * size
    masks = [size - 1] if only_full else range(size)
    for mask in masks:
        best = INF
        sub = mask
        while True:
            a = h[sub]
            if a < best:
                total = a + g[mask ^ sub]
                if total < best:
                    best = total
            if sub == 0:
                break
            sub = (sub - 1) & mask
        out[mask] = best
    return out


def optimum(
    jobs: Sequence[Job], sites: Sequence[SimSite], epoch: datetime, delay: bool
) -> Decimal | None:
    """Exact minimum total cost (None: no schedule meets the deadlines)."""
    if not jobs:
        return Decimal(0)
    oracle = CostOracle(jobs, sites, epoch)
    g: list[int] | None = None
    used = [s for s in sites if s.lines > 0]
    for i, site in enumerate(used):
        h = partition(line_costs(jobs, site.name, oracle, delay), site.lines)
        g = h if g is None else combine(g, h, only_full=i == len(used) - 1)
    assert g is not None
    best = g[-1]
    return None if best >= INF else Decimal(best) / MICRO


def brute_force(jobs: Sequence[Job], sites: Sequence[SimSite], epoch: datetime, delay: bool):
    """Every assignment to lines, every order per line, every start in {previous end} and
    every band boundary up to the deadline (tiny instances only)."""
    oracle = CostOracle(jobs, sites, epoch)
    lines = [s.name for s in sites for _ in range(s.lines)]
    best = INF

    def line_best(site: str, members: list[int]) -> int:
        bounds = oracle.bounds[site] if delay else []
        result = INF
        for order in itertools.permutations(members):
            stack = [(0, 0.0, 0)]
            while stack:
                i, end, cost = stack.pop()
                if i == len(order):
                    result = min(result, cost)
                    continue
                j = order[i]
                job = jobs[j]
                if site not in job.sites:
                    break
                for start in [end, *(b for b in bounds if end < b <= job.deadline)]:
                    if start <= job.deadline:
                        c = oracle.exact(j, site, start)
                        if c < INF:
                            stack.append((i + 1, start + job.duration, cost + c))
        return result if members else 0

    for assignment in itertools.product(range(len(lines)), repeat=len(jobs)):
        total = 0
        for k, site in enumerate(lines):
            members = [j for j, a in enumerate(assignment) if a == k]
            total += line_best(site, members)
            if total >= best:
                break
        best = min(best, total)
    return None if best >= INF else Decimal(best) / MICRO


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    sites: tuple[tuple[str, int, str | None], ...]
    """(site, lines, group)"""
    epoch: datetime
    faxes: int
    priorities: tuple[int, ...]
    pages: tuple[int, int] = (1, 8)


WED = datetime(2026, 11, 25, tzinfo=UTC)
FOUR = ("paris", "newyork", "london", "frankfurt")

WORKLOADS = [
    Workload(
        "under-capacity",
        "4 sites x 3 lines, 10 faxes, Wed 10:00 UTC",
        tuple((s, 3, "fleet") for s in FOUR),
        WED.replace(hour=10),
        10,
        tuple(range(10)),
    ),
    Workload(
        "over-capacity",
        "4 sites x 1 line, 12 faxes, Wed 14:00 UTC",
        tuple((s, 1, "fleet") for s in FOUR),
        WED.replace(hour=14),
        12,
        tuple(range(10)),
    ),
    Workload(
        "evening-band",
        "paris, london, newyork x 2 lines, 12 faxes, Wed 18:50 UTC (Paris evening at 19:00)",
        (("paris", 2, "fleet"), ("london", 2, "fleet"), ("newyork", 2, "fleet")),
        WED.replace(hour=18, minute=50),
        12,
        (3, 4, 5, 6, 7),
    ),
    Workload(
        "urgent-heavy",
        "4 sites x 2 lines, 12 faxes of priority 6-9, Wed 16:00 UTC",
        tuple((s, 2, "fleet") for s in FOUR),
        WED.replace(hour=16),
        12,
        (6, 7, 8, 9),
    ),
    Workload(
        "two-groups",
        "europe {paris, london, frankfurt} x 2 + newyork alone x 2, 12 faxes, Wed 12:00 UTC",
        (
            ("paris", 2, "europe"),
            ("london", 2, "europe"),
            ("frankfurt", 2, "europe"),
            ("newyork", 2, "america"),
        ),
        WED.replace(hour=12),
        12,
        tuple(range(10)),
    ),
    Workload(
        "weekend-bulk",
        "4 sites x 1 line, 12 faxes of priority 0-2, Sat 09:00 UTC",
        tuple((s, 1, "fleet") for s in FOUR),
        datetime(2026, 11, 28, 9, tzinfo=UTC),
        12,
        (0, 1, 2),
    ),
]


def instance(w: Workload, seed: int) -> tuple[list[SimSite], list[SimFax]]:
    rng = random.Random(f"{w.name}/{seed}")
    sites = [make_site(name, lines, group, seed=seed) for name, lines, group in w.sites]
    faxes = [
        SimFax(
            key=f"f{i:02d}",
            number=random_number(rng),
            pages=rng.randint(*w.pages),
            priority=rng.choice(w.priorities),
            arrival=0.0,
            home_site=rng.choice(sites).name,
        )
        for i in range(w.faxes)
    ]
    return sites, faxes


@dataclass
class Outcome:
    policy: Decimal
    rr: Decimal
    opt: Decimal
    opt_nd: Decimal
    policy_late: int
    rr_late: int
    promises_feasible: bool
    seconds: float


def promise_misses(result: SimResult, knobs: Knobs) -> int:
    return sum(
        1
        for r in result.records.values()
        if r.start is None or r.start - r.fax.arrival > knobs.promise(r.fax.priority)
    )


def jobs_for(
    faxes: Sequence[SimFax],
    sites: Sequence[SimSite],
    knobs: Knobs,
    deadline: dict[str, float],
) -> list[Job]:
    groups = {s.name: s.group for s in sites}
    jobs = []
    for fax in faxes:
        group = groups.get(fax.home_site, "default")
        allowed = frozenset(
            s.name
            for s in sites
            if (s.group == group if group is not None else s.name == fax.home_site)
            and s.costs is not None
            and s.costs.can_dial(fax.number)
        )
        duration = fax.pages * knobs.seconds_per_page + knobs.call_setup_seconds
        jobs.append(Job(fax.number, duration, deadline[fax.key], allowed))
    return jobs


def run_instance(w: Workload, seed: int, knobs: Knobs) -> Outcome:
    began = time.perf_counter()
    sites, faxes = instance(w, seed)
    policy = Simulator(sites, epoch=w.epoch, knobs=knobs, tick=5.0).run(faxes)
    rr = Simulator(sites, epoch=w.epoch, knobs=knobs, planner=RoundRobin(), tick=None).run(faxes)
    for result in (policy, rr):
        unsent = [r.fax.key for r in result.records.values() if not r.done]
        assert not unsent, f"{w.name}/{seed}: not sent {unsent}"
    deadline = {
        f.key: max(knobs.promise(f.priority), policy.records[f.key].start or 0.0) for f in faxes
    }
    jobs = jobs_for(faxes, sites, knobs, deadline)
    opt = optimum(jobs, sites, w.epoch, delay=True)
    opt_nd = optimum(jobs, sites, w.epoch, delay=False)
    strict = jobs_for(faxes, sites, knobs, {f.key: knobs.promise(f.priority) for f in faxes})
    feasible = optimum(strict, sites, w.epoch, delay=True) is not None
    assert opt is not None and opt_nd is not None
    policy_cost = policy.total_cost()
    assert opt <= policy_cost, f"{w.name}/{seed}: OPT {opt} > policy {policy_cost}"
    assert opt <= opt_nd
    return Outcome(
        policy=policy_cost,
        rr=rr.total_cost(),
        opt=opt,
        opt_nd=opt_nd,
        policy_late=promise_misses(policy, knobs),
        rr_late=promise_misses(rr, knobs),
        promises_feasible=feasible,
        seconds=time.perf_counter() - began,
    )


# --------------------------------------------------------------------------- self test


def selftest(rounds: int = 40) -> None:
    """The subset DP against brute force on tiny random instances (with band changes)."""
    knobs = Knobs()
    rng = random.Random(7)
    names = ["paris", "newyork", "london", "frankfurt"]
    checked = 0
    for r in range(rounds):
        chosen = rng.sample(names, rng.randint(1, 3))
        sites = [make_site(n, rng.randint(1, 2), "fleet", seed=r) for n in chosen]
        epoch = WED.replace(hour=rng.choice([6, 18, 19]), minute=rng.choice([0, 45, 55]))
        n = rng.randint(1, 5 if sum(s.lines for s in sites) <= 3 else 4)
        faxes = [
            SimFax(f"f{i}", random_number(rng), rng.randint(1, 8), rng.randint(3, 9), 0.0, "paris")
            for i in range(n)
        ]
        deadline = {f.key: rng.choice([0.0, 300.0, 900.0, 3600.0, 7200.0, 40000.0]) for f in faxes}
        jobs = jobs_for(faxes, sites, knobs, deadline)
        for delay in (True, False):
            a = optimum(jobs, sites, epoch, delay)
            b = brute_force(jobs, sites, epoch, delay)
            assert a == b, f"round {r} delay={delay}: DP {a} != brute force {b}"
            checked += 1
        # the cost is constant between band boundaries
        oracle = CostOracle(jobs, sites, epoch)
        for _ in range(30):
            site = rng.choice(sites).name
            j = rng.randrange(n)
            t = rng.uniform(0, max(job.deadline for job in jobs))
            assert oracle.cost(j, site, t) == oracle.exact(j, site, t)
    print(f"selftest: subset DP == brute force on {checked} tiny instances")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 instances per workload")
    parser.add_argument("--instances", type=int, default=None)
    parser.add_argument("--selftest", action="store_true", help="check the optimum first")
    add_knob_options(parser)
    args = parser.parse_args()
    count = args.instances or (2 if args.quick else 10)
    knobs = knobs_from_args(args)
    print(machine())
    if args.selftest:
        selftest()
    print(
        f"routing cost: total cost of the calls, {count} instances per workload, "
        "all faxes arriving at t=0 (EUR)"
    )
    print(
        "  OPT = exact min cost with each fax started by max(promise, policy's start), "
        "delays allowed; OPT-nd = same without deliberate delays"
    )
    header = (
        f"  {'workload':<15} {'policy':>9} {'OPT':>9} {'OPT-nd':>9} {'RR':>9}"
        f" {'pol/OPT':>8} {'pol/OPTnd':>9} {'RR/OPT':>7} {'late pol/RR':>11} {'feasible':>8}"
    )
    print(header)
    all_opt, all_nd, all_rr = [], [], []
    began = time.perf_counter()
    for w in WORKLOADS:
        outcomes = [run_instance(w, seed, knobs) for seed in range(count)]
        r_opt = [float(o.policy / o.opt) for o in outcomes]
        r_nd = [float(o.policy / o.opt_nd) for o in outcomes]
        r_rr = [float(o.rr / o.opt) for o in outcomes]
        all_opt += r_opt
        all_nd += r_nd
        all_rr += r_rr
        total = [sum((getattr(o, k) for o in outcomes), Decimal(0)) for k in ("policy", "opt")]
        total += [sum((o.opt_nd for o in outcomes), Decimal(0))]
        total += [sum((o.rr for o in outcomes), Decimal(0))]
        print(
            f"  {w.name:<15} {total[0]:>9.4f} {total[1]:>9.4f} {total[2]:>9.4f} {total[3]:>9.4f}"
            f" {statistics.mean(r_opt):>8.3f} {statistics.mean(r_nd):>9.3f}"
            f" {statistics.mean(r_rr):>7.3f}"
            f" {sum(o.policy_late for o in outcomes):>5}/{sum(o.rr_late for o in outcomes):<5}"
            f" {sum(o.promises_feasible for o in outcomes):>4}/{count}"
        )
        worst = max(range(count), key=lambda i: r_opt[i])
        print(
            f"  {'':<15} ({w.what}; worst instance seed {worst}: policy/OPT {r_opt[worst]:.3f},"
            f" policy/OPT-nd {r_nd[worst]:.3f}; {statistics.mean(o.seconds for o in outcomes):.1f}"
            " s per instance)"
        )
    print(
        f"  {'mean':<15} {'':>9} {'':>9} {'':>9} {'':>9} {statistics.mean(all_opt):>8.3f}"
        f" {statistics.mean(all_nd):>9.3f} {statistics.mean(all_rr):>7.3f}"
    )
    print(
        "  ratios are means over instances of per-instance ratios; money columns are sums;"
        " late = faxes started after their promise (policy/RR), feasible = instances where"
        " every promise can be kept"
    )
    print(f"  took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
