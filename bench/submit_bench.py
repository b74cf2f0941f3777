"""Submission throughput and submit-to-line latency of a local faxfleet, with Redis baselines.

Run: ``.venv/bin/python bench/submit_bench.py [--quick] [--wait-idle SECONDS]``.

Everything runs against a private ``redis-server`` on a free port (the machine's Redis on
6379 is never touched) and a fleet of local processes started by :class:`Fleet`. Each
fleet figure is printed beside a raw redis-py figure measured in the same run on the same
Redis, so the cost of the fleet's own layers (HTTP, validation, pydantic, Celery) can be
read off directly instead of being compared with numbers from another day or machine.

Parts:

1. Submissions per second through the HTTP API (sequential and 8 threads) and through
   :class:`FaxClient`, with only the ``api`` service running (no worker competes for the
   CPUs; a submission is stored and its render task queued: the full submission path).
2. Baseline: LPUSH of a 1 KB JSON, sequential and 8 threads.
3. Latency from ``created_at`` to the ``dialing`` transition on the full two-site fleet at
   a steady rate below capacity, broken down by stage; baseline: LPUSH->BRPOP round trip.

Each measured interval also reports where the CPU went (the processes started here, the
benchmark itself, interrupts, other processes, steal): on a small shared machine that is
what tells a fleet's own cost from a neighbour's test run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from faxfleet import keys
from faxfleet.client import FaxClient
from faxfleet.fleet import Fleet, SiteSpec
from faxfleet.redis_server import RedisServer, free_port

API_KEY = "bench-key"
HEADERS = {"X-API-Key": API_KEY}
THREADS = 8
WARMUP = 20
DOCUMENT = b"faxfleet benchmark\n\nOne page of plain text, rendered to a single fax page.\n"
NUMBERS = ["+33142685300", "+12125550100"]
SITES = [SiteSpec("paris", 4), SiteSpec("newyork", 4)]
SETTLED = {"done", "failed", "cancelled", "outcome_uncertain"}

FLEET_ENV = {
    "FAXFLEET_DEMO": "1",  # a local test fleet: the demo's keys are accepted
    # Fast simulated lines and a scaled clock, as in the tests, but with watchdogs long
    # enough (10 s after scaling) that a slow moment never triggers a re-route, which
    # would add transitions that are not part of the normal path being measured.
    "FAXFLEET_TIME_SCALE": "0.01",
    # Simulated lines: the latency to a line is measured without a modem handshake.
    "FAXFLEET_LINE_KIND": "simulated",
    "FAXFLEET_SIM_DIAL_SECONDS": "0.01",
    "FAXFLEET_SIM_PAGE_SECONDS": "0.05",
    "FAXFLEET_ROUTING_STUCK_AFTER_SECONDS": "1000",
    "FAXFLEET_STUCK_AFTER_SECONDS": "1000",
    "FAXFLEET_API_KEYS": f"bench={API_KEY}",
    "FAXFLEET_API_KEY": API_KEY,
}


@dataclass(frozen=True)
class Mode:
    name: str
    submissions: int  # N: throughput runs
    latency_faxes: int  # M: latency run
    rate: float  # faxes per second in the latency run
    round_trips: int  # LPUSH->BRPOP samples


QUICK = Mode("quick", submissions=200, latency_faxes=60, rate=10.0, round_trips=500)
DEFAULT = Mode("default", submissions=1000, latency_faxes=300, rate=10.0, round_trips=2000)


# -- statistics -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); the same rule for every figure."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    p50: float
    p90: float
    p99: float
    max: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(
            percentile(values, 50),
            percentile(values, 90),
            percentile(values, 99),
            max(values) if values else math.nan,
            len(values),
        )


@dataclass(frozen=True)
class Throughput:
    label: str
    count: int
    seconds: float
    threads: int
    cpu: CpuUse
    runs: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds


# -- machine --------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """What the figures were measured on: they mean little without it."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if match:
            memory = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB"
    redis_version = "not found"
    exe = shutil.which("redis-server")
    if exe:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"v=(\S+)", out)
        redis_version = match.group(1) if match else out.strip()
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu,
        "memory": memory,
        "Python": platform.python_version(),
        "redis-server": redis_version,
    }


