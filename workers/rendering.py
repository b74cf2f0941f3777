"""The render worker: documents in Redis -> fax pages in Redis, any site, CPU-bound.

Run: ``celery -A workers.rendering worker -Q render -P prefork``. Each render runs in a
process of its own with limits on memory, CPU and wall-clock time
(``FAXFLEET_RENDER_MEMORY_MB``, ``FAXFLEET_RENDER_TIMEOUT_SECONDS``), so one bad
document fails its own job with a specific cause and cannot take the worker down. That
process is forked from a warm renderer each pool process starts when it starts
(:mod:`workers.render.sandbox`), so a job does not pay for loading Python and PDFium.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from faxfleet import celery_app as names
from faxfleet import keys, metrics
from faxfleet.messages import RenderDone, RenderFailed, RenderOrder, now
from faxfleet.runtime import runtime
from workers.render import RenderError
from workers.render.cover import cover_tiff
from workers.render.sandbox import render_sandboxed, warm_renderer

rt = runtime("render")
log, settings, app = rt.log, rt.settings, rt.app
app.conf.worker_max_memory_per_child = 1_000_000  # KiB: recycle a child past ~1 GB

RENDER_SOFT_LIMIT = settings.render_timeout_seconds + 30
"""Celery's limits stay above the sandbox's own, which reports the specific cause."""
RENDER_HARD_LIMIT = RENDER_SOFT_LIMIT + 30


@signals.worker_process_init.connect
def _start_renderer(**_: Any) -> None:
    """Start loading the renderer as soon as a pool process exists, without waiting for it
    (Celery gives this hook only a few seconds); the first job waits if it must."""
    warm_renderer().start(timeout_s=0)


def _redis() -> redis.Redis:
    return rt.redis


@app.task(
    name=names.RENDER_TASK,
    soft_time_limit=RENDER_SOFT_LIMIT,
    time_limit=RENDER_HARD_LIMIT,
    # Redis away (restart, failover): render again shortly rather than drop the job.
    # Should even the retry fail to be queued, the scheduler's render watch starts it.
    autoretry_for=(redis.ConnectionError, redis.TimeoutError, OperationalError),
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=10,
)
def render(order: dict[str, Any]) -> int:
    o = RenderOrder.model_validate(order)
    started = time.monotonic()
    r = _redis()
    docs = r.mget([keys.document(o.job_id, i) for i in range(o.documents)])
    try:
        if any(d is None for d in docs):
            raise RenderError("the uploaded documents are no longer stored")
        pages = render_sandboxed(
            [d for d in docs if d is not None],
            o.resolution,
            timeout_s=settings.render_timeout_seconds,
            memory_mb=settings.render_memory_mb,
        )
        if o.cover is not None:
            cover = cover_tiff(
                o.cover,
                o.resolution,
                pages=len(pages) + 1,
                date=datetime.now().astimezone(),
                tenant=o.tenant,
                site=o.home_site,
                template_dir=settings.cover_template_dir,
            )
            pages = [cover, *pages]
    except (RenderError, SoftTimeLimitExceeded) as exc:
        detail = (
            str(exc)
            if isinstance(exc, RenderError)
            else (f"rendering took longer than {RENDER_SOFT_LIMIT} s")
        )
        metrics.RENDER_SECONDS.labels("failed").observe(time.monotonic() - started)
        log.warning("render failed", job=o.job_id, error=detail)
        names.emit(app, RenderFailed(job_id=o.job_id, detail=detail, at=now()), o.home_site)
        return 0
    with r.pipeline() as pipe:
        pipe.delete(keys.pages(o.job_id))
        pipe.hset(keys.pages(o.job_id), mapping={str(i + 1): p for i, p in enumerate(pages)})
        pipe.expire(keys.pages(o.job_id), settings.retention_seconds)
        pipe.execute()
    metrics.RENDER_SECONDS.labels("ok").observe(time.monotonic() - started)
    metrics.RENDERED_PAGES.labels(o.resolution.value).inc(len(pages))
    log.info("rendered", job=o.job_id, pages=len(pages), resolution=o.resolution.value)
    names.emit(app, RenderDone(job_id=o.job_id, pages=len(pages), at=now()), o.home_site)
    return len(pages)
