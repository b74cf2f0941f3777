"""What every service process starts with: settings, logging, its Celery app, Redis.

One call per service module (``rt = runtime("routing")``) instead of the same five lines
in each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from celery import Celery, signals

from faxfleet import heartbeat, metrics
from faxfleet.celery_app import make_celery
from faxfleet.log import ContextLogger, get_logger, setup_logging
from faxfleet.redis_conn import connect
from faxfleet.settings import Settings, get_settings


@dataclass
class Runtime:
    name: str
    settings: Settings
    app: Celery
    log: ContextLogger

    @cached_property
    def redis(self) -> redis.Redis:
        """Opened on first use, so importing a service module needs no Redis."""
        return connect(self.settings)


@signals.worker_ready.connect(dispatch_uid="faxfleet-heartbeat", weak=False)
def _beat_while_working(sender: Any = None, **_: Any) -> None:
    """Every Celery worker of the fleet beats as the kind of each queue it consumes."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    queues = list(app.amqp.queues.consume_from or app.amqp.queues)
    settings = get_settings()
    for queue in queues:
        heartbeat.start(lambda: connect(settings), heartbeat.kind_of_queue(str(queue)))


@signals.worker_ready.connect(dispatch_uid="faxfleet-metrics", weak=False)
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    """A Celery worker of the fleet serves its metrics on ``FAXFLEET_METRICS_PORT``, from
    its main process (a prefork pool's children count in files it reads)."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    queues = list(app.amqp.queues.consume_from or app.amqp.queues)
    kind = heartbeat.kind_of_queue(str(queues[0])) if queues else "worker"
    settings = get_settings()
    metrics.serve(kind, settings.metrics_port, settings.metrics_address)


def runtime(name: str) -> Runtime:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    return Runtime(
        name=name,
        settings=settings,
        app=make_celery(f"faxfleet-{name}", settings),
        log=get_logger(f"faxfleet.{name}"),
    )
