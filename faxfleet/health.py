"""Whether the fleet can send, told truthfully: the checks behind ``/healthz`` and
``faxfleet sites``.

:func:`assess` is pure (a :class:`Snapshot` in, problems out); :func:`snapshot` reads
one from Redis. The fleet is unhealthy when any of these holds:

* Redis cannot be reached (nothing can be stored, placed or sent);
* no site publishes its state with a line in service;
* a process kind the fleet needs has no live process (no dispatcher: nothing is placed;
  no timer loop: no retry is started; no renderer: nothing is rendered; a home site
  without an event worker: its faxes do not move; without a notifier: nobody hears);
* the dispatcher's last pass is too old to trust (it stopped);
* faxes wait past their priority promise while lines are free;
* a site holds more faxes than it has lines in service (slots held by nobody).
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from pydantic import BaseModel, Field

from faxfleet import heartbeat, keys
from faxfleet.messages import DispatchSummary, SiteStatus, now

REQUIRED = ("dispatcher", "timers", "router", "render")
"""Process kinds without which no fax can go out (site-scoped kinds are checked per
site through the site's own status)."""

SUMMARY_STALE_SECONDS = 15.0


class SiteHealth(BaseModel):
    name: str
    lines_up: int
    busy: int
    held: int
    """Faxes handed to the site and not ended (reserved or on a line)."""
    leased: int
    """Of those, calls a worker holds a live lease on."""


class AccountingHealth(BaseModel):
    """Calls are still sent and recorded while PostgreSQL is down (records wait in the
    journal), so this does not make the fleet unhealthy: it says how far behind it is."""

    backlog: int
    """Call records not yet copied."""
    error: str | None = None
    """Why the last copy failed (None: it worked)."""
    at: datetime


class Snapshot(BaseModel):
    at: datetime
    redis_error: str | None = None
    sites: list[SiteHealth] = Field(default_factory=list)
    processes: dict[str, int] = Field(default_factory=dict)
    dispatch: DispatchSummary | None = None
    home_sites: list[str] = Field(default_factory=list)
    accounting: AccountingHealth | None = None
    """The call journal's copier to PostgreSQL, as it last reported (None: no database)."""


class Health(BaseModel):
    ok: bool
    problems: list[str]
    snapshot: Snapshot


def assess(snap: Snapshot) -> Health:
    problems: list[str] = []
    if snap.redis_error is not None:
        return Health(ok=False, problems=[f"redis unreachable: {snap.redis_error}"], snapshot=snap)
    if not any(s.lines_up > 0 for s in snap.sites):
        problems.append("no site reachable with a line in service")
    for kind in REQUIRED:
        if snap.processes.get(kind, 0) == 0:
            problems.append(f"no live {kind} process")
    for home in snap.home_sites:
        for kind in ("events", "notify"):
            if snap.processes.get(f"{kind}.{home}", 0) == 0:
                problems.append(f"no live {kind} worker for home site {home}")
    d = snap.dispatch
    if d is None or (snap.at - d.at).total_seconds() > SUMMARY_STALE_SECONDS:
        problems.append("the dispatcher has not completed a pass recently")
    elif d.overdue and d.free_lines:
        problems.append(
            f"{d.overdue} fax(es) waiting past their promise with {d.free_lines} line(s) free"
        )
    for s in snap.sites:
        if s.held > s.lines_up and s.held > s.leased:
            problems.append(f"site {s.name} holds {s.held} faxes for {s.lines_up} line(s)")
    return Health(ok=not problems, problems=problems, snapshot=snap)


def snapshot(r: redis.Redis) -> Snapshot:
    at = now()
    try:
        status_keys = list(r.scan_iter(match=keys.SITE_STATUS_PATTERN, count=1000))
        statuses = (
            [SiteStatus.model_validate_json(x) for x in r.mget(status_keys) if x]
            if status_keys
            else []
        )
        sites = []
        for st in statuses:
            attempts = [a.decode() for a in r.hkeys(keys.site_inflight(st.name))]
            leased = int(r.exists(*(keys.lease(a) for a in attempts))) if attempts else 0
            sites.append(
                SiteHealth(
                    name=st.name,
                    lines_up=st.lines_up,
                    busy=st.lines_busy,
                    held=len(attempts),
                    leased=leased,
                )
            )
        raw = r.get(keys.DISPATCH_SUMMARY)
        copied = {k.decode(): v.decode() for k, v in r.hgetall(keys.ACCT_COPIED).items()}
        accounting = (
            AccountingHealth(
                backlog=int(copied.get("backlog", 0)),
                error=copied.get("error") or None,
                at=datetime.fromtimestamp(float(copied["at"]), UTC),
            )
            if "at" in copied
            else None
        )
        return Snapshot(
            at=at,
            sites=sorted(sites, key=lambda s: s.name),
            processes=heartbeat.alive(r),
            dispatch=DispatchSummary.model_validate_json(raw) if raw else None,
            home_sites=sorted(h.decode() for h in r.smembers(keys.HOME_SITES)),
            accounting=accounting,
        )
    except redis.RedisError as exc:
        return Snapshot(at=at, redis_error=str(exc) or type(exc).__name__)
