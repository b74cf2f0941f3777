"""Frees line slots nobody holds any more: the dispatcher's half of the lease contract.

Every in-flight record (``faxfleet.inflight``) is looked at on a pass of the dispatcher
(at most every ``interval`` seconds), whatever state its site is in:

* **Reserved and never started**, at a site that stopped publishing, or for longer than
  ``dispatch_claim_seconds`` at a live one (the send order was lost, or the worker is
  stuck): the fax goes back to the central waiting set *with its original place and
  promise* (``queued_since``), and the home site hears ``Requeued``. The site's copy of
  the order, if it ever runs, finds the record gone and is refused.
* **Started, lease expired** (the worker died, hung, was paused or cut off): the slot is
  freed, the attempt is recorded as in doubt (``keys.in_doubt``) and the home site hears
  ``LeaseLost``. Nothing is sent again on a lease alone: a cut-off site may still be on
  the call. The site's next worker proves its predecessor dead (``HolderDead``), or the
  call's own result arrives, or the scheduler's watchdog declares the outcome uncertain.
* **Started, lease alive**: left alone, however long the call. So is a started one whose
  lease lapsed while its holder still publishes its site's state: the holder is alive
  and Redis went away under it (a restart, a failover); it renews the lease itself.

Both actions are Lua scripts that re-check the record's token, the claim and the lease,
so a worker claiming or renewing at the same moment either wins or loses cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from faxfleet import inflight, keys
from faxfleet.log import ContextLogger
from faxfleet.messages import LeaseLost, Requeued, RouteOrder, SendOrder
from routing.waiting import ORDERS, WAITING, placed_key, urgency_score, waiting_record

# KEYS: inflight(site), waiting, orders, placed(attempt), claim(attempt)
# ARGV: attempt, token, score, waiting record
_GIVE_BACK = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
if (cjson.decode(rec)['token'] or '') ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('DEL', KEYS[4])
return 1
"""

# KEYS: inflight(site), lease(attempt), claim(attempt), in_doubt(site)
# ARGV: attempt, token
_LEASE_LOST = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return false end
if (cjson.decode(rec)['token'] or '') ~= ARGV[2] then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local worker = redis.call('GET', KEYS[3])
if not worker then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local doubt = cjson.decode(rec)
doubt['worker'] = worker
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(doubt))
return worker
"""

Emit = Callable[[RouteOrder, type, dict[str, Any]], None]


@dataclass
class Reaped:
    given_back: int = 0
    leases_lost: int = 0


class Reaper:
    """Parameters: ``claim_seconds``, how long a live site may leave a hand-out unstarted;
    ``interval``, the least time between two sweeps (a sweep reads every in-flight
    record, so it is not done on every dispatch pass)."""

    def __init__(
        self,
        r: redis.Redis,
        emit: Emit,
        log: ContextLogger,
        *,
        claim_seconds: float,
        interval: float = 0.5,
    ) -> None:
        self.r = r
        self.emit = emit
        self.log = log
        self.claim_seconds = claim_seconds
        self.interval = interval
        self._last = 0.0
        self._live: dict[str, str] = {}
        self._gone_since: dict[str, float] = {}
        self.grace = 2.0
        """Seconds a site must have stopped publishing before the calls it holds are
        taken for lost: a status key missing for a moment (a Redis failover that had
        not replicated it) is not a dead site."""
        self._give_back = r.register_script(_GIVE_BACK)
        self._lease_lost = r.register_script(_LEASE_LOST)

    def maybe_reap(self, live: dict[str, str]) -> Reaped:
        """Sweep when ``interval`` has passed, or at once when a site dropped out or its
        worker changed."""
        changed = live != self._live  # a site came, went, or has another worker
        self._live = dict(live)
        if not changed and time.monotonic() - self._last < self.interval:
            return Reaped()
        return self.reap(live)

    def reap(self, live: dict[str, str]) -> Reaped:
        """``live``: each site publishing its state, with the worker that publishes it."""
        self._last = time.monotonic()
        done = Reaped()
        for site in list(self._gone_since):
            if site in live:
                del self._gone_since[site]
        for key in self.r.scan_iter(match=keys.site_inflight("*"), count=1000):
            site = key.decode().rsplit(":", 1)[1]
            records = self.r.hgetall(key)
            if not records:
                continue
            attempts = [a.decode() for a in records]
            with self.r.pipeline(transaction=False) as pipe:
                for attempt in attempts:
                    pipe.exists(keys.lease(attempt))
                    pipe.get(keys.attempt_claim(attempt))
                flags = pipe.execute()
            for i, attempt in enumerate(attempts):
                leased, claimed = flags[2 * i], flags[2 * i + 1]
                if leased:
                    continue
                if claimed is not None and live.get(site) == claimed.decode():
                    # Its holder still publishes the site's state: alive, and its lease
                    # lapsed with Redis (a restart, a failover); it renews it itself.
                    continue
                try:
                    rec = inflight.parse(records[attempt.encode()])
                    SendOrder.model_validate(rec["order"])
                except (ValueError, KeyError, TypeError) as exc:
                    self.r.hdel(key, attempt)  # unreadable: it can never be sent
                    self.log.error("unreadable in-flight record dropped", site=site, error=str(exc))
                    continue
                if claimed:
                    if site not in live:
                        gone = self._gone_since.setdefault(site, time.monotonic())
                        if time.monotonic() - gone < self.grace:
                            continue
                    done.leases_lost += self._lost(key, site, attempt, rec)
                elif site not in live:
                    done.given_back += self._back(key, site, attempt, rec, "went down")
                elif time.time() - float(rec.get("at", 0)) > self.claim_seconds:
                    done.given_back += self._back(
                        key, site, attempt, rec, f"did not start it in {self.claim_seconds:g} s"
                    )
        return done

    def _back(self, key: bytes, site: str, attempt: str, rec: dict[str, Any], why: str) -> int:
        send = SendOrder.model_validate(rec["order"])
        since = send.queued_since or send.routed_at
        order = RouteOrder.model_validate(
            send.model_dump(include=set(RouteOrder.model_fields)) | {"queued_since": since}
        )
        score = urgency_score(order.priority, since.timestamp())
        back = self._give_back(
            keys=[key, WAITING, ORDERS, placed_key(attempt), keys.attempt_claim(attempt)],
            args=[attempt, rec.get("token", ""), score, waiting_record(order)],
        )
        if not back:
            return 0
        self.emit(
            order, Requeued, {"site": site, "detail": f"site {site} {why} before starting it"}
        )
        self.log.warning("given back", job=order.job_id, recipient=order.recipient, site=site)
        return 1

    def _lost(self, key: bytes, site: str, attempt: str, rec: dict[str, Any]) -> int:
        worker = self._lease_lost(
            keys=[key, keys.lease(attempt), keys.attempt_claim(attempt), keys.in_doubt(site)],
            args=[attempt, rec.get("token", "")],
        )
        if not worker:
            return 0
        send = SendOrder.model_validate(rec["order"])
        worker_id = worker.decode() if isinstance(worker, bytes) else str(worker)
        self.emit(
            send,
            LeaseLost,
            {
                "site": site,
                "worker": worker_id,
                "detail": f"site {site} stopped renewing its lease on the call ({worker_id})",
            },
        )
        self.log.warning(
            "lease lost", job=send.job_id, recipient=send.recipient, site=site, worker=worker_id
        )
        return 1