# -- CPU accounting -------------------------------------------------------------------------------
#
# The machine has few cores and may be shared, so every figure comes with where the CPU
# went while it was measured: a slow window caused by another process (or by the
# hypervisor: steal) then shows as such instead of passing for the fleet's own cost.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_ticks(pid: int) -> int:
    """User + system ticks of one process (all its threads); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _descendants(pid: int) -> list[int]:
    """The process and its live descendants (a prefork worker's pool children count)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
    return found


def _tree_ticks(pids: list[int]) -> int:
    return sum(_proc_ticks(p) for root in pids for p in _descendants(root))


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, steal, interrupts) ticks of the whole machine since boot, from /proc/stat.

    Interrupt time (loopback networking runs largely in softirq) is charged to no
    process, so it is kept apart instead of passing for another process's work.
    """
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal, steal, irq + softirq


@dataclass(frozen=True)
class CpuUse:
    """Cores used on average over a measured interval (1.0 = one core fully busy)."""

    groups: dict[str, float]
    busy: float
    steal: float
    interrupts: float

    @property
    def others(self) -> float:
        """Busy time no process of this benchmark accounts for (another user's job)."""
        accounted = self.steal + self.interrupts + sum(self.groups.values())
        return max(0.0, self.busy - accounted)


class CpuWatch:
    """CPU used by named groups of processes (with descendants), by this benchmark's own
    process (without them: the fleet and Redis are its children) and by the machine."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.pids = groups
        self._start: tuple[float, dict[str, int], tuple[int, int, int]] | None = None

    def _snapshot(self) -> tuple[float, dict[str, int], tuple[int, int, int]]:
        ticks = {name: _tree_ticks(pids) for name, pids in self.pids.items()}
        ticks["bench"] = _proc_ticks(os.getpid())
        return time.perf_counter(), ticks, _machine_ticks()

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> CpuUse:
        assert self._start is not None, "start() first"
        t0, own0, machine0 = self._start
        t1, own1, machine1 = self._snapshot()
        per_second = CLOCK_TICKS * (t1 - t0)
        busy, steal, interrupts = (
            (b - a) / per_second for a, b in zip(machine0, machine1, strict=True)
        )
        return CpuUse(
            groups={name: (own1[name] - own0[name]) / per_second for name in own1},
            busy=busy,
            steal=steal,
            interrupts=interrupts,
        )


def background_load(seconds: float = 1.0) -> CpuUse:
    """What the rest of the machine uses before anything starts (others' tests, say)."""
    watch = CpuWatch({})
    watch.start()
    time.sleep(seconds)
    return watch.stop()


def wait_for_quiet(max_wait: float, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` cores
    for a second: on a shared machine, a neighbour's test run otherwise lands in the
    figures. Returns the load seen last."""
    deadline = time.monotonic() + max_wait
    while True:
        others = background_load().others
        if others < threshold or time.monotonic() >= deadline:
            return others
        time.sleep(2)


# -- running things in threads ----------------------------------------------------------------

Worker = Callable[[int], None]
"""One operation, given its sequence number."""

WorkerFactory = Callable[[], contextlib.AbstractContextManager[Worker]]
"""Opens one client's connection and yields its operation (one per thread)."""

Quiet = Callable[[], object]
"""Called before each measured run: waits for the machine to be idle, or does nothing."""


def timed_run(factory: WorkerFactory, total: int, threads: int) -> float:
    """Run ``total`` operations split over ``threads`` clients; return wall seconds.

    Every thread opens its client before a shared barrier, so connection setup is not
    counted, and the clock runs from the barrier to the last thread's end.
    """
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def body(first: int) -> None:
        try:
            with factory() as work:
                barrier.wait()
                for i in range(first, total, threads):
                    work(i)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def measure(
    label: str,
    factory: WorkerFactory,
    total: int,
    threads: int,
    watch: CpuWatch,
    quiet: Quiet,
    min_seconds: float = 0.0,
) -> Throughput:
    """Warm up, then time runs of ``total`` operations until ``min_seconds`` are measured
    (one run at least), and keep the median run.

    A raw Redis run of N operations lasts milliseconds: one scheduler hiccup swings it by
    a large factor, and CPU time comes in 10 ms ticks. Repeated for a second, it gives a
    stable median, and a CPU figure (over all runs) that means something.
    """
    timed_run(factory, min(WARMUP, total), threads)  # connections, imports, caches
    quiet()
    runs: list[float] = []
    watch.start()
    while not runs or sum(runs) < min_seconds:
        runs.append(timed_run(factory, total, threads))
    use = watch.stop()
    runs.sort()
    return Throughput(label, total, runs[len(runs) // 2], threads, use, len(runs))


# -- submissions ------------------------------------------------------------------------------


def submit(http: httpx.Client, i: int, **fields: str) -> str:
    """One multipart submission of the one-page document; returns the fax id."""
    response = http.post(
        "/v1/faxes",
        headers=HEADERS,
        files=[("documents", ("bench.txt", DOCUMENT, "text/plain"))],
        data={"to": NUMBERS[i % len(NUMBERS)], "priority": "5", **fields},
    )
    if response.status_code != 201:
        raise RuntimeError(f"submission {i}: HTTP {response.status_code}: {response.text[:300]}")
    return str(response.json()["id"])


def http_submitter(api_url: str) -> WorkerFactory:
    @contextlib.contextmanager
    def factory() -> Iterator[Worker]:
        with httpx.Client(base_url=api_url, timeout=30) as http:

            def work(i: int) -> None:
                submit(http, i)

            yield work

    return factory


def client_submitter(api_url: str) -> WorkerFactory:
    """FaxClient sends the ``fax`` JSON field with an idempotency key (one more WATCH)."""

    @contextlib.contextmanager
    def factory() -> Iterator[Worker]:
        with FaxClient([api_url], api_key=API_KEY) as client:

            def work(i: int) -> None:
                client.send([DOCUMENT], NUMBERS[i % len(NUMBERS)])

            yield work

    return factory


def lpush_pusher(url: str, key: str) -> WorkerFactory:
    """A 1 KB JSON, about the size of a stored fax record plus its render order."""
    payload = json.dumps({"id": "fx_0000000000000000", "padding": "x" * 980}).encode()

    @contextlib.contextmanager
    def factory() -> Iterator[Worker]:
        client = redis.Redis.from_url(url)

        def work(_: int) -> None:
            client.lpush(key, payload)

        try:
            yield work
        finally:
            client.close()

    return factory


# -- fleet ------------------------------------------------------------------------------------


def fleet_env(redis_url: str, api_port: int) -> dict[str, str]:
    return {
        **FLEET_ENV,
        "FAXFLEET_REDIS_URL": redis_url,
        "FAXFLEET_API_URLS": f"http://127.0.0.1:{api_port}",
    }


def wait_api(fleet: Fleet, timeout: float = 60.0) -> None:
    """``Fleet.wait_ready`` also waits for sites to publish, which an API alone never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fleet.processes["api"].poll() is not None:
            raise RuntimeError(f"api exited; see {fleet.log_dir / 'api.log'}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{fleet.api_url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"api not ready after {timeout} s; see {fleet.log_dir}")


@contextlib.contextmanager
def running_fleet(redis_url: str, log_dir: Path, only: set[str] | None = None) -> Iterator[Fleet]:
    """A fleet that is stopped whatever happens inside the block."""
    port = free_port()
    fleet = Fleet(SITES, fleet_env(redis_url, port), log_dir, api_port=port)
    try:
        fleet.start(only=only)
        if only is None:
            fleet.wait_ready()
        else:
            wait_api(fleet)
        yield fleet
    finally:
        fleet.stop()


# -- part 1 + 2: throughput ---------------------------------------------------------------------

BASELINE_SECONDS = 1.0


def redis_pid(server: RedisServer) -> int:
    assert server.process is not None, "redis-server is not running"
    return server.process.pid


def register_home_sites(redis_url: str) -> None:
    """The API accepts a home site only once its event worker has registered it. No event
    worker runs in the API-only part, so register the sites as theirs would; submissions
    then take the same path as on a full fleet."""
    redis.Redis.from_url(redis_url).sadd(keys.HOME_SITES, *(s.name for s in SITES))


def throughput_part(
    server: RedisServer, log_dir: Path, n: int, quiet: Quiet
) -> list[tuple[Throughput, Throughput]]:
    """API figures, each paired with the LPUSH figure at the same concurrency."""
    register_home_sites(server.url)
    with running_fleet(server.url, log_dir / "api-only", only={"api"}) as fleet:
        watch = CpuWatch(
            {
                "api": [fleet.processes["api"].pid],
                "redis": [redis_pid(server)],
            }
        )
        http = http_submitter(fleet.api_url)
        api_seq = measure("HTTP API (httpx), sequential", http, n, 1, watch, quiet)
        api_par = measure(f"HTTP API (httpx), {THREADS} threads", http, n, THREADS, watch, quiet)
        client = client_submitter(fleet.api_url)
        client_seq = measure("FaxClient.send, sequential", client, n, 1, watch, quiet)
    key = "bench:lpush"
    push = lpush_pusher(server.url, key)
    watch = CpuWatch({"redis": [redis_pid(server)]})
    push_seq = measure("LPUSH 1 KB JSON, sequential", push, n, 1, watch, quiet, BASELINE_SECONDS)
    push_par = measure(
        f"LPUSH 1 KB JSON, {THREADS} threads", push, n, THREADS, watch, quiet, BASELINE_SECONDS
    )
    redis.Redis.from_url(server.url).delete(key)
    return [(api_seq, push_seq), (api_par, push_par), (client_seq, push_seq)]


# -- part 3: latency ------------------------------------------------------------------------------

STAGES = [
    ("created -> dialing (total)", "created", "dialing"),
    ("created -> routing (render)", "created", "routing"),
    ("routing -> queued (events + router)", "routing", "queued"),
    ("queued -> dialing (site queue + worker)", "queued", "dialing"),
]


def submit_steadily(api_url: str, count: int, rate: float) -> tuple[list[str], float]:
    """Open-loop submissions on a fixed schedule; returns ids and the achieved rate.

    Home sites alternate so both sites' event workers carry load, as in a real fleet.
    """
    ids: list[str] = []
    homes = [s.name for s in SITES]
    with httpx.Client(base_url=api_url, timeout=30) as http:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ids.append(submit(http, i, home_site=homes[i % len(homes)]))
        elapsed = time.perf_counter() - start
    return ids, count / elapsed if elapsed else math.nan


def wait_settled(api_url: str, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll (only after the last submission, so polling does not load the run) until
    every fax is settled; returns each fax with its history."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=api_url, timeout=30, headers=HEADERS) as http:
        while True:
            for fax_id in [i for i in ids if i not in found]:
                fax = http.get(f"/v1/faxes/{fax_id}").raise_for_status().json()
                if fax["state"] in SETTLED:
                    found[fax_id] = fax
            if len(found) == len(ids) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def stage_times(fax: dict[str, Any]) -> dict[str, datetime]:
    """First time recipient 0 entered each state, plus ``created``."""
    times = {"created": datetime.fromisoformat(fax["created_at"])}
    for t in fax["history"]:
        if t["recipient"] == 0 and t["to_state"] not in times:
            times[t["to_state"]] = datetime.fromisoformat(t["at"])
    return times


@dataclass(frozen=True)
class LatencyResult:
    submitted: int
    settled: int
    done: int
    achieved_rate: float
    stages: dict[str, Spread]
    missing_dialing: int
    cpu: CpuUse
    slow: list[tuple[float, float]]
    """(seconds into the run, created -> dialing ms) of the slowest faxes, in run order."""


def summarise(
    ids: list[str], faxes: dict[str, dict[str, Any]], achieved: float, rate: float, cpu: CpuUse
) -> LatencyResult:
    per_stage: dict[str, list[float]] = {label: [] for label, _, _ in STAGES}
    missing = 0
    totals: list[tuple[float, float]] = []
    for i, fax_id in enumerate(ids):
        if fax_id not in faxes:
            continue
        times = stage_times(faxes[fax_id])
        if "dialing" not in times:
            missing += 1
        for label, a, b in STAGES:
            if a in times and b in times:
                per_stage[label].append((times[b] - times[a]).total_seconds() * 1000)
        if "dialing" in times:
            totals.append((i / rate, (times["dialing"] - times["created"]).total_seconds() * 1000))
    slowest = sorted(totals, key=lambda t: t[1])[-5:]
    return LatencyResult(
        submitted=len(ids),
        settled=len(faxes),
        done=sum(1 for f in faxes.values() if f["state"] == "done"),
        achieved_rate=achieved,
        stages={label: Spread.of(v) for label, v in per_stage.items()},
        missing_dialing=missing,
        cpu=cpu,
        slow=sorted(slowest),
    )


def latency_part(
    server: RedisServer, log_dir: Path, mode: Mode, quiet: Quiet
) -> tuple[LatencyResult, Spread, CpuUse]:
    with running_fleet(server.url, log_dir / "fleet") as fleet:
        time.sleep(2)  # let every worker finish starting before the clock matters
        watch = CpuWatch(
            {
                "fleet": [p.pid for p in fleet.processes.values()],
                "redis": [redis_pid(server)],
            }
        )
        quiet()
        watch.start()
        ids, achieved = submit_steadily(fleet.api_url, mode.latency_faxes, mode.rate)
        cpu = watch.stop()
        faxes = wait_settled(fleet.api_url, ids, timeout=60 + mode.latency_faxes / mode.rate)
        # Baseline with the fleet up but idle: same Redis, same background pollers.
        quiet()
        watch.start()
        round_trip = brpop_round_trips(server.url, mode.round_trips)
        rtt_cpu = watch.stop()
    return summarise(ids, faxes, achieved, mode.rate, cpu), round_trip, rtt_cpu


def brpop_round_trips(redis_url: str, count: int) -> Spread:
    """LPUSH by one thread -> BRPOP by another, one message in flight at a time (ms).

    One at a time so the figure is pure hand-over latency, never time spent queued.
    """
    key = "bench:rtt"
    samples: list[float] = []
    received = threading.Event()

    def consume() -> None:
        client = redis.Redis.from_url(redis_url)
        for _ in range(count):
            item = client.brpop([key], timeout=10)
            if item is None:
                break
            samples.append((time.perf_counter_ns() - int(item[1])) / 1e6)
            received.set()
        client.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    producer = redis.Redis.from_url(redis_url)
    time.sleep(0.1)  # the consumer is blocked in BRPOP before the first push
    for _ in range(count):
        received.clear()
        producer.lpush(key, str(time.perf_counter_ns()))
        if not received.wait(10):
            break
    consumer.join()
    producer.close()
    return Spread.of(samples)


# -- report -------------------------------------------------------------------------------------


def print_machine(info: dict[str, str], mode: Mode, log_dir: Path) -> None:
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"faxfleet submission benchmark, mode {mode.name}, {stamp}")
    for key, value in info.items():
        print(f"  {key:<14}{value}")
    print(f"  {'logs':<14}{log_dir}")
    idle = background_load()
    print(
        f"  {'before start':<14}other processes use {idle.others:.2f} cores, steal {idle.steal:.2f}"
    )
    if idle.others > 0.2:
        print("  WARNING: the machine is not idle; figures below share the CPUs with it")
    print()


def cpu_text(use: CpuUse) -> str:
    """Cores used, by group, then the rest of the machine (others, hypervisor steal)."""
    parts = [f"{name} {cores:.2f}" for name, cores in use.groups.items()]
    parts += [f"irq {use.interrupts:.2f}", f"others {use.others:.2f}", f"steal {use.steal:.2f}"]
    return ", ".join(parts)


def print_throughput(pairs: list[tuple[Throughput, Throughput]]) -> None:
    print("1+2. Submissions per second, only the `api` service running (no workers competing")
    print("     for the CPUs); each submission is validated, stored and its render task queued,")
    print("     i.e. the full submission path. Baseline: raw redis-py LPUSH of a 1 KB JSON")
    print(f"     (median of N-op runs repeated for {BASELINE_SECONDS:g} s).")
    print("     ratio = API rate / LPUSH rate at the same concurrency.")
    print(f"  {'':<32}{'N':>6}{'seconds':>9}{'per s':>9}", end="")
    print(f"   {'baseline':<28}{'per s':>9}{'ratio':>8}")
    for api, base in pairs:
        print(
            f"  {api.label:<32}{api.count:>6}{api.seconds:>9.2f}{api.rate:>9.1f}"
            f"   {base.label:<28}{base.rate:>9.0f}{api.rate / base.rate:>8.4f}"
        )
    print("  CPU during each run (cores; 1.00 = one core busy):")
    seen: set[str] = set()
    for run in [p for pair in pairs for p in pair]:
        if run.label not in seen:
            seen.add(run.label)
            runs = f" ({run.runs} runs)" if run.runs > 1 else ""
            print(f"  {run.label + runs:<42}{cpu_text(run.cpu)}")
    print()


def fmt(ms: float) -> str:
    return f"{ms:>9.1f}"


def print_latency(result: LatencyResult, round_trip: Spread, rtt_cpu: CpuUse, mode: Mode) -> None:
    lines = ", ".join(f"{s.name} {s.lines} lines" for s in SITES)
    print(f"3. Latency submit -> on a line: full fleet ({lines}), {result.submitted} one-page")
    print(
        f"   faxes at {mode.rate:g}/s (achieved {result.achieved_rate:.1f}/s); settled "
        f"{result.settled}, done {result.done}; times from the fax's history (ms)"
    )
    print(f"  {'':<42}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>6}")
    for label, spread in result.stages.items():
        print(
            f"  {label:<42}{fmt(spread.p50)}{fmt(spread.p90)}{fmt(spread.p99)}"
            f"{fmt(spread.max)}{spread.count:>6}"
        )
    rt = round_trip
    print(
        f"  {'baseline: LPUSH -> BRPOP, 2 threads':<42}{rt.p50:>9.3f}{rt.p90:>9.3f}"
        f"{rt.p99:>9.3f}{rt.max:>9.3f}{rt.count:>6}"
    )
    total = result.stages[STAGES[0][0]]
    print(
        f"  ratio created->dialing / LPUSH->BRPOP: p50 {total.p50 / rt.p50:,.0f}x, "
        f"p99 {total.p99 / rt.p99:,.0f}x"
    )
    slow = ", ".join(f"{ms:.0f} ms at {at:.1f} s" for at, ms in result.slow)
    print(f"  slowest faxes (created->dialing, submitted at): {slow}")
    print(f"  CPU while submitting (cores): {cpu_text(result.cpu)}")
    print(f"  CPU during the LPUSH->BRPOP baseline (cores): {cpu_text(rtt_cpu)}")
    if result.missing_dialing:
        print(f"  note: {result.missing_dialing} faxes have no `dialing` transition")
    print()


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=200, M=60 (under a minute)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measured run, wait up to SECONDS for other processes to go quiet",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else DEFAULT

    def quiet() -> None:
        if args.wait_idle > 0:
            wait_for_quiet(args.wait_idle)

    # SIGTERM becomes SystemExit so the finally blocks below stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log_dir = Path(tempfile.mkdtemp(prefix="faxfleet-bench-"))
    began = time.monotonic()
    print_machine(machine_info(), mode, log_dir)
    server = RedisServer(log_dir / "redis")
    try:
        server.start()
        print_throughput(throughput_part(server, log_dir, mode.submissions, quiet))
        # The API-only run left render orders queued: a clean Redis for the full fleet.
        redis.Redis.from_url(server.url).flushall()
        result, round_trip, rtt_cpu = latency_part(server, log_dir, mode, quiet)
        print_latency(result, round_trip, rtt_cpu, mode)
    finally:
        server.stop()
    print(f"total {time.monotonic() - began:.0f} s; logs kept in {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
