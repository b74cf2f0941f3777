"""The timer loop: starts due retries and send-afters, catches stuck recipients, and
queues again notifications whose message was lost (``scheduler/outbox.py``).

Any number of these may run (one per site is usual): each due entry is taken with an
atomic ZREM, so exactly one loop acts on it. Run: ``python -m scheduler.timers``.

Each loop also runs the call journal's copier and trimmer in a thread of its own
(``scheduler/accounting/copier.py``): a slow or unreachable PostgreSQL never delays a
retry or a watchdog.
"""

from __future__ import annotations

import signal
import threading
import time

from faxfleet import heartbeat, metrics
from faxfleet.log import get_logger
from scheduler import outbox, tasks
from scheduler.accounting import copier
from scheduler.store import TIMERS, WATCH

log = get_logger("faxfleet.timers")


def _split(member: str) -> tuple[str, int]:
    job_id, _, index = member.rpartition(":")
    return job_id, int(index)


def tick(limit: int = 200) -> int:
    """Handle everything due now; returns how many entries were taken."""
    store = tasks.store()
    machine = tasks.machine()
    now = time.time()
    taken = 0
    for member in store.due(TIMERS, now, limit):
        if not store.claim(TIMERS, member):
            continue
        taken += 1
        kind, _, rest = member.partition(":")
        if kind != "route":
            log.warning("unknown timer", member=member)
            continue
        metrics.TIMER_ENTRIES.labels("route").inc()
        job_id, index = _split(rest)
        tasks.apply(job_id, lambda d, i=index: machine.on_route_timer(d, i))
    for member in store.due(WATCH, now, limit):
        if not store.claim(WATCH, member):
            continue
        taken += 1
        job_id, index = _split(member)
        metrics.TIMER_ENTRIES.labels("watch").inc()
        log.warning("no progress in time", job=job_id, recipient=index)
        tasks.apply(job_id, lambda d, i=index: machine.on_watch_expired(d, i))
    for member in store.due(outbox.OUTBOX, now, limit):
        if not outbox.take(store.r, member, tasks.settings.notify_redeliver_seconds):
            continue
        taken += 1
        metrics.TIMER_ENTRIES.labels("outbox").inc()
        tasks.redeliver(member)
    return taken


def run(stop: threading.Event, interval: float = 0.1) -> None:
    log.info("timer loop started", site=tasks.settings.site)
    threading.Thread(
        target=copier.run,
        args=(tasks.store().r, tasks.settings, stop),
        name="call-journal",
        daemon=True,
    ).start()
    me = heartbeat.ident()
    while not stop.is_set():
        try:
            heartbeat.beat(tasks.store().r, "timers", me)
            if tick() == 0:
                stop.wait(interval)
        except Exception:  # keep the loop alive through a Redis blip
            log.exception("timer tick failed")
            stop.wait(1.0)


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics.serve("timers", tasks.settings.metrics_port, tasks.settings.metrics_address)
    run(stop)


if __name__ == "__main__":
    main()
