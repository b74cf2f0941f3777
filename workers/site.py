"""The site worker: one Celery worker per site, one concurrent send per line it owns.

Run: ``celery -A workers.site worker -Q site.<site> -P threads -c <max lines>``. While
it runs it publishes the site's state (lines, what it has seen recently) under
``ff:site:<site>`` with a short expiry, so a site that stops publishing drops out of
routing on its own. It follows the line count an administrator sets
(``faxfleet.keys.site_lines``) without a restart. The dispatcher hands it no more faxes
than it has free lines; when an attempt ends the worker frees its slot and wakes the
dispatcher.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import redis
from celery import signals

from faxfleet import celery_app as names
from faxfleet import keys, metrics
from faxfleet.messages import (
    AttemptProgress,
    AttemptResult,
    Cause,
    EventEnvelope,
    HolderDead,
    SendOrder,
    SiteStatus,
    now,
)
from faxfleet.redis_conn import RedisAccess, connect_url
from faxfleet.runtime import runtime
from faxfleet.settings import get_settings
from workers.inbound import deliver_inbound
from workers.journal import Journal
from workers.leases import Claim, Leases
from workers.lines.answer import Listener, Reception
from workers.lines.base import Call, Line, SendReport
from workers.lines.class1 import Class1ModemLine
from workers.lines.emulated import EmulatedLine
from workers.lines.factory import LineFactory
from workers.lines.pool import LinePool
from workers.lines.simulated import SimulatedNetwork
from workers.lines.stats import LineStats
from workers.render.header import header_text, stamp_header

rt = runtime(f"site-{get_settings().site}")
log, settings, app = rt.log, rt.settings, rt.app
STARTED_AT = int(time.time())
NODE = settings.node_name or socket.gethostname()
WORKER_ID = f"{settings.site}@{NODE}:{os.getpid()}:{STARTED_AT}"
"""Unique per process start: an attempt claim names the process that made the call."""
stats = LineStats()


@lru_cache(maxsize=1)
def leases() -> Leases:
    return Leases(
        rt.redis,
        log,
        site=settings.site,
        worker=WORKER_ID,
        lease_seconds=settings.lease_seconds,
        claim_retention=settings.retention_seconds,
    )


def _redis() -> redis.Redis:
    return rt.redis


@lru_cache(maxsize=1)
def _quick_redis() -> redis.Redis:
    """For what a call asks between pages (the cancel flag): answered in half a second or
    not at all, so a slow or cut link to Redis never holds a call up."""
    return connect_url(
        settings.redis_url,
        access=RedisAccess.of(settings),
        failover_seconds=0.5,
        socket_timeout=0.5,
    )


@lru_cache(maxsize=1)
def _network() -> SimulatedNetwork:
    """The emulated telephone network's far ends keep their records in the fleet's Redis,
    or in ``sim_network_redis_url``: a network of its own, which a test that cuts a site
    off from the fleet leaves reachable (a real line does not need the fleet's Redis)."""
    if settings.sim_network_redis_url:
        url = settings.sim_network_redis_url
        return SimulatedNetwork(connect_url(url, access=RedisAccess.of(settings)))
    return SimulatedNetwork(_redis())


@lru_cache(maxsize=1)
def _factory() -> LineFactory:
    return LineFactory(settings, _network())


def _make_line(index: int) -> Line:
    return _factory().make(index)


_pool_lock = threading.Lock()


def pool() -> LinePool:
    """The site's lines (``line_kind``), built once even when the first calls race."""
    with _pool_lock:
        return _build_pool()


@lru_cache(maxsize=1)
def _build_pool() -> LinePool:
    """Modem lines are probed before the first call and re-probed in the background
    while out of service; answering lines start listening."""
    lines = LinePool(_factory().initial())
    if settings.line_kind == "modem":
        in_service = lines.probe_all()
        log.info("modems probed", site=settings.site, **{k: str(v) for k, v in in_service.items()})
    if settings.line_kind != "simulated":
        lines.start_reprobing(settings.modem_probe_seconds)
    _start_listeners(lines)
    return lines


def _start_listeners(lines: LinePool) -> list[Listener]:
    """Inbound answering on the lines configured to answer (Class 1 modems with
    ``answer``; emulated lines with ``emulator_answer``)."""
    listeners = []
    if settings.line_kind == "modem":
        answering = {m.name: m.did for m in settings.modems if m.answer}
        for line in lines.lines():
            if isinstance(line, Class1ModemLine) and line.name in answering:
                listeners.append(
                    Listener(lines, line, line, _deliver, did=answering[line.name]).start()
                )
    elif settings.line_kind == "emulated" and settings.emulator_answer:
        for line in lines.lines():
            if isinstance(line, EmulatedLine):
                listeners.append(
                    Listener(
                        lines, line, line.modem_line, _deliver, did=settings.emulator_did
                    ).start()
                )
    return listeners


def _deliver(reception: Reception) -> None:
    """A fax one of our lines received: to the scheduler, through the inbound store."""
    fax_id = deliver_inbound(
        _redis(),
        rt,
        site=settings.site,
        line=reception.line,
        called=reception.called,
        remote_id=reception.remote_id,
        pages=reception.pages,
        ok=reception.ok,
        cause=reception.cause,
        detail=reception.detail,
    )
    metrics.FAXES_RECEIVED.labels(settings.site, str(reception.ok).lower()).inc()
    log.info("inbound fax delivered", site=settings.site, line=reception.line, inbound=fax_id)


def follow_line_count() -> None:
    """Apply the line count an administrator set for this site, if any (modem sites
    have the modems they are configured with)."""
    if not _factory().resizable:
        return
    raw = _redis().get(keys.site_lines(settings.site))
    if raw is not None and int(raw) != len(pool()):
        log.info("lines changed", site=settings.site, lines=int(raw))
        pool().resize(int(raw), _make_line)
        _redis().lpush(keys.DISPATCH_WAKE, "lines")


# -- shared load ------------------------------------------------------------------------

_stop_publishing = threading.Event()


def publish_status() -> SiteStatus:
    r = _redis()
    follow_line_count()
    per_page = stats.seconds_per_page()
    status = SiteStatus(
        name=settings.site,
        lines=pool().statuses(),
        waiting=names.queue_depth(r, names.site_queue(settings.site)),
        worker=WORKER_ID,
        updated_at=now(),
        seconds_per_page=per_page,
        pages_per_minute=round(60 / per_page, 2) if per_page else None,
        mean_call_seconds=stats.mean_call_seconds(),
        success=stats.success(),
    )
    with r.pipeline(transaction=False) as pipe:
        pipe.set(
            keys.site_status(settings.site),
            status.model_dump_json(),
            px=int(settings.load_ttl * 1000),
        )
        pipe.zadd(keys.SITES_SEEN, {settings.site: time.time()})
        pipe.execute()
    return status


def _publisher() -> None:
    while not _stop_publishing.is_set():
        try:
            publish_status()
            if journal().pending():
                replay_journal()
            declare_dead_predecessors()
        except Exception as exc:  # Redis or broker away: try again next round
            log.warning("cannot publish site status", site=settings.site, error=str(exc))
        _stop_publishing.wait(settings.load_publish_interval)


@signals.worker_ready.connect
def _start_publishing(**_: Any) -> None:
    lines = pool()  # build (and probe) the lines before the first status goes out
    threading.Thread(target=_publisher, name="site-status", daemon=True).start()
    log.info("site worker ready", site=settings.site, kind=settings.line_kind, lines=len(lines))


@signals.worker_shutting_down.connect
def _stop(**_: Any) -> None:
    """Leave routing at once instead of waiting for the status to expire."""
    _stop_publishing.set()
    with contextlib.suppress(redis.RedisError):
        _redis().delete(keys.site_status(settings.site))


# -- sending ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def journal() -> Journal:
    return Journal(Path(settings.spool_dir) / settings.site / "events.jsonl")


def emit(event: AttemptProgress | AttemptResult, home_site: str) -> None:
    """Send an attempt's event to its home site; while Redis cannot be reached (or
    events kept earlier still wait), keep it in the local journal, in order."""
    if journal().pending() == 0:
        try:
            names.emit(app, event, home_site)
            return
        except Exception as exc:  # kombu/redis connection errors of every kind
            log.error(
                "cannot report: kept in the local journal",
                job=event.job_id,
                site=settings.site,
                error=str(exc),
            )
    journal().append(home_site, event.model_dump(mode="json"))


def replay_journal() -> int:
    """Send what the journal kept (called from the status loop once Redis answers)."""

    def send(home_site: str, raw: dict[str, Any]) -> None:
        event = EventEnvelope.model_validate({"event": raw}).event
        names.emit(app, event, home_site)
        if isinstance(event, AttemptResult):
            _redis().hdel(
                keys.in_doubt(settings.site), f"{event.job_id}:{event.recipient}:{event.attempt}"
            )

    sent = journal().replay(send)
    if sent:
        log.warning("reported what the journal kept", site=settings.site, events=sent)
    return sent


def _predecessor_dead(holder: str) -> bool:
    """Whether ``holder`` (a worker id) is an earlier worker process of this site on
    this host that no longer runs: the proof that its calls ended with it."""
    try:
        name, pid_text, started = holder.rsplit(":", 2)
        pid, start = int(pid_text), int(started)
    except ValueError:
        return False
    if holder == WORKER_ID or name != f"{settings.site}@{NODE}":
        return False
    if start > STARTED_AT:
        return False  # a later process than this one
    if pid == os.getpid():
        return True  # the same pid in a new process: the old one is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def declare_dead_predecessors() -> int:
    """Attempts in doubt at this site whose holder is a dead predecessor: the home site
    hears ``HolderDead`` and sends the fax on. Called from the status loop."""
    r = _redis()
    declared = 0
    for attempt, raw in r.hgetall(keys.in_doubt(settings.site)).items():
        doubt = json.loads(raw)
        holder = str(doubt.get("worker", ""))
        if not _predecessor_dead(holder):
            continue
        o = SendOrder.model_validate(doubt["order"])
        names.emit(
            app,
            HolderDead(
                job_id=o.job_id,
                recipient=o.recipient,
                attempt=o.attempt,
                site=settings.site,
                worker=holder,
                at=now(),
            ),
            o.home_site,
        )
        r.hdel(keys.in_doubt(settings.site), attempt)
        declared += 1
        log.warning(
            "holder of a call in doubt is gone", job=o.job_id, site=settings.site, worker=holder
        )
    return declared


class AttemptReporter:
    """Sends an attempt's events, numbered, to the home site; doubles as the call hooks."""

    def __init__(self, order: SendOrder, line: str | None) -> None:
        self.o = order
        self.line = line
        self.seq = 0
        self.confirmed = order.first_page - 1

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _progress(self, phase: str, page: int | None = None) -> None:
        ev = AttemptProgress(
            job_id=self.o.job_id,
            recipient=self.o.recipient,
            attempt=self.o.attempt,
            seq=self._next(),
            site=settings.site,
            line=self.line or "",
            phase=phase,  # type: ignore[arg-type]
            page=page,
            pages_confirmed=self.confirmed,
            at=now(),
        )
        emit(ev, self.o.home_site)

    def dialing(self) -> None:
        self._progress("dialing")

    # CallHooks
    def connected(self, remote_id: str | None) -> None:
        log.info(
            "connected", job=self.o.job_id, site=settings.site, line=self.line, remote=remote_id
        )

    def page_started(self, page: int) -> None:
        self.confirmed = page - 1
        self._progress("page", page)

    def should_stop(self) -> bool:
        """Hang up when the fax is cancelled. A site cut off from Redis cannot read the
        flag: it finishes the call (nobody else sends an attempt in doubt)."""
        try:
            return bool(_quick_redis().exists(keys.cancel_flag(self.o.job_id)))
        except redis.RedisError:
            return False

    def result(self, report: SendReport, duration: float = 0.0) -> None:
        ev = AttemptResult(
            job_id=self.o.job_id,
            recipient=self.o.recipient,
            attempt=self.o.attempt,
            seq=self._next(),
            site=settings.site,
            line=self.line,
            ok=report.ok,
            pages_confirmed=report.pages_confirmed,
            connected=report.connected,
            cause=report.cause,
            detail=report.detail,
            remote_id=report.remote_id,
            duration_seconds=duration,
            at=now(),
            tariff=self.o.tariff,
        )
        emit(ev, self.o.home_site)
        cause = "ok" if report.ok else report.cause.value if report.cause else "unknown"
        metrics.CALLS.labels(settings.site, cause).inc()
        log.info(
            "attempt ended",
            job=self.o.job_id,
            recipient=self.o.recipient,
            attempt=self.o.attempt,
            site=settings.site,
            line=self.line,
            ok=report.ok,
            cause=report.cause,
            pages=report.pages_confirmed,
        )


def load_pages(r: redis.Redis, job_id: str, first: int, last: int) -> Sequence[bytes] | None:
    fields = [str(n) for n in range(first, last + 1)]
    if not fields:
        return []
    pages = r.hmget(keys.pages(job_id), fields)
    if any(p is None for p in pages):
        return None
    return [p for p in pages if p is not None]


_stamper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="header")


