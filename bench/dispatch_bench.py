"""Line utilisation and priority order of the real dispatcher while a backlog waits.

Run: ``.venv/bin/python bench/dispatch_bench.py [--quick]``.

faxfleet dispatches centrally: a fax waits in one priority-ordered set until a site has
a free line, and a line that frees wakes the dispatcher, which hands out the next fax.
The price of that pull design is the time a line stands idle between one call ending and
the next one starting (the slot is freed, the dispatcher wakes and runs a pass, claims,
Celery delivers the order, the site worker prepares the pages and takes the line). This
benchmark measures that price, and checks that the order stays right, on a real local
fleet: a private ``redis-server`` on a free port, the API, router, dispatcher, renderer,
event workers and two sites of simulated lines (``paris`` and ``newyork``, 4 lines each)
in one group without cost tables, so every waiting fax can go to every line and cost
never makes a fax wait for a particular site. Every destination number is distinct, so
the one-call-per-number rule never holds a fax back either.

A backlog (1-3 page faxes, random priorities 0-9) is submitted at once through the
Python client, and urgent faxes are added later while it still waits. When every fax is
done, the figures are computed from the fleet's own records:

* the job store (through the API): each fax's transitions with their times, site and
  line: ``routing`` (rendered), ``queued`` (the dispatcher's claim: the ``Routed`` event's
  time), ``dialing`` (the site's first ``AttemptProgress``: the call starts on a line),
  ``done`` (the ``AttemptResult``: the call is over);
* the central waiting set's scores, which hold each fax's exact enqueue time; a
  sampler reads the set every ``SAMPLE_SECONDS`` (a fax it never saw waited less than
  that, and its enqueue time is taken as its claim time minus the interval, but never
  before it was rendered).

One scenario is run a second time with a Redis ``MONITOR`` client attached: the commands
of the slot being freed, the dispatcher's pass (``DEL`` of the wake list to its next
``BLPOP``), the claim script, the send order's ``LPUSH`` and the site worker's attempt
claim carry Redis's own clock, so the idle time of a line can be split stage by stage,
and the length of one dispatch pass (the grace allowed before a waiting fax counts as
passed over) is measured instead of assumed.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import redis
from submit_bench import (
    CpuUse,
    CpuWatch,
    cpu_text,
    machine_info,
    percentile,
    redis_pid,
    wait_for_quiet,
)

from faxfleet import keys
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.messages import FaxStatus, JobState
from faxfleet.redis_server import RedisServer, free_port
from routing.dispatcher import WAITING

API_KEY = "bench-key"
SITES = [SiteSpec("paris", 4), SiteSpec("newyork", 4)]
SAMPLE_SECONDS = 0.05
SEED = 20261125

BASE_ENV = {
    "FAXFLEET_DEMO": "1",  # a local test fleet: the demo's keys are accepted
    # Real seconds: the simulated line's dial and page times are not scaled, and with a
    # scale of 1 no watchdog (routing: resend the order; site: outcome uncertain) fires
    # while a fax waits its turn in a long backlog, which would add work not part of
    # dispatching.
    "FAXFLEET_TIME_SCALE": "1",
    # Simulated lines: their dial and page times set the call length exactly.
    "FAXFLEET_LINE_KIND": "simulated",
    "FAXFLEET_ROUTING_STUCK_AFTER_SECONDS": "100000",
    "FAXFLEET_STUCK_AFTER_SECONDS": "100000",
    "FAXFLEET_API_KEYS": f"bench={API_KEY}",
    "FAXFLEET_API_KEY": API_KEY,
}


@dataclass(frozen=True)
class Scenario:
    name: str
    dial_seconds: float
    page_seconds: float
    backlog: int
    urgent: int
    """Priority 8-9 faxes submitted while the backlog still waits."""
    trace: bool = False

    def call_seconds(self, pages: float) -> float:
        return self.dial_seconds + pages * self.page_seconds


def scenarios(quick: bool, long_calls: bool = False) -> list[Scenario]:
    backlog, urgent = (60, 8) if quick else (200, 20)
    if long_calls:
        # Closer to real fax calls (set-up 10-15 s, 20-50 s a page), still shorter.
        return [Scenario("calls 11-25 s", 4.0, 7.0, backlog, urgent)]
    return [
        Scenario("calls 2-5 s", 0.5, 1.5, backlog, urgent),
        Scenario("calls 2-5 s, MONITOR attached", 0.5, 1.5, backlog, urgent, trace=True),
        Scenario("calls 0.45-1.15 s", 0.1, 0.35, backlog, urgent),
    ]


def release_margin(backlog: int) -> float:
    """Seconds from the first submission to the backlog's common ``send_after``: long
    enough for every fax to be submitted and rendered on a busy two-core machine, so the
    whole backlog starts waiting for lines at once instead of trickling in at the rate
    the renderer produces pages."""
    return 8 + 0.15 * backlog


# -- the fleet -----------------------------------------------------------------------------


@contextlib.contextmanager
def running_fleet(redis_url: str, log_dir: Path, sc: Scenario) -> Iterator[Fleet]:
    port = free_port()
    env = {
        **BASE_ENV,
        "FAXFLEET_REDIS_URL": redis_url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{port}",
        "FAXFLEET_SIM_DIAL_SECONDS": str(sc.dial_seconds),
        "FAXFLEET_SIM_PAGE_SECONDS": str(sc.page_seconds),
    }
    fleet = Fleet(SITES, env, log_dir, api_port=port)
    try:
        fleet.start()
        fleet.wait_ready()
        yield fleet
    finally:
        fleet.stop()


# -- the workload ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    number: str
    pages: int
    priority: int
    home: str
    at: float
    """Seconds after the backlog was submitted (0: part of the backlog)."""


def document(pages: int, index: int) -> tuple[str, bytes]:
    """A text document of exactly ``pages`` pages (a form feed starts a page)."""
    sheet = "\n".join(f"Fax {index}, line {n + 1}: 12 units, pallet {400 + n}" for n in range(20))
    return f"fax-{index}.txt", "\f".join([sheet] * pages).encode()


def plan_workload(sc: Scenario, rng: random.Random) -> list[Planned]:
    """The backlog (released at once), then urgent faxes spread over 20-60% of the time
    the backlog takes to drain."""
    lines = sum(s.lines for s in SITES)
    drain = sc.backlog * sc.call_seconds(2) / lines
    release = release_margin(sc.backlog)
    homes = [s.name for s in SITES]
    work = [
        Planned(f"+1212555{i:04d}", rng.randint(1, 3), rng.randint(0, 9), homes[i % 2], 0.0)
        for i in range(sc.backlog)
    ]
    for j in range(sc.urgent):
        at = release + drain * (0.2 + 0.4 * j / max(1, sc.urgent - 1))
        work.append(
            Planned(f"+3314268{j:04d}", rng.randint(1, 3), rng.choice((8, 9)), homes[j % 2], at)
        )
    return work


def submit_all(api_url: str, work: list[Planned], release: float) -> tuple[list[str], float]:
    """Submit on schedule: the backlog with ``send_after`` at ``release`` seconds from now,
    the urgent faxes when their time comes. Returns the fax ids (in ``work`` order) and
    how long the backlog took to submit."""
    ids: list[str] = []
    backlog_seconds = 0.0
    with FaxClient([api_url], api_key=API_KEY) as client:
        start = time.monotonic()
        send_after = datetime.now(UTC) + timedelta(seconds=release)
        for i, item in enumerate(work):
            delay = start + item.at - time.monotonic()
            if delay > 0:
                if not backlog_seconds:
                    backlog_seconds = time.monotonic() - start
                time.sleep(delay)
            fax = client.send(
                document(item.pages, i),
                item.number,
                priority=item.priority,
                home_site=item.home,
                send_after=send_after if item.at == 0 else None,
            )
            ids.append(fax.id)
        return ids, backlog_seconds or time.monotonic() - start


def wait_calls_over(redis_url: str, numbers: list[str], timeout: float) -> None:
    """Until every far end received its fax: one cheap pipeline a second, so waiting does
    not load the machine the way polling the API for 200 faxes would."""
    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with r.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.llen(keys.sim_received(number))
            if all(pipe.execute()):
                return
        time.sleep(1)
    raise TimeoutError("not every fax reached its far end in time")


def fetch_settled(api_url: str, ids: list[str], timeout: float = 60) -> list[FaxStatus]:
    """Every fax with its history, once settled (its last events may still be applying)."""
    found: dict[str, FaxStatus] = {}
    deadline = time.monotonic() + timeout
    with FaxClient([api_url], api_key=API_KEY) as client:
        while len(found) < len(ids) and time.monotonic() < deadline:
            for fax_id in [i for i in ids if i not in found]:
                fax = client.get(fax_id)
                if fax.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
                    found[fax_id] = fax
            time.sleep(0.3)
    if len(found) < len(ids):
        raise TimeoutError(f"{len(ids) - len(found)} faxes not settled")
    return [found[i] for i in ids]


# -- watching Redis ----------------------------------------------------------------------------


class WaitingSampler(threading.Thread):
    """Reads the central waiting set with its scores: the score is ``(9 - priority) *
    1e13 + enqueued_at * 1000``, so the enqueue time of every fax seen waiting is exact."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(name="waiting-sampler", daemon=True)
        self.r = redis.Redis.from_url(redis_url)
        self.enqueued: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            with contextlib.suppress(redis.RedisError):
                for member, score in self.r.zrange(WAITING, 0, -1, withscores=True):
                    self.enqueued.setdefault(member.decode(), (score % 1e13) / 1000)


