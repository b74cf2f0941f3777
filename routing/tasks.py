"""The routing service's Celery side: routing orders join the central waiting set.

Run: ``celery -A routing.tasks worker -Q routing``. The placement itself is done by the
dispatcher (``routing.dispatcher``), which hands each waiting fax to a site when a line
there is free. Routing orders are idempotent per attempt: the scheduler may send the
same one again (its watchdog) without a fax being placed twice.
"""

from __future__ import annotations

from typing import Any

from faxfleet import celery_app as names
from faxfleet import metrics
from faxfleet.messages import RouteOrder, Withdrawn, WithdrawOrder, now
from faxfleet.runtime import runtime
from routing.dispatcher import ADDED, REVISED, place
from routing.waiting import take_back

rt = runtime("routing")
log, settings, app = rt.log, rt.settings, rt.app


_PLACED = {ADDED: "waiting for a line", REVISED: "waiting, priority changed"}
_RESULT = {ADDED: "added", REVISED: "revised"}


@app.task(name=names.ROUTE_TASK)
def route(order: dict[str, Any]) -> bool:
    """Add one recipient's attempt to the waiting set; the dispatcher places it. An
    altered fax's order (a higher revision) re-scores the attempt waiting."""
    o = RouteOrder.model_validate(order)
    done = place(rt.redis, o)
    metrics.ROUTE_ORDERS.labels(_RESULT.get(done, "duplicate")).inc()
    log.info(
        _PLACED.get(done, "already waiting or started"),
        job=o.job_id,
        recipient=o.recipient,
        attempt=o.attempt,
        priority=o.priority,
        revision=o.revision,
    )
    return done != 0


@app.task(name=names.WITHDRAW_TASK)
def withdraw(order: dict[str, Any]) -> bool:
    """Take an attempt back before a site starts it (its number or ``send_after`` is
    being changed) and tell its home site whether that was done. Idempotent: asked again,
    the same answer."""
    o = WithdrawOrder.model_validate(order)
    back = take_back(rt.redis, o.attempt_id)
    names.emit(
        app,
        Withdrawn(
            job_id=o.job_id,
            recipient=o.recipient,
            attempt=o.attempt,
            taken_back=back.taken_back,
            site=back.site,
            detail=back.detail,
            at=now(),
        ),
        o.home_site,
    )
    log.info(
        "taken back" if back.taken_back else "not taken back: started",
        job=o.job_id,
        recipient=o.recipient,
        attempt=o.attempt,
        site=back.site,
    )
    return back.taken_back
