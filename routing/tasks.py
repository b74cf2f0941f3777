"""The routing service: applies the placement policy to the sites' live state.

Run: ``celery -A routing.tasks worker -Q routing``. Several may run; a route order
carries its attempt, and the site worker's attempt claim makes a duplicated order
harmless.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis

from faxfleet import celery_app as names
from faxfleet import keys
from faxfleet.log import get_logger, setup_logging
from faxfleet.messages import (
    Cause,
    Routed,
    RouteOrder,
    SendOrder,
    SiteStatus,
    Unroutable,
    now,
)
from faxfleet.redis_conn import connect
from faxfleet.settings import get_settings
from routing.policy import Candidate, place

log = get_logger("faxfleet.routing")
settings = get_settings()
setup_logging(settings.log_level, settings.log_format)
app = names.make_celery("faxfleet-routing", settings)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return connect(settings)


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
    send = SendOrder(
        job_id=o.job_id,
        recipient=o.recipient,
        attempt=o.attempt,
        number=o.number,
        pages=o.pages,
        first_page=o.first_page,
        priority=o.priority,
        home_site=o.home_site,
        site=site,
        tenant=o.tenant,
        sender=o.sender,
        routed_at=now(),
    )
    app.send_task(
        names.SEND_TASK,
        kwargs={"order": send.model_dump(mode="json")},
        queue=names.site_queue(site),
        priority=names.celery_priority(o.priority),
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