@dataclass(frozen=True)
class Command:
    at: float
    client: str
    name: str
    args: tuple[str, ...]


_MONITOR_LINE = re.compile(rb'^\+(\d+\.\d+) \[\d+ ([^\]]+)\] "([A-Za-z]+)"')
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TRACED = {b"HDEL", b"DEL", b"BLPOP", b"EVALSHA", b"LPUSH", b"SET", b"HMGET", b"ZADD", b"ZRANGE"}
_TRACED_PREFIXES = ("ff:inflight:", "ff:dispatch:", "ff:claim:", "ff:pages:", "site.", WAITING)


class Monitor(threading.Thread):
    """A raw ``MONITOR`` connection keeping only the commands of the dispatch path.

    Raw rather than redis-py's parser: lines carrying rendered pages are tens of KB, and
    only their first bytes are looked at."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(name="monitor", daemon=True)
        url = urlparse(redis_url)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379))
        self.sock.sendall(b"MONITOR\r\n")
        self.stream = self.sock.makefile("rb")
        if not self.stream.readline().startswith(b"+OK"):
            raise RuntimeError("MONITOR refused")
        self.commands: list[Command] = []

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in self.stream:
                match = _MONITOR_LINE.match(raw)
                if not match or match.group(3).upper() not in _TRACED:
                    continue
                head = raw[match.end() : match.end() + 400].decode("latin-1")
                args = tuple(_ARG.findall(head))
                if args and (
                    args[0].startswith(_TRACED_PREFIXES) or match.group(3).upper() == b"EVALSHA"
                ):
                    self.commands.append(
                        Command(
                            float(match.group(1)),
                            match.group(2).decode(),
                            match.group(3).decode().upper(),
                            args,
                        )
                    )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One fax's way through the fleet, from its records (times in epoch seconds)."""

    fax_id: str
    attempt_id: str
    priority: int
    pages: int
    rendered: float
    enqueued: float
    claimed: float
    site: str
    line: str
    started: float
    ended: float
    urgent_late: bool


