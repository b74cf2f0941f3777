"""The notification outbox: a queued notification is watched until it is delivered.

A notification travels as a Celery message on its home site's notify queue. The message
can be lost: a notify worker killed while it holds it keeps it unacknowledged until the
broker's visibility timeout (minutes), and a Redis that dies between two fsyncs forgets
it. So every (fax, settled state, channel) to notify gets an entry here *before* its
message is sent, due ``notify_redeliver_seconds`` later:

* the delivery task removes the entry once the notification is delivered or abandoned,
  and pushes it back by the backoff when it schedules a retry;
* a timer loop (``scheduler/timers.py``) takes each entry that falls due and queues the
  notification again, unless it was delivered meanwhile, the fax has moved on to another
  state (that state has its own entry) or is no longer kept. Each re-queue doubles the
  wait; after ``notify_max_attempts`` of them the notification is given up, with a note
  in the fax's history.

Queuing one twice never sends it twice: the delivery task sends once per (fax, settled
state, channel) (``scheduler/tasks.py``, ``delivered_key``).
"""

from __future__ import annotations

import time

import redis

from faxfleet.messages import JobState

OUTBOX = "ff:notify:outbox"
"""Sorted set: entry -> when to look at it again."""
REQUEUES = "ff:notify:requeued"
"""Hash: entry -> how often it was queued again."""


def entry(job_id: str, settled: JobState, channel: str) -> str:
    return f"{job_id}|{settled.value}|{channel}"


def parse(member: str) -> tuple[str, JobState, str]:
    job_id, state, channel = member.split("|")
    return job_id, JobState(state), channel


def watch(r: redis.Redis, member: str, after: float, *, only_new: bool = False) -> None:
    """Look at ``member`` again in ``after`` seconds (``only_new``: unless it is watched)."""
    r.zadd(OUTBOX, {member: time.time() + after}, nx=only_new)


_TAKE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def take(r: redis.Redis, member: str, hold: float) -> bool:
    """Take a due entry for one timer loop of several: it is pushed back by ``hold``
    seconds rather than removed, so it falls due again if the loop dies holding it."""
    now = time.time()
    return bool(r.eval(_TAKE, 1, OUTBOX, member, now, now + hold))


def settle(r: redis.Redis, member: str) -> None:
    """Delivered, given up or moot: stop watching ``member``."""
    pipe = r.pipeline()
    pipe.zrem(OUTBOX, member)
    pipe.hdel(REQUEUES, member)
    pipe.execute()


def requeued(r: redis.Redis, member: str) -> int:
    """Count one more re-queue of ``member``; returns how many there have been."""
    return int(r.hincrby(REQUEUES, member, 1))
