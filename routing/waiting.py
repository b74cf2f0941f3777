"""The central waiting set: where faxes wait for a line, most urgent first.

``ff:rt:waiting`` orders attempt ids by :func:`urgency_score` (priority band, then the
time the fax started waiting); ``ff:rt:orders`` holds each one's route order and that
time, from which its priority promise runs. A fax given back by a site keeps both.

An attempt can be taken back (:func:`take_back`) while it waits here or is handed to a
site that has not started it: its number or ``send_after`` is being changed. It is then
marked in its ``placed`` key, so neither a late route order nor a site's copy of the send
order can ever send it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from faxfleet import keys
from faxfleet.messages import RouteOrder

WAITING = keys.WAITING  # sorted set: attempt id, by urgency (shared: metrics count it)
ORDERS = "ff:rt:orders"  # hash: attempt id -> {"order": RouteOrder, "enqueued_at": ts}


def placed_key(attempt_id: str) -> str:
    """Which site an attempt was handed to (so a repeated routing order is ignored)."""
    return f"ff:rt:placed:{attempt_id}"


def urgency_score(priority: int, enqueued_at: float) -> float:
    """Lower is first: priority band, then arrival (milliseconds)."""
    return keys.waiting_score(priority, enqueued_at)


def since(order: RouteOrder) -> float:
    """When ``order`` started waiting: its ``queued_since``, else now."""
    when: datetime | None = order.queued_since
    return when.timestamp() if when else time.time()


def waiting_record(order: RouteOrder, enqueued_at: float | None = None) -> str:
    at = enqueued_at if enqueued_at is not None else since(order)
    return json.dumps({"order": order.model_dump(mode="json"), "enqueued_at": at})


WITHDRAWN = "!withdrawn"
"""The ``placed`` value of an attempt taken back (no site is called that)."""
PLACED_SECONDS = 86400
"""How long ``placed`` is kept (as when a dispatcher hands an attempt out)."""

# KEYS: waiting, orders, placed(attempt), claim(attempt), wake
# ARGV: attempt, marker, seconds
_TAKE_WAITING = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {'started', redis.call('GET', KEYS[3]) or ''} end
local placed = redis.call('GET', KEYS[3])
if placed == ARGV[2] then return {'withdrawn', ''} end
if placed then return {'held', placed} end
local waiting = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
if waiting == 1 then
  redis.call('LPUSH', KEYS[5], 'withdrawn')
  redis.call('LTRIM', KEYS[5], 0, 99)
  return {'waiting', ''}
end
return {'unplaced', ''}
"""

# KEYS: inflight(site), placed(attempt), claim(attempt), wake
# ARGV: attempt, site, marker, seconds
_TAKE_HELD = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 'started' end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 'moved' end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 'moved' end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('LPUSH', KEYS[4], 'freed')
redis.call('LTRIM', KEYS[4], 0, 99)
return 'held'
"""


@dataclass(frozen=True)
class TakeBack:
    taken_back: bool
    site: str | None
    detail: str


def take_back(r: redis.Redis, attempt_id: str) -> TakeBack:
    """Make sure attempt ``attempt_id`` is never sent, unless a site already started it.

    Each step is one script that checks the attempt's claim (a site that started it has
    claimed it) and its ``placed`` key:

    * waiting in the set: removed (a dispatcher's claim then finds it gone);
    * handed to a site that has not started it: its in-flight record is removed, freeing
      the slot (the site's copy of the send order then finds no record and is refused,
      like any stale copy); should the record have moved meanwhile (given back to the
      set by the reaper), look again;
    * neither (its route order has not arrived, or was lost): marked, so a late one is
      never added;
    * already taken back: the same answer again.

    In every case but a started one the attempt is marked taken back for a day."""
    claim = keys.attempt_claim(attempt_id)
    placed = placed_key(attempt_id)
    for _ in range(10):
        raw = r.eval(
            _TAKE_WAITING,
            5,
            WAITING,
            ORDERS,
            placed,
            claim,
            keys.DISPATCH_WAKE,
            attempt_id,
            WITHDRAWN,
            PLACED_SECONDS,
        )
        outcome, where = (x.decode() if isinstance(x, bytes) else str(x) for x in raw)
        if outcome == "started":
            site = where if where and where != WITHDRAWN else None
            return TakeBack(
                False, site, f"{f'site {site}' if site else 'a site'} had already started it"
            )
        if outcome == "waiting":
            return TakeBack(True, None, "taken out of the waiting set")
        if outcome in ("unplaced", "withdrawn"):
            return TakeBack(True, None, "never to be handed out")
        held = r.eval(
            _TAKE_HELD,
            4,
            keys.site_inflight(where),
            placed,
            claim,
            keys.DISPATCH_WAKE,
            attempt_id,
            where,
            WITHDRAWN,
            PLACED_SECONDS,
        )
        held = held.decode() if isinstance(held, bytes) else str(held)
        if held == "started":
            return TakeBack(False, where, f"site {where} had already started it")
        if held == "held":
            return TakeBack(True, where, f"taken back from site {where} before it started")
    raise RuntimeError(f"attempt {attempt_id} kept moving while being taken back")