def ts(value: datetime) -> float:
    return value.timestamp()


def rendered_late(faxes: list[FaxStatus], work: list[Planned]) -> int:
    """Backlog faxes rendered only after the release time (never ``scheduled``): they
    joined the backlog late instead of at once."""
    return sum(
        1
        for fax, item in zip(faxes, work, strict=True)
        if item.at == 0 and all(t.to_state != JobState.SCHEDULED for t in fax.history)
    )


def calls_from(
    faxes: list[FaxStatus], work: list[Planned], enqueued: dict[str, float]
) -> tuple[list[Call], list[str]]:
    """One call per fax (its last attempt); faxes that did not end ``done`` in one call
    are listed as problems instead (none is expected: every far end answers)."""
    calls, problems = [], []
    for fax, item in zip(faxes, work, strict=True):
        r = fax.recipients[0]
        first: dict[JobState, datetime] = {}
        for t in fax.history:
            if t.recipient == 0:
                first.setdefault(t.to_state, t.at)
        dialing = [t for t in fax.history if t.recipient == 0 and t.to_state == JobState.DIALING]
        needed = (JobState.ROUTING, JobState.QUEUED, JobState.DIALING, JobState.DONE)
        if r.state != JobState.DONE or len(dialing) != 1 or any(s not in first for s in needed):
            problems.append(f"{fax.id}: {r.state} after {r.attempt} attempt(s), {r.cause}")
            continue
        attempt_id = f"{fax.id}:0:{r.attempt}"
        rendered, claimed = ts(first[JobState.ROUTING]), ts(first[JobState.QUEUED])
        seen = enqueued.get(attempt_id)
        calls.append(
            Call(
                fax_id=fax.id,
                attempt_id=attempt_id,
                priority=fax.priority,
                pages=fax.pages or 0,
                rendered=rendered,
                enqueued=seen if seen is not None else max(rendered, claimed - SAMPLE_SECONDS),
                claimed=claimed,
                site=dialing[0].site or "?",
                line=dialing[0].line or "?",
                started=ts(first[JobState.DIALING]),
                ended=ts(first[JobState.DONE]),
                urgent_late=item.at > 0,
            )
        )
    return calls, problems


