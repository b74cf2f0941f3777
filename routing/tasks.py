"""The routing service: applies the placement policy to the sites' live state.

Run: ``celery -A routing.tasks worker -Q routing``. Several may run; a route order
carries its attempt, and the site worker's attempt claim makes a duplicated order
harmless.
"""

from __future__ import annotations

from typing import Any

import redis

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.messages import (
    Cause,
    Routed,
    RouteOrder,
    SendOrder,
    SiteStatus,
    Unroutable,
    now,
)
from faxfleet.runtime import runtime
from routing.policy import Candidate, place

rt = runtime("routing")
log, settings, app = rt.log, rt.settings, rt.app


def _redis() -> redis.Redis:
    return rt.redis


def live_candidates(r: redis.Redis) -> list[Candidate]:
    found = []
    for key in r.scan_iter(match=keys.SITE_STATUS_PATTERN, count=500):
        raw = r.get(key)
        if raw is None:
            continue  # expired between SCAN and GET: the site just dropped out
        site = SiteStatus.model_validate_json(raw)
        found.append(
            Candidate(
                site=site.name,
                lines_up=site.lines_up,
                lines_busy=site.lines_busy,
                waiting=names.queue_depth(r, names.site_queue(site.name)),
            )
        )
    return found


def _event(ev: Routed | Unroutable, home_site: str) -> None:
    names.emit(app, ev, home_site)


@app.task(name=names.ROUTE_TASK)
def route(order: dict[str, Any]) -> str | None:
    """Place one recipient's attempt on a site's queue."""
    o = RouteOrder.model_validate(order)
    placement = place(live_candidates(_redis()), o.home_site)
    if placement.site is None:
        log.warning("unroutable", job=o.job_id, recipient=o.recipient, reason=placement.reason)
        _event(
            Unroutable(
                job_id=o.job_id,
                recipient=o.recipient,
                attempt=o.attempt,
                cause=Cause.NO_SITE,
                detail=placement.reason,
                at=now(),
            ),
            o.home_site,
        )
        return None
    site = placement.site
    send = SendOrder(**o.model_dump(), site=site, routed_at=now())
    names.send(
        app,
        names.SEND_TASK,
        "order",
        send,
        names.site_queue(site),
        names.celery_priority(o.priority),
    )
    # The order first, then the event: "queued" means the order is in the site's queue.
    # A site fast enough to report dialing before this event lands implies it.
    _event(
        Routed(job_id=o.job_id, recipient=o.recipient, attempt=o.attempt, site=site, at=now()),
        o.home_site,
    )
    log.info(
        "routed",
        job=o.job_id,
        recipient=o.recipient,
        attempt=o.attempt,
        site=site,
        reason=placement.reason,
    )
    return site
