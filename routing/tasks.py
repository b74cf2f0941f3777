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
from faxfleet.messages import RouteOrder
from faxfleet.runtime import runtime
from routing.dispatcher import enqueue

rt = runtime("routing")
log, settings, app = rt.log, rt.settings, rt.app


@app.task(name=names.ROUTE_TASK)
def route(order: dict[str, Any]) -> bool:
    """Add one recipient's attempt to the waiting set; the dispatcher places it."""
    o = RouteOrder.model_validate(order)
    added = enqueue(rt.redis, o)
    metrics.ROUTE_ORDERS.labels("added" if added else "duplicate").inc()
    log.info(
        "waiting for a line" if added else "already waiting or started",
        job=o.job_id,
        recipient=o.recipient,
        attempt=o.attempt,
        priority=o.priority,
    )
    return added
