"""Fax metrics for Prometheus: what the fleet holds, read from Redis at scrape time, and
what each process did, counted where it happens (docs/metrics.md lists every metric).

Two kinds of metric, and where each is served:

* **Fleet-wide gauges** (faxes by state, faxes waiting for a line by priority, each
  site's lines and the faxes it holds) are read from Redis by :class:`FleetCollector`
  when the API's ``/metrics`` is scraped, so one scrape of any API node tells the whole
  truth. Every read is a counter or a bounded set (a sorted set's count, one hash, the
  sites' status keys): a scrape costs a few round trips however many faxes are stored.
* **Per-process counters and histograms** (pages sent, calls by cause, render time,
  dispatch decisions, cost, events, notifications) are counted by the process that does
  the work and served by that process on ``FAXFLEET_METRICS_PORT`` (:func:`serve`).

A worker with a metrics port counts in files (Prometheus's multiprocess mode, a private
directory per process start) so that what the children of a prefork pool count (the
renderer's) is served by their parent; this module sets that up when it is imported,
before it defines its metrics (every service imports it through ``faxfleet.runtime``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _count_in_files() -> None:
    """A worker serving metrics (``FAXFLEET_METRICS_PORT`` set) counts in a directory of
    its own, shared with the processes it forks; removed when it exits."""
    port = os.environ.get("FAXFLEET_METRICS_PORT", "").strip()
    if port in ("", "0") or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    path = tempfile.mkdtemp(prefix="faxfleet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Imported already, in memory (the celery command loads Flower's plugin, which
        # imports it): metrics made from now on count in files.
        values.ValueClass = values.MultiProcessValue()
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not from a forked child
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


_count_in_files()

import redis  # noqa: E402
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST  # noqa: E402

from faxfleet import celery_app, keys  # noqa: E402
from faxfleet.log import get_logger  # noqa: E402
from faxfleet.messages import (  # noqa: E402
    PRIORITY_MAX,
    PRIORITY_MIN,
    TERMINAL_STATES,
    DispatchSummary,
    JobState,
    SiteStatus,
)

log = get_logger("faxfleet.metrics")

disable_created_metrics()  # no ``_created`` series beside every counter: noise to read

CONTENT_TYPE = CONTENT_TYPE_LATEST

# -- per process: counted where the work is done -----------------------------------------

PAGES_SENT = Counter(
    "faxfleet_pages_sent",
    "Pages the far end confirmed, by sending site and line (site worker).",
    ["site", "line"],
)
CALLS = Counter(
    "faxfleet_calls",
    "Attempts a site ended, by cause: 'ok' for a fax sent whole, else the cause of "
    "docs/causes (busy, no_answer, ...); attempts refused before a line count too.",
    ["site", "cause"],
)
CALL_SECONDS = Histogram(
    "faxfleet_call_seconds",
    "Time an attempt held a line, from taking it to hanging up (site worker).",
    ["site"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
)
FAXES_RECEIVED = Counter(
    "faxfleet_faxes_received",
    "Faxes the site's lines received, 'ok' false for one that arrived incomplete.",
    ["site", "ok"],
)
RENDER_SECONDS = Histogram(
    "faxfleet_render_seconds",
    "Time to render a fax (documents to fax pages, cover included), by outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RENDERED_PAGES = Counter(
    "faxfleet_rendered_pages",
    "Fax pages rendered, by resolution (renderer).",
    ["resolution"],
)
DISPATCH_DECISIONS = Counter(
    "faxfleet_dispatch_decisions",
    "Faxes the dispatcher handed to a site, by why that site (cheapest, overflow, band, "
    "exchanged, earliest), and those it could not place (no_site, no_route; site 'none').",
    ["site", "reason"],
)
DISPATCH_COST = Counter(
    "faxfleet_dispatch_cost",
    "Cost of the calls handed to each site as its cost table prices them (pages at the "
    "expected seconds per page plus set-up, at the time of hand-out), in the table's "
    "currency.",
    ["site", "currency"],
)
CALL_COST = Counter(
    "faxfleet_call_cost",
    "What the calls cost, as recorded per call (docs/accounting.md): the tariff the call "
    "was placed under applied to its real length, by sending site, in the table's currency "
    "(event worker, when it stores the call's result).",
    ["site", "currency"],
)
ACCT_BACKLOG = Gauge(
    "faxfleet_acct_backlog",
    "Call records in the Redis journal not yet copied to PostgreSQL (as the timer loop's "
    "copier last saw it); grows while PostgreSQL is down.",
)
ACCT_COPIED = Counter(
    "faxfleet_acct_copied",
    "Call records this timer loop copied from the journal to PostgreSQL.",
)
ROUTE_ORDERS = Counter(
    "faxfleet_route_orders",
    "Routing orders the router took: 'added' to the waiting set, 'revised' (an altered "
    "fax's new priority), or a 'duplicate' of one already waiting or started.",
    ["result"],
)
EVENTS = Counter(
    "faxfleet_events",
    "Lifecycle events the home site's event workers applied, by kind.",
    ["site", "kind"],
)
NOTIFICATIONS = Counter(
    "faxfleet_notifications",
    "Result notifications by channel (email, webhook) and outcome (delivered, retry, abandoned).",
    ["channel", "outcome"],
)
TIMER_ENTRIES = Counter(
    "faxfleet_timer_entries",
    "Due entries the timer loop acted on: 'route' (a retry or send-after starts), "
    "'watch' (a recipient with no progress in time), 'outbox' (a notification queued "
    "again).",
    ["kind"],
)

# -- fleet-wide: read from Redis at scrape time ------------------------------------------

SITE_FORGET_SECONDS = 86400.0
"""A site silent for this long is no longer listed (as down) at all."""

PRIORITIES = range(PRIORITY_MIN, PRIORITY_MAX + 1)
LINE_STATES = ("idle", "busy", "out_of_service")

FLEET_METRICS: dict[str, str] = {
    "faxfleet_up": "1 when Redis answered this scrape (every other fleet gauge needs it).",
    "faxfleet_faxes": "Faxes in each state, fleet-wide (settled ones while they are kept).",
    "faxfleet_faxes_oldest_seconds": "How long the fax longest in each unsettled state "
    "has been in it.",
    "faxfleet_faxes_entered": "Times a fax entered each state, fleet-wide.",
    "faxfleet_waiting": "Faxes (recipients) waiting for a line, by priority.",
    "faxfleet_waiting_oldest_seconds": "How long the oldest fax of each priority has "
    "waited for a line.",
    "faxfleet_waiting_overdue": "Waiting faxes past their priority's promise (dispatcher).",
    "faxfleet_site_up": "1 while the site publishes its state, 0 once it went silent.",
    "faxfleet_site_lines": "A site's lines by state (idle, busy, out_of_service).",
    "faxfleet_site_inflight": "Faxes handed to a site and not yet ended (reserved or on a "
    "line), by priority.",
    "faxfleet_render_queue": "Faxes waiting for a renderer.",
}
"""Every family :class:`FleetCollector` yields, with its help text."""


class FleetCollector:
    """The fleet's state as Prometheus gauges, read from Redis on each collection.

    ``client`` gives the Redis client (called on each scrape); ``retention`` is how long
    settled faxes are kept (the per-state sets of settled faxes count that long)."""

    def __init__(self, client: Callable[[], redis.Redis], retention: float) -> None:
        self.client = client
        self.retention = retention

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand only: registering reads nothing

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("faxfleet_up", FLEET_METRICS["faxfleet_up"])
        try:
            families = self._read(self.client())
        except redis.RedisError as exc:
            log.warning("metrics: cannot read the fleet's state", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, r: redis.Redis) -> list[Metric]:
        at = time.time()
        states = list(JobState)
        unsettled = [s for s in states if s not in TERMINAL_STATES]
        with r.pipeline(transaction=False) as pipe:
            for state in states:
                since = at - self.retention if state in TERMINAL_STATES else "-inf"
                pipe.zcount(keys.fax_state(state), since, "+inf")
            for state in unsettled:
                pipe.zrange(keys.fax_state(state), 0, 0, withscores=True)
            pipe.hgetall(keys.FAX_STATES_ENTERED)
            for priority in PRIORITIES:
                low, high = keys.waiting_band(priority)
                pipe.zcount(keys.WAITING, low, f"({high}")
                pipe.zrangebyscore(keys.WAITING, low, f"({high}", start=0, num=1, withscores=True)
            pipe.get(keys.DISPATCH_SUMMARY)
            pipe.zrangebyscore(keys.SITES_SEEN, at - SITE_FORGET_SECONDS, "+inf")
            replies = pipe.execute()
        counts = replies[: len(states)]
        replies = replies[len(states) :]
        oldest = replies[: len(unsettled)]
        replies = replies[len(unsettled) :]
        entered_raw = replies.pop(0)
        waiting = replies[: 2 * len(PRIORITIES)]
        summary_raw, seen = replies[2 * len(PRIORITIES) :]

        faxes = _gauge("faxfleet_faxes", ["state"])
        for state, count in zip(states, counts, strict=True):
            faxes.add_metric([state.value], count)
        age = _gauge("faxfleet_faxes_oldest_seconds", ["state"])
        for state, first in zip(unsettled, oldest, strict=True):
            age.add_metric([state.value], at - first[0][1] if first else 0.0)
        entered = CounterMetricFamily(
            "faxfleet_faxes_entered", FLEET_METRICS["faxfleet_faxes_entered"], labels=["state"]
        )
        entered_counts = {k.decode(): int(v) for k, v in entered_raw.items()}
        for state in states:
            entered.add_metric([state.value], entered_counts.get(state.value, 0))

        depth = _gauge("faxfleet_waiting", ["priority"])
        wait_age = _gauge("faxfleet_waiting_oldest_seconds", ["priority"])
        for i, priority in enumerate(PRIORITIES):
            count, first = waiting[2 * i], waiting[2 * i + 1]
            depth.add_metric([str(priority)], count)
            started = (first[0][1] - keys.waiting_band(priority)[0]) / 1000 if first else at
            wait_age.add_metric([str(priority)], max(0.0, at - started))
        overdue = _gauge("faxfleet_waiting_overdue", [])
        if summary_raw:
            overdue.add_metric([], DispatchSummary.model_validate_json(summary_raw).overdue)

        return [
            faxes,
            age,
            entered,
            depth,
            wait_age,
            overdue,
            *self._sites(r, sorted(s.decode() for s in seen)),
        ]

    def _sites(self, r: redis.Redis, sites: list[str]) -> list[Metric]:
        up = _gauge("faxfleet_site_up", ["site"])
        lines = _gauge("faxfleet_site_lines", ["site", "state"])
        inflight = _gauge("faxfleet_site_inflight", ["site", "priority"])
        render = _gauge("faxfleet_render_queue", [])
        render.add_metric([], celery_app.queue_depth(r, celery_app.RENDER_QUEUE))
        if not sites:
            return [up, lines, inflight, render]
        with r.pipeline(transaction=False) as pipe:
            pipe.mget([keys.site_status(site) for site in sites])
            for site in sites:
                pipe.hvals(keys.site_inflight(site))  # one record per line at most
            statuses, *held = pipe.execute()
        for site, raw, records in zip(sites, statuses, held, strict=True):
            status = SiteStatus.model_validate_json(raw) if raw else None
            up.add_metric([site], 1 if status else 0)
            by_state = dict.fromkeys(LINE_STATES, 0)
            for line in status.lines if status else []:
                by_state[line.state] += 1
            for state, count in by_state.items():
                lines.add_metric([site, state], count)
            by_priority = dict.fromkeys(PRIORITIES, 0)
            for record in records:
                priority = _priority_of(record)
                if priority in by_priority:
                    by_priority[priority] += 1
            for priority, count in by_priority.items():
                inflight.add_metric([site, str(priority)], count)
        return [up, lines, inflight, render]


def count_call(record: Any) -> None:
    """A call record just journalled: its real cost (a :class:`~faxfleet.accounting.
    CallRecord`; calls that could not be priced add nothing)."""
    if record.cost is not None and record.currency is not None:
        CALL_COST.labels(record.site, record.currency).inc(float(record.cost))


def _gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, FLEET_METRICS[name], labels=labels)


def _priority_of(record: bytes) -> int | None:
    try:
        return int(json.loads(record)["order"]["priority"])
    except (ValueError, KeyError, TypeError):
        return None


# -- serving ------------------------------------------------------------------------------


def counting_in_files() -> bool:
    """Whether this process counts in files (a worker with a metrics port)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def process_registry() -> Any:
    """What this process counted: its own registry, or every file of its directory (its
    own and its pool children's) when it counts in files."""
    if counting_in_files():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class _Joined:
    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def exposition(fleet: FleetCollector | None = None) -> bytes:
    """The text format of this process's metrics, and of the fleet's with ``fleet``."""
    sources = [process_registry(), *([fleet] if fleet else [])]
    return generate_latest(_Joined(*sources))  # type: ignore[arg-type]


_served: dict[str, int] = {}


def serve(kind: str, port: int, address: str = "127.0.0.1") -> int | None:
    """Serve this process's metrics at ``http://address:port/metrics`` from a daemon
    thread (once per process); the port, or None when there is none or it is taken."""
    if not port:
        return None
    if _served:
        return next(iter(_served.values()))
    try:
        start_http_server(port, address, registry=process_registry())
    except OSError as exc:
        log.warning("metrics not served", kind=kind, port=port, error=str(exc))
        return None
    _served[kind] = port
    log.info("metrics served", kind=kind, address=address, port=port)
    return port