class StampedPages(Sequence[bytes]):
    """The pages from ``o.first_page`` on, each with the header line of this call.

    Stamping (~25 ms a page) runs in the background from the moment the line is taken, so
    it overlaps dialling and the T.30 handshake (10-30 s on a real line) instead of
    delaying the call; a line that needs a page before it is ready waits for it. A page
    that cannot be stamped is sent as rendered rather than not at all.
    """

    def __init__(self, o: SendOrder, pages: Sequence[bytes]) -> None:
        when = datetime.now().astimezone()
        self._futures = [
            _stamper.submit(self._stamp, o, page, number, when)
            for number, page in enumerate(pages, start=o.first_page)
        ]

    @staticmethod
    def _stamp(o: SendOrder, page: bytes, number: int, when: datetime) -> bytes:
        try:
            return stamp_header(page, header_text(o.sender, when, number, o.pages))
        except (ValueError, OSError) as exc:
            log.warning("no header on page", job=o.job_id, page=number, error=str(exc))
            return page

    def __len__(self) -> int:
        return len(self._futures)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [future.result() for future in self._futures[index]]
        return self._futures[index].result()


def _refuse(o: SendOrder, cause: Cause, detail: str) -> None:
    """End an attempt that never reached a line."""
    AttemptReporter(o, None).result(SendReport(False, o.first_page - 1, False, cause, detail))


