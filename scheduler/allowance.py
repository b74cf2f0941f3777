"""What a tenant is allowed, kept in Redis: its destination policy and its daily page count.

The rules themselves are pure (:mod:`faxfleet.destinations`); this module stores a
tenant's own policy (set by an administrator through the API) and counts the pages each
tenant submits per UTC day, exactly under concurrency: every change of a count is one Lua
script, so two submissions racing for the last pages of a quota cannot both get them.

A fax is charged twice, for what is known at each step:

1. at intake (:meth:`Allowance.reserve`): the least it can cost (every document makes at
   least one page, for every recipient); a submission that does not fit is refused before
   anything is stored, and one refused after the reservation (or an idempotent replay) is
   given its pages back (:meth:`Allowance.release`);
2. once rendered (:meth:`Allowance.settle`): the rest of its true size (pages times
   recipients). If that does not fit, the fax fails with ``quota_exceeded`` before any
   call and its reservation is given back. Settling twice (a render run again, an event
   applied again) charges once.

A fax counts on the UTC day it was submitted, whatever becomes of it later (sent, failed,
cancelled); a fax an administrator submitted with ``override_policy`` is counted but never
refused.

Keys (private to the scheduler):

* ``ff:policy:tenant:{t}``: the tenant's policy (JSON of :class:`TenantPolicy`)
* ``ff:quota:{t}:{YYYY-MM-DD}``: pages charged to the tenant that UTC day
* ``ff:quota:fax:{id}``: what a fax was charged (hash: day key, pages, state, override)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from faxfleet.destinations import FleetPolicy, Rules, TenantPolicy, quota_reason
from faxfleet.messages import FaxStatus

DAY_KEY_TTL = 3 * 86400
"""A day's count is kept two days after it ends (for the admin API and late renders)."""


def policy_key(tenant: str) -> str:
    return f"ff:policy:tenant:{tenant}"


def day_key(tenant: str, day: str) -> str:
    return f"ff:quota:{tenant}:{day}"


def fax_key(job_id: str) -> str:
    return f"ff:quota:fax:{job_id}"


def utc_day(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def seconds_to_midnight(at: datetime | None = None) -> int:
    """Until the next UTC day, when a used-up quota starts again (a ``Retry-After``)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    midnight = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - at).total_seconds()) + 1)


# KEYS: day, fax. ARGV: pages, limit (-1: none), day ttl, fax ttl, override (0/1), tenant.
# Returns {1, used after} or {0, used}.
_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local pages = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and ARGV[5] ~= '1' and used + pages > limit then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], pages)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'day', KEYS[1], 'pages', pages, 'state', 'reserved',
           'override', ARGV[5], 'tenant', ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return {1, used}
"""

# KEYS: fax. Gives back a reservation not settled yet. Returns the pages given back.
_RELEASE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'reserved' then
  return 0
end
local day = redis.call('HGET', KEYS[1], 'day')
local pages = tonumber(redis.call('HGET', KEYS[1], 'pages'))
if redis.call('EXISTS', day) == 1 then
  redis.call('DECRBY', day, pages)
end
redis.call('DEL', KEYS[1])
return pages
"""

# KEYS: fax. ARGV: true pages, limit (-1: none), day ttl.
# Returns {state, used, pages, limit}: 'settled' (charged), 'refused' (does not fit: the
# reservation is given back), 'untracked' (no reservation: submitted before quotas).
_SETTLE = """
local rec = redis.call('HMGET', KEYS[1], 'day', 'pages', 'state', 'override', 'limit')
local day, charged, state, override = rec[1], tonumber(rec[2]), rec[3], rec[4]
if not day then
  return {'untracked', 0, 0, -1}
end
local used = tonumber(redis.call('GET', day) or '0')
if state == 'settled' or state == 'refused' then
  return {state, used, charged, tonumber(rec[5] or '-1')}
end
local total = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local delta = total - charged
if delta > 0 and limit >= 0 and override ~= '1' and used + delta > limit then
  if redis.call('EXISTS', day) == 1 then
    redis.call('DECRBY', day, charged)
  end
  redis.call('HSET', KEYS[1], 'state', 'refused', 'pages', total, 'limit', limit)
  return {'refused', used - charged, total, limit}
end
if delta ~= 0 then
  used = redis.call('INCRBY', day, delta)
  redis.call('EXPIRE', day, ARGV[3])
end
redis.call('HSET', KEYS[1], 'state', 'settled', 'pages', total, 'limit', limit)
return {'settled', used, total, limit}
"""


@dataclass(frozen=True)
class Charge:
    ok: bool
    used: int
    """The tenant's pages that day after the charge (before it, when refused)."""
    limit: int | None


class Allowance:
    """Tenant policies and page counts in one Redis."""

    def __init__(self, r: redis.Redis, fleet: FleetPolicy, retention_seconds: int) -> None:
        self.r = r
        self.fleet = fleet
        self.retention = retention_seconds
        self._reserve = r.register_script(_RESERVE)
        self._release = r.register_script(_RELEASE)
        self._settle = r.register_script(_SETTLE)

    # -- tenant policies ------------------------------------------------------------------

    def policy(self, tenant: str) -> TenantPolicy:
        """The tenant's own policy (empty if none was set)."""
        raw = self.r.get(policy_key(tenant))
        return TenantPolicy.model_validate_json(raw) if raw else TenantPolicy()

    def set_policy(self, tenant: str, policy: TenantPolicy) -> None:
        self.r.set(policy_key(tenant), policy.model_dump_json())

    def delete_policy(self, tenant: str) -> bool:
        return bool(self.r.delete(policy_key(tenant)))

    def rules(self, tenant: str) -> Rules:
        return Rules(tenant, self.fleet, self.policy(tenant))

    # -- daily pages ------------------------------------------------------------------------

    def used(self, tenant: str, day: str | None = None) -> int:
        return int(self.r.get(day_key(tenant, day or utc_day())) or 0)

    def reserve(self, rules: Rules, job_id: str, pages: int, *, override: bool = False) -> Charge:
        """Charge ``pages`` to today's count unless it would pass the tenant's quota."""
        limit = rules.daily_pages
        ok, used = self._reserve(
            keys=[day_key(rules.tenant, utc_day()), fax_key(job_id)],
            args=[
                pages,
                -1 if limit is None else limit,
                DAY_KEY_TTL,
                self.retention,
                1 if override else 0,
                rules.tenant,
            ],
        )
        return Charge(bool(ok), int(used), limit)

    def release(self, job_id: str) -> int:
        """Give back the reservation of a fax not stored after all; returns its pages."""
        return int(self._release(keys=[fax_key(job_id)]))

    def settle(self, fax: FaxStatus, pages: int) -> str | None:
        """Charge a rendered fax for its true size (``pages`` times its recipients). Returns
        why it is refused (it does not fit the tenant's quota), or None."""
        limit = self.rules(fax.tenant).daily_pages
        state, used, wanted, limit_then = self._settle(
            keys=[fax_key(fax.id)],
            args=[pages * len(fax.recipients), -1 if limit is None else limit, DAY_KEY_TTL],
        )
        if state not in (b"refused", "refused"):
            return None
        return quota_reason(fax.tenant, int(limit_then), int(used), int(wanted), at_least=False)
