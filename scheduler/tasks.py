"""The scheduler's Celery side: apply lifecycle events, deliver notifications.

Run per home site as two workers::

    celery -A scheduler.tasks worker -Q events.<site> -c 1 -P solo   # ordered events
    celery -A scheduler.tasks worker -Q notify.<site> -c 4 -P threads

Any number of event workers may share a home site's queue (two in the cluster
topology): each change is one optimistic transaction on the fax, and the lifecycle
accepts events in any order (attempt and sequence numbers on a site's reports, the
current state on the dispatcher's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from celery import Task, signals

from faxfleet import celery_app as names
from faxfleet import keys, metrics
from faxfleet.credentials import InsecureConfig, require_deployable
from faxfleet.destinations import FleetPolicy
from faxfleet.messages import (
    SETTLED_STATES,
    AttemptProgress,
    AttemptResult,
    EventEnvelope,
    FaxStatus,
    HolderDead,
    InboundNotifyOrder,
    InboundReceived,
    JobState,
    LeaseLost,
    NotifyOrder,
    RenderDone,
    RenderFailed,
    Requeued,
    Routed,
    Unroutable,
    Withdrawn,
)
from faxfleet.redis_conn import NotReplicated
from faxfleet.runtime import runtime
from scheduler import inbound, lifecycle, notify, outbox
from scheduler.allowance import Allowance
from scheduler.lifecycle import Changed, Effect, Lifecycle, Notify, Render, Route, Withdraw
from scheduler.store import Draft, JobStore, UnknownJob, delivered_key, notified_key

rt = runtime("scheduler")
log, settings, app = rt.log, rt.settings, rt.app


@signals.celeryd_init.connect(weak=False)
def _deployable(**_: Any) -> None:
    """Outside the demo, a scheduler worker (it signs callbacks) does not start on the
    demo's webhook secret: the message names the variable."""
    try:
        require_deployable(settings, "webhook")
    except InsecureConfig as exc:
        raise SystemExit(f"faxfleet scheduler: {exc}") from None


@lru_cache(maxsize=1)
def store() -> JobStore:
    return JobStore(rt.redis, settings.retention_seconds)


@lru_cache(maxsize=1)
def machine() -> Lifecycle:
    return Lifecycle(settings)


def perform(effects: Iterable[Effect], monitor: Task | None = None) -> None:
    """Send the work a stored change asked for."""
    for effect in effects:
        match effect:
            case Route(order):
                names.send(
                    app,
                    names.ROUTE_TASK,
                    "order",
                    order,
                    names.ROUTING_QUEUE,
                    names.celery_priority(order.priority),
                )
            case Render(order):
                names.send(
                    app,
                    names.RENDER_TASK,
                    "order",
                    order,
                    names.RENDER_QUEUE,
                    names.celery_priority(order.priority),
                )
            case Withdraw(withdraw):
                names.send(
                    app,
                    names.WITHDRAW_TASK,
                    "order",
                    withdraw,
                    names.ROUTING_QUEUE,
                    names.EVENT_PRIORITY,
                )
            case Notify(job_id, settled):
                _queue_notifications(job_id, settled)
            case Changed() as c:
                log.info(
                    "state",
                    job=c.job_id,
                    recipient=c.recipient,
                    state=c.state.value,
                    site=c.site,
                    line=c.line,
                )
                if monitor is not None:
                    monitor.send_event(
                        "task-faxfleet-state",
                        job=c.job_id,
                        recipient=c.recipient,
                        state=c.state.value,
                        site=c.site,
                        line=c.line,
                    )


@signals.worker_ready.connect
def _register_home_site(**_: Any) -> None:
    """An event worker makes its site a valid home site, and keeps it one: should Redis
    lose the set (restored from an old copy, failed over before replicating), the site
    is a home site again within seconds instead of refusing every submission."""
    rt.redis.sadd(keys.HOME_SITES, settings.site)
    log.info("scheduler ready", site=settings.site)

    def keep() -> None:
        while True:
            time.sleep(5.0)
            try:
                rt.redis.sadd(keys.HOME_SITES, settings.site)
            except Exception as exc:  # Redis away: try again on the next round
                log.warning("cannot register home site", site=settings.site, error=str(exc))

    threading.Thread(target=keep, name="home-site", daemon=True).start()


def home_sites() -> set[str]:
    return {s.decode() for s in rt.redis.smembers(keys.HOME_SITES)}