@app.task(name=names.SEND_TASK)
def send(order: dict[str, Any]) -> None:
    """Make one attempt: claim it, take a line, dial, send page by page, report.

    The claim (``workers/leases.py``) refuses a stale or repeated copy of the order
    without touching the site's slots; a claimed attempt always reports its result and
    then gives its slot back, whatever happens in between."""
    o = SendOrder.model_validate(order)
    claimed = leases().claim(o)
    if claimed != Claim.OK:
        log.warning(
            "send order refused: "
            + ("attempt already started" if claimed == Claim.STARTED else "stale copy"),
            job=o.job_id,
            recipient=o.recipient,
            attempt=o.attempt,
            site=settings.site,
        )
        return
    try:
        _attempt(o, _redis())
    finally:
        leases().free(o)


def _attempt(o: SendOrder, r: redis.Redis) -> None:
    """One attempt on a line, ending with its result reported."""
    if r.exists(keys.cancel_flag(o.job_id)):
        _refuse(o, Cause.CANCELLED, "cancelled before dialing")
        return
    pages = load_pages(r, o.job_id, o.first_page, o.pages)
    if pages is None or o.pages < 1:
        _refuse(o, Cause.RENDER_ERROR, "rendered pages missing")
        return
    line = pool().acquire(o.job_id, o.recipient)
    if line is None:
        _refuse(o, Cause.LINE_UNAVAILABLE, "no line in service")
        return
    if o.header:
        pages = StampedPages(o, pages)
    reporter = AttemptReporter(o, line.name)
    started = now()
    try:
        reporter.dialing()
        call = Call(
            number=o.number,
            dial_string=o.dial_string or o.number,
            first_page=o.first_page,
            total_pages=o.pages,
            local_id=o.sender,
            job_id=o.job_id,
            recipient=o.recipient,
            attempt=o.attempt,
        )
        try:
            report = line.send(call, pages, reporter)
        except Exception as exc:  # the line itself broke: report, keep the worker alive
            log.exception("line failed", job=o.job_id, site=settings.site, line=line.name)
            report = SendReport(
                False, reporter.confirmed, reporter.seq > 1, Cause.MODEM_ERROR, str(exc)
            )
        duration = (now() - started).total_seconds()
        sent = report.pages_confirmed - (o.first_page - 1)
        stats.record(
            o.number,
            connected=report.connected,
            ok=report.ok,
            pages=sent,
            seconds=duration,
        )
        metrics.PAGES_SENT.labels(settings.site, line.name).inc(max(0, sent))
        metrics.CALL_SECONDS.labels(settings.site).observe(duration)
    finally:
        pool().release(line)
    # The result goes out before the slot is given back: a worker dying in between leaves
    # a lease that expires on an attempt already settled, never a settled slot with an
    # unreported call.
    reporter.result(report, duration)
