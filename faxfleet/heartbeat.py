"""Which processes of the fleet are alive, by kind: each one beats into Redis.

Every process (API node, dispatcher, timer loop and each Celery worker) writes
``ff:proc:<kind>:<id>`` with a short expiry from a background thread, so a process that
dies, hangs or loses Redis drops out of :func:`alive` within ``ttl`` seconds. Health
checks and ``faxfleet sites`` read the counts; nothing routes by them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable

import redis

from faxfleet.log import get_logger

PREFIX = "ff:proc:"
TTL = 10.0
PERIOD = 2.0

KINDS = ("api", "dispatcher", "timers", "router", "render", "events", "notify", "site")
"""The process kinds the fleet needs (``site``, ``events`` and ``notify`` per site)."""

log = get_logger("faxfleet.heartbeat")


def key(kind: str, ident: str) -> str:
    return f"{PREFIX}{kind}:{ident}"


def ident() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(r: redis.Redis, kind: str, who: str, ttl: float = TTL) -> None:
    r.set(key(kind, who), "1", px=int(ttl * 1000))


def alive(r: redis.Redis) -> dict[str, int]:
    """Live processes per kind (a site-scoped kind is counted as ``kind.site``)."""
    found: Counter[str] = Counter()
    for k in r.scan_iter(match=f"{PREFIX}*", count=1000):
        kind = k.decode()[len(PREFIX) :].split(":", 1)[0]
        found[kind] += 1
    return dict(sorted(found.items()))


def start(connect: Callable[[], redis.Redis], kind: str, who: str | None = None) -> threading.Event:
    """Beat for ``kind`` from a daemon thread until the returned event is set."""
    stop = threading.Event()
    who = who or ident()

    def run() -> None:
        r = connect()
        while not stop.is_set():
            try:
                beat(r, kind, who)
            except redis.RedisError as exc:
                log.warning("cannot beat", kind=kind, error=str(exc))
            stop.wait(PERIOD)
        with contextlib.suppress(redis.RedisError):
            r.delete(key(kind, who))

    threading.Thread(target=run, name=f"heartbeat-{kind}", daemon=True).start()
    return stop


def kind_of_queue(queue: str) -> str:
    """The process kind consuming a Celery queue (``events.paris`` -> ``events.paris``)."""
    head, _, site = queue.partition(".")
    kind = {"routing": "router"}.get(head, head)
    return f"{kind}.{site}" if site else kind