def _targets(fax: FaxStatus) -> list[tuple[str, str]]:
    channels = [("email", fax.notify.email), ("webhook", fax.notify.callback_url)]
    return [(channel, target) for channel, target in channels if target]


def _send_notification(fax: FaxStatus, channel: str, target: str) -> None:
    order = NotifyOrder(job_id=fax.id, home_site=fax.home_site, channel=channel, target=target)
    names.send(
        app,
        names.NOTIFY_TASK,
        "order",
        order,
        names.notify_queue(fax.home_site),
        names.EVENT_PRIORITY,
    )


def _queue_notifications(job_id: str, settled: JobState) -> None:
    """Queue each requested notification once per settled state, at the fax's home site.

    Each goes into the outbox (``scheduler/outbox.py``) before its message is sent, and
    before the once-only mark is set: a process dying anywhere in here leaves either the
    event to be applied again or an outbox entry that queues it again."""
    fax = store().get(job_id)
    targets = _targets(fax)
    for channel, _ in targets:
        outbox.watch(
            store().r,
            outbox.entry(job_id, settled, channel),
            settings.notify_redeliver_seconds,
            only_new=True,
        )
    key = notified_key(job_id, settled)
    if not store().r.set(key, "1", nx=True, ex=settings.retention_seconds):
        return
    for channel, target in targets:
        _send_notification(fax, channel, target)


def redeliver(member: str) -> None:
    """An outbox entry fell due: queue its notification again unless it is moot."""
    job_id, settled, channel = outbox.parse(member)
    r = store().r
    if r.get(delivered_key(job_id, settled, channel)) == b"sent":
        return outbox.settle(r, member)
    try:
        fax = store().get(job_id)
    except UnknownJob:
        return outbox.settle(r, member)
    target = dict(_targets(fax)).get(channel)
    if fax.state != settled or target is None:  # moved on: the new state has its own entry
        return outbox.settle(r, member)
    times = outbox.requeued(r, member)
    if times > settings.notify_max_attempts:
        outbox.settle(r, member)
        reason = f"{channel} notification to {target} lost {times - 1} times; given up"
        log.error("notification given up", job=job_id, channel=channel, error=reason)
        store().update(job_id, lambda d: d.note(reason, site=settings.site))
        return
    log.warning(
        "notification not delivered in time, queued again",
        job=job_id,
        channel=channel,
        state=settled.value,
        times=times,
    )
    outbox.watch(r, member, settings.notify_redeliver_seconds * 2**times)
    _send_notification(fax, channel, target)


def apply(
    job_id: str, change: Callable[[Draft], list[Effect]], monitor: Task | None = None
) -> None:
    """Apply a lifecycle change to a stored fax, then perform its effects. Notifications
    the change asks for go into the outbox in the same transaction as the change."""

    def change_and_watch(draft: Draft) -> list[Effect]:
        effects = change(draft)
        due = time.time() + settings.notify_redeliver_seconds
        for effect in effects:
            if isinstance(effect, Notify):
                for channel, _ in _targets(draft.status):
                    draft.outbox[outbox.entry(effect.job_id, effect.state, channel)] = due
        return effects

    try:
        _, effects = store().update(job_id, change_and_watch)
    except UnknownJob:
        log.warning("event for unknown job", job=job_id)
        return
    perform(effects, monitor)


@app.task(name=names.EVENT_TASK, bind=True)
def event(self: Task, envelope: dict[str, Any]) -> None:
    """Apply one lifecycle event from a renderer, the router or a site worker."""
    ev = EventEnvelope.model_validate(envelope).event
    if isinstance(ev, InboundReceived):
        return file_inbound(ev)
    m = machine()
    handler: Callable[[Draft], list[Effect]]
    match ev:
        case RenderDone():
            over_quota = _charge_rendered(ev)
            handler = lambda d: m.on_render_done(d, ev, over_quota)  # noqa: E731
        case RenderFailed():
            handler = lambda d: m.on_render_failed(d, ev)  # noqa: E731
        case Routed():
            handler = lambda d: m.on_routed(d, ev)  # noqa: E731
        case Requeued():
            handler = lambda d: m.on_requeued(d, ev)  # noqa: E731
        case LeaseLost():
            handler = lambda d: m.on_lease_lost(d, ev)  # noqa: E731
        case HolderDead():
            handler = lambda d: m.on_holder_dead(d, ev)  # noqa: E731
        case Unroutable():
            handler = lambda d: m.on_unroutable(d, ev)  # noqa: E731
        case Withdrawn():
            handler = lambda d: m.on_withdrawn(d, ev)  # noqa: E731
        case AttemptProgress():
            handler = lambda d: m.on_progress(d, ev)  # noqa: E731
        case AttemptResult():
            handler = lambda d: m.on_result(d, ev)  # noqa: E731
    apply(ev.job_id, handler, self)
    try:
        store().confirm()
    except NotReplicated as exc:
        # Acknowledged only once a replica holds the change: a failover must not undo a
        # result. Applied again, the event changes nothing if the change survived.
        raise self.retry(exc=exc, countdown=0.5, max_retries=60) from exc
    metrics.EVENTS.labels(settings.site, ev.kind).inc()