# -- analysis ---------------------------------------------------------------------------------


Interval = tuple[float, float]


def union(intervals: list[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def overlap(intervals: list[Interval], within: list[Interval]) -> float:
    """Total length of ``intervals`` (disjoint) inside ``within`` (disjoint, sorted)."""
    total = 0.0
    starts = [a for a, _ in within]
    for a, b in intervals:
        i = max(0, bisect.bisect_right(starts, a) - 1)
        while i < len(within) and within[i][0] < b:
            total += max(0.0, min(b, within[i][1]) - max(a, within[i][0]))
            i += 1
    return total


def inside(t: float, within: list[Interval]) -> bool:
    i = bisect.bisect_right([a for a, _ in within], t) - 1
    return i >= 0 and within[i][0] <= t < within[i][1]


@dataclass(frozen=True)
class Gap:
    site: str
    line: str
    ended: float
    idle: float
    """Call over -> next call on the line starts."""
    to_claim: float
    """Call over -> the dispatcher claims the next fax for the site."""
    to_dial: float
    """Claim -> the next call starts (delivery to the site and the worker's preparation)."""
    next_attempt: str


@dataclass
class Utilisation:
    backlog_seconds: float
    busy: dict[str, float]
    """Line-seconds busy during the backlog, per site."""
    available: dict[str, float]
    gaps: list[Gap]
    ramp_end: float
    """When every line was first busy at once (after it, the ramp-up is over)."""
    steady_busy: float
    steady_available: float

    def ratio(self, site: str | None = None) -> float:
        names = [site] if site else list(self.busy)
        available = sum(self.available[n] for n in names)
        return sum(self.busy[n] for n in names) / available if available else float("nan")


def backlog_periods(calls: list[Call]) -> list[Interval]:
    """When at least one fax waited centrally (enqueued, not yet handed to a site)."""
    return union([(c.enqueued, c.claimed) for c in calls])


def utilisation(calls: list[Call]) -> Utilisation:
    backlog = backlog_periods(calls)
    lines_of = {s.name: s.lines for s in SITES}
    per_line: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for c in calls:
        per_line[(c.site, c.line)].append(c)
    busy = {s: 0.0 for s in lines_of}
    gaps: list[Gap] = []
    by_attempt = {c.attempt_id: c for c in calls}
    for (site, line), mine in per_line.items():
        mine.sort(key=lambda c: c.started)
        busy[site] += overlap(union([(c.started, c.ended) for c in mine]), backlog)
        for done, nxt in itertools.pairwise(mine):
            if inside(done.ended, backlog):
                gaps.append(
                    Gap(
                        site,
                        line,
                        done.ended,
                        nxt.started - done.ended,
                        nxt.claimed - done.ended,
                        nxt.started - nxt.claimed,
                        nxt.attempt_id,
                    )
                )
    assert all(g.next_attempt in by_attempt for g in gaps)
    length = sum(b - a for a, b in backlog)
    available = {s: n * length for s, n in lines_of.items()}
    # Ramp-up: the first moment every line of the fleet was on a call at once.
    edges = sorted([(c.started, 1) for c in calls] + [(c.ended, -1) for c in calls])
    on, ramp_end, total = 0, float("nan"), sum(lines_of.values())
    for t, step in edges:
        on += step
        if on >= total:
            ramp_end = t
            break
    steady = [(max(a, ramp_end), b) for a, b in backlog if b > ramp_end]
    steady_busy = sum(
        overlap(union([(c.started, c.ended) for c in mine]), steady) for mine in per_line.values()
    )
    steady_len = sum(b - a for a, b in steady)
    return Utilisation(length, busy, available, gaps, ramp_end, steady_busy, total * steady_len)


@dataclass(frozen=True)
class Inversion:
    started: Call
    passed_over: Call
    waited: float
    """How long the more urgent fax had waited centrally at that moment."""


def inversions(calls: list[Call], grace: float, *, at_start: bool) -> list[Inversion]:
    """Faxes handed out (or, with ``at_start``, whose call started) while a more urgent
    fax had been waiting centrally for longer than ``grace`` and was still waiting."""
    found = []
    for a in calls:
        moment = a.started if at_start else a.claimed
        worst: Inversion | None = None
        for b in calls:
            if b.priority <= a.priority or b is a:
                continue
            if b.enqueued + grace <= moment < b.claimed:
                waited = moment - b.enqueued
                if worst is None or waited > worst.waited:
                    worst = Inversion(a, b, waited)
        if worst:
            found.append(worst)
    return found


# -- the traced run: where a line's idle time goes ------------------------------------------------

STAGES = (
    "call over -> slot freed (result event sent, HDEL)",
    "slot freed -> dispatcher pass starts (DEL wake)",
    "pass starts -> waiting set read (ZRANGE)",
    "waiting set read -> claim (EVALSHA)",
    "claim -> send order queued (LPUSH site queue)",
    "queued -> site worker starts the task (SET claim)",
    "task start -> pages read (HMGET pages)",
    "pages read -> dialing (header stamped, line taken)",
)


@dataclass
class Trace:
    passes: list[float] = field(default_factory=list)
    """Length of each dispatcher pass: DEL of the wake list -> its next BLPOP."""
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    unmatched: int = 0
    snapshot_age: list[float] = field(default_factory=list)
    """Claim time minus the time the dispatcher read the waiting set it decided from."""
    exact: list[tuple[str, str]] = field(default_factory=list)
    """(handed out, more urgent one left waiting) although the dispatcher's snapshot held
    both: an inversion made by the dispatcher itself."""
    claims_checked: int = 0


def exact_inversions(commands: list[Command], calls: list[Call], trace: Trace) -> None:
    """Judge every claim against the waiting set the dispatcher actually read for it:
    a fax counts as passed over only if it had been added (``ZADD``) before that read."""
    dispatchers = {
        c.client for c in commands if c.name == "BLPOP" and c.args[0] == keys.DISPATCH_WAKE
    }
    reads = sorted(c.at for c in commands if c.name == "ZRANGE" and c.client in dispatchers)
    added: dict[str, float] = {}
    claimed: dict[str, float] = {}
    for c in commands:
        if c.name == "ZADD" and c.args[0] == WAITING and len(c.args) >= 4:
            added.setdefault(c.args[-1], c.at)
        elif c.name == "EVALSHA" and len(c.args) > 6 and c.args[4].startswith("ff:inflight:"):
            claimed.setdefault(c.args[6], c.at)
    priority = {c.attempt_id: c.priority for c in calls}
    for a, at in claimed.items():
        i = bisect.bisect_left(reads, at) - 1
        if a not in priority or i < 0:
            continue
        snapshot = reads[i]
        trace.claims_checked += 1
        trace.snapshot_age.append(at - snapshot)
        for b, b_added in added.items():
            if (
                priority.get(b, -1) > priority[a]
                and b_added < snapshot
                and claimed.get(b, float("inf")) > at
            ):
                trace.exact.append((a, b))
                break


def analyse_trace(commands: list[Command], calls: list[Call], gaps: list[Gap]) -> Trace:
    trace = Trace()
    blpops = defaultdict(list)
    for c in commands:
        if c.name == "BLPOP" and c.args[0] == keys.DISPATCH_WAKE:
            blpops[c.client].append(c.at)
    dels = [c for c in commands if c.name == "DEL" and c.args[0] == keys.DISPATCH_WAKE]
    for d in dels:
        later = blpops.get(d.client, [])
        i = bisect.bisect_right(later, d.at)
        if i < len(later):
            trace.passes.append(later[i] - d.at)
    del_times = [d.at for d in dels]
    reads = sorted(c.at for c in commands if c.name == "ZRANGE" and c.client in blpops)
    freed: dict[str, float] = {}
    claims: dict[str, float] = {}
    sent: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    read: dict[str, list[float]] = defaultdict(list)
    for c in commands:
        if c.name == "HDEL" and c.args[0].startswith("ff:inflight:") and len(c.args) > 1:
            freed.setdefault(c.args[1], c.at)
        elif c.name == "EVALSHA" and len(c.args) > 6 and c.args[4].startswith("ff:inflight:"):
            claims.setdefault(c.args[6], c.at)
        elif c.name == "LPUSH" and c.args[0].startswith("site."):
            sent[c.args[0].split("\\x06", 1)[0].removeprefix("site.")].append(c.at)
        elif c.name == "SET" and c.args[0].startswith("ff:claim:"):
            started.setdefault(c.args[0].removeprefix("ff:claim:"), c.at)
        elif c.name == "HMGET" and c.args[0].startswith("ff:pages:"):
            read[c.args[0].removeprefix("ff:pages:")].append(c.at)
    by_attempt = {c.attempt_id: c for c in calls}
    previous = {}
    for g in gaps:
        for c in calls:
            if c.site == g.site and c.line == g.line and c.ended == g.ended:
                previous[g.next_attempt] = c
    for g in gaps:
        old, new = previous.get(g.next_attempt), by_attempt[g.next_attempt]
        if old is None or old.attempt_id not in freed or new.attempt_id not in claims:
            trace.unmatched += 1
            continue
        t_free, t_claim = freed[old.attempt_id], claims[new.attempt_id]
        i = bisect.bisect_left(del_times, t_free)
        pushes = sent.get(new.site, [])
        j = bisect.bisect_left(pushes, t_claim)
        if i >= len(del_times) or j >= len(pushes) or new.attempt_id not in started:
            trace.unmatched += 1
            continue
        t_wake, t_sent, t_start = del_times[i], pushes[j], started[new.attempt_id]
        t_read = next((t for t in read.get(new.fax_id, []) if t >= t_start), None)
        if t_read is None:
            trace.unmatched += 1
            continue
        if t_wake > t_claim:  # claimed by a pass that began before the slot was freed
            t_wake = t_claim
        k = bisect.bisect_left(reads, t_claim) - 1
        t_snapshot = min(max(reads[k], t_wake), t_claim) if k >= 0 else t_wake
        points = [
            old.ended,
            t_free,
            t_wake,
            t_snapshot,
            t_claim,
            t_sent,
            t_start,
            t_read,
            new.started,
        ]
        for stage, a, b in zip(STAGES, points, points[1:], strict=False):
            trace.stages[stage].append(b - a)
    return trace


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    calls: list[Call]
    problems: list[str]
    mean_call: float
    wall: float
    submit_seconds: float
    late: int
    cpu: CpuUse
    util: Utilisation
    trace: Trace | None


def run(
    server: RedisServer, log_dir: Path, sc: Scenario, rng: random.Random, wait_idle: float
) -> Result:
    redis.Redis.from_url(server.url).flushall()
    work = plan_workload(sc, rng)
    with running_fleet(server.url, log_dir, sc) as fleet:
        time.sleep(2)  # every worker finishes starting before the clock matters
        if wait_idle > 0:
            wait_for_quiet(wait_idle, threshold=0.3)
        sampler = WaitingSampler(server.url)
        monitor = Monitor(server.url) if sc.trace else None
        watch = CpuWatch(
            {"fleet": [p.pid for p in fleet.processes.values()], "redis": [redis_pid(server)]}
        )
        sampler.start()
        if monitor:
            monitor.start()
        watch.start()
        began = time.monotonic()
        try:
            release = release_margin(sc.backlog)
            ids, submit_seconds = submit_all(fleet.api_url, work, release)
            drain = sum(sc.call_seconds(w.pages) for w in work) / sum(s.lines for s in SITES)
            wait_calls_over(server.url, [w.number for w in work], timeout=release + 3 * drain + 120)
            wall = time.monotonic() - began
            cpu = watch.stop()
        finally:
            sampler.stop.set()
            if monitor:
                monitor.close()
        faxes = fetch_settled(fleet.api_url, ids)
    sampler.join()
    calls, problems = calls_from(faxes, work, sampler.enqueued)
    util = utilisation(calls)
    trace = None
    if monitor:
        monitor.join(5)
        trace = analyse_trace(monitor.commands, calls, util.gaps)
        exact_inversions(monitor.commands, calls, trace)
    mean_call = statistics.fmean(c.ended - c.started for c in calls)
    late = rendered_late(faxes, work)
    return Result(sc, calls, problems, mean_call, wall, submit_seconds, late, cpu, util, trace)


# -- report -------------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    if not values:
        return "      -        -        -        -     0"
    return (
        f"{statistics.fmean(values) * 1000:>7.1f}{percentile(values, 50) * 1000:>9.1f}"
        f"{percentile(values, 99) * 1000:>9.1f}{max(values) * 1000:>9.1f}{len(values):>6}"
    )


def print_result(res: Result, grace: float) -> None:
    sc, u = res.scenario, res.util
    print(f"== {sc.name}: dial {sc.dial_seconds:g} s + {sc.page_seconds:g} s per page")
    pages = statistics.fmean(c.pages for c in res.calls)
    print(
        f"  {len(res.calls)} faxes done ({sc.backlog} backlog + {sc.urgent} urgent later), "
        f"{pages:.2f} pages on average; mean call (dialing -> done) {res.mean_call:.2f} s"
    )
    print(
        f"  wall {res.wall:.1f} s; the backlog took {res.submit_seconds:.1f} s to submit and was "
        f"released at +{release_margin(sc.backlog):.0f} s ({res.late} of its faxes were rendered "
        "after that and joined it late)"
    )
    print(f"  CPU (cores): {cpu_text(res.cpu)}")
    for p in res.problems:
        print(f"  PROBLEM {p}")
    print(f"  backlog (>= 1 fax waiting centrally) for {u.backlog_seconds:.1f} s")
    print("  utilisation under backlog = busy line-seconds / available line-seconds:")
    for site in u.busy:
        print(
            f"    {site:<10}{u.busy[site]:>9.1f} / {u.available[site]:>7.1f}  {u.ratio(site):.2%}"
        )
    total_busy, total_avail = sum(u.busy.values()), sum(u.available.values())
    print(f"    {'fleet':<10}{total_busy:>9.1f} / {total_avail:>7.1f}  {u.ratio():.2%}")
    if u.steady_available:
        print(
            f"    fleet after the ramp-up (all lines first busy at "
            f"+{u.ramp_end - first(res):.1f} s): {u.steady_busy / u.steady_available:.2%}"
        )
    print(
        f"  {'idle gap per line while faxes waited (ms)':<50}{'mean':>7}{'p50':>9}{'p99':>9}"
        f"{'max':>9}{'n':>6}"
    )
    for site in u.busy:
        mine = [g for g in u.gaps if g.site == site]
        print(
            f"    {site + ': call over -> next call on the line':<48}{ms([g.idle for g in mine])}"
        )
    gaps = u.gaps
    print(f"    {'fleet: call over -> next call on the line':<48}{ms([g.idle for g in gaps])}")
    print(f"    {'  of which call over -> next fax claimed':<48}{ms([g.to_claim for g in gaps])}")
    print(f"    {'  of which claimed -> its call starts':<48}{ms([g.to_dial for g in gaps])}")
    for label, at_start in (("handed out", False), ("call started", True)):
        found = inversions(res.calls, grace, at_start=at_start)
        print(
            f"  priority inversions ({label} while a more urgent fax had waited > "
            f"{grace * 1000:.0f} ms): {len(found)}"
        )
        if found:
            moments = [(i.started.started if at_start else i.started.claimed) for i in found]
            print(f"    all within the first {max(moments) - first(res):.2f} s of the backlog")
        if at_start and found:
            after = sum(1 for i in found if i.passed_over.enqueued >= i.started.claimed)
            print(
                f"    of which {after} with the more urgent fax added only after the other "
                "had been handed out (on its way to the line)"
            )
        for inv in sorted(found, key=lambda i: -i.waited)[:5]:
            a, b = inv.started, inv.passed_over
            print(
                f"    {a.fax_id} (priority {a.priority}) at +{a.claimed - first(res):.2f} s while "
                f"{b.fax_id} (priority {b.priority}) had waited {inv.waited * 1000:.0f} ms"
            )
    late = [c for c in res.calls if c.urgent_late]
    if late:
        waits = [c.claimed - c.enqueued for c in late]
        print(
            f"  urgent faxes submitted into the backlog: waited for a line (ms) "
            f"mean {statistics.fmean(waits) * 1000:.0f}, max {max(waits) * 1000:.0f}"
        )
    if res.trace:
        t = res.trace
        print(
            f"  dispatcher pass (DEL wake -> next BLPOP), ms: {ms(t.passes)} (mean p50 p99 max n)"
        )
        print(
            f"  {'where an idle gap goes (MONITOR, ms)':<56}{'mean':>7}{'p50':>9}{'p99':>9}"
            f"{'max':>9}{'n':>6}"
        )
        for stage, values in t.stages.items():
            print(f"    {stage:<54}{ms(values)}")
        if t.unmatched:
            print(f"    ({t.unmatched} gaps could not be matched to traced commands)")
        print(
            f"  claims judged against the dispatcher's own snapshot of the waiting set: "
            f"{t.claims_checked}; snapshot age at claim (ms): {ms(t.snapshot_age)}"
        )
        print(
            f"  priority inversions made by the dispatcher (a more urgent fax was in the "
            f"snapshot and left waiting): {len(t.exact)}"
        )
        for a, b in t.exact[:5]:
            print(f"    {a} handed out while {b} waited")
    print()


def print_summary(results: list[Result], grace: float) -> None:
    """One line per run against the targets: >= 99% of line time busy under backlog, and
    no less urgent fax started while a more urgent one waited."""
    print(f"summary (targets: utilisation >= 99%, 0 inversions; grace {grace * 1000:.0f} ms)")
    for res in results:
        exact = f", by the dispatcher {len(res.trace.exact)}" if res.trace else ""
        print(
            f"  {res.scenario.name:<32} mean call {res.mean_call:4.2f} s  "
            f"utilisation {res.util.ratio():6.2%}  "
            f"gap {statistics.fmean(g.idle for g in res.util.gaps) * 1000:5.0f} ms  "
            f"inversions handed out {len(inversions(res.calls, grace, at_start=False))}, "
            f"call started {len(inversions(res.calls, grace, at_start=True))}{exact}"
        )
    print()


def first(res: Result) -> float:
    return min(c.enqueued for c in res.calls)


DISPATCH_PATH = ("routing", "scheduler", "workers/site.py", "workers/lines", "faxfleet")


def code_version() -> str:
    """The commit measured, and the dispatch path's files changed since it, if any."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", *DISPATCH_PATH],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip() and not line.startswith("??")]
    return head + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60-fax backlogs (about a minute)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for other processes to use < 0.3 cores",
    )
    parser.add_argument(
        "--long-calls",
        action="store_true",
        help="one run with calls of 11-25 s instead of the three short-call runs",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = Path(tempfile.mkdtemp(prefix="faxfleet-dispatch-bench-"))
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"faxfleet dispatch benchmark, {'quick' if args.quick else 'full'}, {stamp}")
    for key, value in machine_info().items():
        print(f"  {key:<14}{value}")
    shape = ", ".join(f"{s.name} {s.lines} lines" for s in SITES)
    print(f"  {'fleet':<14}{shape}; one group, no cost tables, distinct numbers")
    print(f"  {'code':<14}{code_version()}")
    print(f"  {'logs':<14}{log_dir}")
    print()
    began = time.monotonic()
    rng = random.Random(SEED)
    results: list[Result] = []
    server = RedisServer(log_dir / "redis")
    try:
        server.start()
        for i, sc in enumerate(scenarios(args.quick, args.long_calls)):
            results.append(run(server, log_dir / f"run-{i}", sc, rng, args.wait_idle))
    finally:
        server.stop()
    traced = [r.trace for r in results if r.trace and r.trace.passes]
    passes = [p for t in traced for p in t.passes]
    grace = percentile(passes, 99) if passes else 0.25
    print(
        f"grace before a waiting fax counts as passed over: {grace * 1000:.0f} ms "
        f"({'p99 of ' + str(len(passes)) + ' traced dispatcher passes' if passes else 'assumed'})"
    )
    print()
    for res in results:
        print_result(res, grace)
    print_summary(results, grace)
    print(f"total {time.monotonic() - began:.0f} s; logs kept in {log_dir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
