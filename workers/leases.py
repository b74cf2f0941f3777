"""The site worker's half of the lease contract (``faxfleet/inflight.py``).

A send order is started only through :meth:`Leases.claim`: one Lua script that checks
the site's in-flight record still carries the order's token, takes the attempt claim
(``SET NX``) and the lease together. While the call lasts a background thread renews the
lease of every attempt this process holds, every third of ``lease_seconds``; renewal
only succeeds while the record is still this worker's, so a worker that was paused or
cut off past its lease cannot take its slot back (it finishes its call and reports it:
nobody else sends an attempt in doubt). The slot is freed by :meth:`Leases.free`, after
the result has been reported, by whoever holds the token and no one else; freeing also
clears the attempt's in-doubt entry.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from faxfleet import inflight, keys
from faxfleet.log import ContextLogger
from faxfleet.messages import SendOrder

# KEYS: inflight(site), claim(attempt), lease(attempt)
# ARGV: attempt, token, worker, lease ms, claim retention s
_CLAIM = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
if (cjson.decode(rec)['token'] or '') ~= ARGV[2] then return 0 end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[5]) then return -1 end
redis.call('SET', KEYS[3], ARGV[2] .. '|' .. ARGV[3], 'PX', ARGV[4])
return 1
"""

# KEYS: inflight(site), lease(attempt); ARGV: attempt, token, lease value, lease ms
_RENEW = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
if (cjson.decode(rec)['token'] or '') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"""

# KEYS: inflight(site), lease(attempt), dispatcher wake list, in_doubt(site)
# ARGV: attempt, token
_FREE = """
redis.call('HDEL', KEYS[4], ARGV[1])
local rec = redis.call('HGET', KEYS[1], ARGV[1])
local freed = 0
if rec and (cjson.decode(rec)['token'] or '') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  freed = 1
end
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  redis.call('DEL', KEYS[2])
end
redis.call('LPUSH', KEYS[3], 'line')
redis.call('LTRIM', KEYS[3], 0, 99)
return freed
"""


class Claim(StrEnum):
    OK = "ok"
    STALE = "stale"
    """The site's record is gone or names another hand-out: a stale copy of the order."""
    STARTED = "started"
    """The attempt was already started (a redelivered copy)."""


@dataclass
class _Held:
    order: SendOrder
    lost: threading.Event = field(default_factory=threading.Event)


class Leases:
    """Parameters: ``site``, whose in-flight hash this worker answers for; ``worker``,
    this process's unique id (stored in the claim and the lease); ``lease_seconds``;
    ``claim_retention``, how long the attempt claim is kept (it refuses redeliveries)."""

    def __init__(
        self,
        r: redis.Redis,
        log: ContextLogger,
        *,
        site: str,
        worker: str,
        lease_seconds: float,
        claim_retention: int,
    ) -> None:
        self.r = r
        self.log = log
        self.site = site
        self.worker = worker
        self.lease_ms = max(100, int(lease_seconds * 1000))
        self.claim_retention = claim_retention
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._claim = r.register_script(_CLAIM)
        self._renew = r.register_script(_RENEW)
        self._free = r.register_script(_FREE)

    def claim(self, o: SendOrder) -> Claim:
        result = self._claim(
            keys=[
                keys.site_inflight(self.site),
                keys.attempt_claim(o.attempt_id),
                keys.lease(o.attempt_id),
            ],
            args=[o.attempt_id, o.token, self.worker, self.lease_ms, self.claim_retention],
        )
        if result == 0:
            return Claim.STALE
        if result == -1:
            return Claim.STARTED
        with self._lock:
            self._held[o.attempt_id] = _Held(o)
        self._ensure_renewing()
        return Claim.OK

    def lost(self, attempt_id: str) -> bool:
        held = self._held.get(attempt_id)
        return held is not None and held.lost.is_set()

    def free(self, o: SendOrder) -> bool:
        """Give the slot back (only if this hand-out still holds it) and wake dispatch."""
        with self._lock:
            self._held.pop(o.attempt_id, None)
        return bool(
            self._free(
                keys=[
                    keys.site_inflight(self.site),
                    keys.lease(o.attempt_id),
                    keys.DISPATCH_WAKE,
                    keys.in_doubt(self.site),
                ],
                args=[o.attempt_id, o.token],
            )
        )

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    # -- renewal ----------------------------------------------------------------------

    def _ensure_renewing(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def renew_all(self) -> None:
        with self._lock:
            held = [h for h in self._held.values() if not h.lost.is_set()]
        for h in held:
            o = h.order
            ok = self._renew(
                keys=[keys.site_inflight(self.site), keys.lease(o.attempt_id)],
                args=[
                    o.attempt_id,
                    o.token,
                    inflight.lease_value(o.token, self.worker),
                    self.lease_ms,
                ],
            )
            if not ok:
                h.lost.set()
                self.log.error(
                    "lease lost: the call is in doubt until its result is reported",
                    job=o.job_id,
                    recipient=o.recipient,
                    attempt=o.attempt,
                    site=self.site,
                )

    def _run(self) -> None:
        period = self.lease_ms / 3000
        while not self._stop.wait(period):
            try:
                self.renew_all()
            except redis.RedisError as exc:
                self.log.warning("cannot renew leases", site=self.site, error=str(exc))

    def stop(self) -> None:
        self._stop.set()