@lru_cache(maxsize=1)
def allowance() -> Allowance:
    return Allowance(rt.redis, FleetPolicy.from_settings(settings), settings.retention_seconds)


def _charge_rendered(ev: RenderDone) -> str | None:
    """Charge a rendered fax's true page count to its tenant's day (once, however often
    the event comes); why it does not fit the quota, if it does not."""
    try:
        fax = store().get(ev.job_id)
    except UnknownJob:
        return None
    return allowance().settle(fax, ev.pages)


def _backoff(attempt: int) -> float:
    return settings.scaled(settings.notify_backoff_seconds) * (2 ** (attempt - 1))


def _retry_or_abandon(
    task: Task, exc: notify.NotifyError, channel: str, target: str, **about: str
) -> str:
    """Try a failed notification again later, with exponential backoff, while the error is
    worth retrying and attempts remain (raises Celery's ``Retry``); otherwise log the
    error and return why it is abandoned, in the generic words of ``exc.public`` (the
    tenant reads it in the fax's history). ``about`` names the fax in the logs."""
    attempt = task.request.retries + 1
    if exc.retryable and attempt < settings.notify_max_attempts:
        delay = _backoff(attempt)
        log.warning(
            "notification failed, will retry",
            site=settings.site,
            channel=channel,
            attempt=attempt,
            delay=round(delay, 3),
            error=str(exc),
            **about,
        )
        metrics.NOTIFICATIONS.labels(channel, "retry").inc()
        raise task.retry(countdown=delay, exc=exc) from exc
    # The history (read by the tenant) gets the generic reason, the log the detail.
    reason = f"{channel} notification to {target} {exc.public}"
    metrics.NOTIFICATIONS.labels(channel, "abandoned").inc()
    log.error(
        "notification abandoned",
        site=settings.site,
        channel=channel,
        target=target,
        reason=exc.public,
        error=str(exc),
        **about,
    )
    return reason


@app.task(
    name=names.NOTIFY_TASK,
    bind=True,
    max_retries=None,
    acks_late=True,
)
def deliver(self: Task, order: dict[str, Any]) -> None:
    """Deliver one notification from the home site, retrying with backoff.

    It reports the fax's outcome when it runs, once per (fax, channel, settled state): a
    redelivered or repeated order sends no second copy, and an order whose fax has moved
    on (resent, or settled again) is left to the order of the newer outcome."""
    o = NotifyOrder.model_validate(order)
    try:
        fax = store().get(o.job_id, history=True)
    except UnknownJob:
        log.warning("notification for a fax no longer kept", job=o.job_id)
        return
    site = settings.site
    if fax.state not in SETTLED_STATES:
        log.info("notification superseded", job=o.job_id, state=fax.state.value)
        return
    r = store().r
    key = delivered_key(o.job_id, fax.state, o.channel)
    member = outbox.entry(o.job_id, fax.state, o.channel)
    claim_seconds = max(int(settings.notify_timeout_seconds * 6), 30)
    if not r.set(key, "sending", nx=True, ex=claim_seconds):
        if r.get(key) == b"sent":
            outbox.settle(r, member)
            log.info("already notified", job=o.job_id, channel=o.channel, state=fax.state.value)
            return
        # Another delivery of the same outcome is under way: look again once it is over.
        raise self.retry(countdown=max(r.ttl(key), 1))
    try:
        if o.channel == "email":
            notify.send_email(settings, o.target, fax, site)
        else:
            notify.post_callback(settings, o.target, fax, site)
    except notify.NotifyError as exc:
        r.delete(key)
        # A retry keeps the outbox entry, due once the backoff is over; an abandoned one
        # (raised nothing) is settled.
        after = _backoff(self.request.retries + 1) + settings.notify_redeliver_seconds
        outbox.watch(r, member, after)
        reason = _retry_or_abandon(self, exc, o.channel, o.target, job=o.job_id)
        outbox.settle(r, member)
        store().update(o.job_id, lambda d: d.note(reason, site=site))
        return
    except BaseException:
        r.delete(key)
        raise
    r.set(key, "sent", ex=settings.retention_seconds)
    outbox.settle(r, member)
    metrics.NOTIFICATIONS.labels(o.channel, "delivered").inc()
    log.info(
        "notified",
        job=o.job_id,
        site=site,
        channel=o.channel,
        target=o.target,
        state=fax.state.value,
    )

    def record(d: Draft) -> None:
        d.set(notified_by=site)
        d.note(f"{o.channel} notification delivered to {o.target} ({fax.state.value})", site=site)

    store().update(o.job_id, record)


