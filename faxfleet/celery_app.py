"""The Celery configuration every service uses, and the names that connect them.

Services send each other work by task *name* and queue, never by importing each other's
task functions. The settings below are what make "most urgent first" true on the Redis
transport (see docs/architecture.md for the measurements behind them):

* ``priority_steps = 0..9``: one Redis list per priority level. kombu's default has four
  steps, so priorities 1-3 would share a list and wait in FIFO order behind each other.
* On the Redis transport 0 is the *highest* priority. Users speak 0 (bulk) .. 9 (most
  urgent); :func:`celery_priority` turns one into the other.
* ``worker_prefetch_multiplier = 1`` with ``task_acks_late``: a worker holds no more
  messages than it has free slots, so a newly queued urgent fax is not stuck behind faxes
  a busy worker has already reserved.
* ``task_reject_on_worker_lost``: a killed pool child hands its message back instead of
  dropping it.
* ``visibility_timeout`` (minutes): Redis redelivers an unacknowledged message after it.
  A send redelivered while its call goes on is refused by its claim; the call itself is
  protected by its lease (``faxfleet/inflight.py``), not by this timeout.

Task messages carry fax numbers, senders and notification targets; what Celery shows of
them (the ``argsrepr``/``kwargsrepr`` of the message, which task events and so Flower
display, and a worker's answer to ``inspect active|reserved|scheduled``) is reduced to
the identifiers in :data:`SHOWN_FIELDS`, and a failure shows its exception's type only
(the worker's log has the rest).

With a ``sentinel://`` Redis URL the broker is kombu's Sentinel transport on the same
group (``master_name`` in the transport options), as adapted in ``faxfleet.kombu_sentinel``
so workers survive a failover; queueing a task retries for ``redis_failover_seconds``
(docs/reliability.md).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.app.amqp import AMQP
from celery.worker.request import Request

from faxfleet import kombu_sentinel  # noqa: F401 - the transport of sentinel:// URLs
from faxfleet.messages import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, EventEnvelope
from faxfleet.redis_conn import RedisAccess, is_sentinel_url, is_tls_url, parse_sentinel_url
from faxfleet.settings import Settings, get_settings

# Task names (the contracts between services).
RENDER_TASK = "faxfleet.render"
ROUTE_TASK = "faxfleet.route"
WITHDRAW_TASK = "faxfleet.withdraw"
"""Scheduler -> routing: take an attempt back before a site starts it (on the routing
queue, at the events' priority, so no backlog of route orders delays it)."""
SEND_TASK = "faxfleet.send"
EVENT_TASK = "faxfleet.event"
NOTIFY_TASK = "faxfleet.notify"

RENDER_QUEUE = "render"
ROUTING_QUEUE = "routing"

EVENT_PRIORITY = 0
"""Celery priority of lifecycle events: always ahead of work."""


def site_queue(site: str) -> str:
    """The queue a site's worker consumes send orders from."""
    return f"site.{site}"


def events_queue(home_site: str) -> str:
    """The home site's lifecycle queue, consumed by any number of event workers: the
    lifecycle orders a fax's events by attempt and sequence, not by the queue."""
    return f"events.{home_site}"


def notify_queue(home_site: str) -> str:
    """The home site's notification queue: mail and callbacks leave from the home site."""
    return f"notify.{home_site}"


def celery_priority(priority: int) -> int:
    """Map a user priority (0 bulk .. 9 urgent) to a Redis-transport priority (0 first)."""
    clamped = max(PRIORITY_MIN, min(PRIORITY_MAX, priority))
    return PRIORITY_MAX - clamped


class _UrlOnlyConnectionWarning(logging.Filter):
    """Celery masks the broker URL in the settings it shows (``inspect conf``, which
    Flower asks every worker for) by building a kombu ``Connection`` from the URL alone,
    never used to connect; with ``rediss://`` kombu then warns that it "defaults to
    insecure SSL behaviour". Every connection the fleet makes has ``broker_use_ssl``
    (the certificate required), so the warning is noise that would alarm an operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Secure redis scheme specified (rediss)")


_URL_ONLY_WARNING = _UrlOnlyConnectionWarning()
SHOWN_FIELDS = frozenset(
    {"job_id", "inbound_id", "recipient", "attempt", "seq", "kind", "site", "home_site"}
)
"""Fields of a task's arguments that task events (and Flower) show: identifiers that
say which fax and attempt a task is about, nothing about who sends to whom."""


def redact(value: Any) -> Any:
    """``value`` with only :data:`SHOWN_FIELDS` kept (at any depth) and every other
    scalar hidden."""
    if isinstance(value, dict):
        shown = {}
        for k, v in value.items():
            if isinstance(v, dict | list | tuple):
                shown[k] = redact(v)
            elif k in SHOWN_FIELDS:
                shown[k] = v
        return shown
    if isinstance(value, list | tuple):
        return [redact(v) for v in value if isinstance(v, dict | list | tuple)]
    return None


class RedactingAMQP(AMQP):
    """Every task message shows redacted arguments, whoever sends it (a retry too)."""

    def as_task_v2(
        self, task_id: str, name: str, args: Any = None, kwargs: Any = None, *a: Any, **kw: Any
    ) -> Any:
        kw["argsrepr"] = repr(redact(list(args or ())))
        kw["kwargsrepr"] = repr(redact(dict(kwargs or {})))
        return super().as_task_v2(task_id, name, args, kwargs, *a, **kw)


class RedactingRequest(Request):
    """A worker's view of a task for ``inspect`` and its events: the redacted arguments,
    and the type of a failure without its message (which may quote a number)."""

    def info(self, safe: bool = False) -> dict[str, Any]:
        return super().info(safe=True)

    def send_event(self, type: str, **fields: Any) -> None:
        exc = fields.get("exception")
        if exc is not None:
            kind = str(exc).split("(", 1)[0]
            fields["exception"] = f"{kind}(details in the worker's log)"
            fields["traceback"] = ""
        super().send_event(type, **fields)


class FleetTask(Task):
    Request = "faxfleet.celery_app:RedactingRequest"


def make_celery(name: str, settings: Settings | None = None) -> Celery:
    """A Celery app configured for the fleet (no result backend: results are events)."""
    s = settings or get_settings()
    broker = s.broker
    transport_options: dict[str, Any] = {
        "priority_steps": list(range(10)),
        "queue_order_strategy": "priority",
        "visibility_timeout": s.visibility_timeout,
        # kombu waits forever by default on a connection whose peer vanished without
        # closing it (a link that drops packets, a failover): a publish in the middle of
        # a call would hang the call. 10 s is well above BRPOP's 1 s.
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
    }
    access = RedisAccess.of(s)
    extra: dict[str, Any] = {}
    if is_tls_url(broker):
        # kombu alone would accept any certificate on rediss:// (CERT_NONE, a warning).
        extra["broker_use_ssl"] = access.ssl_options()
        kombu_log = logging.getLogger("kombu.connection")
        if _URL_ONLY_WARNING not in kombu_log.filters:
            kombu_log.addFilter(_URL_ONLY_WARNING)
    if is_sentinel_url(broker):
        # kombu's Sentinel transport: the sentinels in the URL, the group in the options.
        target = parse_sentinel_url(broker)
        broker = target.kombu_url()
        transport_options["master_name"] = target.master
        transport_options["failover_seconds"] = s.redis_failover_seconds
        transport_options["sentinel_kwargs"] = access.sentinel_options(target.tls)
        # Queueing a task rides out a failover as Redis commands do (kombu's default
        # gives up after 3 quick tries, well before the sentinels have promoted a replica).
        step = 0.5
        extra["task_publish_retry_policy"] = {
            "max_retries": max(3, int(s.redis_failover_seconds / step)),
            "interval_start": 0,
            "interval_step": step,
            "interval_max": step,
        }
    app = Celery(name, broker=broker, backend=None, amqp=RedactingAMQP, task_cls=FleetTask)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_priority=celery_priority(PRIORITY_DEFAULT),
        task_default_queue="faxfleet.default",
        task_create_missing_queues=True,
        task_ignore_result=True,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        **extra,
    )
    return app


_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: "<queue><sep><priority>" per level


def queue_depth(client: Any, queue: str) -> int:
    """Messages waiting in a Celery queue on Redis, over all its priority lists."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(queue)
        for level in range(1, 10):
            pipe.llen(f"{queue}{_PRIORITY_SEP}{level}")
        return int(sum(pipe.execute()))


def send(app: Celery, task: str, field: str, message: Any, queue: str, priority: int) -> None:
    """Send ``message`` (a pydantic model) as keyword ``field`` of ``task`` on ``queue``."""
    app.send_task(
        task, kwargs={field: message.model_dump(mode="json")}, queue=queue, priority=priority
    )


def emit(app: Celery, event: Any, home_site: str) -> None:
    """Send a lifecycle event to the home site's scheduler, ahead of any work."""
    send(
        app,
        EVENT_TASK,
        "envelope",
        EventEnvelope(event=event),
        events_queue(home_site),
        EVENT_PRIORITY,
    )