# -- received faxes ---------------------------------------------------------------------

INBOUND_NOTIFY_TASK = "faxfleet.notify-inbound"
"""Sent and run by the scheduler only (on the filing site's notify queue)."""


@lru_cache(maxsize=1)
def inbound_store() -> inbound.InboundStore:
    return inbound.InboundStore(rt.redis, settings.inbound_retention_seconds)


@lru_cache(maxsize=1)
def inbound_routes() -> inbound.RouteTable:
    return inbound.RouteTable.parse(settings.inbound_routes, settings.default_region)


def file_inbound(ev: InboundReceived) -> None:
    """Route a received fax by the number it called, store it, queue its notifications."""
    try:
        match = inbound_routes().route(ev.called, ev.line)
    except inbound.RoutesError as exc:  # keep the fax (unrouted) rather than lose it
        log.error("inbound routes unusable", inbound=ev.inbound_id, error=str(exc))
        match = None
    fax = inbound.file_record(ev, match)
    if inbound_store().add(fax):
        log.info(
            "fax filed",
            inbound=fax.id,
            site=fax.site,
            line=fax.line,
            called=fax.called,
            tenant=fax.tenant,
            route=fax.route,
            pages=fax.pages,
            ok=fax.ok,
        )
        if fax.tenant is None:
            log.warning("received fax matches no route: kept unrouted", inbound=fax.id)
    fax = inbound_store().get(fax.id)
    if not inbound.should_notify(fax) or not inbound_store().claim_notifications(fax.id):
        return
    for channel, target in (("email", fax.notify.email), ("webhook", fax.notify.callback_url)):
        if not target:
            continue
        order = InboundNotifyOrder(
            inbound_id=fax.id,
            site=settings.site,
            channel=channel,  # type: ignore[arg-type]
            target=target,
        )
        names.send(
            app,
            INBOUND_NOTIFY_TASK,
            "order",
            order,
            names.notify_queue(settings.site),
            names.EVENT_PRIORITY,
        )


@app.task(name=INBOUND_NOTIFY_TASK, bind=True, max_retries=None, acks_late=True)
def deliver_inbound_notice(self: Task, order: dict[str, Any]) -> None:
    """Deliver one notification of a received fax, retrying as result notices do."""
    o = InboundNotifyOrder.model_validate(order)
    site = settings.site
    try:
        fax = inbound_store().get(o.inbound_id)
    except inbound.UnknownInbound:
        log.warning("notification for a received fax no longer kept", inbound=o.inbound_id)
        return
    try:
        if o.channel == "email":
            document = inbound_store().document(o.inbound_id)
            notify.send_inbound_email(settings, o.target, fax, document, site)
        else:
            notify.post_inbound_callback(settings, o.target, fax, site)
    except notify.NotifyError as exc:
        reason = _retry_or_abandon(self, exc, o.channel, o.target, inbound=o.inbound_id)
        inbound_store().update(
            o.inbound_id,
            lambda f: f.model_copy(update={"notifications": [*f.notifications, reason]}),
        )
        return
    metrics.NOTIFICATIONS.labels(o.channel, "delivered").inc()
    log.info("notified", inbound=o.inbound_id, site=site, channel=o.channel, target=o.target)
    done = f"{o.channel} notification delivered to {o.target}"
    inbound_store().update(
        o.inbound_id,
        lambda f: f.model_copy(
            update={"notified_by": site, "notifications": [*f.notifications, done]}
        ),
    )


def set_cancel_flag(job_id: str) -> None:
    store().r.set(keys.cancel_flag(job_id), "1", ex=settings.retention_seconds)


__all__ = [
    "app",
    "apply",
    "deliver",
    "deliver_inbound_notice",
    "event",
    "file_inbound",
    "inbound_store",
    "lifecycle",
    "perform",
    "set_cancel_flag",
    "store",
]
